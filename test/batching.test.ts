import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { jsonBytes, splitByLimits } from '../src/core/batching';

test('splits by records and by bytes, keeping order', () => {
  const items = ['aaaa', 'bb', 'cccccc', 'd', 'ee'];
  assert.deepEqual(
    splitByLimits(items, { maxRecords: 2 }, (s) => s.length),
    [['aaaa', 'bb'], ['cccccc', 'd'], ['ee']],
  );
  assert.deepEqual(
    splitByLimits(items, { maxRecords: 10, maxBytes: 7 }, (s) => s.length),
    [['aaaa', 'bb'], ['cccccc', 'd'], ['ee']],
  );
  // An item over the byte limit travels alone (the destination refuses it, and only it).
  assert.deepEqual(
    splitByLimits(['x', 'yyyyyyyyyy', 'z'], { maxRecords: 10, maxBytes: 5 }, (s) => s.length),
    [['x'], ['yyyyyyyyyy'], ['z']],
  );
  assert.equal(jsonBytes({ key: 'é' }), Buffer.byteLength('{"key":"é"}'));
});

test('property: batches respect both limits, lose nothing and keep order', () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 50 })),
      fc.integer({ min: 1, max: 10 }),
      fc.option(fc.integer({ min: 1, max: 120 })),
      (sizes, maxRecords, maxBytes) => {
        const batches = splitByLimits(sizes, { maxRecords, maxBytes: maxBytes ?? undefined }, (n) => n);
        assert.deepEqual(batches.flat(), sizes);
        for (const batch of batches) {
          assert.ok(batch.length >= 1 && batch.length <= maxRecords);
          const bytes = batch.reduce((a, b) => a + b, 0);
          if (maxBytes !== null) assert.ok(bytes <= maxBytes || batch.length === 1);
        }
      },
    ),
  );
});
