import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { fittedCounters, followRefresh } from '../src/cli/follow';
import type { LiveProgress, RefreshHandle, RunSummary } from '../src/client';

/** `refresh --follow` on a terminal: a bar with rate and time left that fits the terminal. */

const ESC = String.fromCharCode(27);

function fakeTerminal(columns: number) {
  let output = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      output += chunk.toString();
      done();
    },
  }) as unknown as NodeJS.WriteStream & { output(): string };
  Object.assign(stream, {
    isTTY: true,
    columns,
    output: () => output,
    cursorTo: () => true,
    clearLine: () => true,
    moveCursor: () => true,
  });
  return stream;
}

/** A run that sends 10,000 records over about 1.6 s. */
function fakeRun(): RefreshHandle {
  const started = Date.now();
  const sent = () => Math.min(10_000, Math.floor(((Date.now() - started) / 1600) * 10_000));
  const progress = async (): Promise<LiveProgress> =>
    ({
      connectorId: 'crm-customers-with-a-long-name',
      runId: 7,
      phase: 'sending',
      status: 'RUNNING',
      plan: {
        needed: true,
        strategy: 'diff',
        additions: 10_000,
        updates: 0,
        deletions: 0,
        datasetSize: 10_000,
        remoteSize: 0,
      },
      completedPhases: [],
      sending: {
        phase: 'upserts',
        recordsDone: sent(),
        batches: Math.floor(sent() / 1000),
        delivered: sent(),
        rejected: 0,
        skipped: 0,
        apiCalls: 0,
        failedCalls: 0,
        rateLimitWaits: 0,
        bytesSent: 0,
      },
      retrying: null,
    }) as unknown as LiveProgress;
  return {
    workflowId: 'w',
    runId: 'r',
    attached: false,
    progress,
    result: () =>
      new Promise<RunSummary>((resolve) =>
        setTimeout(() => resolve({ status: 'succeeded' } as RunSummary), 1700),
      ),
  };
}

test('the bar shows the rate and the time left, and every line fits the terminal', async () => {
  for (const columns of [60, 120]) {
    const stream = fakeTerminal(columns);
    await followRefresh(fakeRun(), 'crm-customers-with-a-long-name', { mode: 'bar', stream, pollMs: 50 });
    const lines = stream
      .output()
      // The cursor back to the line's start: a redraw.
      .replace(new RegExp(`${ESC}\\[\\d*G`, 'g'), '\n')
      .replace(new RegExp(`${ESC}[78]|${ESC}\\[[0-9;?]*[A-Za-z]`, 'g'), '')
      .split(/[\r\n]/)
      .filter((line) => line.trim());
    assert.ok(lines.length > 0);
    for (const line of lines) assert.ok(line.length <= columns, `${line.length} > ${columns}: ${line}`);
    const drawn = lines.join('\n');
    assert.match(drawn, /records/);
    if (columns >= 120) {
      assert.match(drawn, /· [\d,]+\/s · ETA \d+s/, 'rate and time left on a wide terminal');
    }
  }
});

test('what follows the bar drops its least useful parts first', () => {
  const s = {
    records: '5,000/10,000',
    rejected: '0',
    batches: '5',
    waits: '0',
    sent: 5000,
    planned: 10_000,
  } as never;
  const timing = { rate: '3,100/s', eta: 'ETA 2s' };
  assert.equal(
    fittedCounters(s, timing, 200),
    '5,000/10,000 records · 3,100/s · ETA 2s · 0 rejected · 5 batches · 0 rate-limit waits',
  );
  assert.equal(fittedCounters(s, timing, 40), '5,000/10,000 records · 3,100/s · ETA 2s');
  assert.equal(fittedCounters(s, timing, 12), '5,000/10,000');
});
