export { activityLogging, installTemporalLogging, PinoTemporalLogger } from './logging';
export { createWorkerMetrics, METRIC_NAMES, type WorkerMetrics } from './metrics';
export { noopRefreshObserver, safeObserver, type RefreshObserver } from './observer';
export { startOpsServer, type HealthReport, type OpsServer, type OpsServerOptions } from './server';
