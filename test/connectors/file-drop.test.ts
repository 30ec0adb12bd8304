import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { csvFields } from '../../src/connectors/file-drop/format';
import {
  createFileDropDestination,
  fileDropConfigSchema,
  type FileDropConfigInput,
  type FileDropOptions,
} from '../../src/connectors/file-drop/index';
import type { RetryOptions } from '../../src/connectors/kit/http';
import type { DestinationContext } from '../../src/connectors/kit/module';
import { saveConnector } from '../../src/core/connector-store';
import { capabilitiesOf, type Destination, type Member, type ReplaceList } from '../../src/core/destination';
import { churnCustomers, readCustomers, seedCustomers } from '../../src/demo/customers';
import { startFileDropEmulator, type FileDropEmulator } from '../../src/connectors/file-drop/emulator';
import { counted, testContext } from '../helpers/destination-context';
import { demoCustomers, refreshScenario } from '../helpers/destination-scenario';
import {
  allKeys,
  closeAfterEach,
  fixedSecrets,
  rejection,
  sampleMembers as members,
} from '../helpers/destinations';

/** file-drop against a temporary directory, with the emulator's faulty file operations. */

const track = closeAfterEach();

type FileDrop = Destination & { replaceList: ReplaceList };

interface Setup {
  emu: FileDropEmulator;
  dest: FileDrop;
  /** New list + swap, the part of the destination that writes. */
  replace: ReplaceList;
  file: (name: string) => string;
}

/** A context whose retries do not wait. */
function contextWith(retry: RetryOptions = {}): DestinationContext {
  return testContext(fixedSecrets({}), { retry: { sleep: async () => undefined, ...retry } }).context;
}

function fileDrop(
  config: FileDropConfigInput,
  retry: RetryOptions = {},
  options: FileDropOptions = {},
): FileDrop {
  const dest = createFileDropDestination(config, contextWith(retry), options);
  assert.ok(dest.replaceList, 'file-drop replaces lists');
  return dest as FileDrop;
}

async function setup(config: Partial<FileDropConfigInput> = {}, retry: RetryOptions = {}): Promise<Setup> {
  const emu = track(await startFileDropEmulator());
  const dest = track(
    fileDrop({ type: 'file-drop', directory: emu.directory, filePrefix: 'audience', ...config }, retry, {
      now: () => new Date('2026-11-21T10:00:00Z'),
    }),
  );
  return {
    emu,
    dest,
    replace: dest.replaceList,
    file: (name) => fs.readFileSync(path.join(emu.directory, name), 'utf8'),
  };
}

/** The list being built: it alone takes records. */
function building(replace: ReplaceList, listId: string): Required<Pick<Destination, 'add'>> {
  const build = replace.forList(listId);
  assert.ok(build.add, 'a list being built takes records');
  return { add: (batch) => build.add!(batch) };
}

/** New list + swap as the engine runs it: create, fill batch by batch, swap, retire the old file. */
async function refresh(replace: ReplaceList, name: string, batches: Member[][], old?: string) {
  const { listId } = await replace.create(name);
  for (const batch of batches) await building(replace, listId).add(batch);
  await replace.swap(listId);
  if (old) await replace.retire(old);
  return listId;
}

const noCalls = { failed: 0, rateLimited: 0, retried: 0 };

describe('file-drop config and capabilities', () => {
  test('defaults, and a prefix that is a plain file name', () => {
    const parsed = fileDropConfigSchema.parse({ type: 'file-drop', directory: '/srv/drop' });
    assert.deepEqual(parsed, {
      type: 'file-drop',
      directory: '/srv/drop',
      format: 'ndjson',
      filePrefix: 'list',
      recordsPerCall: 10_000,
    });
    assert.equal(fileDropConfigSchema.safeParse({ ...parsed, filePrefix: '../etc' }).success, false);
    assert.equal(fileDropConfigSchema.safeParse({ ...parsed, format: 'xml' }).success, false);
  });

  test('the live file is read-only: only new list + swap', async () => {
    const { dest } = await setup();
    assert.deepEqual(capabilitiesOf(dest), {
      add: false,
      remove: false,
      truncate: false,
      listMembers: true,
      // The files keep attributes: each new file carries the current ones.
      updateAttributes: true,
      createList: true,
    });
    assert.equal(dest.add, undefined);
    assert.equal(dest.remove, undefined);
    assert.equal(dest.truncate, undefined);
    const page = await counted(() => dest.listMembers!(null, 10));
    assert.deepEqual(page.value, { keys: [], next: null }, 'no manifest yet');
    assert.deepEqual(page.tallies, { listMembers: { calls: 1, ...noCalls } });
  });
});

describe('file-drop new list + swap', () => {
  test('two refreshes: new file, manifest swapped, old file removed', async () => {
    const { emu, replace, file } = await setup();
    const first = await refresh(replace, 'run-1', [members('a', 'b'), members('c')]);
    assert.equal(first, 'audience-run-1.ndjson');
    assert.deepEqual(emu.files(), ['audience-run-1.ndjson', 'manifest.json']);
    assert.equal(
      file(first),
      '{"key":"a","attributes":{"rank":0,"vip":true,"note":null}}\n' +
        '{"key":"b","attributes":{"rank":1,"vip":false,"note":null}}\n' +
        '{"key":"c","attributes":{"rank":0,"vip":true,"note":null}}\n',
    );
    const sha256 = createHash('sha256')
      .update(fs.readFileSync(path.join(emu.directory, first)))
      .digest('hex');
    assert.deepEqual(await emu.manifest(), {
      current: first,
      format: 'ndjson',
      records: 3,
      sha256,
      createdAt: '2026-11-21T10:00:00.000Z',
    });

    const second = await refresh(replace, 'run-2', [members('b', 'd')], first);
    assert.deepEqual(emu.files(), ['audience-run-2.ndjson', 'manifest.json']);
    assert.equal((await emu.manifest())?.current, second);
    assert.deepEqual([...(await emu.members()).keys()], ['b', 'd']);
    assert.deepEqual((await emu.members()).get('d'), { rank: 1, vip: false, note: null });
  });

  test('listMembers pages through the current file by byte offset', async () => {
    const { dest, replace } = await setup();
    const keys = Array.from({ length: 25 }, (_, i) => `k${String(i).padStart(2, '0')}`);
    await refresh(replace, 'run-1', [members(...keys)]);
    const { keys: listed, pages } = await allKeys(dest, 10);
    assert.equal(pages, 3);
    assert.deepEqual(listed, keys);
  });

  test('a swap retried after it landed changes nothing; the current file cannot be deleted', async () => {
    const { emu, replace } = await setup();
    const listId = await refresh(replace, 'run-1', [members('a')]);
    const manifest = await emu.manifest();
    const again = await counted(() => replace.swap(listId));
    assert.deepEqual(again.value, {}, 'the new file is the live list, under its own name');
    assert.deepEqual(again.tallies, {});
    assert.deepEqual(await emu.manifest(), manifest);
    const err = await rejection(replace.retire(listId));
    assert.equal(err.kind, 'fatal');
    assert.match(err.message, /manifest.json names it as current/);
    assert.ok(emu.files().includes(listId));
  });

  test('a crash between fill and swap leaves the old manifest and file in place', async () => {
    const { emu, dest, replace } = await setup();
    const first = await refresh(replace, 'run-1', [members('a', 'b')]);
    const { listId } = await replace.create('run-2');
    await building(replace, listId).add(members('x', 'y'));
    // The worker dies here: no swap.
    assert.equal((await emu.manifest())?.current, first);
    assert.deepEqual([...(await emu.members()).keys()], ['a', 'b']);
    assert.ok(emu.files().includes('audience-run-2.ndjson.partial'));
    assert.ok(!emu.files().includes('audience-run-2.ndjson'), 'the new file exists only as .partial');
    assert.deepEqual((await allKeys(dest, 10)).keys, ['a', 'b'], 'readers see the old list');
    // The build can be abandoned: retire removes the .partial and its side file.
    const retired = await counted(() => replace.retire(listId));
    assert.deepEqual(retired.tallies, { remove: { calls: 1, ...noCalls } }, 'the side file is bookkeeping');
    assert.deepEqual(emu.files(), [first, 'manifest.json']);
  });

  test('the manifest never names a .partial, whatever fails during the swap', async () => {
    const { emu, replace } = await setup({}, { maxAttempts: 1 });
    const first = await refresh(replace, 'run-1', [members('a')]);
    const { listId } = await replace.create('run-2');
    await building(replace, listId).add(members('b', 'c'));

    // Renamed, but the rename's answer was lost: the manifest still names the old file.
    emu.faults.set({ failAfter: { op: 'rename', calls: 1 } });
    assert.equal((await rejection(replace.swap(listId))).kind, 'retryable');
    assert.equal((await emu.manifest())?.current, first);
    assert.ok(emu.files().includes(listId));

    // The manifest write fails before anything happened: still the old one, intact.
    emu.faults.set({ fail: { op: 'replace', calls: 1 } });
    assert.equal((await rejection(replace.swap(listId))).kind, 'retryable');
    assert.equal((await emu.manifest())?.current, first);

    // The engine retries the swap activity: it completes from where it stopped.
    const done = await counted(() => replace.swap(listId));
    assert.deepEqual(done.tallies, { manifest: { calls: 1, ...noCalls } });
    assert.deepEqual(await emu.manifest(), {
      current: listId,
      format: 'ndjson',
      records: 2,
      sha256: (await emu.manifest())!.sha256,
      createdAt: '2026-11-21T10:00:00.000Z',
    });
    assert.ok(!emu.files().some((name) => name.includes('.partial')), `${emu.files()}`);
  });
});

describe('file-drop resuming a fill', () => {
  test('create again for the same run keeps what was appended', async () => {
    const { dest, replace } = await setup();
    const { listId } = await replace.create('run-1');
    await building(replace, listId).add(members('a', 'b'));
    assert.equal((await replace.create('run-1')).listId, listId);
    await building(replace, listId).add(members('c'));
    await replace.swap(listId);
    assert.deepEqual((await allKeys(dest, 10)).keys, ['a', 'b', 'c']);
  });

  test('a batch sent again (its add was not recorded) replaces its first copy', async () => {
    const { emu, replace } = await setup();
    const { listId } = await replace.create('run-1');
    const build = building(replace, listId);
    await build.add(members('a', 'b'));
    await build.add(members('c', 'd', 'e'));
    // The engine crashed before recording the second add: it sends that batch again, here with
    // 'c' gone from the dataset meanwhile.
    const resent = await counted(() => build.add(members('d', 'e')));
    assert.deepEqual(resent.tallies, {
      append: { calls: 1, ...noCalls },
      truncate: { calls: 1, ...noCalls },
    });
    await build.add(members('f'));
    await replace.swap(listId);
    assert.deepEqual([...(await emu.members()).keys()], ['a', 'b', 'd', 'e', 'f']);
    assert.equal((await emu.manifest())?.records, 5);
  });

  test('a torn write is cut off: on the local retry, or on the engine resending the batch', async () => {
    const { emu, replace } = await setup();
    const { listId } = await replace.create('run-1');
    const build = building(replace, listId);
    await build.add(members('a'));
    emu.faults.set({ tornWrite: { calls: 1 } });
    const retried = await counted(() => build.add(members('b', 'c')));
    assert.equal(emu.stats().faults.tornWrite, 1);
    assert.deepEqual(retried.tallies, {
      append: { calls: 2, failed: 0, rateLimited: 0, retried: 1 },
      truncate: { calls: 1, ...noCalls },
    });

    const noRetries = fileDrop(
      { type: 'file-drop', directory: emu.directory, filePrefix: 'audience' },
      { maxAttempts: 1 },
      { io: emu.io },
    ).replaceList;
    emu.faults.set({ tornWrite: { calls: 1 } });
    const err = await rejection(building(noRetries, listId).add(members('d', 'e', 'f')));
    assert.equal(err.kind, 'retryable');
    assert.match(err.message, /EIO/);
    const partial = fs.readFileSync(path.join(emu.directory, `${listId}.partial`), 'utf8');
    assert.ok(!partial.endsWith('\n'), 'the file ends in half a record');

    await building(noRetries, listId).add(members('d', 'e', 'f'));
    await noRetries.swap(listId);
    assert.deepEqual([...(await emu.members()).keys()], ['a', 'b', 'c', 'd', 'e', 'f']);
  });

  test('a write whose fsync fails acknowledges nothing; the batch sent again is written once', async () => {
    const { emu } = await setup();
    const replace = fileDrop(
      { type: 'file-drop', directory: emu.directory, filePrefix: 'audience' },
      { maxAttempts: 1 },
      { io: emu.io },
    ).replaceList;
    const { listId } = await replace.create('run-1');
    const build = building(replace, listId);
    await build.add(members('a'));
    // The bytes reach the file, but the write (its fsync) reports EIO: the call must fail, not
    // return an outcome the engine would commit.
    emu.faults.set({ failAfter: { op: 'append', calls: 1 } });
    const err = await rejection(build.add(members('b', 'c')));
    assert.equal(err.kind, 'retryable');
    assert.match(err.message, /EIO/);
    const partial = fs.readFileSync(path.join(emu.directory, `${listId}.partial`), 'utf8');
    assert.equal(partial.split('\n').filter(Boolean).length, 3, 'written, yet not acknowledged');

    assert.deepEqual((await build.add(members('b', 'c'))).rejected, []);
    await replace.swap(listId);
    assert.deepEqual([...(await emu.members()).keys()], ['a', 'b', 'c']);
    assert.equal((await emu.manifest())?.records, 3);
  });
});

describe('file-drop CSV', () => {
  test('header row, RFC 4180 quoting, null versus empty string', async () => {
    const { emu, dest, replace, file } = await setup({ format: 'csv' });
    const tricky: Member[] = [
      { key: 'plain', attributes: { name: 'Ann', note: null, score: 3.5, vip: true } },
      { key: 'k,2', attributes: { name: 'says "hi"', note: '', score: 0, vip: false } },
      { key: 'k\n3', attributes: { name: ' padded ', note: 'line1\r\nline2', score: -1, vip: true } },
      { key: 'ünï', attributes: { name: 'Zoë, Ltd', note: 'ok', score: 1e21, vip: false } },
    ];
    const listId = await refresh(replace, 'run-1', [tricky.slice(0, 2), tricky.slice(2)]);
    assert.equal(listId, 'audience-run-1.csv');
    assert.equal(
      file(listId),
      'key,name,note,score,vip\r\n' +
        'plain,Ann,,3.5,true\r\n' +
        '"k,2","says ""hi""","",0,false\r\n' +
        '"k\n3"," padded ","line1\r\nline2",-1,true\r\n' +
        'ünï,"Zoë, Ltd",ok,1e+21,false\r\n',
    );
    assert.equal((await emu.manifest())?.format, 'csv');
    assert.equal((await emu.manifest())?.records, 4);
    const read = await emu.members();
    assert.deepEqual([...read.keys()], ['plain', 'k,2', 'k\n3', 'ünï']);
    // CSV has no types: what comes back is text, and null stays null.
    assert.deepEqual(read.get('plain'), { name: 'Ann', note: null, score: '3.5', vip: 'true' });
    assert.deepEqual(read.get('k,2'), { name: 'says "hi"', note: '', score: '0', vip: 'false' });
    assert.deepEqual(read.get('k\n3'), {
      name: ' padded ',
      note: 'line1\r\nline2',
      score: '-1',
      vip: 'true',
    });
    assert.deepEqual((await allKeys(dest, 1)).keys, ['plain', 'k,2', 'k\n3', 'ünï']);
  });

  test('a record with an attribute outside the header is rejected, the rest written', async () => {
    const { emu, replace } = await setup({ format: 'csv' });
    const { listId } = await replace.create('run-1');
    await building(replace, listId).add([{ key: 'a', attributes: { email: 'a@x' } }]);
    const outcome = await building(replace, listId).add([
      { key: 'b', attributes: { email: 'b@x', phone: '+1' } },
      { key: 'c', attributes: {} },
    ]);
    assert.deepEqual(outcome.rejected, [
      { key: 'b', reason: 'attribute phone is not a column of audience-run-1.csv' },
    ]);
    await replace.swap(listId);
    assert.deepEqual(
      await emu.members(),
      new Map([
        ['a', { email: 'a@x' }],
        ['c', { email: null }],
      ]),
    );
  });

  test('a torn header is rewritten once', async () => {
    const { emu, replace, file } = await setup({ format: 'csv' }, { maxAttempts: 1 });
    const { listId } = await replace.create('run-1');
    emu.faults.set({ tornWrite: { calls: 1 } });
    assert.equal((await rejection(building(replace, listId).add(members('a')))).kind, 'retryable');
    await building(replace, listId).add(members('a'));
    await replace.swap(listId);
    assert.equal(file(listId), 'key,rank,vip,note\r\na,0,true,\r\n');
  });

  test('the CSV reader handles quotes split across reads', () => {
    const row = Buffer.from('"a ""quoted"" value",x\r\n');
    for (let cut = 1; cut < row.length - 1; cut++) {
      assert.equal(csvFields(row.subarray(0, cut), 0), null, `incomplete at ${cut}`);
    }
    assert.deepEqual(csvFields(row, 0), { fields: ['a "quoted" value', 'x'], end: row.length });
  });
});

describe('file-drop errors', () => {
  test('a missing directory is fatal and says what to do', async () => {
    const directory = path.join(os.tmpdir(), `file-drop-missing-${process.pid}`);
    const dest = fileDrop({ type: 'file-drop', directory });
    const err = await rejection(dest.replaceList.create('run-1'));
    assert.equal(err.kind, 'fatal');
    assert.match(err.message, /does not exist; create it \(or mount it\)/);
    assert.equal(fs.existsSync(directory), false, 'not created behind the operator’s back');
  });

  test('a full disk is fatal; a transient EIO is retried', async () => {
    const { emu, replace } = await setup();
    const { listId } = await replace.create('run-1');
    emu.faults.set({ fail: { op: 'append', calls: 1, code: 'ENOSPC' } });
    const full = await rejection(building(replace, listId).add(members('a')));
    assert.equal(full.kind, 'fatal');
    assert.match(full.message, /disk is full/);

    emu.faults.set({ fail: { op: 'append', calls: 2, code: 'EIO' } });
    const retried = await counted(() => building(replace, listId).add(members('a')));
    assert.equal(emu.stats().faults.fail, 3);
    assert.deepEqual(retried.tallies.append, { calls: 3, failed: 0, rateLimited: 0, retried: 2 });
    await replace.swap(listId);
    assert.deepEqual([...(await emu.members()).keys()], ['a']);
  });

  test('ids that are not this connector’s files are refused', async () => {
    const { replace } = await setup();
    assert.throws(() => replace.forList('../../etc/passwd'), /not a file of this connector/);
    assert.equal((await rejection(replace.retire('other-run-1.ndjson'))).kind, 'fatal');
    assert.equal((await rejection(replace.swap('audience-run-1.ndjson.partial'))).kind, 'fatal');
    assert.match((await rejection(replace.swap('audience-never.ndjson'))).message, /create it first/);
  });
});

describe('file-drop check()', () => {
  test('the directory, and the list the manifest names', async () => {
    const { emu, dest, replace } = await setup();
    const before = await counted(() => dest.check());
    assert.equal(
      before.value,
      `file-drop: directory ${emu.directory} reachable and writable; no list delivered yet (no manifest.json)`,
    );
    assert.deepEqual(before.tallies, { check: { calls: 1, ...noCalls } });
    await refresh(replace, 'run-1', [members('a', 'b')]);
    assert.match(
      await dest.check(),
      /reachable and writable; manifest.json names audience-run-1\.ndjson \(2 records\)$/,
    );
  });

  test('a missing directory is fatal and says what to do; nothing is created', async () => {
    const directory = path.join(os.tmpdir(), `file-drop-missing-check-${process.pid}`);
    const err = await rejection(fileDrop({ type: 'file-drop', directory }).check());
    assert.equal(err.kind, 'fatal');
    assert.match(err.message, /^file-drop: directory .* does not exist; create it \(or mount it\)/);
    assert.equal(fs.existsSync(directory), false);
  });

  test('a directory the worker may not write to is fatal', async () => {
    const { emu, dest } = await setup();
    emu.faults.set({ fail: { op: 'writable', calls: 1, code: 'EACCES' } });
    const err = await rejection(dest.check());
    assert.equal(err.kind, 'fatal');
    assert.match(err.message, /the worker may not write there; fix the permissions or the mount/);
  });
});

describe('file-drop refresh workflow on the real Temporal dev server (mysql)', () => {
  const scenario = refreshScenario({ dataset: demoCustomers(300) });

  test('the planner picks new list + swap; failed writes and swaps are retried and resumed', async () => {
    const { db } = scenario;
    const emu = track(await startFileDropEmulator());
    await saveConnector(db, {
      id: 'file-drop-customers',
      dataset: {
        table: 'demo_customers',
        key: 'customer_key',
        attributes: ['email', 'name', 'country', 'segment'],
      },
      destination: { type: 'file-drop', directory: emu.directory, format: 'csv', recordsPerCall: 100 },
    });
    const assertFileEqualsDataset = async () => {
      assert.deepEqual(await emu.members(), await readCustomers(db));
      const manifest = (await emu.manifest())!;
      assert.deepEqual(emu.files(), [manifest.current, 'manifest.json']);
      assert.equal(manifest.records, (await readCustomers(db)).size);
    };

    // Built the way the worker builds it; the emulator's faults apply to its directory.
    await scenario.withWorker(
      () => 'unused',
      async (client) => {
        // Three failed appends exhaust the destination's own retries: the send activity fails,
        // Temporal retries it, and it resumes after the last recorded call.
        emu.faults.set({ fail: { op: 'append', calls: 3, code: 'EIO' } });
        const first = await client.refresh('file-drop-customers');
        assert.equal(first.status, 'succeeded');
        assert.equal(first.strategy, 'newList');
        assert.equal(emu.stats().faults.fail, 3);
        await assertFileEqualsDataset();
        const firstFile = (await emu.manifest())!.current;

        await churnCustomers(db, { additions: 20, deletions: 15, changes: 10 });
        emu.resetStats();
        emu.faults.set({ tornWrite: { calls: 1 }, failAfter: { op: 'rename', calls: 3 } });
        const second = await client.refresh('file-drop-customers');
        assert.equal(second.status, 'succeeded');
        assert.equal(second.strategy, 'newList');
        assert.deepEqual(emu.stats().faults, { tornWrite: 1, failAfter: 1 });
        assert.deepEqual(
          ['create', 'rename', 'manifest', 'remove'].map((op) => second.callsByEndpoint[op]?.calls),
          [1, 1, 1, 1],
        );
        await assertFileEqualsDataset();
        assert.notEqual((await emu.manifest())!.current, firstFile, 'a new file, the old one removed');
      },
    );
  });

  test('a held mass deletion on a list that can only be replaced sends nothing, and says so', async () => {
    const { db } = scenario;
    const emu = track(await startFileDropEmulator());
    await db.raw('CREATE TABLE guarded_customers AS SELECT * FROM demo_customers');
    await saveConnector(db, {
      id: 'file-drop-guarded',
      dataset: { table: 'guarded_customers', key: 'customer_key', attributes: ['email'] },
      destination: { type: 'file-drop', directory: emu.directory, recordsPerCall: 100 },
      policy: { massDeleteGuard: { maxShare: 0.2, approvalTimeoutSeconds: 1 } },
    });
    await scenario.withWorker(
      () => 'unused',
      async (client) => {
        const first = await client.refresh('file-drop-guarded');
        assert.equal(first.strategy, 'newList');
        const before = await emu.manifest();
        // A third of the list would go, and 5 customers are new; nobody approves within a
        // second, which rejects. The additions alone cannot go out: the list is replaced whole.
        const gone = (await db('guarded_customers')
          .select('customer_key')
          .orderBy('customer_key')
          .limit(100)) as {
          customer_key: string;
        }[];
        await db('guarded_customers')
          .whereIn(
            'customer_key',
            gone.map((row) => row.customer_key),
          )
          .delete();
        await seedCustomers(db, 5, { table: 'guarded_customers', first: 5000 });
        const held = await client.refresh('file-drop-guarded');
        assert.equal(held.status, 'noop', held.error ?? '');
        assert.equal(held.strategy, null, 'the run record says nothing ran');
        assert.match(held.strategyReason ?? '', /can only replace the whole list, so nothing was sent/);
        assert.equal(held.deletionsHeld, 100);
        assert.equal(held.guard?.by, 'timeout');
        assert.deepEqual(await emu.manifest(), before, 'the list was not replaced');
        assert.equal(held.apiCalls, 0);
      },
    );
  });
});
