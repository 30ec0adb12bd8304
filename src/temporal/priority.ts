import type { Priority } from '@temporalio/common';

/**
 * How urgent a refresh is, as Temporal's task-queue priority (1 goes first; 3 is Temporal's
 * default) with the tenant as fairness key. Within a level, tenants that share a namespace get
 * turns in proportion to their weight, so one tenant's thousand queued refreshes cannot hold back
 * another's one (docs/deploying.md). Activities inherit their workflow's priority.
 */
export type RefreshUrgency = 'interactive' | 'live' | 'scheduled' | 'backfill';

const PRIORITY_KEYS: Record<RefreshUrgency, number> = {
  /** Someone waits for it: the CLI, the client's refresh(). */
  interactive: 1,
  /** Follows a change source: a person or system expects it within seconds. */
  live: 2,
  /** A schedule's periodic refresh. */
  scheduled: 3,
  /** A bulk reload nobody waits for (first pushes of many connectors, re-syncs). */
  backfill: 4,
};

/** The urgency a trigger implies when the caller says none. */
export function urgencyOf(trigger: string): RefreshUrgency {
  if (trigger === 'schedule') return 'scheduled';
  if (trigger === 'change' || trigger === 'live') return 'live';
  if (trigger === 'backfill') return 'backfill';
  return 'interactive';
}

export function refreshPriority(tenant: string, urgency: RefreshUrgency): Priority {
  return { priorityKey: PRIORITY_KEYS[urgency], fairnessKey: tenant };
}
