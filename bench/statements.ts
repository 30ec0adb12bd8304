import { performance } from 'node:perf_hooks';
import type { Db } from '../src/db';

/** One statement a benchmarked step sent, with its time from sending to answer. */
export interface TimedStatement {
  sql: string;
  bindings: readonly unknown[];
  ms: number;
}

/** Run `work`, recording every statement it sends through `db`, with its duration. */
export async function timeStatements<T>(
  db: Db,
  work: () => Promise<T>,
): Promise<{ result: T; statements: TimedStatement[] }> {
  const open = new Map<string, { sql: string; bindings: readonly unknown[]; t: number }>();
  const done: TimedStatement[] = [];
  type QueryData = { __knexQueryUid?: string; sql?: string; bindings?: readonly unknown[] };
  const onQuery = (q: QueryData) => {
    if (q.__knexQueryUid)
      open.set(q.__knexQueryUid, { sql: q.sql ?? '', bindings: q.bindings ?? [], t: performance.now() });
  };
  const onResponse = (_response: unknown, q: QueryData) => {
    const start = q.__knexQueryUid ? open.get(q.__knexQueryUid) : undefined;
    if (!start) return;
    open.delete(q.__knexQueryUid!);
    done.push({ sql: start.sql, bindings: start.bindings, ms: performance.now() - start.t });
  };
  db.on('query', onQuery);
  db.on('query-response', onResponse);
  try {
    return { result: await work(), statements: done };
  } finally {
    db.removeListener('query', onQuery);
    db.removeListener('query-response', onResponse);
  }
}
