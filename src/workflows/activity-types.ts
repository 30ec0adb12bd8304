import type { createAdminActivities } from '../activities/admin';
import type { createAlertActivities } from '../activities/alerts';
import type { createRefreshActivities } from '../activities/refresh';
import type { createTriggerActivities } from '../activities/triggers';

/**
 * The activities each workflow calls, as types only (erased from the workflow bundle). Taken from
 * the module that defines each group, never from activities/index.ts, which imports those modules.
 */
export type RefreshActivities = ReturnType<typeof createRefreshActivities>;
export type AdminActivities = ReturnType<typeof createAdminActivities>;
export type TriggerActivities = ReturnType<typeof createTriggerActivities>;
export type AlertActivities = ReturnType<typeof createAlertActivities>;
