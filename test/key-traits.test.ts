import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { keyTraits } from '../src/core/deltalog';
import { createTestDatabase, dialects, type TestDatabase } from './helpers/databases';

/** Whether duplicates can be ruled out from the catalog, instead of by grouping every row. */

for (const dialect of dialects) {
  describe(`key traits (${dialect})`, () => {
    let t: TestDatabase;
    before(async () => {
      t = await createTestDatabase(dialect);
      const binary = dialect === 'mysql' ? 'COLLATE utf8mb4_bin' : '';
      await t.db.raw(`CREATE TABLE pk_bin (k VARCHAR(20) ${binary} PRIMARY KEY, v VARCHAR(5))`);
      await t.db.raw(`CREATE TABLE plain (k VARCHAR(20), v VARCHAR(5))`);
      await t.db.raw(`CREATE TABLE uniq (id INT PRIMARY KEY, k VARCHAR(20), v VARCHAR(5))`);
      await t.db.raw(`CREATE UNIQUE INDEX uniq_k ON uniq (k)`);
      await t.db.raw(`CREATE TABLE composite (a VARCHAR(5), k VARCHAR(20), PRIMARY KEY (a, k))`);
    });
    after(() => t.drop());

    const traits = (table: string) => keyTraits(t.db, { table, key: 'k', attributes: [] });

    test('a single-column primary or unique key cannot repeat', async () => {
      assert.equal((await traits('pk_bin')).unique, true);
      assert.equal((await traits('uniq')).unique, true);
      assert.equal((await traits('plain')).unique, false);
      assert.equal((await traits('composite')).unique, false, 'part of a composite key can repeat');
    });

    test('byte-for-byte comparison is read from the collation', async () => {
      assert.equal((await traits('pk_bin')).binary, true);
      // MariaDB's default collation here is case-insensitive; SQLite compares bytes by default.
      assert.equal((await traits('plain')).binary, dialect === 'sqlite');
    });

    test('a SELECT dataset promises nothing', async () => {
      assert.deepEqual(await keyTraits(t.db, { sql: 'SELECT k FROM pk_bin', key: 'k', attributes: [] }), {
        unique: false,
        binary: false,
      });
    });
  });
}
