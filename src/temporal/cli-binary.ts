import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** The Temporal CLI version our setup builds; later tags cannot be `go install`ed. */
export const TEMPORAL_CLI_VERSION = '1.5.1';

/**
 * Where the Temporal CLI (dev server) is: `TEMPORAL_CLI_PATH`, a `temporal` on PATH, or the
 * build cached by scripts/setup.sh. Undefined means: let the SDK download one (needs internet).
 */
export function findTemporalCli(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.TEMPORAL_CLI_PATH) {
    if (!isExecutable(env.TEMPORAL_CLI_PATH)) {
      throw new Error(`TEMPORAL_CLI_PATH=${env.TEMPORAL_CLI_PATH} is not an executable file`);
    }
    return env.TEMPORAL_CLI_PATH;
  }
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, 'temporal');
    if (dir && isExecutable(candidate)) return candidate;
  }
  const cacheRoot = env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache');
  const cached = path.join(cacheRoot, 'deltasync', 'bin', `temporal-${TEMPORAL_CLI_VERSION}`);
  return isExecutable(cached) ? cached : undefined;
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}
