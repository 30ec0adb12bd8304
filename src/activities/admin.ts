import type { BadRowReport } from '../core/deltalog';
import { keyOfDigest, listRunChanges, type ChangeFilter, type KeyDigest } from '../core/change-log';
import { sealFor, type Sealed } from '../core/sealed';
import { forgetTracking } from '../core/change-tracking';
import { leaveSharedCompare } from '../core/shared-compare';
import {
  connectorKey,
  InvalidConnectorError,
  type ConnectorDefinition,
  type ConnectorInput,
} from '../core/connector';
import { validateConnector } from '../connectors/catalog';
import {
  deleteConnector,
  listConnectors,
  loadConnector,
  saveConnector,
  UnknownConnectorError,
  type ListedConnector,
} from '../core/connector-store';
import type { Destination } from '../core/destination';
import { checkDestination, liveListId } from '../core/refresh';
import { listRuns } from '../core/runs';
import { safeObserver } from '../observability/observer';
import { summarizeRun, type RunSummary } from '../core/summaries';
import { connectorProblems, withEgressPolicy, type TenantPolicy } from '../tenancy';
import { callerTenant, failClearly, type ActivityDependencies } from './support';

/**
 * Connector management, run by the worker on behalf of clients: platform teams only need to
 * reach Temporal, not the database. Every operation acts for the tenant its namespace serves:
 * another tenant's connectors do not exist for it, and its ids are its own (two tenants may both
 * have a `crm`; neither can tell).
 */

export type AdminOperation =
  | { kind: 'save'; tenant: string; connector: ConnectorInput; mode: 'create' | 'update' | 'upsert' }
  | { kind: 'get'; tenant: string; id: string }
  | { kind: 'list'; tenant: string; afterId?: string; limit?: number }
  | { kind: 'delete'; tenant: string; id: string }
  /** With `recipient`, the runs' bad-row samples too, sealed for it (they hold dataset values). */
  | { kind: 'runs'; tenant: string; id: string; limit: number; beforeRunId?: number; recipient?: string }
  /** `validate --online`: a saved connector (`id`) or a definition (`connector`), not saved. */
  | { kind: 'check'; tenant: string; id?: string; connector?: ConnectorInput }
  /**
   * A page of the connector's change log, sealed for `recipient` (a PEM public key of the caller's
   * own): the keys in it never sit in workflow history in the clear (core/sealed.ts). A key asked
   * about comes as a salted digest (`keyDigest`), for the same reason.
   */
  | {
      kind: 'changes';
      tenant: string;
      id: string;
      filter: Omit<ChangeFilter, 'key'>;
      keyDigest?: KeyDigest;
      recipient: string;
    };

export type AdminResult =
  | { kind: 'connector'; connector: ConnectorDefinition }
  | { kind: 'connectors'; connectors: ListedConnector[] }
  | { kind: 'deleted'; id: string }
  /** `samples`: sealed RunSamples[], when asked for. */
  | { kind: 'runs'; runs: RunSummary[]; samples?: Sealed }
  | { kind: 'checked'; check: OnlineCheck }
  /** A ChangePage, sealed. */
  | { kind: 'changes'; page: Sealed };

/**
 * What `validate --online` found: the tenant's checks passed (else it fails with an
 * InvalidConnectorError naming each problem) and the destination answered `check()`: `ok` with
 * what it checked, or not `ok` with what to fix.
 */
export interface OnlineCheck {
  connectorId: string;
  destinationType: string;
  ok: boolean;
  /** One line: what was checked (`list 42 reachable, 1,200 members`), or what is wrong. */
  message: string;
}

/** A run's bad-row samples (rows without a key, keys too long, duplicated keys), as `runs --details` shows them. */
export interface RunSamples {
  runId: number;
  badRows: BadRowReport['samples'] | null;
}

/** A destination that has not answered its check by then is reported as not answering. */
export const CHECK_TIMEOUT_MS = 40_000;

/** Largest page `list` returns: an activity result stays far below Temporal's payload limits. */
export const MAX_LIST_PAGE = 500;
/** Largest page of the change log (keys up to 255 bytes: well under Temporal's 2 MB payload limit). */
export const MAX_CHANGES_PAGE = 1000;

export function createAdminActivities({
  db,
  tenancy,
  destinations,
  observer: given,
}: Pick<ActivityDependencies, 'db' | 'tenancy' | 'destinations' | 'observer'>) {
  const observer = safeObserver(given);
  return {
    async connectorAdmin(op: AdminOperation): Promise<AdminResult> {
      return failClearly(() => run(op));
    },
  };

  async function run(op: AdminOperation): Promise<AdminResult> {
    const tenant = callerTenant(tenancy, op.tenant);
    switch (op.kind) {
      case 'save': {
        const connector = validateConnector({ ...op.connector, tenant: op.connector.tenant ?? tenant.id });
        if (connector.tenant !== tenant.id) {
          throw new InvalidConnectorError([
            `tenant: '${connector.tenant}' is not this client's tenant '${tenant.id}'`,
          ]);
        }
        const exists = await loadConnector(db, tenant.id, connector.id).then(
          () => true,
          () => false,
        );
        if (op.mode === 'create' && exists)
          throw new InvalidConnectorError([`id: connector '${connector.id}' exists already`]);
        if (op.mode === 'update' && !exists) throw new UnknownConnectorError(connector.id, tenant.id);
        const problems = await connectorProblems(tenancy, tenant, connector);
        if (problems.length > 0) throw new InvalidConnectorError(problems);
        return { kind: 'connector', connector: await saveConnector(db, connector) };
      }
      case 'get':
        return { kind: 'connector', connector: await loadConnector(db, tenant.id, op.id) };
      case 'list':
        return {
          kind: 'connectors',
          connectors: await listConnectors(db, tenant.id, {
            afterId: op.afterId,
            limit: Math.min(op.limit ?? MAX_LIST_PAGE, MAX_LIST_PAGE),
          }),
        };
      case 'delete': {
        const connector = await loadConnector(db, tenant.id, op.id);
        await deleteConnector(db, tenant.id, op.id);
        // Its change positions; a table nobody follows any more loses its triggers and journal.
        await forgetTracking(db, connectorKey(tenant.id, op.id));
        await leaveSharedCompare(db, connectorKey(tenant.id, op.id));
        await tenancy.datasets.forget(tenant, connector);
        return { kind: 'deleted', id: op.id };
      }
      case 'runs': {
        await loadConnector(db, tenant.id, op.id);
        const runs = await listRuns(db, connectorKey(tenant.id, op.id), op.limit, op.beforeRunId);
        const summaries = await Promise.all(runs.map((run) => summarizeRun(db, run)));
        if (!op.recipient) return { kind: 'runs', runs: summaries };
        const samples: RunSamples[] = runs.map((run) => ({
          runId: Number(run.id),
          badRows: run.bad_rows ? (JSON.parse(run.bad_rows) as BadRowReport).samples : null,
        }));
        return { kind: 'runs', runs: summaries, samples: sealFor(op.recipient, samples) };
      }
      case 'check':
        return { kind: 'checked', check: await checkOnline(tenant, op) };
      case 'changes': {
        await loadConnector(db, tenant.id, op.id);
        const key = connectorKey(tenant.id, op.id);
        const limit = Math.min(op.filter.limit ?? MAX_CHANGES_PAGE, MAX_CHANGES_PAGE);
        const asked = op.keyDigest && (await keyOfDigest(db, key, op.keyDigest));
        // A key the deltalog never held was never sent: nothing is logged of it.
        const page =
          op.keyDigest && asked === undefined
            ? { changes: [] }
            : await listRunChanges(db, key, { ...op.filter, limit, ...(asked ? { key: asked } : {}) });
        return { kind: 'changes', page: sealFor(op.recipient, page) };
      }
    }
  }

  /**
   * The connector as a refresh would meet it: the tenant's checks (secrets, allowlist, dataset
   * access), then its destination built as the worker builds it, asked `check()`. The dataset is
   * checked through a view of its own (dropped afterwards), so a saved connector's view is never
   * replaced by a definition being tried out.
   */
  async function checkOnline(tenant: TenantPolicy, op: Extract<AdminOperation, { kind: 'check' }>) {
    const saved = op.id === undefined ? undefined : await loadConnector(db, tenant.id, op.id);
    const connector =
      saved ?? validateConnector({ ...op.connector, tenant: op.connector?.tenant ?? tenant.id });
    if (connector.tenant !== tenant.id) {
      throw new InvalidConnectorError([
        `tenant: '${connector.tenant}' is not this client's tenant '${tenant.id}'`,
      ]);
    }
    const scratch = {
      ...connector,
      id: `check.${Date.now().toString(36)}.${Math.random().toString(36).slice(2, 8)}`,
    };
    try {
      const problems = await connectorProblems(tenancy, tenant, scratch);
      if (problems.length > 0) throw new InvalidConnectorError(problems);
    } finally {
      await tenancy.datasets.forget(tenant, scratch);
    }
    // A saved connector's list may have moved (new list + swap): check the one it points at now.
    const listId = saved ? await liveListId(db, connectorKey(tenant.id, saved.id)) : undefined;
    const result = (ok: boolean, message: string): OnlineCheck => ({
      connectorId: connector.id,
      destinationType: connector.destination.type,
      ok,
      message,
    });
    let destination: Destination | undefined;
    try {
      const built = destinations(connector.destination, { tenant: tenant.id, listId });
      destination = built;
      const checked = await withEgressPolicy(tenant.id, tenant.destinations, () =>
        withinTime(checkDestination(observer, connector.destination.type, built), CHECK_TIMEOUT_MS),
      );
      return result(true, checked);
    } catch (error) {
      return result(false, firstLine(error));
    } finally {
      await destination?.close().catch(() => undefined);
    }
  }
}

function withinTime<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`the destination did not answer within ${Math.round(ms / 1000)} s`)),
      ms,
    );
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0]!;
}
