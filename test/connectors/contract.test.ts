import assert from 'node:assert/strict';
import { test } from 'node:test';
import { destinationCatalog } from '../../src/connectors/catalog';
import type { ContractHarness } from '../../src/connectors/kit/contract';
import {
  describeViolation,
  specCheckedExchanges,
  takeSpecViolations,
} from '../../src/connectors/kit/vendor-spec';
import { VENDOR_TYPES } from '../helpers/vendors';
import { contractSuite } from './contract-suite';

/**
 * The destination contract (contract-suite.ts) on every destination's emulator (or, for SQL and
 * Redis, the local servers). Per-destination files test only what is specific to a vendor. A
 * destination joins by exporting `contractHarness` from its emulator.ts (kit/contract.ts).
 */

const harnesses: ContractHarness[] = destinationCatalog.map(({ type }) => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- every folder's emulator, by name
  const emulator = require(`../../src/connectors/${type}/emulator`) as { contractHarness?: ContractHarness };
  if (!emulator.contractHarness)
    throw new Error(`src/connectors/${type}/emulator.ts exports no contractHarness`);
  return emulator.contractHarness;
});

test('every destination of the catalog has a contract harness', () => {
  assert.deepEqual(
    harnesses.map((h) => h.type),
    destinationCatalog.map((entry) => entry.type),
  );
});

contractSuite(harnesses);

test("every vendor's emulator checked the suite's traffic against the vendor's published spec", () => {
  const checked = specCheckedExchanges();
  for (const type of VENDOR_TYPES) {
    assert.ok((checked[type] ?? 0) > 0, `${type}: no exchange was checked (${JSON.stringify(checked)})`);
  }
  // And none broke it (the preload would fail the file too; this says which test file).
  assert.deepEqual(takeSpecViolations().map(describeViolation), []);
});
