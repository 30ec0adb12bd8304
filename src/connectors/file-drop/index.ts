import { defineDestination } from '../kit/module';
import { createFileDropDestination } from './destination';
import { FILE_DROP_TYPE, fileDropConfigSchema } from './settings';

/**
 * The `file-drop` destination module: files in a directory, replaced whole by every refresh
 * (destination.ts), written and read in two formats (format.ts) through the file operations of
 * io.ts, its settings (settings.ts) and its emulator (emulator.ts: the same operations, with faults).
 */

export {
  createFileDropDestination,
  FILE_DROP_ENDPOINTS,
  MANIFEST,
  readFileDropManifest,
  readFileDropRecords,
  type FileDropManifest,
  type FileDropOptions,
} from './destination';
export { nodeFileDropIo, useFileDropIo, type FileDropIo } from './io';
export {
  FILE_DROP_TYPE,
  fileDropConfigSchema,
  type FileDropConfig,
  type FileDropConfigInput,
} from './settings';

export const fileDropDestination = defineDestination({
  type: FILE_DROP_TYPE,
  configSchema: fileDropConfigSchema,
  create: (config, context) => createFileDropDestination(config, context),
  targets: (config) => [{ kind: 'file', field: 'destination.directory', path: config.directory }],
});
