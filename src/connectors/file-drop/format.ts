import type { AttributeValue, Attributes, Member } from '../../core/destination';

/**
 * The two file formats of the file-drop destination, written and read record by record.
 *
 * ndjson: one JSON object per line, `{"key":"…","attributes":{…}}\n`; values keep their types.
 * csv (RFC 4180): a header row `key,<attribute names…>`, then one row per member, CRLF line
 *   ends. A field with a comma, a double quote, CR, LF or leading/trailing blanks is quoted, a
 *   double quote inside is doubled. CSV has no types: numbers and booleans come back as strings.
 *   To keep null apart from the empty string, null is an empty unquoted field and '' is `""`
 *   (the convention of PostgreSQL's COPY … CSV).
 *
 * Parsing works on bytes, not decoded text: the structural characters are ASCII, and no byte of a
 * multi-byte UTF-8 character is ASCII, so offsets found here are file offsets.
 */

export type FileFormat = 'ndjson' | 'csv';

export const fileFormats = ['ndjson', 'csv'] as const;

/** A record as found in a file: the member and the byte offset right after it. */
export interface FileRecord extends Member {
  end: number;
}

/** A file that does not have the shape file-drop writes (edited by hand, or not ours). */
export class MalformedFileError extends Error {
  override name = 'MalformedFileError';
}

// --- Writing ------------------------------------------------------------------------------------

export function ndjsonLine(member: Member): string {
  return `${JSON.stringify({ key: member.key, attributes: member.attributes })}\n`;
}

export function csvRow(values: (AttributeValue | undefined)[]): string {
  return `${values.map(csvField).join(',')}\r\n`;
}

export function csvField(value: AttributeValue | undefined): string {
  if (value === null || value === undefined) return '';
  const text = String(value);
  if (text === '') return '""';
  return /[",\r\n]|^\s|\s$/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

// --- Reading ------------------------------------------------------------------------------------

const QUOTE = 0x22;
const COMMA = 0x2c;
const CR = 0x0d;
const LF = 0x0a;

/**
 * The complete records in `buffer` from `start`, at most `limit`. A record without its line end
 * is incomplete (the rest may be in the next chunk, or the write was torn): parsing stops before
 * it. `columns` is the CSV header (key column first); ndjson ignores it.
 */
export function parseRecords(
  buffer: Buffer,
  start: number,
  format: FileFormat,
  columns: string[] | null,
  limit = Infinity,
): FileRecord[] {
  const records: FileRecord[] = [];
  let position = start;
  while (records.length < limit && position < buffer.length) {
    const record =
      format === 'ndjson' ? ndjsonRecord(buffer, position) : csvRecord(buffer, position, columns);
    if (record === null) break;
    records.push(record);
    position = record.end;
  }
  return records;
}

function ndjsonRecord(buffer: Buffer, start: number): FileRecord | null {
  const lineEnd = buffer.indexOf(LF, start);
  if (lineEnd === -1) return null;
  const text = buffer.toString('utf8', start, lineEnd);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new MalformedFileError(`not a JSON line at byte ${start}: ${text.slice(0, 80)}`);
  }
  const { key, attributes } = (parsed ?? {}) as { key?: unknown; attributes?: unknown };
  if (typeof key !== 'string' || !attributes || typeof attributes !== 'object' || Array.isArray(attributes)) {
    throw new MalformedFileError(`line at byte ${start} is not {"key": string, "attributes": object}`);
  }
  return { key, attributes: attributes as Attributes, end: lineEnd + 1 };
}

function csvRecord(buffer: Buffer, start: number, columns: string[] | null): FileRecord | null {
  const row = csvFields(buffer, start);
  if (row === null) return null;
  if (!columns) throw new MalformedFileError('a CSV row cannot be read without the header');
  const [key, ...values] = row.fields;
  if (typeof key !== 'string' || row.fields.length !== columns.length) {
    throw new MalformedFileError(
      `CSV row at byte ${start} has ${row.fields.length} fields for ${columns.length} columns, or no key`,
    );
  }
  const attributes: Attributes = {};
  columns.slice(1).forEach((name, i) => (attributes[name] = values[i] ?? null));
  return { key, attributes, end: row.end };
}

/**
 * One CSV row from `start`: its fields (null for an empty unquoted field) and the offset after
 * its line end; null when the row is not complete in `buffer`.
 */
export function csvFields(buffer: Buffer, start: number): { fields: (string | null)[]; end: number } | null {
  const fields: (string | null)[] = [];
  let position = start;
  for (;;) {
    const field = buffer[position] === QUOTE ? quotedField(buffer, position) : plainField(buffer, position);
    if (field === null) return null;
    fields.push(field.value);
    const delimiter = buffer[field.end];
    if (delimiter === COMMA) {
      position = field.end + 1;
    } else if (delimiter === LF) {
      return { fields, end: field.end + 1 };
    } else if (delimiter === CR) {
      if (field.end + 1 >= buffer.length) return null;
      if (buffer[field.end + 1] !== LF) throw new MalformedFileError(`bare CR in CSV at byte ${field.end}`);
      return { fields, end: field.end + 2 };
    } else if (delimiter === undefined) {
      return null;
    } else {
      throw new MalformedFileError(`unexpected character after a quoted CSV field at byte ${field.end}`);
    }
  }
}

function plainField(buffer: Buffer, start: number): { value: string | null; end: number } | null {
  let end = start;
  while (end < buffer.length && buffer[end] !== COMMA && buffer[end] !== CR && buffer[end] !== LF) end++;
  if (end === buffer.length) return null;
  return { value: end === start ? null : buffer.toString('utf8', start, end), end };
}

function quotedField(buffer: Buffer, start: number): { value: string; end: number } | null {
  let search = start + 1;
  for (;;) {
    const quote = buffer.indexOf(QUOTE, search);
    // A quote in the buffer's last byte may be the first of a doubled pair: wait for more.
    if (quote === -1 || quote + 1 >= buffer.length) return null;
    if (buffer[quote + 1] === QUOTE) {
      search = quote + 2;
      continue;
    }
    return { value: buffer.toString('utf8', start + 1, quote).replace(/""/g, '"'), end: quote + 1 };
  }
}
