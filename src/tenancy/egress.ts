import fs from 'node:fs';
import path from 'node:path';
import { withRequestGuard } from '../connectors/kit/request-guard';
import type { Target } from '../core/destination';
import type { DestinationAllowlist } from './policy';

/**
 * What a tenant may write: every destination declares its targets (origins it calls, directories,
 * tables, Redis keys), and each target must be on the tenant's allowlist in the tenants policy.
 * Checked when a connector is saved and again before a refresh sends anything; HTTP requests are
 * also checked one by one while a refresh runs (see `withEgressPolicy`), so an answer that points
 * elsewhere (a redirect, a polling URL) cannot take a request off the allowed hosts.
 */

/** Problems with `targets` for this allowlist, one line each; empty when all are allowed. */
export function disallowedTargets(allowlist: DestinationAllowlist | 'any', targets: Target[]): string[] {
  if (allowlist === 'any') return [];
  return targets.flatMap((target) => {
    const problem = checkTarget(allowlist, target);
    return problem ? [problem] : [];
  });
}

function checkTarget(allow: DestinationAllowlist, target: Target): string | undefined {
  switch (target.kind) {
    case 'http': {
      const url = new URL(target.url);
      if (allow.origins.some((pattern) => originMatches(pattern, url))) return undefined;
      return `${target.field}: ${url.origin} is not among the origins this tenant may call (tenants policy destinations.origins)`;
    }
    case 'file': {
      const real = realPath(target.path);
      if (real === undefined) return `${target.field}: ${target.path} does not exist`;
      if (allow.fileRoots.some((root) => isInside(realPath(root) ?? root, real))) return undefined;
      return `${target.field}: ${target.path} is not under a directory this tenant may write (tenants policy destinations.fileRoots)`;
    }
    case 'mysql': {
      const ok = allow.sqlTables.some(
        (t) =>
          t.host === target.host &&
          t.port === target.port &&
          t.database === target.database &&
          t.tables.some((pattern) => globMatches(pattern, target.table)),
      );
      if (ok) return undefined;
      return `${target.field}: table ${target.database}.${target.table} on ${target.host}:${target.port} is not one this tenant may write (tenants policy destinations.sqlTables)`;
    }
    case 'redis': {
      const ok = allow.redisKeys.some(
        (r) =>
          r.host === target.host &&
          r.port === target.port &&
          r.db === target.db &&
          target.keys.every((key) => key.startsWith(r.keyPrefix)),
      );
      if (ok) return undefined;
      return `${target.field}: key '${target.keys[0]}' in Redis ${target.host}:${target.port}/${target.db} is not one this tenant may write (tenants policy destinations.redisKeys)`;
    }
  }
}

function originMatches(pattern: string, url: URL): boolean {
  const match = /^(https?):\/\/([^:/]+)(?::(\d+|\*))?$/.exec(pattern);
  if (!match) return false;
  const [, scheme, host, port] = match;
  if (`${scheme}:` !== url.protocol || host!.toLowerCase() !== url.hostname.toLowerCase()) return false;
  if (port === '*') return true;
  const defaultPort = url.protocol === 'https:' ? '443' : '80';
  return (port ?? defaultPort) === (url.port || defaultPort);
}

function globMatches(pattern: string, value: string): boolean {
  const regex = new RegExp(`^${pattern.split('*').map(escapeRegExp).join('.*')}$`);
  return regex.test(value);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The path with symbolic links resolved (a link cannot lead out of a root), or undefined. */
function realPath(p: string): string | undefined {
  try {
    return fs.realpathSync(p);
  } catch {
    return undefined;
  }
}

function isInside(root: string, candidate: string): boolean {
  const relative = path.relative(root, candidate);
  return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
}

// ---------------------------------------------------------------------------------------------
// Per-request checks while a refresh runs
// ---------------------------------------------------------------------------------------------

/** Run `work` (an activity's destination calls) with every HTTP request held to `tenant`'s allowlist. */
export function withEgressPolicy<T>(
  tenant: string,
  allowlist: DestinationAllowlist | 'any',
  work: () => Promise<T>,
): Promise<T> {
  if (allowlist === 'any') return work();
  return withRequestGuard((url) => {
    if (allowlist.origins.some((pattern) => originMatches(pattern, url))) return undefined;
    return `refused to call ${url.origin}: not among the origins tenant '${tenant}' may call (tenants policy destinations.origins)`;
  }, work);
}
