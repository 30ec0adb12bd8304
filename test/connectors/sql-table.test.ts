import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  createSqlTableDestination,
  readSqlTableMembers,
  sqlTableConfigSchema,
  type SqlTableConfigInput,
} from '../../src/connectors/sql-table/index';
import { capabilitiesOf, type Destination, type SecretResolver } from '../../src/core/destination';
import { createTestDatabase, dialects, mysqlServerUrl, type TestDatabase } from '../helpers/databases';
import { counted, testContext } from '../helpers/destination-context';
import { allKeys, fixedSecrets, rejection, sampleMembers as members } from '../helpers/destinations';

const noSecrets = fixedSecrets({});
const noCalls = { failed: 0, rateLimited: 0, retried: 0 };

type SqlTable = Destination & Required<Pick<Destination, 'add' | 'remove' | 'truncate' | 'listMembers'>>;

/** A sql-table destination built the way the worker builds it. */
function sqlTable(config: SqlTableConfigInput, secrets: SecretResolver = noSecrets): SqlTable {
  const dest = createSqlTableDestination(config, testContext(secrets).context);
  assert.deepEqual(capabilitiesOf(dest), {
    add: true,
    remove: true,
    truncate: true,
    listMembers: true,
    updateAttributes: true,
    createList: false,
  });
  return dest as SqlTable;
}

for (const dialect of dialects) {
  describe(`sql-table on ${dialect}`, () => {
    let other: TestDatabase;
    let tableCounter = 0;
    const destinations: SqlTable[] = [];

    before(async () => {
      other = await createTestDatabase(dialect);
    });
    after(async () => {
      for (const dest of destinations) await dest.close();
      await other.drop();
    });

    /** A destination on a fresh table; MySQL goes through urlSecret, SQLite through url. */
    function destination(overrides: Partial<SqlTableConfigInput> = {}): { dest: SqlTable; table: string } {
      const table = `audience_${tableCounter++}`;
      const config: SqlTableConfigInput =
        dialect === 'mysql'
          ? { type: 'sql-table', urlSecret: 'AUDIENCE_DB_URL', table, ...overrides }
          : { type: 'sql-table', url: other.url, table, ...overrides };
      const dest = sqlTable(config, fixedSecrets({ AUDIENCE_DB_URL: other.url }));
      destinations.push(dest);
      return { dest, table: config.table };
    }

    test('creates the table and round-trips add, upsert, remove, truncate and listMembers', async () => {
      const { dest, table } = destination();
      assert.equal(await other.db.schema.hasTable(table), false);

      const added = await counted(() => dest.add(members('c@x', 'a@x', 'b@x')));
      assert.deepEqual(added.value, { rejected: [] });
      assert.deepEqual(
        added.tallies,
        { add: { calls: 1, ...noCalls } },
        'creating the table is part of the call',
      );
      assert.equal(await other.db.schema.hasTable(table), true);
      assert.deepEqual((await readSqlTableMembers(other.url, table)).get('a@x'), {
        rank: 1,
        vip: false,
        note: null,
      });

      const upserted = await counted(() =>
        dest.add([
          { key: 'a@x', attributes: { rank: 99 } },
          { key: 'd@x', attributes: {} },
        ]),
      );
      assert.equal(upserted.calls, 1);
      const afterUpsert = await readSqlTableMembers(other.url, table);
      assert.deepEqual(afterUpsert.get('a@x'), { rank: 99 });
      assert.deepEqual([...afterUpsert.keys()], ['a@x', 'b@x', 'c@x', 'd@x']);

      const removed = await counted(() => dest.remove(['b@x', 'never@x']));
      assert.deepEqual(removed.value, { rejected: [] });
      assert.deepEqual(removed.tallies, { remove: { calls: 1, ...noCalls } });
      assert.deepEqual((await dest.listMembers(null, 10)).keys, ['a@x', 'c@x', 'd@x']);

      const truncated = await counted(() => dest.truncate());
      assert.deepEqual(truncated.tallies, { truncate: { calls: 1, ...noCalls } });
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

    test('recordsPerCall is the limit the engine holds batches to: one batch, one statement', async () => {
      const { dest, table } = destination({ recordsPerCall: 2 });
      assert.equal(dest.limits.recordsPerCall, 2);
      assert.equal((await counted(() => dest.add(members('a', 'b')))).calls, 1);
      assert.equal((await counted(() => dest.add(members('c', 'd')))).calls, 1);
      assert.equal((await counted(() => dest.remove(['a', 'b']))).calls, 1);
      assert.deepEqual([...(await readSqlTableMembers(other.url, table)).keys()], ['c', 'd']);
    });

    test('a batch whose every key is refused sends no statement', async () => {
      const { dest } = destination();
      const outcome = await counted(() => dest.add(members('')));
      assert.deepEqual(outcome.value.rejected, [{ key: '', reason: 'empty key' }]);
      assert.equal(outcome.calls, 0);
    });

    test('check(): before the first write, then with members; it creates nothing', async () => {
      const { dest, table } = destination();
      const before = await counted(() => dest.check());
      assert.match(before.value, new RegExp(`^sql-table: .* reachable; table '${table}' does not exist yet`));
      assert.deepEqual(before.tallies, { check: { calls: 1, ...noCalls } });
      assert.equal(await other.db.schema.hasTable(table), false);
      await dest.add(members('a@x'));
      assert.match(
        await dest.check(),
        new RegExp(`^sql-table: table '${table}' in .* reachable \\(has members\\)$`),
      );
      await dest.truncate();
      assert.match(await dest.check(), /reachable \(empty\)$/);
    });

    test('check(): a table of another layout is fatal and says what it needs', async () => {
      const table = `wrong_layout_${tableCounter++}`;
      await other.db.schema.createTable(table, (t) => {
        t.string('email', 255).primary();
      });
      const { dest } = destination({ table });
      const err = await rejection(dest.check());
      assert.equal(err.kind, 'fatal');
      assert.match(err.message, /has no 'member_key' column; it needs member_key VARCHAR\(255\)/);
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
    const dest = sqlTable({ type: 'sql-table', url: url.toString(), table: 't' });
    try {
      const err = await rejection(dest.add(members('a')));
      assert.equal(err.kind, 'fatal');
      assert.match(err.message, /Access denied/);
      const checked = await rejection(dest.check());
      assert.equal(checked.kind, 'fatal');
      assert.match(checked.message, /^sql-table: check on table 't' failed: Access denied/);
    } finally {
      await dest.close();
    }
  });

  test('an unreachable server is retryable', async () => {
    const dest = sqlTable({ type: 'sql-table', url: 'mysql://root@127.0.0.1:1/x', table: 't' });
    try {
      const err = await rejection(dest.listMembers(null, 10));
      assert.equal(err.kind, 'retryable');
      assert.match(err.message, /ECONNREFUSED/);
    } finally {
      await dest.close();
    }
  });

  test('a missing or malformed URL secret is fatal', async () => {
    const missing = sqlTable({ type: 'sql-table', urlSecret: 'NOPE', table: 't' });
    const err = await rejection(missing.add(members('a')));
    assert.equal(err.kind, 'fatal');
    assert.match(err.message, /NOPE/);
    assert.match((await rejection(missing.check())).message, /NOPE/);

    // An empty URL must never fall back to deltasync's own database.
    const empty = sqlTable({ type: 'sql-table', urlSecret: 'EMPTY', table: 't' }, () => '');
    assert.equal((await rejection(empty.add(members('a')))).kind, 'fatal');
    assert.equal((await rejection(empty.check())).kind, 'fatal');
  });

  test('check(): a database that does not exist is fatal', async () => {
    const url = new URL(mysqlServerUrl);
    url.pathname = `/ds_no_such_database_${process.pid}`;
    const dest = sqlTable(
      { type: 'sql-table', urlSecret: 'OUT_DB', table: 't' },
      fixedSecrets({ OUT_DB: url.toString() }),
    );
    try {
      const err = await rejection(dest.check());
      assert.equal(err.kind, 'fatal');
      assert.match(err.message, /Unknown database 'ds_no_such_database_\d+'/);
    } finally {
      await dest.close();
    }
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
