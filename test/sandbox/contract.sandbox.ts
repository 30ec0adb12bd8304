import { contractSuite } from '../connectors/contract-suite';
import { envFor, sandboxesOrExit } from './select';

/**
 * The destination contract against the vendors' real sandboxes (opt-in: `npm run test:sandbox
 * [type …]`, see docs/connectors.md). Not part of the default run: it needs credentials and the
 * internet. Without every credential it needs it fails here, before any test, naming what is missing.
 */

const harnesses = sandboxesOrExit();

contractSuite(
  harnesses.map((harness) => ({
    type: harness.type,
    start: () => harness.start(envFor(harness, process.env)),
  })),
);
