import assert from 'node:assert/strict';
import { afterEach } from 'node:test';
import {
  DestinationError,
  type Destination,
  type Member,
  type SecretResolver,
} from '../../src/core/destination';

/**
 * What the destination contract tests (one file per destination, each against its emulator)
 * share: closing what a test opened, fixed secrets, a sleep that records instead of waiting,
 * and small readers of a destination's answers.
 */

export interface Closable {
  close(): Promise<void>;
}

/**
 * Closes, after each test of the calling file, whatever the test handed to the returned
 * function (emulators, destinations, fake servers), in the order they were handed over.
 * Call it once at the top level of a test file.
 */
export function closeAfterEach(): <T extends Closable>(resource: T) => T {
  const open: Closable[] = [];
  afterEach(async () => {
    for (const resource of open.splice(0)) await resource.close();
  });
  return (resource) => {
    open.push(resource);
    return resource;
  };
}

/** What a contract test's `setup()` returns: an emulator and a destination against it. */
export interface DestinationSetup<E> {
  emu: E;
  dest: Destination;
  /** Every wait the destination asked for, in milliseconds (sleep is faked: tests don't wait). */
  waits: number[];
}

/** A resolver that knows exactly `values`; any other name fails the way a missing secret does. */
export function fixedSecrets(values: Record<string, string>): SecretResolver {
  return (name) => {
    const value = values[name];
    if (value !== undefined) return value;
    throw new Error(`secret '${name}' is not set`);
  };
}

/** A fake `sleep` for a destination's options: it returns at once and records every wait asked for, in ms. */
export function recordedSleep(): { waits: number[]; sleep: (ms: number) => Promise<void> } {
  const waits: number[] = [];
  return { waits, sleep: async (ms) => void waits.push(ms) };
}

/** The error `promise` fails with, which must be a DestinationError. */
export async function rejection(promise: Promise<unknown>): Promise<DestinationError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof DestinationError, `expected a DestinationError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the call to fail');
}

/** Reads the whole list through listMembers, `pageSize` at a time. */
export async function allKeys(
  dest: Destination,
  pageSize: number,
): Promise<{ keys: string[]; pages: number }> {
  const keys: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  if (!dest.listMembers) throw new Error(`${dest.type} cannot list its members`);
  do {
    const page = await dest.listMembers(cursor, pageSize);
    keys.push(...page.keys);
    cursor = page.next;
    pages++;
  } while (cursor !== null);
  return { keys, pages };
}

/** Members with the keys given, the i-th with attributes { rank: i, vip: i is even, note: null }. */
export function sampleMembers(...keys: string[]): Member[] {
  return keys.map((key, i) => ({ key, attributes: { rank: i, vip: i % 2 === 0, note: null } }));
}

/** Resolves a few ms into the next wall-clock second, so calls that follow share one fixed rate window. */
export function startOfNextSecond(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 1000 - (Date.now() % 1000) + 5));
}
