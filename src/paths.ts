import path from 'node:path';

/** Repository root, so data and migrations are found whatever the working directory. */
export const projectRoot = path.resolve(__dirname, '..');

/** Project-local folder for the embedded database and the Temporal dev server's state. */
export function dataDir(): string {
  return process.env.DELTASYNC_DATA_DIR ?? path.join(projectRoot, 'data');
}
