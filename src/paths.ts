import path from 'node:path';

/**
 * The root of the code that runs: the repository (sources through tsx), or dist/ (the compiled
 * build, dist/src/paths.js). Its migrations/ are the ones this code can load.
 */
export const codeRoot = path.resolve(__dirname, '..');

/** Repository root, so data and migrations are found whatever the working directory (and build). */
export const projectRoot = path.basename(codeRoot) === 'dist' ? path.dirname(codeRoot) : codeRoot;

/** Project-local folder for the embedded database and the Temporal dev server's state. */
export function dataDir(): string {
  return process.env.DELTASYNC_DATA_DIR ?? path.join(projectRoot, 'data');
}
