import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { VENDOR_TYPES } from './helpers/vendors';
import { sandboxHarnesses } from './sandbox/select';

/**
 * `npm run test:sandbox` runs the destination contract against real vendor sandboxes. It cannot
 * run here (no credentials, no internet), so what is tested is that it can never pass by doing
 * nothing: without the credentials it needs it exits non-zero and names every missing variable.
 */

const script = path.join(__dirname, '../scripts/test-sandbox.sh');

/** The environment without any of the sandbox variables. */
function bareEnv(): NodeJS.ProcessEnv {
  const wanted = new Set(sandboxHarnesses().flatMap((h) => Object.keys(h.requires)));
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !wanted.has(name)));
}

function run(args: string[], env = bareEnv()) {
  const result = spawnSync('bash', [script, ...args], { env, encoding: 'utf8', timeout: 60_000 });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

test('every vendor destination offers a sandbox harness', () => {
  const types = sandboxHarnesses().map((h) => h.type);
  for (const type of VENDOR_TYPES) {
    assert.ok(types.includes(type), `${type} has a sandbox.ts`);
  }
});

test('without credentials it exits non-zero and names each missing variable, with how to get it', () => {
  const { status, output } = run([]);
  assert.equal(status, 1, output);
  assert.match(output, /test:sandbox cannot run/);
  for (const harness of sandboxHarnesses()) {
    for (const variable of Object.keys(harness.requires)) assert.match(output, new RegExp(`${variable} \\(`));
  }
  assert.doesNotMatch(output, /# pass/, 'no test ran');
});

test('one vendor with part of its credentials: still refused, naming only what is missing', () => {
  const [harness] = sandboxHarnesses().filter((h) => Object.keys(h.requires).length > 1);
  assert.ok(harness, 'a sandbox needing more than one variable');
  const [given, ...missing] = Object.keys(harness.requires);
  const { status, output } = run([harness.type], { ...bareEnv(), [given!]: 'set' });
  assert.equal(status, 1, output);
  for (const variable of missing) assert.match(output, new RegExp(variable));
  assert.doesNotMatch(output, new RegExp(`${given} \\(`));
});

test('a destination without a vendor, or an unknown name, is refused too', () => {
  assert.match(run(['http-list']).output, /http-list has no vendor sandbox/);
  const unknown = run(['hubspot']);
  assert.equal(unknown.status, 1);
  assert.match(unknown.output, /hubspot is not a destination type/);
});
