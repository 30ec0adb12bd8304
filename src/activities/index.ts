import { createAdminActivities } from './admin';
import { createAlertActivities } from './alerts';
import { createRefreshActivities } from './refresh';
import type { ActivityDependencies } from './support';
import { createTriggerActivities } from './triggers';

/**
 * Every activity the workflows call, built from their dependencies (the database, the
 * destinations, the tenancy rules, a Temporal client for triggered starts), so tests hand in real
 * or emulated parts without module mocking.
 */
export function createActivities(dependencies: ActivityDependencies) {
  return {
    ...createRefreshActivities(dependencies),
    ...createAdminActivities(dependencies),
    ...createTriggerActivities(dependencies),
    ...createAlertActivities(dependencies),
  };
}

export type Activities = ReturnType<typeof createActivities>;
export type { ActivityDependencies } from './support';
export type { ConnectorRef, RunRef } from './refresh';
