/**
 * Benchmark: live mode end to end (issue 13). A writer commits a steady stream of changes to a
 * MariaDB table that a connector follows through a trigger change source; the connector is watched
 * (poll 1 s, no debounce) by a real worker process on the real Temporal dev server, and sends to
 * an http-list emulator in this process. For every change, the latency is the time from its commit
 * to the moment the list holds it (polled every 50 ms). Targets: p50 ≤ 2 s, p99 ≤ 10 s, nothing
 * lost.
 *
 *   npm run bench:live                                   # 100 changes/s for 5 minutes
 *   npx tsx bench/live.ts --rate 50 --minutes 1
 *
 * It creates (and drops) the database `deltasync_bench_live` on the server named by --url /
 * DELTASYNC_BENCH_MYSQL_URL. Timings never decide the exit code; a lost change does (exit 1).
 */
import { performance } from 'node:perf_hooks';
import { Command } from 'commander';
import knex from 'knex';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { DeltasyncClient } from '../src/client';
import { saveConnector } from '../src/core/connector-store';
import { startHttpListEmulator } from '../src/connectors/http-list/emulator';
import { databaseConfig, migrateToLatest, type Db } from '../src/db';
import { createBenchDatabase } from './bench-database';
import { BENCH_MYSQL_URL, positiveNumber } from './options';
import { startDevServer } from '../src/temporal/dev-server';
import { secretEnvName } from '../src/tenancy/secret-names';
import { startWorkerProcess } from '../test/helpers/worker-process';

const BENCH_DATABASE = 'deltasync_bench_live';
const CONNECTOR = 'live';
const LIST = 'live-list';
const TOKEN = 'bench-live-token';
const SEED = 10_000;
const TARGET_P50_MS = 2_000;
const TARGET_P99_MS = 10_000;
/** After the writer stops, how long a change may still take before it counts as lost. */
const GRACE_MS = 60_000;

interface Options {
  url: string;
  rate: number;
  minutes: number;
}

function parseOptions(argv: string[]): Options {
  const o = new Command('bench/live.ts')
    .description('Live mode: latency from a committed change to the destination holding it')
    .option('--url <url>', 'MariaDB server', BENCH_MYSQL_URL)
    .option('--rate <n>', 'changes per second', positiveNumber, 100)
    .option('--minutes <n>', 'how long the writer writes', positiveNumber, 5)
    .parse(argv)
    .opts<Options>();
  return o;
}

const log = (line: string) => console.log(`[bench:live] ${line}`);
const int = (n: number) => n.toLocaleString('en-US');

/** A change the writer committed, and what the list must show for it. */
interface Change {
  key: string;
  /** The `stamp` attribute the list must hold, or null: the key must be gone. */
  stamp: string | null;
  committedAt: number;
  seenAt?: number;
}

async function openBenchDatabase(serverUrl: string): Promise<{ db: Db; url: string }> {
  const url = await createBenchDatabase(serverUrl, BENCH_DATABASE);
  const db = knex(databaseConfig(url));
  await migrateToLatest(db);
  return { db, url };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

async function main(): Promise<number> {
  const options = parseOptions(process.argv);
  log(`${options.rate} changes/s for ${options.minutes} min on ${int(SEED)} rows`);
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const { db, url } = await openBenchDatabase(options.url);
  const emulator = await startHttpListEmulator({ token: TOKEN });
  const server = await startDevServer();
  const taskQueue = `bench-live-${process.pid}`;
  const worker = await startWorkerProcess({
    address: server.address,
    taskQueue,
    databaseUrl: url,
    env: { [secretEnvName('default', 'LIVE_TOKEN')]: TOKEN },
  });
  const client = new DeltasyncClient(server.env.client, { taskQueue });
  try {
    await db.raw(
      `CREATE TABLE people (k VARCHAR(32) COLLATE utf8mb4_bin PRIMARY KEY, stamp VARCHAR(32) NOT NULL)`,
    );
    await db.raw(`INSERT INTO people SELECT CONCAT('p', LPAD(seq, 8, '0')), 'seed' FROM seq_1_to_${SEED}`);
    await saveConnector(db, {
      id: CONNECTOR,
      dataset: { table: 'people', key: 'k', attributes: ['stamp'], changes: { source: 'triggers' } },
      destination: { type: 'http-list', baseUrl: emulator.url, listId: LIST, tokenSecret: 'LIVE_TOKEN' },
      policy: { changeTrigger: { pollSeconds: 1, debounceSeconds: 0 } },
    });
    log(`first push: ${(await client.refresh(CONNECTOR)).status}`);
    await client.watch(CONNECTOR);
    for (let i = 0; i < 50 && (await client.watchStatus(CONNECTOR))?.marker === null; i++)
      await new Promise((resolve) => setTimeout(resolve, 200));

    const changes: Change[] = [];
    const open = new Map<string, Change>(); // the latest change of each key not yet seen
    let written = 0;
    const check = () => {
      const members = emulator.members(LIST);
      const now = performance.timeOrigin + performance.now();
      for (const [key, change] of open) {
        const held = members.get(key) as { stamp?: string } | undefined;
        if (change.stamp === null ? held === undefined : held?.stamp === change.stamp) {
          change.seenAt = now;
          open.delete(key);
        }
      }
    };
    const checker = setInterval(check, 50);
    const started = Date.now();
    const end = started + options.minutes * 60_000;
    let nextKey = SEED + 1;
    while (Date.now() < end) {
      const due = started + (written * 1000) / options.rate;
      if (Date.now() < due) await new Promise((resolve) => setTimeout(resolve, due - Date.now()));
      const kind = written % 3;
      const stamp = `w${written}`;
      let change: Change;
      if (kind === 0) {
        const key = `p${String(nextKey++).padStart(8, '0')}`;
        await db('people').insert({ k: key, stamp });
        change = { key, stamp, committedAt: Date.now() };
      } else {
        const key = `p${String(1 + ((written * 7919) % (nextKey - 1))).padStart(8, '0')}`;
        if (kind === 1) await db('people').insert({ k: key, stamp }).onConflict('k').merge();
        else await db('people').where({ k: key }).delete();
        change = { key, stamp: kind === 1 ? stamp : null, committedAt: Date.now() };
      }
      // A later change of the same key supersedes an earlier one not seen yet (see laterSeen).
      changes.push(change);
      open.set(change.key, change);
      written += 1;
      if (written % (options.rate * 30) === 0)
        log(`${int(written)} changes written, ${int(open.size)} not yet seen`);
    }
    log(`writer done: ${int(written)} changes; waiting for the list to catch up`);
    const waitUntil = Date.now() + GRACE_MS;
    while (open.size > 0 && Date.now() < waitUntil) await new Promise((resolve) => setTimeout(resolve, 100));
    clearInterval(checker);
    check();

    // A superseded change is delivered when the change after it is.
    const latencies: number[] = [];
    const lost: Change[] = [];
    for (let i = changes.length - 1; i >= 0; i--) {
      const change = changes[i]!;
      const deliveredAt = change.seenAt ?? laterSeen(changes, i);
      if (deliveredAt === undefined) lost.push(change);
      else latencies.push(deliveredAt - change.committedAt);
    }
    const sorted = latencies.sort((a, b) => a - b);
    const p50 = percentile(sorted, 50);
    const p99 = percentile(sorted, 99);
    const runs = await client.runs(CONNECTOR, { limit: 1000 });
    const incremental = runs.filter((run) => run.compare?.mode === 'incremental').length;
    console.log(
      `\n| changes | rate/s | minutes | refreshes | p50 s | p90 s | p99 s | max s | lost |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n` +
        `| ${int(written)} | ${options.rate} | ${options.minutes} | ${runs.length - 1} (${incremental} incremental) | ${(p50 / 1000).toFixed(2)} | ${(percentile(sorted, 90) / 1000).toFixed(2)} | ${(p99 / 1000).toFixed(2)} | ${((sorted.at(-1) ?? NaN) / 1000).toFixed(2)} | ${lost.length} |\n`,
    );
    console.log(
      `${p50 <= TARGET_P50_MS ? 'TARGET MET' : 'TARGET MISSED'}: p50 latency ${(p50 / 1000).toFixed(2)} s (target ≤ 2 s)`,
    );
    console.log(
      `${p99 <= TARGET_P99_MS ? 'TARGET MET' : 'TARGET MISSED'}: p99 latency ${(p99 / 1000).toFixed(2)} s (target ≤ 10 s)`,
    );
    console.log(
      `${lost.length === 0 ? 'TARGET MET' : 'TARGET MISSED'}: ${lost.length} changes lost (target 0)`,
    );
    // The list must equal the table at the end, whatever the latencies.
    const rows = (await db('people').select('k', 'stamp')) as { k: string; stamp: string }[];
    const members = emulator.members(LIST);
    const equal =
      rows.length === members.size &&
      rows.every((r) => (members.get(r.k) as { stamp?: string } | undefined)?.stamp === r.stamp);
    if (!equal || lost.length > 0) {
      log(`WRONG RESULT: list ${equal ? 'equals' : 'differs from'} the table; ${lost.length} lost`);
      return 1;
    }
    await client.unwatch(CONNECTOR);
    return 0;
  } finally {
    worker.kill('SIGTERM');
    await worker.exited;
    await server.stop();
    await emulator.close();
    await db.raw(`DROP DATABASE IF EXISTS \`${BENCH_DATABASE}\``);
    await db.destroy();
  }
}

/** When the first later change of the same key was seen (it carried this one with it). */
function laterSeen(changes: Change[], index: number): number | undefined {
  const key = changes[index]!.key;
  for (let i = index + 1; i < changes.length; i++)
    if (changes[i]!.key === key) return changes[i]!.seenAt ?? laterSeen(changes, i);
  return undefined;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
