import type { Db } from '../../db';
import type { ConnectorDefinition } from '../connector';
import type { EngineObserver } from '../observer';

/**
 * What the refresh engine's steps work with, handed in explicitly: the database, the clock, and
 * who is told about calls, batches and runs. The engine knows nothing of Temporal: the activities
 * (src/activities/refresh.ts) and the engine's property test (test/helpers/engine-driver.ts) call
 * the same step functions.
 */
export interface Engine {
  db: Db;
  now: () => number;
  observer: EngineObserver;
}

/** A connector as the engine knows it: its definition and its rows' key (`<tenant>/<id>`). */
export interface ConnectorScope {
  connector: ConnectorDefinition;
  key: string;
}

/** One run of a connector. */
export interface RunScope extends ConnectorScope {
  runId: number;
}

/**
 * Which attempt of a step this is, for the failure budget: the activity reads it from Temporal
 * (attempt number, when the activity was first scheduled); callers that do not retry leave it out.
 */
export interface Attempt {
  number: number;
  scheduledAt: number;
}
