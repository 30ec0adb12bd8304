import {
  ActivityFailure,
  ApplicationFailure,
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { TriggerActivities } from './activity-types';
import { NON_RETRYABLE_ERRORS, searchAttributes } from './shared';

/**
 * Change-triggered refreshes: one long-lived watcher per connector. Every `pollSeconds` it reads
 * the dataset's change marker (a count and a digest, computed in the database); ingestion
 * processes can also tell it directly with the `datasetChanged` signal. Changes are debounced —
 * a burst of edits or signals starts one refresh, once `debounceSeconds` pass without another
 * change (or `maxWaitSeconds` after the burst began, so a dataset that never goes quiet is still
 * refreshed). The refresh starts through the `startRefresh` activity, like scheduled starts: it
 * starts the connector's refresh workflow or attaches to the running one, so refreshes of one
 * connector never overlap. History holds markers, times and counts, never records.
 */

export function watchWorkflowId(tenant: string, connectorId: string): string {
  return `deltasync-watch-${connectorId}@${tenant}`;
}

export const WATCH_DEFAULTS = { pollSeconds: 60, debounceSeconds: 30 } as const;
/** Loop turns per workflow run before it continues as new, keeping each history short. */
export const ITERATIONS_PER_RUN = 500;
/** Longest wait between attempts to follow up on a change that arrived while a refresh ran. */
const MAX_RETRY_MS = 5 * 60_000;

export interface WatchOptions {
  /** Seconds between change-marker checks (default 60, at least 1). */
  pollSeconds?: number;
  /** Quiet seconds after the last change before the refresh starts (default 30). */
  debounceSeconds?: number;
  /** Start the refresh at the latest this long after a burst's first change (default 10 × debounce, at least one poll). */
  maxWaitSeconds?: number;
}

export interface WatchInput extends WatchOptions {
  connectorId: string;
  tenant: string;
  /** Loop turns before continuing as new (default 500; tests lower it). */
  iterationsPerRun?: number;
  /** @internal State handed over by continue-as-new. */
  carried?: WatchState;
}

export interface WatchTrigger {
  /** Epoch ms. */
  at: number;
  /** The refresh workflow started or attached to. */
  workflowId: string;
  runId: string;
  /** True when a refresh was already running: the change is followed up once it has ended. */
  attached: boolean;
}

/** What the watcher carries from one run to the next (small and bounded). */
export interface WatchState {
  /** Last change marker seen (`<rows>:<digest>`), null before the first check. */
  marker: string | null;
  lastCheckAt: number | null;
  /** Last change seen: a marker that differed, or a signal. */
  lastChangeAt: number | null;
  /** First change not yet covered by a refresh; null when nothing is pending. */
  pendingSince: number | null;
  /** Changes (marker differences and signals) in the pending burst. */
  pendingChanges: number;
  /** Do not start before this time (after an attach or a failed start). */
  notBefore: number | null;
  /** Consecutive attaches/failures, for the retry backoff. */
  retries: number;
  signals: number;
  lastNote: string | null;
  /** Refresh starts, new or attached. */
  triggers: number;
  lastTrigger: WatchTrigger | null;
  lastError: string | null;
  /** Runs of this watcher before the current one (continue-as-new). */
  generation: number;
}

export interface WatchStatus extends WatchState {
  connectorId: string;
  pollSeconds: number;
  debounceSeconds: number;
  maxWaitSeconds: number;
  pending: boolean;
  stopped: boolean;
}

export const datasetChangedSignal = defineSignal<[note?: string]>('datasetChanged');
export const stopWatchSignal = defineSignal('stop');
export const watchStatusQuery = defineQuery<WatchStatus>('watchStatus');

const { checkChangeMarker } = proxyActivities<TriggerActivities>({
  // Without a marker column the check is a full scan; it returns two numbers.
  startToCloseTimeout: '30 minutes',
  retry: { initialInterval: '1 second', maximumAttempts: 3, nonRetryableErrorTypes: NON_RETRYABLE_ERRORS },
});
const { startRefresh } = proxyActivities<TriggerActivities>({
  startToCloseTimeout: '1 minute',
  retry: { maximumAttempts: 5, nonRetryableErrorTypes: NON_RETRYABLE_ERRORS },
});

export async function watchConnector(input: WatchInput): Promise<WatchStatus> {
  const pollMs = 1000 * (input.pollSeconds ?? WATCH_DEFAULTS.pollSeconds);
  const debounceMs = 1000 * (input.debounceSeconds ?? WATCH_DEFAULTS.debounceSeconds);
  const maxWaitMs =
    input.maxWaitSeconds !== undefined ? 1000 * input.maxWaitSeconds : Math.max(10 * debounceMs, pollMs);
  const iterationsPerRun = input.iterationsPerRun ?? ITERATIONS_PER_RUN;
  const { connectorId, tenant } = input;
  const state: WatchState = input.carried ?? {
    marker: null,
    lastCheckAt: null,
    lastChangeAt: null,
    pendingSince: null,
    pendingChanges: 0,
    notBefore: null,
    retries: 0,
    signals: 0,
    lastNote: null,
    triggers: 0,
    lastTrigger: null,
    lastError: null,
    generation: 0,
  };
  let stopped = false;
  /** Bumped by every change, so a wait ends (and the debounce restarts) when one arrives. */
  let changes = 0;

  const noteChange = () => {
    const at = Date.now();
    state.lastChangeAt = at;
    state.pendingSince ??= at;
    state.pendingChanges += 1;
    changes += 1;
  };
  setHandler(datasetChangedSignal, (note?: string) => {
    state.signals += 1;
    // A label for operators ("orders import 2024-06-01"), shown in the status; keep it short.
    if (typeof note === 'string' && note !== '') state.lastNote = note.slice(0, 200);
    noteChange();
  });
  setHandler(stopWatchSignal, () => {
    stopped = true;
  });
  const status = (): WatchStatus => ({
    ...state,
    connectorId,
    pollSeconds: pollMs / 1000,
    debounceSeconds: debounceMs / 1000,
    maxWaitSeconds: maxWaitMs / 1000,
    pending: state.pendingSince !== null,
    stopped,
  });
  setHandler(watchStatusQuery, status);
  upsertSearchAttributes([
    { key: searchAttributes.connectorId, value: connectorId },
    { key: searchAttributes.tenant, value: tenant },
  ]);

  // A fresh watcher checks at once (its baseline); a continued one keeps the poll rhythm.
  let nextCheckAt = state.lastCheckAt === null ? Date.now() : state.lastCheckAt + pollMs;

  for (let turn = 0; !stopped; turn++) {
    if (turn >= iterationsPerRun || workflowInfo().continueAsNewSuggested) {
      // Signal handlers are synchronous, so every change received so far is in `state`.
      await continueAsNew<typeof watchConnector>({
        ...input,
        carried: { ...state, generation: state.generation + 1 },
      });
    }
    const now = Date.now();
    if (now >= nextCheckAt) {
      if (!(await check())) break;
      nextCheckAt = Date.now() + pollMs;
      continue;
    }
    let wakeAt = nextCheckAt;
    if (state.pendingSince !== null && state.lastChangeAt !== null) {
      const quietAt = Math.min(state.lastChangeAt + debounceMs, state.pendingSince + maxWaitMs);
      const dueAt = Math.max(quietAt, state.notBefore ?? 0);
      if (now >= dueAt) {
        await trigger();
        continue;
      }
      wakeAt = Math.min(wakeAt, dueAt);
    }
    describe();
    const seen = changes;
    await condition(() => stopped || changes !== seen, wakeAt - now);
  }
  setCurrentDetails(`**${connectorId}**: watcher stopped`);
  return status();

  /** Read the change marker; false when the connector is gone (the watcher ends). */
  async function check(): Promise<boolean> {
    try {
      const result = await checkChangeMarker({ connectorId, tenant, previous: state.marker });
      state.marker = result.marker;
      state.lastCheckAt = Date.now();
      state.lastError = null;
      if (result.changed) noteChange();
      return true;
    } catch (error) {
      state.lastCheckAt = Date.now();
      state.lastError = describeError(error);
      if (failureType(error) === 'UnknownConnectorError') {
        stopped = true;
        return false;
      }
      return true; // the database may be back by the next check
    }
  }

  /** Start the refresh (or attach to the running one) for the pending burst. */
  async function trigger(): Promise<void> {
    const covered = state.pendingChanges;
    try {
      const started = await startRefresh({ connectorId, tenant, trigger: 'change' });
      state.triggers += 1;
      state.lastTrigger = { at: Date.now(), ...started };
      state.lastError = null;
      if (started.attached) {
        // The running refresh may have read the dataset before this change: keep it pending and
        // start another refresh once that one has ended (until then, each attempt attaches again).
        retryLater();
      } else if (state.pendingChanges === covered) {
        state.pendingSince = null;
        state.pendingChanges = 0;
        state.notBefore = null;
        state.retries = 0;
      } else {
        // Changes that arrived while the refresh was being started may postdate its snapshot.
        state.pendingSince = state.lastChangeAt;
        state.pendingChanges -= covered;
        state.notBefore = null;
        state.retries = 0;
      }
    } catch (error) {
      state.lastError = describeError(error);
      retryLater();
    }
  }

  function retryLater() {
    const base = Math.max(debounceMs, pollMs, 1000);
    state.notBefore = Date.now() + Math.min(base * 2 ** state.retries, Math.max(MAX_RETRY_MS, base));
    state.retries += 1;
  }

  function describe() {
    const pending =
      state.pendingSince === null ? 'no change pending' : `${state.pendingChanges} change(s) pending`;
    setCurrentDetails(`**${connectorId}**: watching, ${pending}; ${state.triggers} refresh start(s)`);
  }
}

function failureType(error: unknown): string | undefined {
  const cause = error instanceof ActivityFailure ? error.cause : error;
  return cause instanceof ApplicationFailure ? (cause.type ?? undefined) : undefined;
}

function describeError(error: unknown): string {
  const cause = error instanceof ActivityFailure && error.cause ? error.cause : error;
  return cause instanceof Error ? cause.message : String(error);
}
