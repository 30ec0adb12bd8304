// The workflow bundle's entry point: every workflow the worker runs is exported here.
export { planConnector, refreshConnector } from './refresh';
export { manageConnectors, triggeredRefresh } from './operations';
export { watchConnector } from './watch';
export { alertWatchdog } from './alert-watchdog';
