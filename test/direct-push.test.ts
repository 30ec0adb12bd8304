import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { saveConnector } from '../src/core/connector-store';
import type { Capabilities, Member } from '../src/core/destination';
import { listRuns, type RunRow } from '../src/core/runs';
import type { Db } from '../src/db';
import { createTestDatabase, dialects, type TestDatabase } from './helpers/databases';
import { createDriver } from './helpers/engine-driver';
import { EVERYTHING, MemoryDestination } from './helpers/memory-destination';

/**
 * A first push (the connector's deltalog empty) reads the dataset straight in key order and writes
 * each delivered batch to the deltalog committed, instead of writing every key pending and then
 * rewriting it committed (issue 12). Held here: it leaves exactly what the compare-and-commit path
 * leaves, resumes from its checkpoint, keeps refusals pending, loses no edit made while it runs,
 * and is taken only where it is sound.
 */

const ROWS = 2_500;
const TOTAL = ROWS + 1; // and one key outside ASCII, sorting after the others
const BATCH = 100;
const key = (i: number) => `k${String(i).padStart(5, '0')}`;

for (const dialect of dialects) {
  describe(`a direct first push (${dialect})`, () => {
    let t: TestDatabase;
    let table: string;
    let tableNumber = 0;

    before(async () => {
      t = await createTestDatabase(dialect);
    });
    after(() => t.drop());

    /** A fresh dataset with a unique, byte-compared key (and one empty key, a bad row). */
    beforeEach(async () => {
      table = `fans_${tableNumber++}`;
      await t.db.schema.createTable(table, (x) => {
        const k = x.string('k', 32).primary();
        if (dialect === 'mysql') k.collate('utf8mb4_bin');
        x.string('v', 16);
      });
      const rows = Array.from({ length: ROWS }, (_, i) => ({ k: key(i), v: `v${i % 7}` }));
      for (let i = 0; i < rows.length; i += 250) await t.db(table).insert(rows.slice(i, i + 250));
      await t.db(table).insert([
        { k: '', v: 'no key' },
        { k: 'ünïcødé-😀', v: 'x' },
      ]);
    });

    async function connector(id: string, options: { dataset?: string } = {}) {
      await saveConnector(t.db, {
        id,
        dataset: { table: options.dataset ?? table, key: 'k', attributes: ['v'] },
        destination: { type: 'http-list', baseUrl: 'http://unused.invalid', listId: 'l', tokenSecret: 'U' },
        policy: { batchSize: BATCH },
      });
    }

    const lastRun = async (id: string): Promise<RunRow> => (await listRuns(t.db, `default/${id}`, 1))[0]!;

    async function assertRemoteEqualsDataset(remote: MemoryDestination, dataset = table) {
      const rows = (await t.db(dataset).whereNot('k', '')) as { k: string; v: string }[];
      assert.equal(remote.members.size, rows.length, 'remote size');
      for (const row of rows) assert.deepEqual(remote.members.get(row.k), { v: row.v }, row.k);
    }

    /** Every deltalog row of the connector is committed, on the remote, with no error. */
    async function assertAllCommitted(id: string, expected: number) {
      const rows = (await t.db('deltalog').where({ connector_id: `default/${id}` })) as {
        committed_at: unknown;
        on_remote: unknown;
        in_dataset: unknown;
        last_error: unknown;
      }[];
      assert.equal(rows.length, expected, 'deltalog rows');
      for (const row of rows) {
        assert.notEqual(row.committed_at, null);
        assert.equal(Boolean(row.on_remote), true);
        assert.equal(Boolean(row.in_dataset), true);
        assert.equal(row.last_error, null);
      }
    }

    test('it delivers every valid row, writes the deltalog committed without rewriting it, and the next refresh finds nothing to do', async () => {
      await connector('plain');
      const remote = new MemoryDestination({ recordsPerCall: BATCH });
      const refresh = createDriver(t.db, remote);
      const statements = await deltalogWrites(t.db, () => refresh('plain', 'auto', { kind: 'none' }));

      const run = await lastRun('plain');
      assert.equal(run.status, 'succeeded');
      assert.equal(run.direct_push_rows, TOTAL);
      assert.equal(run.additions, TOTAL);
      assert.equal(run.records_sent, TOTAL);
      assert.equal(remote.calls.add, Math.ceil(TOTAL / BATCH));
      assert.equal(JSON.parse(run.bad_rows!).nullOrEmptyKeys, 1, 'the empty key is reported, not sent');
      await assertRemoteEqualsDataset(remote);
      await assertAllCommitted('plain', TOTAL);
      // One INSERT per delivered batch; no UPDATE of deltalog rows, no INSERT … SELECT from the dataset.
      assert.equal(statements.filter((sql) => /^insert/i.test(sql)).length, Math.ceil(TOTAL / BATCH));
      assert.deepEqual(
        statements
          .filter((sql) => /^update\b/.test(sql) || sql.includes(table.toLowerCase()))
          .map((sql) => sql.slice(0, 80)),
        [],
        'no key written pending first',
      );

      // The hashes it wrote are the compare's: an unchanged dataset leaves nothing pending.
      const second = await refresh('plain', 'auto', { kind: 'none' });
      assert.equal(second.status, 'noop');
      assert.equal((await lastRun('plain')).direct_push_rows, null, 'later runs compare');
      assert.equal(remote.calls.add, Math.ceil(TOTAL / BATCH));
    });

    test('a send that dies mid-way resumes from its checkpoint and re-sends at most the batch in flight', async () => {
      await connector('resumed');
      const remote = new MemoryDestination({ recordsPerCall: BATCH });
      const refresh = createDriver(t.db, remote);
      const result = await refresh('resumed', 'auto', {
        kind: 'fail-send',
        afterCalls: 7,
        applyBeforeFailing: true,
        retry: true,
      });
      assert.equal(result.status, 'succeeded');
      assert.equal((await lastRun('resumed')).direct_push_rows, TOTAL);
      assert.equal(remote.recordsReceived.add, TOTAL + BATCH, 'the unacknowledged batch, once more');
      await assertRemoteEqualsDataset(remote);
      await assertAllCommitted('resumed', TOTAL);
    });

    test('a push that gives up keeps what it delivered; the next run compares and sends only the rest', async () => {
      await connector('gave-up');
      const remote = new MemoryDestination({ recordsPerCall: BATCH });
      const refresh = createDriver(t.db, remote);
      const failed = await refresh('gave-up', 'auto', {
        kind: 'fail-send',
        afterCalls: 7,
        applyBeforeFailing: false,
        retry: false,
      });
      assert.equal(failed.completed, false);
      await assertAllCommitted('gave-up', 7 * BATCH);

      const next = await refresh('gave-up', 'auto', { kind: 'none' });
      assert.equal(next.status, 'succeeded');
      const run = await lastRun('gave-up');
      assert.equal(run.direct_push_rows, null);
      assert.equal(run.additions, TOTAL - 7 * BATCH);
      assert.equal(remote.recordsReceived.add, TOTAL + BATCH, 'only the batch whose call failed, once more');
      await assertRemoteEqualsDataset(remote);
      await assertAllCommitted('gave-up', TOTAL);
    });

    for (const retry of [false, true]) {
      test(`a key of a batch delivered but never recorded, deleted before the push ${retry ? 'is retried' : 'gives up'}, is removed by the next refresh`, async () => {
        const id = `in-flight-${retry}`;
        const lost = key(2 * BATCH + 5);
        await connector(id);
        const remote = new MemoryDestination({ recordsPerCall: BATCH });
        const add = remote.add!.bind(remote);
        let calls = 0;
        // The third call is delivered and then fails; before anything resumes, the dataset loses
        // one of its keys. Nothing committed says it reached the list.
        (remote as { add: (members: Member[]) => ReturnType<typeof add> }).add = async (members) => {
          if (++calls === 3) await t.db(table).where({ k: lost }).delete();
          return add(members);
        };
        const refresh = createDriver(t.db, remote);
        await refresh(id, 'auto', { kind: 'fail-send', afterCalls: 2, applyBeforeFailing: true, retry });
        assert.ok(remote.members.has(lost), 'the list took it');
        await refresh(id, 'auto', { kind: 'none' });
        assert.equal(remote.members.has(lost), false, 'removed');
        await assertRemoteEqualsDataset(remote);
      });
    }

    test('refused records stay pending with the reason and go out with the next run', async () => {
      await connector('refusals');
      const remote = new MemoryDestination({ recordsPerCall: BATCH });
      remote.reject = (k) =>
        k === key(42) ? 'invalid email' : k === key(43) ? { reason: 'busy', deferred: true } : null;
      const refresh = createDriver(t.db, remote);
      const first = await refresh('refusals', 'auto', { kind: 'none' });
      assert.equal(first.rejected, 2);
      const refused = (await t
        .db('deltalog')
        .where({ connector_id: 'default/refusals' })
        .whereNull('committed_at')
        .orderBy('record_key')) as {
        record_key: string;
        last_error: string;
        attempts: number;
        on_remote: unknown;
      }[];
      assert.deepEqual(
        refused.map((r) => [r.record_key, r.last_error, Number(r.attempts), Boolean(r.on_remote)]),
        [
          [key(42), 'invalid email', 1, false],
          [key(43), 'busy', 0, false],
        ],
      );

      remote.reject = () => null;
      await refresh('refusals', 'auto', { kind: 'none' });
      const run = await lastRun('refusals');
      assert.deepEqual([run.additions, run.updates, run.records_sent], [2, 0, 2]);
      await assertRemoteEqualsDataset(remote);
      await assertAllCommitted('refusals', TOTAL);
    });

    test('rows inserted, edited or deleted behind its cursor while it runs go out with the next refresh', async () => {
      await connector('edited');
      const remote = new MemoryDestination({ recordsPerCall: BATCH });
      const add = remote.add!.bind(remote);
      let calls = 0;
      // During the tenth call the first rows are long sent: change them under the push.
      (remote as { add: (members: Member[]) => ReturnType<typeof add> }).add = async (members) => {
        if (++calls === 10) {
          await t
            .db(table)
            .where({ k: key(0) })
            .update({ v: 'edited' });
          await t
            .db(table)
            .where({ k: key(1) })
            .delete();
          await t.db(table).insert({ k: `${key(2)}b`, v: 'new' });
          await t
            .db(table)
            .where({ k: key(2400) })
            .update({ v: 'ahead' }); // not read yet: sent as is now
        }
        return add(members);
      };
      const refresh = createDriver(t.db, remote);
      await refresh('edited', 'auto', { kind: 'none' });
      assert.deepEqual(remote.members.get(key(2400)), { v: 'ahead' });
      assert.deepEqual(remote.members.get(key(0)), { v: 'v0' }, 'sent before the edit');

      await refresh('edited', 'auto', { kind: 'none' });
      const run = await lastRun('edited');
      assert.deepEqual([run.additions, run.updates, run.deletions], [1, 1, 1]);
      await assertRemoteEqualsDataset(remote);
    });

    test('it is taken only where it is sound: an empty deltalog, a unique byte-compared key, a destination that adds', async () => {
      const noKey = `${table}_nokey`;
      await t.db.schema.createTable(noKey, (x) => {
        x.string('k', 32);
        x.string('v', 16);
      });
      await t.db(noKey).insert([
        { k: 'a', v: '1' },
        { k: 'b', v: '2' },
      ]);
      const cases: {
        id: string;
        why: string;
        strategy?: 'newList';
        setup: () => Promise<Capabilities | undefined>;
      }[] = [
        {
          id: 'no-unique-key',
          why: 'a key that may repeat',
          setup: async () => (await connector('no-unique-key', { dataset: noKey }), undefined),
        },
        {
          id: 'new-list',
          why: 'new list + swap works on a compared deltalog',
          strategy: 'newList',
          setup: async () => (await connector('new-list'), undefined),
        },
        {
          id: 'replace-only',
          why: 'a destination that cannot add',
          setup: async () => {
            await connector('replace-only');
            return { ...EVERYTHING, add: false, remove: false, truncate: false };
          },
        },
      ];
      if (dialect === 'mysql') {
        const caseInsensitive = `${table}_ci`;
        await t.db.schema.createTable(caseInsensitive, (x) => {
          x.string('k', 32).primary().collate('utf8mb4_general_ci');
          x.string('v', 16);
        });
        await t.db(caseInsensitive).insert({ k: 'A@x', v: '1' });
        cases.push({
          id: 'case-insensitive',
          why: 'a key its collation compares case-insensitively',
          setup: async () => (await connector('case-insensitive', { dataset: caseInsensitive }), undefined),
        });
      }
      for (const { id, why, strategy, setup } of cases) {
        const capabilities = await setup();
        const remote = new MemoryDestination({ recordsPerCall: BATCH }, capabilities);
        const result = await createDriver(t.db, remote)(id, strategy ?? 'auto', { kind: 'none' });
        assert.equal(result.status, 'succeeded', id);
        assert.equal((await lastRun(id)).direct_push_rows, null, why);
        assert.ok(remote.members.size > 0, `${id} delivered`);
      }
    });
  });
}

/** The writes to the deltalog that `work` sends (lower-cased, backticks removed). */
async function deltalogWrites(db: Db, work: () => Promise<unknown>): Promise<string[]> {
  const writes: string[] = [];
  const listener = (query: { sql: string }) => {
    const sql = query.sql.replace(/[`"]/g, '').trim().toLowerCase();
    if (/^(insert|update|delete)\b/.test(sql) && /\bdeltalog\b/.test(sql)) writes.push(sql);
  };
  db.on('query', listener);
  try {
    await work();
  } finally {
    db.off('query', listener);
  }
  return writes;
}
