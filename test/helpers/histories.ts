import path from 'node:path';

/** Recorded workflow histories (refresh with DELTASYNC_RECORD_HISTORIES=1 npm test). */
export const HISTORY_FIXTURES = path.join(__dirname, '..', 'fixtures', 'histories');
