/**
 * Screenshots for docs/operating-from-the-temporal-ui.md, taken in headless Chromium of real runs:
 * the Temporal dev server with its Web UI, a worker in this process, the http-list emulator and
 * an SQLite database in a temporary folder. Not part of the test run.
 *
 *   npx tsx scripts/ui-screenshots.ts                  # writes docs/images/ui-*.png
 *   npx tsx scripts/ui-screenshots.ts --keep-running   # then leaves everything up to look around
 *   npx tsx scripts/ui-screenshots.ts --keep-running --no-capture   # the runs only, no pictures
 *
 * Needs Chromium at /usr/bin/chromium (or CHROMIUM_PATH); Playwright never downloads a browser.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { chromium, type Browser, type Page } from 'playwright-core';
import { DeltasyncClient, type RefreshHandle } from '../src/client';
import type { ConnectorInput } from '../src/core/connector';
import type { SendProgress } from '../src/core/sender';
import { openDatabase, type Db } from '../src/db';
import { churnCustomers, createCustomersTable, CUSTOMERS_TABLE, seedCustomers } from '../src/demo/customers';
import { startHttpListEmulator, type HttpListEmulator } from '../src/connectors/http-list/emulator';
import { projectRoot } from '../src/paths';
import { startDevServer, type DevServer } from '../src/temporal/dev-server';
import { secretEnvName } from '../src/tenancy/secret-names';
import { createWorker } from '../src/worker';
import { refreshWorkflowId } from '../src/workflows/shared';

const IMAGES = path.join(projectRoot, 'docs', 'images');
/** History pages: tall enough for the header, input/result and the whole timeline. */
const TALL = { height: 1240 };
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * The connectors of the story the docs tell, all of tenant `default`: the worker runs without a
 * tenants policy (one tenant, `default`, in the namespace `default`), as the embedded SQLite
 * database requires.
 */
const TENANT = 'default';
const NEWSLETTER = 'crm-newsletter'; // first push, diff, no-op, a long full push
const VIP = 'vip-audience'; // a run waiting at the mass-delete guard
const PARTNER = 'partner-export'; // a run failing on a bad token
const VIP_TABLE = 'vip_customers';
/** Secrets of tenant `default`, as a worker resolves them: DELTASYNC_SECRET_DEFAULT__<NAME>. */
const LIST_TOKEN = secretEnvName(TENANT, 'DOCS_LIST_TOKEN');
const PARTNER_TOKEN = secretEnvName(TENANT, 'DOCS_PARTNER_TOKEN');

const say = (line: string) => process.stdout.write(`${line}\n`);

async function main() {
  const keepRunning = process.argv.includes('--keep-running');
  // ERROR: the failures staged below would log as warnings; Ctrl-C is ours (--keep-running).
  Runtime.install({ logger: new DefaultLogger('ERROR'), shutdownSignals: [] });
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'deltasync-ui-'));
  process.env.DELTASYNC_DATA_DIR = dataDir;
  // The tenant's secrets, as a worker resolves them; the partner's token is wrong on purpose.
  const token = randomBytes(16).toString('hex');
  process.env[LIST_TOKEN] = token;
  process.env[PARTNER_TOKEN] = 'expired-token';

  const port = await freePort();
  const server = await startDevServer({ ui: true, port, uiPort: await freePort() });
  const emulator = await startHttpListEmulator({ token });
  const db = await openDatabase();
  // No tenancy given: one tenant, `default`, in the namespace `default`, secrets from the environment.
  const worker = await createWorker({
    connection: server.env.nativeConnection,
    db,
    temporal: server.env.client,
  });
  const workerRunning = worker.run();
  let browser: Browser | undefined;
  try {
    say(`Temporal Web UI ${server.uiUrl}, gRPC ${server.address}, data in ${dataDir}`);
    const story = await tellTheStory(server, db, emulator);
    // Ctrl-C is ours: the finally below closes the browser with everything else.
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: CHROMIUM_ARGS,
      handleSIGINT: false,
      handleSIGTERM: false,
    });
    if (!process.argv.includes('--no-capture')) await capture(browser, server, story, emulator);
    if (keepRunning) {
      say(`Everything stays up: ${server.uiUrl}. Ctrl-C to stop.`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
    }
  } finally {
    say('Shutting down …');
    await browser?.close();
    worker.shutdown();
    await workerRunning;
    await emulator.close();
    await db.destroy();
    await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

interface Story {
  client: DeltasyncClient;
  /** The long full push of the newsletter connector, still running. */
  running: RefreshHandle;
  /** The VIP audience's run, waiting for approval. */
  guarded: RefreshHandle;
  /** The partner export's failed run. */
  failed: RefreshHandle;
  /** The newsletter's diff run (succeeded, with additions, updates and deletions). */
  diff: RefreshHandle;
}

/** Real refreshes, so the UI has something true to show. */
async function tellTheStory(server: DevServer, db: Db, emulator: HttpListEmulator): Promise<Story> {
  const client = new DeltasyncClient(server.env.client, { tenant: TENANT });

  await createCustomersTable(db);
  await seedCustomers(db, 60_000);
  await createCustomersTable(db, VIP_TABLE);
  await seedCustomers(db, 5_000, { table: VIP_TABLE });

  const dataset = (table: string) => ({
    table,
    key: 'customer_key',
    attributes: ['email', 'name', 'country', 'segment'],
  });
  const httpList = (listId: string, tokenSecret = 'DOCS_LIST_TOKEN') => ({
    type: 'http-list' as const,
    baseUrl: emulator.url,
    listId,
    tokenSecret,
    recordsPerCall: 1000,
  });
  await client.connectors.apply({
    id: NEWSLETTER,
    dataset: dataset(CUSTOMERS_TABLE),
    destination: httpList('newsletter'),
  } satisfies ConnectorInput);
  await client.connectors.apply({
    id: PARTNER,
    dataset: dataset(CUSTOMERS_TABLE),
    destination: httpList('partner', 'DOCS_PARTNER_TOKEN'),
  });
  await client.connectors.apply({
    id: VIP,
    dataset: dataset(VIP_TABLE),
    destination: httpList('vip'),
  });

  say('newsletter: first push, a diff, a no-op');
  await client.refresh(NEWSLETTER);
  await churnCustomers(db, { additions: 1_200, deletions: 450, changes: 800 });
  const diff = await client.startRefresh(NEWSLETTER);
  await diff.result();
  await client.refresh(NEWSLETTER);

  say('vip audience: first push, then 40% of the dataset disappears: the run waits at the guard');
  await client.refresh(VIP);
  await db(VIP_TABLE).where('customer_key', '<=', 'cust-0002000').delete();
  const guarded = await client.startRefresh(VIP);
  await until(async () => (await guarded.progress()).phase === 'awaiting approval', 'the guard');

  say('partner export: a bad token fails the run');
  const failed = await client.startRefresh(PARTNER);
  await failed.result().then(
    () => Promise.reject(new Error('the partner export was expected to fail')),
    () => undefined,
  );

  say('newsletter: a full push slowed down to ~8 s per call, left running');
  emulator.faults.set({ latencyMs: 8000 });
  const running = await client.startRefresh(NEWSLETTER, { strategy: 'full' });
  await until(async () => (await running.progress()).sending !== null, 'the first heartbeat');
  return { client, running, guarded, failed, diff };
}

async function capture(browser: Browser, server: DevServer, story: Story, emulator: HttpListEmulator) {
  fs.mkdirSync(IMAGES, { recursive: true });
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  const ui = new Ui(page, server.uiUrl!);
  const { running, guarded, failed, diff } = story;

  // The list of a connector's runs, with the deltasync search attributes as columns.
  await ui.open(listPath(`DeltasyncConnectorId="${NEWSLETTER}"`));
  await ui.rows(4);
  await ui.configureColumns();
  await ui.shot('ui-runs-of-a-connector.png', 'The runs of crm-newsletter, newest first');

  // The running full push: phase, summaries, the progress query, the pending send.
  await ui.open(runPath(NEWSLETTER, running, 'user-metadata'));
  await ui.markdown(`${NEWSLETTER}**: full`);
  await ui.shot('ui-running-current-details.png', 'current details = phase; activity summaries');

  await ui.open(runPath(NEWSLETTER, running, 'history'));
  await page
    .getByText(/sendChanges • send [\d,]+ records \(full push\)/)
    .filter({ visible: true })
    .waitFor();
  await ui.shot('ui-running-history.png', 'the running send in the timeline', TALL);

  await ui.open(runPath(NEWSLETTER, running, 'query'));
  await page.getByRole('button', { name: 'Run Query' }).filter({ visible: true }).click();
  await page.getByText('"completedPhases"').filter({ visible: true }).waitFor();
  await ui.shot('ui-progress-query.png', 'the progress query');

  // Wait for a heartbeat after the first one, so the tab shows counters that have moved.
  const firstBeat = (await sendHeartbeat(running))?.recordsDone ?? 0;
  await until(
    async () => ((await sendHeartbeat(running))?.recordsDone ?? 0) > firstBeat,
    'a second heartbeat',
  );
  await ui.open(runPath(NEWSLETTER, running, 'pending-activities'));
  await page.getByText('Heartbeat Details').filter({ visible: true }).first().waitFor();
  await page.getByText('"recordsDone"').filter({ visible: true }).first().waitFor();
  // The heartbeat carries counts only: no record key may show up in it.
  if ((await page.getByText('"cursor"').count()) > 0 || (await page.getByText(/cust-\d/).count()) > 0)
    throw new Error('the pending send shows a record key in its heartbeat details');
  await ui.shot('ui-pending-activity-heartbeat.png', 'the send counters');

  await ui.open(runPath(NEWSLETTER, running, 'history'));
  await ui.openActionsMenu();
  await ui.shot('ui-actions-menu.png', 'Request Cancellation, Reset, Send an Update, Terminate');
  await page.keyboard.press('Escape');

  // The guarded run: what it waits for, and the approve update sent from the UI.
  await ui.open(runPath(VIP, guarded, 'user-metadata'));
  await ui.markdown('is waiting for approval');
  await ui.shot('ui-guard-waiting.png', 'a run waiting at the mass-delete guard');

  await ui.open(runPath(VIP, guarded, 'history'));
  await ui.openActionsMenu();
  await page.getByText('Send an Update', { exact: true }).filter({ visible: true }).click();
  const dialog = ui.dialog('update');
  await dialog.getByTestId('update-select-button').click();
  await dialog.getByRole('option', { name: 'approve', exact: true }).click();
  await dialog.locator('[contenteditable="true"][data-language="json"]').click();
  await page.keyboard.insertText(
    JSON.stringify({ by: 'ops@example.com', note: 'the upstream job really removed them' }),
  );
  // Leaving the editor pretty-prints the JSON, which moves the Submit button: leave it first.
  await dialog.getByTestId('update-id').click();
  await dialog.locator('.cm-line').filter({ hasText: '"note"' }).waitFor();
  await ui.shot('ui-send-update-approve.png', 'Send an Update: approve');
  const answer = page.waitForResponse((r) => r.url().includes('/update/approve'));
  await dialog.getByTestId('confirm-modal-button').click();
  const response = await answer;
  if (!response.ok())
    throw new Error(`the UI's update failed: ${response.status()} ${await response.text()}`);
  // The page follows the run: the update, the decision, then the held deletions going out.
  await page
    .getByText(/sendChanges • send [\d,]+ deletions/)
    .filter({ visible: true })
    .waitFor();
  await ui.shot('ui-guard-approved.png', 'the approve update in the timeline', TALL);
  const approved = await guarded.result();
  say(`  vip-audience approved from the UI: ${approved.status}, ${approved.deletions} deletions sent`);

  // Cancel the running full push from the UI.
  await ui.open(runPath(NEWSLETTER, running, 'history'));
  await page.getByRole('button', { name: 'Request Cancellation' }).filter({ visible: true }).click();
  await ui.shot('ui-cancel-confirm.png', 'Cancel Workflow');
  const calls = watchCalls(emulator);
  const cancelledAt = Date.now();
  await ui.dialog('cancel').getByTestId('confirm-modal-button').click();
  await running.result().then(
    () => Promise.reject(new Error('the cancelled run completed')),
    () => undefined,
  );
  const closedAfterMs = Date.now() - cancelledAt;
  // A call takes 8 s here: 20 s without one means the send has stopped.
  const { moreCalls, lastCallAfterMs } = await calls.settle(20_000);
  say(
    `  cancelled from the UI: the workflow closed after ${closedAfterMs} ms; the send made ${moreCalls} ` +
      `more call(s), the last ${lastCallAfterMs} ms after the request`,
  );
  await ui.open(runPath(NEWSLETTER, running, 'history'));
  await page.getByText('Canceled', { exact: true }).filter({ visible: true }).first().waitFor();
  await ui.shot('ui-cancelled-run.png', 'a cancelled run', TALL);
  emulator.faults.clear();

  // The failed run, and a retry by Reset once the token is fixed.
  await ui.open(runPath(PARTNER, failed, 'history'));
  await page
    .getByText(/401 Unauthorized/)
    .filter({ visible: true })
    .first()
    .waitFor();
  await ui.shot('ui-failed-run.png', 'a failed run and its error', TALL);

  process.env[PARTNER_TOKEN] = process.env[LIST_TOKEN];
  await page.getByRole('button', { name: 'Reset' }).filter({ visible: true }).click();
  const reset = ui.dialog('reset');
  await reset.getByTestId('workflow-reset-event-id-select-button').click();
  await reset.getByRole('option').first().click();
  await reset.getByRole('listbox').waitFor({ state: 'hidden' });
  // The exclude-signals/updates boxes keep their defaults: a refresh takes no signals, and an
  // approve or reject re-applied at its start would be refused (no run waits at the guard yet).
  await reset.getByRole('textbox').last().fill('token rotated: DOCS_PARTNER_TOKEN fixed');
  await ui.shot('ui-reset-dialog.png', 'Reset to the first workflow task');
  await reset.getByTestId('confirm-modal-button').click();
  const retried = await until(async () => {
    const runs = await story.client.runs(PARTNER);
    return runs.length === 2 && runs[0]!.status !== 'running' ? runs : undefined;
  }, 'the reset run of partner-export');
  say(`  partner-export after Reset: ${retried.map((r) => `run ${r.runId} ${r.status}`).join(', ')}`);

  await ui.open(listPath(`DeltasyncConnectorId="${PARTNER}"`));
  await ui.rows(2);
  await ui.shot('ui-retried-by-reset.png', 'the failed run and its reset');

  // A finished diff: activity summaries in the history, the summary in the memo.
  await ui.open(runPath(NEWSLETTER, diff, 'history'));
  await page
    .getByText(/sendChanges • send [\d,]+ deletions/)
    .filter({ visible: true })
    .waitFor();
  await ui.shot('ui-diff-history.png', 'activity summaries of a diff', TALL);
  await ui.open(runPath(NEWSLETTER, diff, 'memo'));
  await page.getByText('"summary"').filter({ visible: true }).waitFor();
  await ui.shot('ui-memo-summary.png', 'the run summary in the memo');

  // Tenant and outcome, in the raw query editor.
  const query = `WorkflowType="refreshConnector" AND DeltasyncTenant="default" AND DeltasyncOutcome IN ("failed", "cancelled")`;
  await ui.open(listPath(query));
  await ui.rows(2);
  await page.getByTestId('toggle-manual-query').click();
  await until(async () => (await page.locator('input#query').inputValue()) === query, 'the raw query');
  await page.mouse.move(700, 700); // away from the toggle's tooltip
  await ui.shot('ui-query-tenant-outcome.png', 'tenant and outcome query');
  await page.close();
}

/** The UI, one page: open a route and wait for the SPA to render it; screenshots. */
class Ui {
  constructor(
    readonly page: Page,
    readonly base: string,
  ) {}

  async open(route: string) {
    await this.page.goto(`${this.base}${route}`);
    await this.page.getByTestId('namespace-switcher').filter({ visible: true }).first().waitFor();
  }

  /** Waits until the workflow list shows `count` rows. */
  async rows(count: number) {
    const rows = this.page.locator('table tbody tr').filter({ visible: true });
    await until(async () => (await rows.count()) === count, `${count} rows in the workflow list`, 30_000);
  }

  async configureColumns() {
    const page = this.page;
    await page.getByTestId('workflows-summary-table-configuration-button').click();
    for (const column of ['Run ID', 'Type', 'End']) await page.getByLabel(`Remove ${column} column`).click();
    for (const column of ['DeltasyncOutcome', 'DeltasyncStrategy', 'DeltasyncTenant'])
      await page.getByLabel(`Add ${column} column`).click();
    await page.getByRole('button', { name: 'Close' }).filter({ visible: true }).first().click();
    await page.getByText('Configure Workflows Table').waitFor({ state: 'hidden' });
    await page.getByLabel('Collapse saved views').click();
    await page.getByRole('columnheader', { name: 'DeltasyncTenant' }).waitFor();
  }

  /**
   * Waits for a rendered Markdown text (summaries and current details render in an iframe) whose
   * source contains `source`.
   */
  async markdown(source: string) {
    const frame = this.page.locator(`iframe[title="output"][src*="${encodeURIComponent(source)}"]`);
    await frame.filter({ visible: true }).first().waitFor();
    await this.page
      .frameLocator(`iframe[title="output"][src*="${encodeURIComponent(source)}"]`)
      .first()
      .locator('strong')
      .first()
      .waitFor();
  }

  async openActionsMenu() {
    await this.page.locator('button[aria-controls="workflow-actions"]').filter({ visible: true }).click();
    await this.page.getByText('Send an Update', { exact: true }).filter({ visible: true }).waitFor();
  }

  /** One of the workflow page's confirmation dialogs, open. */
  dialog(kind: 'update' | 'cancel' | 'reset') {
    return this.page.locator(`dialog[open][data-testid="${kind}-confirmation-modal"]`);
  }

  async shot(file: string, what: string, size: { height: number } = { height: 900 }) {
    await this.page.setViewportSize({ width: 1440, height: size.height });
    // What the picture needs was waited for by the caller; this lets CSS transitions and the
    // resize settle (the UI polls a running workflow, so the network is never idle to wait for).
    await this.page.waitForTimeout(400);
    await this.page.screenshot({ path: path.join(IMAGES, file) });
    await this.page.setViewportSize({ width: 1440, height: 900 });
    say(`  docs/images/${file}: ${what}`);
  }
}

function listPath(query: string) {
  return `/namespaces/default/workflows?query=${encodeURIComponent(query)}`;
}

/** A run's page: its workflow id (`deltasync-refresh-<id>@<tenant>`, `@` → `%40`) in the path. */
function runPath(connectorId: string, run: RefreshHandle, tab: string) {
  const workflowId = refreshWorkflowId(TENANT, connectorId);
  if (run.workflowId !== workflowId)
    throw new Error(`${run.workflowId} is not the refresh of ${connectorId}`);
  return `/namespaces/default/workflows/${encodeURIComponent(workflowId)}/${encodeURIComponent(run.runId)}/${tab}`;
}

/** The send activity's last heartbeat as the server holds it (what the Pending Activities tab shows). */
async function sendHeartbeat(run: RefreshHandle): Promise<SendProgress | null> {
  return (await run.progress()).sending;
}

/** Watches the emulator's add calls from now on: how many more, and when the last one came. */
function watchCalls(emulator: HttpListEmulator) {
  const start = { calls: emulator.stats().calls.add, at: Date.now() };
  let last = { ...start };
  const timer = setInterval(() => {
    const calls = emulator.stats().calls.add;
    if (calls !== last.calls) last = { calls, at: Date.now() };
  }, 50);
  return {
    /** Waits until no call came for `quietMs`, then reports. */
    async settle(quietMs: number) {
      while (Date.now() - last.at < quietMs) await sleep(100);
      clearInterval(timer);
      return { moreCalls: last.calls - start.calls, lastCallAfterMs: last.at - start.at };
    },
  };
}

/** Polls `check` every 250 ms until it returns something other than false or undefined. */
async function until<T>(
  check: () => Promise<T | false | undefined>,
  what: string,
  timeoutMs = 120_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = await check();
    if (result !== false && result !== undefined) return result;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
