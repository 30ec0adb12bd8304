import { z } from 'zod';
import { secretName } from '../kit/index';

/** The settings of a `sql-table` destination: all that validating a connector needs. */

export const SQL_TABLE_TYPE = 'sql-table';

/** The key column's length, in characters. */
export const maxKeyLength = 255;
/** Two bound parameters per row must stay under SQLite's 32766 and MySQL's 65535 placeholders. */
export const maxRecordsPerStatement = 10_000;
export const urlPrefixes = /^(mysql:\/\/|mariadb:\/\/|sqlite:)/;

export const sqlTableConfigSchema = z
  .object({
    type: z.literal(SQL_TABLE_TYPE),
    /** Name of a secret holding the database URL (use this whenever the URL has a password). */
    urlSecret: secretName.optional(),
    url: z
      .string()
      .regex(urlPrefixes, 'url must start with mysql://, mariadb:// or sqlite:')
      .refine((url) => !hasPassword(url), {
        message: 'url must not contain a password: store the URL in a secret and name it in urlSecret',
      })
      .optional(),
    table: z
      .string()
      .regex(
        /^[A-Za-z_][A-Za-z0-9_]{0,63}$/,
        'table must be a plain name: letters, digits and _, at most 64',
      ),
    /** Rows per statement: the destination's limit, so the engine never hands over more. */
    recordsPerCall: z.number().int().min(1).max(maxRecordsPerStatement).default(1000),
  })
  .refine((config) => (config.url === undefined) !== (config.urlSecret === undefined), {
    message: 'give exactly one of url (no password) or urlSecret (name of a secret holding the URL)',
    path: ['url'],
  });

export type SqlTableConfig = z.output<typeof sqlTableConfigSchema>;
export type SqlTableConfigInput = z.input<typeof sqlTableConfigSchema>;

function hasPassword(url: string): boolean {
  if (!/^(mysql|mariadb):\/\//.test(url)) return false;
  try {
    return new URL(url.replace(/^mariadb:/, 'mysql:')).password !== '';
  } catch {
    return false;
  }
}
