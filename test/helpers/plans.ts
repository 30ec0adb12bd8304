import assert from 'node:assert/strict';
import type { Knex } from 'knex';
import type { Db } from '../../src/db';
import type { TestDatabase } from './databases';

/** Reading query plans: which statements a piece of work sends, and how the database runs them. */

export interface Captured {
  sql: string;
  bindings: readonly unknown[];
}

/** The statements `work` sends, as sent. */
export async function statementsOf(db: Db, work: () => Promise<unknown>): Promise<Captured[]> {
  const captured: Captured[] = [];
  const listener = (query: { sql: string; bindings?: readonly unknown[] }) =>
    captured.push({ sql: query.sql, bindings: query.bindings ?? [] });
  db.on('query', listener);
  try {
    await work();
  } finally {
    db.off('query', listener);
  }
  return captured.filter((q) => /^\s*(select|update|insert|delete)/i.test(q.sql));
}

/** What the planner says it does, one line per table access. */
/** `t.db` may be a transaction: the plan of a statement over a temporary table needs its connection. */
export async function planOf(
  t: Pick<TestDatabase, 'dialect'> & { db: Db | Knex.Transaction },
  q: Captured,
): Promise<string[]> {
  if (t.dialect === 'sqlite') {
    const rows = (await t.db.raw(`EXPLAIN QUERY PLAN ${q.sql}`, q.bindings as Knex.RawBinding[])) as {
      detail: string;
    }[];
    return rows.map((r) => r.detail);
  }
  const [rows] = (await t.db.raw(`EXPLAIN ${q.sql}`, q.bindings as Knex.RawBinding[])) as [
    { table: string | null; type: string | null; key: string | null }[],
  ];
  return rows.map((r) => `${r.table} type=${r.type} key=${r.key}`);
}

/**
 * A plan that reads `table` (by name or alias) through an index, never by a scan of it. MariaDB
 * turns a long IN list into a derived table it scans (<derivedN>, <subqueryN>): that is the batch.
 */
export function assertIndexed(plan: string[], table: RegExp, index?: RegExp) {
  const lines = plan.filter((line) => table.test(line) && !/^<(derived|subquery)/.test(line));
  assert.ok(lines.length > 0, `the plan touches ${table}: ${plan.join(' | ')}`);
  for (const line of lines) {
    assert.doesNotMatch(line, /^SCAN|type=ALL|type=index\b/, `no scan of ${table}: ${line}`);
    if (index) assert.match(line, index, line);
  }
}
