import knex from 'knex';
import { databaseConfig } from '../../db/index';
import type { ContractHarness } from '../kit/contract';
import { statementsSent } from './destination';

/**
 * sql-table has no emulator: its "service" is a real database, and the tests use the local MariaDB
 * (`DELTASYNC_TEST_MYSQL_URL`, default mysql://root@127.0.0.1:3306/test, as the rest of the
 * tests). This file holds only its view for the shared destination contract suite
 * (test/connectors/contract.test.ts): a fresh database per start, the table created by the
 * destination on its first write. SQL has no rate limit, no transient failure to inject on
 * demand, no short acknowledgement (a statement writes every row or none) and refuses no key the
 * column can hold, so those cases are absent. The calls "received" are the statements the
 * destination sent, as it counted them (statementsSent).
 */

const serverUrl = process.env.DELTASYNC_TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';
let started = 0;

export const contractHarness: ContractHarness = {
  type: 'sql-table',
  async start() {
    const run = `${process.pid}_${Date.now().toString(36)}_${started++}`;
    const database = `ds_contract_${run}`;
    const table = `contract_members_${run}`;
    const admin = knex(databaseConfig(serverUrl));
    await admin.raw(`CREATE DATABASE \`${database}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci`);
    const url = new URL(serverUrl);
    url.pathname = `/${database}`;
    return {
      settings: { type: 'sql-table', urlSecret: 'SQL_TABLE_CONTRACT_URL', table },
      secrets: { SQL_TABLE_CONTRACT_URL: url.toString() },
      key: (i) => `member-${i}@example.com`,
      attributes: (i) => ({ segment: i % 2 === 0 ? 'even' : 'odd' }),
      members: async () => {
        try {
          const rows = (await admin.withSchema(database).from(table).select('member_key')) as {
            member_key: string;
          }[];
          return rows.map((row) => row.member_key);
        } catch (err) {
          // Before the first write there is no table: an empty list.
          if ((err as { code?: string }).code === 'ER_NO_SUCH_TABLE') return [];
          throw err;
        }
      },
      received: () => statementsSent(table),
      close: async () => {
        await admin.raw(`DROP DATABASE IF EXISTS \`${database}\``);
        await admin.destroy();
      },
    };
  },
};
