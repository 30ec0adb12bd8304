import { Client, Connection, isGrpcServiceError } from '@temporalio/client';
import { DeltasyncClient } from '../client';
import { unavailable, type CliError } from './exit-codes';

/**
 * The CLI's connection to Temporal and its watch over the worker. Loaded by `connect` in
 * options.ts when a command first needs it (it brings the Temporal client along).
 */

/** Options every command takes (before or after the command name); see options.ts. */
export interface GlobalOptions {
  tenant: string;
  address: string;
  namespace: string;
  taskQueue: string;
  connectTimeout: number;
}

/** A connected, tenant-scoped client, plus what commands need around it. */
export interface CliContext {
  options: GlobalOptions;
  client: DeltasyncClient;
  /**
   * Run work that needs a deltasync worker (connector operations, queries, updates, refresh
   * results) while watching the task queue's pollers: it fails with exit code 3 when no worker
   * polls or the one listed stopped polling, and says so on stderr when a live worker is slow.
   */
  withWorker<T>(work: () => Promise<T>, options?: WaitOptions): Promise<T>;
}

export interface WaitOptions {
  /**
   * True (the default) when `work` puts a task on the queue at once (starts a workflow, sends a
   * query, an update or a signal): a live worker then polls again within moments, which lets a
   * dead one be told apart in seconds. False for waits that queue nothing (the result of a
   * refresh already running): only a long silence of the queue counts then.
   */
  queuesWork?: boolean | (() => boolean);
  /** Print a notice when a live worker has not answered after a while (default true). */
  notice?: boolean;
  /** What becomes of the work when the CLI gives up on the worker (ends the message). */
  leftBehind?: string;
}

const openConnections: Connection[] = [];

export async function connect(options: GlobalOptions): Promise<CliContext> {
  let connection: Connection;
  try {
    connection = await Connection.connect({
      address: options.address,
      connectTimeout: options.connectTimeout * 1000,
    });
  } catch (error) {
    throw unavailable(
      `cannot reach Temporal at ${options.address} (${error instanceof Error ? error.message : String(error)})`,
    );
  }
  openConnections.push(connection);
  const temporal = new Client({ connection, namespace: options.namespace });
  const client = new DeltasyncClient(temporal, { taskQueue: options.taskQueue, tenant: options.tenant });
  return {
    options,
    client,
    withWorker: (work, wait = {}) => watchForWorker(temporal, client, options, work, wait),
  };
}

/** Close what `connect` opened, so the process can exit. */
export async function closeConnections(): Promise<void> {
  await Promise.all(openConnections.splice(0).map((c) => c.close().catch(() => undefined)));
}

/**
 * How the CLI tells a dead worker from a slow one. Temporal lists a task queue's pollers with the
 * time each last polled (a poll's start and its end both count). It keeps listing a worker killed
 * with SIGKILL for 5 minutes after its last poll (measured: 300 s), so a listed poller proves
 * nothing by itself. The age of its last poll alone would need a threshold above 60 s: an idle
 * live worker's long polls last 60 s, so its last poll is up to ~60 s old (measured: 58-60 s).
 * But a task put on the queue reaches a waiting poll at once, and the worker then polls again.
 * Hence two rules:
 *
 * - work this command queued (a workflow start, a query, an update) and no poll at all since,
 *   for DEAD_AFTER_MS: nobody is polling, whatever is listed. 10 s is thousands of times what a
 *   live worker takes to pick up a workflow task, and leaves one whose workflow-task slots are all
 *   taken time to free one (workflow tasks take milliseconds);
 * - no poll for QUIET_AFTER_MS while waiting on anything (also a refresh already running, which
 *   queues nothing): half a minute more than a live worker's 60-second long poll, so an idle or
 *   busy live worker, which renews its polls, is never taken for a dead one.
 *
 * A worker that polled since the work was queued is alive; while the work is not done it is busy:
 * the CLI keeps waiting and says so once. The work's own deadline (the connector operation's
 * execution timeout, a query's or an update's answer timeout) still bounds that wait.
 */
const FIRST_CHECK_MS = 3_000;
const CHECK_EVERY_MS = 2_500;
const DEAD_AFTER_MS = 10_000;
const QUIET_AFTER_MS = 90_000;
const NOTICE_AFTER_MS = 10_000;
/** One DescribeTaskQueue call; the SDK retries an unreachable server within this deadline. */
const DESCRIBE_DEADLINE_MS = 5_000;
/** Temporal unreachable for this long while we wait: the wait cannot end well, say so. */
const TEMPORAL_GONE_AFTER_MS = 15_000;

/** What DescribeTaskQueue says about the queue's pollers (workflow and activity pollers). */
interface QueueState {
  pollers: number;
  /** Epoch ms of the latest poll of any poller (Temporal's clock), or 0 when none is listed. */
  lastPollAt: number;
}

async function watchForWorker<T>(
  temporal: Client,
  client: DeltasyncClient,
  options: GlobalOptions,
  work: () => Promise<T>,
  wait: WaitOptions,
): Promise<T> {
  const queue = `task queue '${options.taskQueue}'`;
  const where = `namespace '${options.namespace}', Temporal at ${options.address}`;
  // Taken before the work is queued: a poll after it is a poll after the work was queued.
  // Comparing Temporal's timestamps with each other, never with this machine's clock, keeps
  // clock skew out of the verdict.
  const before = await queueState(temporal, options).catch(() => undefined);
  const startedAt = Date.now();
  const running = work();

  let stopped = false;
  /** Why the CLI gave up, once it did: it wins over the work's own end (e.g. its termination). */
  let verdict: CliError | undefined;
  let timer: NodeJS.Timeout | undefined;
  const watchdog = new Promise<never>((_, reject) => {
    let seen = before?.lastPollAt ?? 0;
    let seenChangedAt = startedAt; // when this CLI last saw the latest poll time move
    let unreachableSince: number | undefined;
    let noticed = false;

    const giveUp = async (message: string) => {
      stopped = true;
      verdict = unavailable(`${message}${wait.leftBehind ?? ''}`);
      // Connector operations and dry runs nobody waits for any more must not run later.
      await client.withdrawPending(`the deltasync CLI gave up: ${message}`);
      reject(verdict);
    };

    const check = async () => {
      let state: QueueState;
      try {
        state = await queueState(temporal, options);
        unreachableSince = undefined;
      } catch (error) {
        // Anything but "not there" (say, no permission to describe the queue): cannot tell, so
        // keep waiting rather than fail a working setup.
        if (stopped || !temporalUnreachable(error)) return;
        unreachableSince ??= Date.now();
        if (Date.now() - unreachableSince < TEMPORAL_GONE_AFTER_MS) return;
        stopped = true;
        verdict = unavailable(
          `Temporal at ${options.address} is unavailable while waiting for the worker: ${reasonOf(error)}`,
        );
        reject(verdict);
        return;
      }
      if (stopped) return; // the work ended while Temporal answered
      const now = Date.now();
      if (state.pollers === 0) {
        return giveUp(`no worker is polling ${queue} (${where}); start one with 'deltasync worker'`);
      }
      if (state.lastPollAt !== seen) {
        seen = state.lastPollAt;
        seenChangedAt = now;
      }
      const polledSinceQueued = before === undefined || state.lastPollAt > before.lastPollAt;
      const lastPoll = `its last poll was ${secondsAgo(state.lastPollAt, now)} ago`;
      const queued = typeof wait.queuesWork === 'function' ? wait.queuesWork() : wait.queuesWork !== false;
      if (queued && !polledSinceQueued && now - startedAt >= DEAD_AFTER_MS) {
        return giveUp(
          `the worker on ${queue} stopped polling (${where}): nothing polled in the ` +
            `${Math.round((now - startedAt) / 1000)} s the work waited (${lastPoll}), so it is gone ` +
            `(killed or disconnected), not busy; start one with 'deltasync worker'`,
        );
      }
      if (now - seenChangedAt >= QUIET_AFTER_MS) {
        return giveUp(
          `the worker on ${queue} stopped polling (${where}): no poll for ` +
            `${Math.round((now - seenChangedAt) / 1000)} s, longer than a live worker ever waits ` +
            `(${lastPoll}); start one with 'deltasync worker'`,
        );
      }
      const alive = polledSinceQueued || !queued;
      if (alive && !noticed && wait.notice !== false && now - startedAt >= NOTICE_AFTER_MS) {
        noticed = true;
        process.stderr.write(
          `deltasync: waiting for the worker on ${queue}: it is alive (it polled since this command ` +
            `queued its work; ${lastPoll}) but busy; still waiting\n`,
        );
      }
    };

    // Most work ends within the first few seconds and never sees a check.
    const checkAfter = (ms: number) => {
      timer = setTimeout(() => {
        void check()
          .catch(() => undefined)
          .then(() => {
            if (!stopped) checkAfter(CHECK_EVERY_MS);
          });
      }, ms);
    };
    checkAfter(FIRST_CHECK_MS);
  });
  try {
    return await Promise.race([running, watchdog]);
  } catch (error) {
    throw verdict ?? error;
  } finally {
    stopped = true;
    clearTimeout(timer);
  }
}

async function queueState(temporal: Client, options: GlobalOptions): Promise<QueueState> {
  const describe = (taskQueueType: number) =>
    temporal.connection.withDeadline(Date.now() + DESCRIBE_DEADLINE_MS, () =>
      temporal.workflowService.describeTaskQueue({
        namespace: options.namespace,
        taskQueue: { name: options.taskQueue },
        taskQueueType,
      }),
    );
  // 1: workflow tasks, 2: activity tasks. A worker polls both; a busy one may stop polling for
  // activities (all its slots taken) while it still polls for workflow tasks.
  const answers = await Promise.all([describe(1), describe(2)]);
  const pollers = answers.flatMap((answer) => answer.pollers ?? []);
  const lastPollAt = Math.max(0, ...pollers.map((p) => timestampMs(p.lastAccessTime)));
  return { pollers: pollers.length, lastPollAt };
}

/** A gRPC status saying Temporal is not there (now): unavailable, or no answer in time. */
function temporalUnreachable(error: unknown): boolean {
  for (let current = error; current instanceof Error; current = current.cause) {
    const code = (current as { code?: unknown }).code;
    if (isGrpcServiceError(current) && (code === GRPC_UNAVAILABLE || code === GRPC_DEADLINE_EXCEEDED)) {
      return true;
    }
  }
  return false;
}
const GRPC_DEADLINE_EXCEEDED = 4;
const GRPC_UNAVAILABLE = 14;

function timestampMs(time: { seconds?: unknown; nanos?: number | null } | null | undefined): number {
  if (!time) return 0;
  return Number(time.seconds ?? 0) * 1000 + Math.floor((time.nanos ?? 0) / 1e6);
}

/** "42 s": the age of a poll by this machine's clock (only shown, never decides). */
function secondsAgo(epochMs: number, now: number): string {
  return `${Math.max(0, Math.round((now - epochMs) / 1000))} s`;
}

function reasonOf(error: unknown): string {
  let current: unknown = error;
  while (current instanceof Error && current.cause instanceof Error) current = current.cause;
  const details = (current as { details?: unknown } | undefined)?.details;
  const text =
    typeof details === 'string' && details
      ? details
      : current instanceof Error
        ? current.message
        : String(current);
  // grpc-js appends a note on name resolution that says nothing to an operator.
  return text.split('\n')[0]!.replace(/\s*Resolution note:.*$/, '');
}
