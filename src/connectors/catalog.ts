import type { DestinationModule } from './kit/module';
import {
  InvalidConnectorError,
  parseConnector,
  problemsOf,
  type ConnectorDefinition,
} from '../core/connector';

/**
 * Every destination type a connector can use, and where its module lives. A module is loaded the
 * first time a connector of its type is validated or built, so a process that only talks to
 * Temporal (the CLI, the client) never loads an HTTP client, a Redis driver or a database driver
 * it does not use. To add a destination: a folder with its module, and one entry here
 * (docs/connectors.md walks through it).
 */

interface CatalogEntry {
  type: string;
  /** One line for docs and `deltasync destinations`: the API class it represents. */
  description: string;
  load: () => DestinationModule;
}

/* eslint-disable @typescript-eslint/no-require-imports -- loaded on first use, see above */
export const destinationCatalog: readonly CatalogEntry[] = [
  {
    type: 'http-list',
    description: 'generic HTTP list API: add/remove, truncate and list members, as declared in `supports`',
    load: () => (require('./http-list') as typeof import('./http-list')).httpListDestination,
  },
  {
    type: 'sql-table',
    description: 'a table in another database (knex): upsert, delete, truncate and list members',
    load: () => (require('./sql-table') as typeof import('./sql-table')).sqlTableDestination,
  },
  {
    type: 'meta-custom-audience',
    description:
      'Meta Custom Audience (Marketing API): hashed e-mail/phone add/remove, new list + swap via usersreplace sessions',
    load: () =>
      (require('./meta-custom-audience') as typeof import('./meta-custom-audience'))
        .metaCustomAudienceDestination,
  },
  {
    type: 'google-customer-match',
    description:
      'Google Ads Customer Match user list: hashed e-mail/phone add/remove as offline user data jobs; remove_all for truncate and new list + swap',
    load: () =>
      (require('./google-customer-match') as typeof import('./google-customer-match'))
        .googleCustomerMatchDestination,
  },
  {
    type: 'hubspot-list',
    description:
      'HubSpot list (CRM Lists v3, MANUAL/SNAPSHOT): add/remove record ids, truncate, list members; key = record id',
    load: () => (require('./hubspot-list') as typeof import('./hubspot-list')).hubspotListDestination,
  },
  {
    type: 'mailchimp-audience',
    description:
      'Mailchimp audience: batch upsert with merge fields (500 per call), archive, list members; key = e-mail; 10 connections',
    load: () =>
      (require('./mailchimp-audience') as typeof import('./mailchimp-audience')).mailchimpAudienceDestination,
  },
  {
    type: 'klaviyo-list',
    description:
      'Klaviyo list keyed by e-mail: bulk import jobs upsert profile attributes and join the list, removals by profile id, members read back',
    load: () => (require('./klaviyo-list') as typeof import('./klaviyo-list')).klaviyoListDestination,
  },
  {
    type: 'braze-attributes',
    description:
      'Braze users (external_id) flagged by a membership attribute through /users/track, with the dataset attributes',
    load: () =>
      (require('./braze-attributes') as typeof import('./braze-attributes')).brazeAttributesDestination,
  },
  {
    type: 'redis-set',
    description:
      'a Redis set (SADD/SREM/DEL/SSCAN, new list by RENAME): stores member keys only, no attributes',
    load: () => (require('./redis-set') as typeof import('./redis-set')).redisSetDestination,
  },
  {
    type: 'file-drop',
    description:
      'files in a directory (ndjson or csv): every refresh writes a new file and manifest.json names the current one (new list + swap only)',
    load: () => (require('./file-drop') as typeof import('./file-drop')).fileDropDestination,
  },
  // new destinations: one entry each, above this comment
];
/* eslint-enable @typescript-eslint/no-require-imports */

export const destinationTypes = destinationCatalog.map((entry) => entry.type);

const loaded = new Map<string, DestinationModule>();

/** The module of a destination type (loaded on first use), or undefined for an unknown type. */
export function destinationModule(type: string): DestinationModule | undefined {
  const cached = loaded.get(type);
  if (cached) return cached;
  const entry = destinationCatalog.find((e) => e.type === type);
  if (!entry) return undefined;
  const module = entry.load();
  loaded.set(type, module);
  return module;
}

/**
 * A connector validated in full: its own fields (core/connector.ts) and its destination's settings
 * by the destination's schema, with defaults applied. Every message names its field
 * (`destination.baseUrl: Invalid URL`).
 */
export function validateConnector(input: unknown): ConnectorDefinition {
  // The connector's own fields and its destination's settings are checked both, so every bad
  // field is named at once.
  let connector: ConnectorDefinition | undefined;
  const problems: string[] = [];
  try {
    connector = parseConnector(input);
  } catch (error) {
    if (!(error instanceof InvalidConnectorError)) throw error;
    problems.push(...error.problems);
  }
  const destination = (input as { destination?: unknown } | null)?.destination;
  const type = (destination as { type?: unknown } | null | undefined)?.type;
  let settings: ConnectorDefinition['destination'] | undefined;
  if (typeof type === 'string' && type.length > 0) {
    const module = destinationModule(type);
    if (!module) {
      problems.push(
        `destination.type: unknown destination type '${type}' (one of: ${destinationTypes.join(', ')})`,
      );
    } else {
      const parsed = module.configSchema.safeParse(destination);
      if (parsed.success) settings = parsed.data;
      else problems.push(...problemsOf(parsed.error, ['destination']));
    }
  }
  if (problems.length > 0 || !connector || !settings) throw new InvalidConnectorError(problems);
  return { ...connector, destination: settings };
}
