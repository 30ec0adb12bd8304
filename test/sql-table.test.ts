import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  createSqlTableDestination,
  readSqlTableMembers,
  sqlTableConfigSchema,
  type SqlTableConfigInput,
} from '../src/connectors/sql-table';
import type { Destination } from '../src/connectors/types';
import { createTestDatabase, dialects, mysqlServerUrl, type TestDatabase } from './helpers/databases';
import { allKeys, fixedSecrets, rejection, sampleMembers as members } from './helpers/destinations';

const noSecrets = fixedSecrets({});

for (const dialect of dialects) {
  describe(`sql-table on ${dialect}`, () => {
    let other: TestDatabase;
    let tableCounter = 0;
    const destinations: Destination[] = [];

    before(async () => {
      other = await createTestDatabase(dialect);
    });
    after(async () => {
      for (const dest of destinations) await dest.close();
      await other.drop();
    });

    /** A destination on a fresh table; MySQL goes through urlSecret, SQLite through url. */
    function destination(overrides: Partial<SqlTableConfigInput> = {}): { dest: Destination; table: string } {
      const table = `audience_${tableCounter++}`;
      const config: SqlTableConfigInput =
        dialect === 'mysql'
          ? { type: 'sql-table', urlSecret: 'AUDIENCE_DB_URL', table, ...overrides }
          : { type: 'sql-table', url: other.url, table, ...overrides };
      const dest = createSqlTableDestination(config, fixedSecrets({ AUDIENCE_DB_URL: other.url }));
      destinations.push(dest);
      return { dest, table: config.table };
    }

    test('creates the table and round-trips add, upsert, remove, truncate and listMembers', async () => {
      const { dest, table } = destination();
      assert.equal(await other.db.schema.hasTable(table), false);

      const added = await dest.add(members('c@x', 'a@x', 'b@x'));
      assert.deepEqual(added, { rejected: [], apiCalls: 1, rateLimitWaits: 0 });
      assert.equal(await other.db.schema.hasTable(table), true);
      assert.deepEqual((await readSqlTableMembers(other.url, table)).get('a@x'), {
        rank: 1,
        vip: false,
        note: null,
      });

      const upserted = await dest.add([
        { key: 'a@x', attributes: { rank: 99 } },
        { key: 'd@x', attributes: {} },
      ]);
      assert.equal(upserted.apiCalls, 1);
      const afterUpsert = await readSqlTableMembers(other.url, table);
      assert.deepEqual(afterUpsert.get('a@x'), { rank: 99 });
      assert.deepEqual([...afterUpsert.keys()], ['a@x', 'b@x', 'c@x', 'd@x']);

      const removed = await dest.remove(['b@x', 'never@x']);
      assert.deepEqual(removed, { rejected: [], apiCalls: 1, rateLimitWaits: 0 });
      assert.deepEqual((await dest.listMembers(null, 10)).keys, ['a@x', 'c@x', 'd@x']);

      const truncated = await dest.truncate();
      assert.equal(truncated.apiCalls, 1);
      assert.deepEqual(await dest.listMembers(null, 10), { keys: [], next: null });
      assert.equal((await readSqlTableMembers(other.url, table)).size, 0);
    });

    test('keys compare byte for byte and page in byte order', async () => {
      const { dest } = destination();
      const keys = ['b@x', 'A@x', 'é@x', 'a@x', 'B@x', 'z@x', '😀@x'];
      await dest.add(members(...keys));
      const { keys: listed, pages } = await allKeys(dest, 2);
      assert.deepEqual(listed, ['A@x', 'B@x', 'a@x', 'b@x', 'z@x', 'é@x', '😀@x']);
      assert.equal(pages, 4);

      await dest.remove(['a@x']);
      assert.deepEqual((await allKeys(dest, 3)).keys, ['A@x', 'B@x', 'b@x', 'z@x', 'é@x', '😀@x']);
    });

    test('a full last page reports no next page', async () => {
      const { dest } = destination();
      await dest.add(members('a', 'b', 'c', 'd'));
      const first = await dest.listMembers(null, 2);
      assert.deepEqual(first, { keys: ['a', 'b'], next: 'b' });
      assert.deepEqual(await dest.listMembers(first.next, 2), { keys: ['c', 'd'], next: null });
    });

    test('splits batches larger than recordsPerCall, one statement each', async () => {
      const { dest, table } = destination({ recordsPerCall: 2 });
      assert.equal(dest.limits.recordsPerCall, 2);
      assert.equal((await dest.add(members('a', 'b', 'c', 'd', 'e'))).apiCalls, 3);
      assert.equal((await dest.remove(['a', 'b', 'c'])).apiCalls, 2);
      assert.deepEqual([...(await readSqlTableMembers(other.url, table)).keys()], ['d', 'e']);
    });

    test('rejects keys the column cannot hold, delivers the rest', async () => {
      const { dest, table } = destination();
      const long = 'x'.repeat(256);
      const fits = 'é'.repeat(255); // 255 characters, 510 bytes: fits VARCHAR(255)
      const outcome = await dest.add(members('ok@x', long, fits));
      assert.deepEqual(outcome.rejected, [{ key: long, reason: 'key longer than 255 characters (256)' }]);
      assert.deepEqual(
        [...(await readSqlTableMembers(other.url, table)).keys()].sort(),
        ['ok@x', fits].sort(),
      );
    });

    test('an existing table without the expected columns is a fatal error', async () => {
      const table = `wrong_layout_${tableCounter++}`;
      await other.db.schema.createTable(table, (t) => {
        t.string('email', 255).primary();
      });
      const { dest } = destination({ table });
      const err = await rejection(dest.add(members('a@x')));
      assert.equal(err.kind, 'fatal');
      assert.match(err.message, /has no 'member_key' column/);
    });

    test('an upsert is acknowledged by its statement: every row or, when it fails, none', async () => {
      const table = `checked_${tableCounter++}`;
      await other.db.schema.createTable(table, (t) => {
        t.string('member_key', 255).primary();
        t.text('attributes').notNullable();
        t.check("member_key <> 'refused@x'");
      });
      const { dest } = destination({ table });
      await dest.add(members('a@x'));
      // Unchanged on the second upsert (MySQL counts it 0 affected rows): confirmed all the same.
      assert.deepEqual((await dest.add(members('a@x'))).rejected, []);

      const err = await rejection(dest.add(members('b@x', 'refused@x', 'c@x')));
      assert.match(err.message, /constraint/i);
      assert.deepEqual(
        [...(await readSqlTableMembers(other.url, table)).keys()],
        ['a@x'],
        'the failed statement wrote neither b@x nor c@x, and reported none delivered',
      );
    });

    test('recreates a table dropped between calls after a retryable error', async () => {
      const { dest, table } = destination();
      await dest.add(members('a'));
      await other.db.schema.dropTable(table);
      const err = await rejection(dest.add(members('b')));
      assert.equal(err.kind, 'retryable');
      await dest.add(members('b'));
      assert.deepEqual([...(await readSqlTableMembers(other.url, table)).keys()], ['b']);
    });
  });
}

describe('sql-table errors and config', () => {
  test('access denied on MariaDB is fatal', async () => {
    const url = new URL(mysqlServerUrl);
    url.username = 'deltasync_no_such_user';
    const dest = createSqlTableDestination({ type: 'sql-table', url: url.toString(), table: 't' }, noSecrets);
    try {
      const err = await rejection(dest.add(members('a')));
      assert.equal(err.kind, 'fatal');
      assert.match(err.message, /Access denied/);
    } finally {
      await dest.close();
    }
  });

  test('an unreachable server is retryable', async () => {
    const dest = createSqlTableDestination(
      { type: 'sql-table', url: 'mysql://root@127.0.0.1:1/x', table: 't' },
      noSecrets,
    );
    try {
      const err = await rejection(dest.listMembers(null, 10));
      assert.equal(err.kind, 'retryable');
      assert.match(err.message, /ECONNREFUSED/);
    } finally {
      await dest.close();
    }
  });

  test('a missing or malformed URL secret is fatal', async () => {
    const missing = createSqlTableDestination(
      { type: 'sql-table', urlSecret: 'NOPE', table: 't' },
      noSecrets,
    );
    const err = await rejection(missing.add(members('a')));
    assert.equal(err.kind, 'fatal');
    assert.match(err.message, /NOPE/);

    // An empty URL must never fall back to deltasync's own database.
    const empty = createSqlTableDestination({ type: 'sql-table', urlSecret: 'EMPTY', table: 't' }, () => '');
    assert.equal((await rejection(empty.add(members('a')))).kind, 'fatal');
  });

  test('schema: exactly one of url and urlSecret, no passwords in url, plain table names', () => {
    const base = { type: 'sql-table' as const, table: 'audience' };
    const parsed = sqlTableConfigSchema.parse({ ...base, url: 'sqlite:data/x.sqlite' });
    assert.equal(parsed.recordsPerCall, 1000);

    const messages = (input: unknown) =>
      sqlTableConfigSchema.safeParse(input).error?.issues.map((issue) => issue.message) ?? [];
    assert.deepEqual(messages({ ...base, url: 'mysql://u:secret@db/x' }), [
      'url must not contain a password: store the URL in a secret and name it in urlSecret',
    ]);
    assert.deepEqual(messages({ ...base, url: 'mysql://u@db/x', urlSecret: 'S' }), [
      'give exactly one of url (no password) or urlSecret (name of a secret holding the URL)',
    ]);
    assert.deepEqual(messages({ ...base }), [
      'give exactly one of url (no password) or urlSecret (name of a secret holding the URL)',
    ]);
    assert.deepEqual(messages({ ...base, url: 'postgres://db/x' }), [
      'url must start with mysql://, mariadb:// or sqlite:',
    ]);
    assert.equal(messages({ ...base, urlSecret: 'S', table: 'a; drop table x' }).length, 1);
    assert.deepEqual(messages({ ...base, urlSecret: 'S' }), []);
  });
});
