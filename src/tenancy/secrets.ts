import fs from 'node:fs';
import YAML from 'yaml';
import type { SecretResolver } from '../core/destination';
import { SECRET_NAME, secretEnvName } from './secret-names';

/**
 * Credentials are referred to by name and resolved only inside activities, only among the
 * secrets of the connector's own tenant:
 *
 * - the environment variable `DELTASYNC_SECRET_<TENANT>__<NAME>` (tenant upper-cased, `-` → `_`),
 * - else the tenant's section of the secrets file (`DELTASYNC_SECRETS_FILE`, YAML or JSON):
 *   `{ acme: { CRM_TOKEN: "…" }, default: { … } }`.
 *
 * Nothing else: `HOME`, `DELTASYNC_DATABASE_URL` or another tenant's token are not secrets of any
 * tenant, so no connector can name them. Values never reach workflow history, logs or the database.
 */

export interface SecretStore {
  /** A resolver that sees only `tenant`'s secrets. */
  forTenant(tenant: string): SecretResolver;
  /** Whether `tenant` has a secret called `name` (for validation, before anything is sent). */
  has(tenant: string, name: string): boolean;
  /** Where to define a missing secret, for error messages. */
  hint(tenant: string, name: string): string;
}

export class MissingSecretError extends Error {
  override name = 'MissingSecretError';
}

export function createSecretStore(
  env: NodeJS.ProcessEnv = process.env,
  file: string | undefined = env.DELTASYNC_SECRETS_FILE,
): SecretStore {
  let fileSecrets: Record<string, Record<string, string>> | undefined;
  const fromFile = (tenant: string, name: string): string | undefined => {
    if (!file) return undefined;
    fileSecrets ??= readSecretsFile(file);
    return Object.hasOwn(fileSecrets, tenant) && Object.hasOwn(fileSecrets[tenant]!, name)
      ? fileSecrets[tenant]![name]
      : undefined;
  };
  const lookup = (tenant: string, name: string): string | undefined => {
    if (!SECRET_NAME.test(name)) return undefined;
    const fromEnv = env[secretEnvName(tenant, name)];
    if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
    return fromFile(tenant, name);
  };
  const hint = (tenant: string, name: string) =>
    SECRET_NAME.test(name)
      ? `set ${secretEnvName(tenant, name)}=… in the worker's environment, or add ${name} under '${tenant}' in the secrets file (DELTASYNC_SECRETS_FILE)`
      : `secret names are upper-case letters, digits and _ (e.g. CRM_TOKEN)`;
  return {
    forTenant: (tenant) => (name) => {
      const value = lookup(tenant, name);
      if (value !== undefined) return value;
      throw new MissingSecretError(`tenant '${tenant}' has no secret '${name}': ${hint(tenant, name)}`);
    },
    has: (tenant, name) => lookup(tenant, name) !== undefined,
    hint,
  };
}

/** `{ <tenant>: { <NAME>: value } }` as YAML or JSON. */
function readSecretsFile(file: string): Record<string, Record<string, string>> {
  let parsed: unknown;
  try {
    // YAML.parse reads JSON too. Its messages quote the text around an error: secret values.
    parsed = YAML.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    const reason = error instanceof Error && 'code' in error ? String(error.code) : 'not YAML or JSON';
    throw new MissingSecretError(`the secrets file ${file} cannot be read (${reason})`);
  }
  const shapeError = new MissingSecretError(
    `the secrets file ${file} must group secrets by tenant: { "<tenant>": { "<NAME>": "<value>" } }`,
  );
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw shapeError;
  const secrets: Record<string, Record<string, string>> = {};
  for (const [tenant, section] of Object.entries(parsed)) {
    if (section === null || typeof section !== 'object' || Array.isArray(section)) throw shapeError;
    secrets[tenant] = {};
    for (const [name, value] of Object.entries(section as Record<string, unknown>)) {
      if (typeof value === 'string' || typeof value === 'number') secrets[tenant][name] = String(value);
    }
  }
  return secrets;
}
