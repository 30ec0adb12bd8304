import { contractSuite } from '../connectors/contract-suite';
import { envFor, selectSandboxes } from './select';

/**
 * The destination contract against the vendors' real sandboxes (opt-in: `npm run test:sandbox
 * [type …]`, see docs/connectors.md). Not part of the default run: it needs credentials and the
 * internet. Without every credential it needs it fails here, before any test, naming what is missing.
 */

const names = (process.env.DELTASYNC_SANDBOX ?? '').split(/[\s,]+/).filter(Boolean);
const { harnesses, problems } = selectSandboxes(names, process.env);
if (problems.length > 0) {
  console.error(`test:sandbox cannot run:\n${problems.map((p) => `- ${p}`).join('\n')}`);
  process.exit(1);
}

contractSuite(
  harnesses.map((harness) => ({
    type: harness.type,
    start: () => harness.start(envFor(harness, process.env)),
  })),
);
