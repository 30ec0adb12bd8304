import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { destinationModule } from '../../src/connectors/catalog';
import type { ContractTarget } from '../../src/connectors/kit/contract';
import { createDestinationFactory } from '../../src/connectors/registry';
import { saveConnector } from '../../src/core/connector-store';
import {
  capabilitiesOf,
  DestinationError,
  type Attributes,
  type Destination,
  type Member,
} from '../../src/core/destination';
import { createTestDatabase, type TestDatabase } from '../helpers/databases';
import { counted, testContext } from '../helpers/destination-context';
import { fixedSecrets } from '../helpers/destinations';
import { startTemporal, type TemporalHarness } from '../helpers/temporal';

/**
 * The contract every destination passes, stated once: against its emulator (contract.test.ts, in
 * the default run) and against the vendor's real sandbox (test/sandbox/, `npm run test:sandbox`).
 * A case that needs a fault the target cannot inject (a real vendor cannot be told to answer 429)
 * says so and checks nothing else.
 */

/** What the suite runs on: a named way to start a target. */
export interface SuiteTarget {
  type: string;
  start(): Promise<ContractTarget>;
}

/** Records per call tried at the limit; a destination with a larger limit is tried at this many. */
const LIMIT_PROBE_CAP = 10_000;

/** The destination as the worker builds it: its module, its settings validated, the shared machinery. */
function build(target: ContractTarget): Destination {
  const module = destinationModule(target.settings.type);
  assert.ok(module, `no module for ${target.settings.type}`);
  const { context } = testContext(fixedSecrets(target.secrets));
  return module.create(module.configSchema.parse(target.settings), context);
}

function membersOf(target: ContractTarget, from: number, count: number): Member[] {
  return Array.from({ length: count }, (_, n) => ({
    key: target.key(from + n),
    attributes: target.attributes?.(from + n) ?? {},
  }));
}

/** Writes `members` to the live list: in place, or (upload-only) by a new list swapped in. */
async function write(destination: Destination, members: Member[]) {
  if (destination.add) return destination.add(members);
  const replace = destination.replaceList!;
  const { listId } = await replace.create(`contract-${Date.now()}`);
  const result = await replace.forList(listId).add!(members);
  await replace.swap(listId);
  return result;
}

const sorted = (keys: Iterable<string>) => [...keys].sort();

export function contractSuite(harnesses: SuiteTarget[]): void {
  for (const harness of harnesses) {
    describe(`${harness.type}: destination contract`, () => {
      let target: ContractTarget;
      let destination: Destination;

      before(async () => {
        target = await harness.start();
        destination = build(target);
      });
      after(async () => {
        await destination?.close();
        await target?.close();
      });

      test('is either writable in place (add and remove) or upload-only (replaceList)', () => {
        const can = capabilitiesOf(destination);
        assert.ok(
          (can.add && can.remove) || (!can.add && !can.remove && can.createList),
          JSON.stringify(can),
        );
        assert.ok(destination.limits.recordsPerCall > 0);
      });

      test('check() says what it verified', async () => {
        const line = await destination.check();
        assert.match(line, /\S/);
      });

      test('a batch at the record limit is accepted whole, and each of its calls counted', async () => {
        const size = Math.min(destination.limits.recordsPerCall, LIMIT_PROBE_CAP);
        const members = membersOf(target, 0, size);
        const before = target.received();
        const { value, calls } = await counted(() => write(destination, members));
        assert.deepEqual(value.rejected, []);
        assert.equal(calls, target.received() - before, 'every call the emulator received is counted, once');
        assert.deepEqual(sorted(await target.members()), sorted(members.map((m) => m.key)));
      });

      test('remove takes members out (writable destinations)', async (t) => {
        if (!destination.remove) return t.diagnostic('upload-only: lists are replaced, not edited');
        const size = Math.min(destination.limits.recordsPerCall, LIMIT_PROBE_CAP);
        const gone = membersOf(target, 0, Math.min(size, 5)).map((m) => m.key);
        const { value } = await counted(() => destination.remove!(gone));
        assert.deepEqual(value.rejected, []);
        const left = new Set(await target.members());
        for (const key of gone) assert.equal(left.has(key), false, `${key} still listed`);
      });

      test('429 answers are waited for and counted as rate limited; the batch is delivered', async (t) => {
        if (!target.rateLimit) return t.diagnostic('this protocol has no rate limit');
        const members = membersOf(target, 20_000, 3);
        target.rateLimit(2);
        const before = target.received();
        const { value, calls, rateLimitWaits } = await counted(() => write(destination, members));
        assert.deepEqual(value.rejected, []);
        assert.equal(rateLimitWaits, 2);
        assert.equal(calls, target.received() - before);
        const listed = new Set(await target.members());
        for (const m of members) assert.ok(listed.has(m.key), `${m.key} delivered`);
      });

      test('5xx answers are retried and counted as retried; the batch is delivered', async (t) => {
        if (!target.serverError) return t.diagnostic('no transient failure to inject in this protocol');
        const members = membersOf(target, 21_000, 3);
        target.serverError(2);
        const before = target.received();
        const { value, calls, retried } = await counted(() => write(destination, members));
        assert.deepEqual(value.rejected, []);
        assert.equal(retried, 2);
        assert.equal(calls, target.received() - before);
        const listed = new Set(await target.members());
        for (const m of members) assert.ok(listed.has(m.key), `${m.key} delivered`);
      });

      test('records the answer does not acknowledge stay pending, never counted delivered', async (t) => {
        if (!target.shortAcknowledgeNext) return t.diagnostic('this protocol cannot acknowledge short');
        target.shortAcknowledgeNext();
        const members = membersOf(target, 22_000, 4);
        const { value } = await counted(() => write(destination, members));
        assert.ok(value.rejected.length > 0, 'some records are reported unacknowledged');
        for (const r of value.rejected) {
          assert.match(r.reason, /not acknowledged/);
          assert.ok(members.some((m) => m.key === r.key));
        }
      });

      test('a record the vendor refuses is rejected alone; the rest are delivered', async (t) => {
        if (!target.refusedKey) return t.diagnostic('this destination refuses no record on its own');
        const refused = target.refusedKey();
        const members = [{ key: refused, attributes: {} }, ...membersOf(target, 23_000, 2)];
        const { value } = await counted(() => write(destination, members));
        assert.deepEqual(
          value.rejected.map((r) => r.key),
          [refused],
        );
        const listed = new Set(await target.members());
        for (const m of members.slice(1)) assert.ok(listed.has(m.key), `${m.key} delivered`);
      });

      test('check() refuses wrong credentials with a fatal error that names the destination', async (t) => {
        const names = Object.keys(target.secrets);
        if (names.length === 0) return t.diagnostic('this destination takes no credentials');
        const broken = build({
          ...target,
          secrets: Object.fromEntries(names.map((name) => [name, 'wrong-secret'])),
        });
        try {
          await assert.rejects(broken.check(), (error: unknown) => {
            assert.ok(error instanceof DestinationError, String(error));
            assert.equal(error.kind, 'fatal');
            assert.match(error.message, new RegExp(harness.type.split('-')[0]!, 'i'));
            return true;
          });
        } finally {
          await broken.close();
        }
      });
    });
  }

  /** A refresh and then a diff of every destination, through the real workflow, worker and database. */
  describe('every destination: a refresh and a diff on the Temporal dev server', () => {
    let temporal: TemporalHarness;
    let database: TestDatabase;
    before(async () => {
      [temporal, database] = await Promise.all([startTemporal(), createTestDatabase('mysql')]);
    });
    after(async () => {
      await database?.drop();
      await temporal?.stop();
    });

    for (const harness of harnesses) {
      test(`${harness.type}: the list ends equal to the dataset, after a full push and after a diff`, async () => {
        const target = await harness.start();
        try {
          const table = `contract_${harness.type.replace(/-/g, '_')}`;
          const attributeNames = Object.keys(target.attributes?.(0) ?? {});
          const row = (i: number) => ({
            member_key: target.key(i),
            ...stringsOf(target.attributes?.(i) ?? {}),
          });
          const { db } = database;
          await db.schema.createTable(table, (t) => {
            t.string('member_key', 191).primary().collate('utf8mb4_bin');
            for (const name of attributeNames) t.string(name, 191).nullable();
          });
          await db(table).insert(Array.from({ length: 40 }, (_, i) => row(i)));
          const id = `contract-${harness.type}`;
          await saveConnector(db, {
            id,
            dataset: { table, key: 'member_key', attributes: attributeNames },
            destination: target.settings,
            policy: { batchSize: Math.min(15, (target.settings.recordsPerCall as number | undefined) ?? 15) },
          });
          const expected = async () =>
            sorted(
              ((await db(table).select('member_key')) as { member_key: string }[]).map((r) => r.member_key),
            );

          const secrets = fixedSecrets(target.secrets);
          const destinations = createDestinationFactory(() => secrets);
          const store = { forTenant: () => secrets, has: () => true, hint: () => 'set in the test' };
          await temporal.withWorker({ db, destinations, secrets: store }, async (client) => {
            const first = await client.refresh(id);
            assert.equal(first.status, 'succeeded', first.error ?? '');
            assert.deepEqual(sorted(await target.members()), await expected());

            await db(table)
              .whereIn('member_key', [target.key(0), target.key(1), target.key(2)])
              .delete();
            await db(table).insert([row(100), row(101)]);
            const second = await client.refresh(id);
            assert.equal(second.status, 'succeeded', second.error ?? '');
            assert.deepEqual(sorted(await target.members()), await expected());
          });
        } finally {
          await target.close();
        }
      });
    }
  });
}

function stringsOf(attributes: Attributes): Record<string, string | null> {
  return Object.fromEntries(
    Object.entries(attributes).map(([name, value]) => [name, value === null ? null : String(value)]),
  );
}
