import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { bundleWorkflowCode, DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { HISTORY_FIXTURES } from './helpers/histories';

/**
 * Determinism: histories recorded from real runs (diff, full push, truncate, a send that failed
 * and was retried, concurrent starts, bad rows) must replay against the current workflow code. A
 * change that would break running workflows fails here; record new fixtures only on purpose.
 */
test('recorded refresh histories replay against the current workflow code', async () => {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const files = fs.readdirSync(HISTORY_FIXTURES).filter((f) => f.endsWith('.json'));
  assert.ok(files.length >= 5, `expected recorded histories in ${HISTORY_FIXTURES}`);
  const quiet = () => undefined;
  const workflowBundle = await bundleWorkflowCode({
    workflowsPath: require.resolve('../src/workflows'),
    logger: { log: quiet, trace: quiet, debug: quiet, info: quiet, warn: quiet, error: quiet },
  });
  const histories = files.map((file) => ({
    workflowId: path.basename(file, '.json'),
    history: historyFromJSON(JSON.parse(fs.readFileSync(path.join(HISTORY_FIXTURES, file), 'utf8'))),
  }));
  let replayed = 0;
  for await (const result of Worker.runReplayHistories({ workflowBundle }, histories)) {
    assert.equal(result.error, undefined, `${result.workflowId}: ${result.error?.message}`);
    replayed++;
  }
  assert.equal(replayed, files.length);
});
