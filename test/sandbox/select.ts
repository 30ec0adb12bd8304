import { existsSync } from 'node:fs';
import path from 'node:path';
import { destinationCatalog } from '../../src/connectors/catalog';
import type { SandboxHarness } from '../../src/connectors/kit/contract';

/**
 * Which vendor sandboxes `npm run test:sandbox` runs the contract on, and whether it has what it
 * needs: the destinations named (default: every one with a sandbox.ts), each with every variable
 * its harness requires. Anything missing is an error that names it — the run can never pass by
 * testing nothing.
 */

export interface Selection {
  harnesses: SandboxHarness[];
  /** One paragraph per problem: an unknown type, a destination without a sandbox, missing variables. */
  problems: string[];
}

/** Destinations whose folder has a sandbox.ts (a vendor behind them: not SQL, Redis, files or http-list). */
export function sandboxHarnesses(): SandboxHarness[] {
  return destinationCatalog.flatMap(({ type }) => {
    const file = path.join(__dirname, '../../src/connectors', type, 'sandbox.ts');
    if (!existsSync(file)) return [];
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- the folder's sandbox, by name
    const { sandboxHarness } = require(file) as { sandboxHarness?: SandboxHarness };
    if (!sandboxHarness) throw new Error(`${file} exports no sandboxHarness`);
    return [sandboxHarness];
  });
}

export function selectSandboxes(names: string[], env: NodeJS.ProcessEnv): Selection {
  const available = sandboxHarnesses();
  const problems: string[] = [];
  if (available.length === 0)
    problems.push('no destination has a sandbox harness (src/connectors/*/sandbox.ts)');
  const wanted = names.length > 0 ? names : available.map((h) => h.type);
  const harnesses: SandboxHarness[] = [];
  for (const name of wanted) {
    const harness = available.find((h) => h.type === name);
    if (!harness) {
      const known = destinationCatalog.some((entry) => entry.type === name);
      problems.push(
        known
          ? `${name} has no vendor sandbox (it talks to your own servers; the default test run covers it)`
          : `${name} is not a destination type (those with a sandbox: ${available.map((h) => h.type).join(', ')})`,
      );
      continue;
    }
    const missing = Object.entries(harness.requires).filter(([variable]) => !env[variable]);
    if (missing.length > 0) {
      problems.push(
        `${name}: missing ${missing.map(([variable, what]) => `${variable} (${what})`).join(', ')}.\n  ${harness.howTo}`,
      );
      continue;
    }
    harnesses.push(harness);
  }
  return { harnesses, problems };
}

/** The variables a harness requires, from the environment. */
export function envFor(harness: SandboxHarness, env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(Object.keys(harness.requires).map((variable) => [variable, env[variable]!]));
}

/**
 * The harnesses `DELTASYNC_SANDBOX` names (space or comma separated; none: all), each with all it
 * needs; otherwise says what is missing and exits 1, before any test can run.
 */
export function sandboxesOrExit(env: NodeJS.ProcessEnv = process.env): SandboxHarness[] {
  const names = (env.DELTASYNC_SANDBOX ?? '').split(/[\s,]+/).filter(Boolean);
  const { harnesses, problems } = selectSandboxes(names, env);
  if (problems.length > 0) {
    console.error(`test:sandbox cannot run:\n${problems.map((p) => `- ${p}`).join('\n')}`);
    process.exit(1);
  }
  return harnesses;
}
