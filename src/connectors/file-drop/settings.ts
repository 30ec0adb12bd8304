import path from 'node:path';
import { z } from 'zod';
import { fileFormats } from './format';

/** The settings of a `file-drop` destination: all that validating a connector needs. */

export const FILE_DROP_TYPE = 'file-drop';

export const fileDropConfigSchema = z.object({
  type: z.literal(FILE_DROP_TYPE),
  /** An existing directory the worker can write to (not created: a missing mount must not go unnoticed). */
  directory: z
    .string()
    .min(1)
    .refine((dir) => path.isAbsolute(dir), 'directory must be an absolute path'),
  format: z.enum(fileFormats).default('ndjson'),
  filePrefix: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/, 'filePrefix: letters, digits, ., _ and -, at most 100')
    .default('list'),
  /** Records appended per call (one write + fsync): the destination's limit. */
  recordsPerCall: z.number().int().min(1).max(1_000_000).default(10_000),
});

export type FileDropConfig = z.output<typeof fileDropConfigSchema>;
export type FileDropConfigInput = z.input<typeof fileDropConfigSchema>;
