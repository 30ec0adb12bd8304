import path from 'node:path';

/**
 * Recorded workflow histories: DELTASYNC_RECORD_HISTORIES=cancel bash scripts/test.sh
 * test/refresh.test.ts records one (=1 all of them; re-record old ones only on purpose).
 */
export const HISTORY_FIXTURES = path.join(__dirname, '..', 'fixtures', 'histories');

/**
 * Everything a history says, as text: payload bytes (inputs, results, heartbeats, memos, search
 * attributes, failures) are decoded, so a test can search it for record data.
 */
export function historyText(history: unknown): string {
  const parts: string[] = [];
  const walk = (value: unknown): void => {
    if (value instanceof Uint8Array) parts.push(Buffer.from(value).toString('utf8'));
    else if (Array.isArray(value)) value.forEach(walk);
    else if (value && typeof value === 'object') {
      for (const [key, inner] of Object.entries(value)) {
        parts.push(key);
        walk(inner);
      }
    } else if (value !== undefined && value !== null) parts.push(String(value));
  };
  walk(history);
  return parts.join('\n');
}
