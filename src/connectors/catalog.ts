import { httpListDestination } from './http-list';
import { sqlTableDestination } from './sql-table';

/**
 * Every destination type a connector can use. To add one, write a module with
 * `defineDestination` and list it here (docs/connectors.md walks through it).
 */
export const destinationModules = [
  httpListDestination,
  sqlTableDestination,
  // new destinations: one line each, above this comment
] as const;

export type AnyDestinationModule = (typeof destinationModules)[number];
