#!/usr/bin/env bash
# Runs every test file with Node's test runner (TypeScript through tsx). Pass file paths to run a subset.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -gt 0 ]; then files=("$@"); else mapfile -t files < <(find test -name "*.test.ts" | sort); fi
exec node --import tsx --import ./test/helpers/spec-guard.mjs --test --test-concurrency=2 --test-reporter=spec "${files[@]}"
