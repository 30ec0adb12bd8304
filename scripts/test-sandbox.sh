#!/usr/bin/env bash
# Opt-in: the destination contract against real vendor sandboxes, with credentials from the
# environment. `npm run test:sandbox [type …]` (default: every destination with a sandbox).
# Refuses, naming the missing variables, before running anything it cannot run in full.
set -euo pipefail
cd "$(dirname "$0")/.."
export DELTASYNC_SANDBOX="$*"
node --import tsx -e "
const { sandboxesOrExit } = require('./test/sandbox/select.ts');
console.log('test:sandbox: ' + sandboxesOrExit().map((h) => h.type).join(', '));
"
exec node --import tsx --import ./test/helpers/spec-guard.mjs --test --test-reporter=spec test/sandbox/contract.sandbox.ts
