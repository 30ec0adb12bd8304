import fs from 'node:fs';
import type { SecretResolver } from './types';

/**
 * Credentials are referred to by name in connector configs and resolved only inside activities,
 * so their values never reach workflow history, logs or the database. A name is looked up in the
 * environment first, then in the secrets file (`DELTASYNC_SECRETS_FILE`: JSON object or
 * `NAME=value` lines).
 */
export function createSecretResolver(
  env: NodeJS.ProcessEnv = process.env,
  file: string | undefined = env.DELTASYNC_SECRETS_FILE,
): SecretResolver {
  let fileSecrets: Record<string, string> | undefined;
  return (name) => {
    const fromEnv = env[name];
    if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
    if (file) {
      fileSecrets ??= readSecretsFile(file);
      const fromFile = fileSecrets[name];
      if (fromFile !== undefined) return fromFile;
    }
    throw new Error(
      `secret '${name}' is not set: export ${name}=… or add it to the secrets file named by DELTASYNC_SECRETS_FILE`,
    );
  };
}

function readSecretsFile(file: string): Record<string, string> {
  const text = fs.readFileSync(file, 'utf8');
  if (text.trimStart().startsWith('{')) {
    try {
      return JSON.parse(text) as Record<string, string>;
    } catch {
      // The parser's message quotes the file around the error, secret values included.
      throw new Error(`the secrets file ${file} is not valid JSON`);
    }
  }
  const secrets: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const match = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/.exec(line);
    if (match) secrets[match[1]!] = match[2]!.replace(/^(['"])(.*)\1$/, '$2');
  }
  return secrets;
}
