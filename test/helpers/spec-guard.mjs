/* global process, console */
/**
 * Loaded before every test file (scripts/test.sh): a test file whose emulators recorded a spec
 * violation (src/connectors/kit/vendor-spec.ts) that no test took fails, with the violations
 * printed. So a request or answer that breaks a vendor's published spec fails the default test run
 * even when the connector coped with the emulator's refusal. Plain JavaScript: worker threads
 * (Temporal's workflow worker) load it too, before any TypeScript loader.
 */
const REGISTRY = Symbol.for('deltasync.specViolations');

process.on('exit', () => {
  const violations = globalThis[REGISTRY]?.violations ?? [];
  if (violations.length === 0) return;
  console.error(`\n${violations.length} exchange(s) broke a vendor's published spec (test/vendor-specs/):`);
  for (const v of violations.slice(0, 20)) {
    console.error(`  ${v.emulator} ${v.endpoint} ${v.direction}: ${v.problems.join('; ')}`);
  }
  process.exitCode = 1;
});
