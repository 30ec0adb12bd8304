import type { Knex } from 'knex';
import type { AnyBinlogEvent, DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent } from '@vlasky/zongji' with {
  'resolution-mode': 'import',
};
import { dialectOf, selectRows, type Db } from '../db';
import {
  assertByteCompared,
  ChangeSourceError,
  databaseName,
  journalSource,
  sourceIdOf,
  splitTable,
  type FollowedSource,
  type TrackedTable,
} from './change-source';
import { MAX_KEY_LENGTH } from './dataset';

/**
 * Binary-log change sources, for tables whose owners allow no triggers. A MySQL/MariaDB server
 * with a row-format binary log already records every row each committed transaction wrote. Before
 * each claim the source reads the log from where it last stopped to its end at that moment (with
 * @vlasky/zongji, a maintained binlog client built on mysql2), and appends the keys of the
 * followed table's rows to the change journal; from there on it is a journal source like the
 * triggers' (change-source.ts): batches, positions, continuity, trimming.
 *
 * What it costs the source database: nothing per write beyond the binary log itself (which most
 * production servers keep for replication and point-in-time recovery); a replication connection
 * per read. Continuity: the log file the source stopped in must still be on the server; if it was
 * purged (expire_logs_days, PURGE BINARY LOGS), the next refresh compares in full.
 */

interface LogPosition {
  file: string;
  position: number;
}

interface BinlogRow {
  last_batch: number | string;
  binlog_file: string | null;
  binlog_position: number | string | null;
}

export function binlogSource(db: Db, tracked: TrackedTable): FollowedSource {
  const sourceId = sourceIdOf(tracked, 'binlog');
  return journalSource(db, tracked, sourceId, {
    prepare: (now) => ensureBinlogSource(db, tracked, sourceId, now),
    fill: () => readLogIntoJournal(db, tracked, sourceId),
  });
}

/** The server must keep a row-format log with whole row images; the source's row must exist. */
async function ensureBinlogSource(
  db: Db,
  tracked: TrackedTable,
  sourceId: string,
  now: number,
): Promise<{ lost?: string }> {
  await assertRowBinlog(db);
  const known = (await db('change_sources').where({ source_id: sourceId }).first()) as BinlogRow | undefined;
  if (!known) {
    await assertByteCompared(db, tracked);
    const end = await logEnd(db);
    await db('change_sources')
      .insert({
        source_id: sourceId,
        base_table: tracked.table,
        key_column: tracked.key,
        installed_at: now,
        binlog_file: end.file,
        binlog_position: end.position,
      })
      .onConflict('source_id')
      .ignore();
    return {};
  }
  const files = await selectRows<{ Log_name: string }>(db, 'SHOW BINARY LOGS');
  if (known.binlog_file && files.some((f) => f.Log_name === known.binlog_file)) return {};
  // The log it stopped in is gone: what was written there was never read. Start again at the end.
  const end = await logEnd(db);
  await db('change_sources')
    .where({ source_id: sourceId })
    .update({ floor: Number(known.last_batch) + 1, binlog_file: end.file, binlog_position: end.position });
  return {
    lost: `the binary log ${known.binlog_file ?? '(none)'} that ${tracked.table}'s changes were read from was purged`,
  };
}

async function assertRowBinlog(db: Db): Promise<void> {
  if (dialectOf(db) !== 'mysql')
    throw new ChangeSourceError(
      'the binary-log change source needs MySQL or MariaDB (SQLite has no binary log)',
    );
  const [server] = await selectRows<{ log_bin: number | string; format: string; image: string }>(
    db,
    'SELECT @@log_bin AS log_bin, @@binlog_format AS format, @@binlog_row_image AS image',
  );
  if (
    Number(server?.log_bin) !== 1 ||
    server?.format.toUpperCase() !== 'ROW' ||
    server?.image.toUpperCase() !== 'FULL'
  )
    throw new ChangeSourceError(
      `the binary-log change source needs log_bin=ON, binlog_format=ROW and binlog_row_image=FULL on the server ` +
        `(it has log_bin=${server?.log_bin}, binlog_format=${server?.format}, binlog_row_image=${server?.image}); ` +
        'see docs/change-sources.md, or use the triggers or watermark source',
    );
}

async function logEnd(db: Db | Knex.Transaction): Promise<LogPosition> {
  const [status] = await selectRows<{ File: string; Position: number | string }>(db, 'SHOW MASTER STATUS');
  if (!status) throw new ChangeSourceError('the server reports no binary log (SHOW MASTER STATUS is empty)');
  return { file: status.File, position: Number(status.Position) };
}

/**
 * Read the log from where the source stopped to its end now, and journal the followed table's keys
 * with the new stopping point, in one transaction under the source's lock (two refreshes never
 * read the same stretch twice, and a crash reads it again: the journal only names keys).
 */
async function readLogIntoJournal(db: Db, tracked: TrackedTable, sourceId: string): Promise<void> {
  const end = await logEnd(db);
  const [schema, table] = splitTable(tracked.table);
  await db.transaction(async (trx) => {
    const row = (await trx('change_sources').where({ source_id: sourceId }).forUpdate().first()) as
      BinlogRow | undefined;
    if (!row?.binlog_file) throw new ChangeSourceError(`binary-log source ${sourceId} is not installed`);
    const from = { file: row.binlog_file, position: Number(row.binlog_position) };
    if (!before(from, end)) return;
    const database = schema ?? (await databaseName(db));
    const keys = await keysWritten(db, from, end, { database, table, key: tracked.key });
    for (let i = 0; i < keys.length; i += 1000)
      await trx('change_journal').insert(
        keys.slice(i, i + 1000).map((record_key) => ({ source_id: sourceId, record_key })),
      );
    await trx('change_sources')
      .where({ source_id: sourceId })
      .update({ binlog_file: end.file, binlog_position: end.position });
  });
}

/** Log files are numbered: `mysql-bin.000012` comes after `mysql-bin.000009`. */
function before(a: LogPosition, b: LogPosition): boolean {
  const number = (file: string) => Number(/\.(\d+)$/.exec(file)?.[1] ?? 0);
  if (a.file !== b.file) return number(a.file) < number(b.file);
  return a.position < b.position;
}

/** How long a read of the log may take before it is given up (the refresh then fails and retries). */
const READ_TIMEOUT_MS = 120_000;

/**
 * The distinct keys of the rows that committed transactions wrote to one table between two
 * positions of the log: inserted and deleted rows' keys, and both keys of an updated row (a key
 * change touches two records).
 */
async function keysWritten(
  db: Db,
  from: LogPosition,
  to: LogPosition,
  table: { database: string; table: string; key: string },
): Promise<string[]> {
  const { default: ZongJi } = await import('@vlasky/zongji');
  const connection = db.client.config.connection as Record<string, unknown>;
  const zongji = new ZongJi({
    host: connection.host,
    port: connection.port,
    user: connection.user,
    password: connection.password,
  } as never);
  const keys = new Set<string>();
  const add = (value: unknown) => {
    if (value === null || value === undefined) return;
    const key = Buffer.isBuffer(value) ? value.toString('utf8') : String(value);
    keys.add(key.slice(0, MAX_KEY_LENGTH));
  };
  await new Promise<void>((resolve, reject) => {
    let settled = false;
    const finish = (error?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      zongji.stop();
      if (error) reject(error instanceof Error ? error : new Error(String(error)));
      else resolve();
    };
    const timer = setTimeout(
      () =>
        finish(new ChangeSourceError(`reading the binary log to ${to.file}:${to.position} took over 120 s`)),
      READ_TIMEOUT_MS,
    );
    zongji.on('error', finish);
    zongji.on('binlog', (event: AnyBinlogEvent) => {
      const name = event.getEventName();
      if (name === 'updaterows')
        for (const { before, after } of (event as UpdateRowsEvent).rows) {
          add(before[table.key]);
          add(after[table.key]);
        }
      else if (name === 'writerows' || name === 'deleterows')
        for (const row of (event as WriteRowsEvent | DeleteRowsEvent).rows) add(row[table.key]);
      const at = zongji.options as { filename?: string; position?: number };
      if (at.filename && !before({ file: at.filename, position: at.position ?? 0 }, to)) finish();
    });
    zongji.start({
      filename: from.file,
      position: from.position,
      // A replica id of its own: two readers with one id would disconnect each other.
      serverId: 1_000_000 + Math.floor(Math.random() * 1_000_000_000),
      includeSchema: { [table.database]: [table.table] },
    });
  });
  return [...keys];
}
