export { observeDestination } from './destination';
export { activityLogging, installTemporalLogging, PinoTemporalLogger } from './logging';
export { createWorkerMetrics, METRIC_NAMES, type WorkerMetrics } from './metrics';
export {
  noopRefreshObserver,
  safeObserver,
  sendIncrements,
  type RefreshObserver,
  type SendTotals,
} from './observer';
export { startOpsServer, type HealthReport, type OpsServer, type OpsServerOptions } from './server';
