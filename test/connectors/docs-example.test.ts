import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { capabilitiesOf, type Destination } from '../../src/core/destination';
import type { DestinationModule } from '../../src/connectors/kit/module';
import { counted, testContext } from '../helpers/destination-context';
import { fixedSecrets } from '../helpers/destinations';
import { startFakeServer } from '../helpers/fake-http';

/**
 * docs/connectors.md shows how to write a destination (`acme-list`). This runs that very code, as
 * the page prints it, against a fake Acme API: if the port or the kit change under it, the example
 * stops working here rather than in a reader's hands.
 */

const root = path.resolve(__dirname, '../..');

function exampleFromDocs(): string {
  const page = fs.readFileSync(path.join(root, 'docs/connectors.md'), 'utf8');
  const section = page.slice(page.indexOf('## Adding a destination'));
  const block = /```ts\n([\s\S]*?)```/.exec(section);
  assert.ok(block, 'docs/connectors.md shows a destination module');
  return block[1]!;
}

/** The example, written where its relative imports (`../kit`, `../../core/…`) resolve. */
function loadExample(): DestinationModule {
  const dir = path.join(root, 'src/connectors/.docs-example');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `acme-${process.pid}.ts`);
  fs.writeFileSync(file, exampleFromDocs());
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- a module written by this test
  return (require(file) as { acmeListDestination: DestinationModule }).acmeListDestination;
}

test('the destination docs/connectors.md shows builds, sends through the shared client and checks', async () => {
  const requests: { method: string; url: string; auth: string | undefined; body: string }[] = [];
  const server = await startFakeServer((req, res, body) => {
    requests.push({ method: req.method!, url: req.url!, auth: req.headers.authorization, body });
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
  after(() => server.close());

  const module = loadExample();
  const settings = module.configSchema.parse({
    type: 'acme-list',
    baseUrl: server.url,
    listId: 'vip',
    tokenSecret: 'ACME_TOKEN',
  });
  const { context } = testContext(fixedSecrets({ ACME_TOKEN: 't0ken' }));
  const destination: Destination = module.create(settings, context);

  assert.deepEqual(capabilitiesOf(destination), {
    add: true,
    remove: true,
    truncate: false,
    listMembers: false,
    updateAttributes: true,
    createList: false,
  });
  const added = await counted(() => destination.add!([{ key: 'a@example.com', attributes: {} }]));
  assert.deepEqual(added.value, { rejected: [] });
  assert.deepEqual(Object.keys(added.tallies), ['add'], 'counted by the shared client, at its endpoint');
  assert.equal(added.calls, 1);
  await destination.remove!(['a@example.com']);
  assert.match(await destination.check(), /acme list vip reachable/);
  assert.deepEqual(
    requests.map((r) => `${r.method} ${r.url} ${r.auth}`),
    [
      'POST /lists/vip/add Bearer t0ken',
      'POST /lists/vip/remove Bearer t0ken',
      'GET /lists/vip Bearer t0ken',
    ],
  );
  await destination.close();
});
