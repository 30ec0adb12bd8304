import type { CountryCode } from 'libphonenumber-js';
import { z } from 'zod';
import { normalizeEmail, normalizeName, normalizePhone, sha256Hex } from '../core/identifiers';
import {
  CallTally,
  httpTarget,
  lazySecret,
  notAcknowledged,
  secretName,
  serviceUrl,
  type HttpConnectorOptions,
} from './kit';
import { createGraphClient, MetaGraphError } from './meta-graph';
import { defineDestination } from './module';
import { createThrottle } from './throttle';
import {
  DestinationError,
  type AttributeValue,
  type BatchOutcome,
  type Capabilities,
  type Destination,
  type Limits,
  type Member,
  type Rejection,
  type SecretResolver,
} from './types';

/**
 * `meta-custom-audience`: a Meta (Facebook/Instagram) customer-file Custom Audience, written
 * through the Marketing API:
 *
 *   POST   /{version}/{audience_id}/users         add people       (at most 10,000 per call)
 *   DELETE /{version}/{audience_id}/users         remove people    (same payload)
 *   POST   /{version}/{audience_id}/usersreplace  replace everyone, in a session of batches
 *
 * People are matched by SHA-256 hashes of normalised identifiers; raw identifiers never leave
 * this process. The dataset key is the primary identifier (an e-mail address or a phone number);
 * more identifier columns (phone, first name, …) come from the record's attributes.
 *
 * Requests, retries and Meta's throttling signals are handled by ./meta-graph.ts.
 *
 * Acknowledgement: per call, by count. Meta counts what it received (`num_received`) and how much
 * of it was invalid (`num_invalid_entries`) but names only a sample of the invalid entries. When
 * it received fewer than were sent, or names fewer invalid entries than it counts, which people it
 * took is unknown: every person of that call not named as invalid stays pending.
 */

export const META_TYPE = 'meta-custom-audience';

/** Multi-key schema columns this destination can fill from attributes (Meta's names). */
export const metaIdentifierKeys = [
  'EMAIL',
  'PHONE',
  'FN',
  'LN',
  'FI',
  'GEN',
  'DOBY',
  'DOBM',
  'DOBD',
  'CT',
  'ST',
  'ZIP',
  'COUNTRY',
] as const;
export type MetaIdentifierKey = (typeof metaIdentifierKeys)[number];

const columnName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_$.]*$/, 'must be an attribute name of the dataset (a plain identifier)');

export const metaCustomAudienceConfigSchema = z
  .object({
    type: z.literal(META_TYPE),
    /** Graph API root; only tests and proxies change it. */
    graphUrl: serviceUrl('graphUrl').default('https://graph.facebook.com'),
    apiVersion: z
      .string()
      .regex(/^v\d+\.\d+$/, 'apiVersion looks like v25.0')
      .default('v25.0'),
    /** The ad account that owns the audience; its rate budget is shared by all its audiences. */
    adAccountId: z.string().regex(/^act_\d+$/, 'adAccountId looks like act_1234567890'),
    audienceId: z.string().regex(/^\d+$/, 'audienceId is the numeric id of the Custom Audience'),
    /** Name of the secret holding a (system-user) access token with ads_management. */
    accessTokenSecret: secretName,
    /** What the dataset key is. */
    keyType: z.enum(['email', 'phone']).default('email'),
    /** Country for phone numbers written without a country code (ISO 3166-1 alpha-2, e.g. DE). */
    defaultCountry: z
      .string()
      .regex(/^[A-Z]{2}$/, 'defaultCountry is an ISO 3166-1 alpha-2 code such as DE')
      .optional(),
    /** Extra identifier columns, Meta key → attribute name, e.g. { PHONE: 'phone', FN: 'first_name' }. */
    attributeMap: z.partialRecord(z.enum(metaIdentifierKeys), columnName).default({}),
    /** Meta accepts at most 10,000 people per call. */
    recordsPerCall: z.number().int().min(1).max(10_000).default(10_000),
    callsPerSecond: z.number().positive().optional(),
    maxConcurrent: z.number().int().positive().optional(),
  })
  .refine((c) => c.attributeMap[primaryKeyOf(c.keyType)] === undefined, {
    message: 'attributeMap must not map the key column itself (the dataset key is already that identifier)',
    path: ['attributeMap'],
  });

export type MetaCustomAudienceConfig = z.output<typeof metaCustomAudienceConfigSchema>;
export type MetaCustomAudienceConfigInput = z.input<typeof metaCustomAudienceConfigSchema>;

function primaryKeyOf(keyType: 'email' | 'phone'): MetaIdentifierKey {
  return keyType === 'email' ? 'EMAIL' : 'PHONE';
}

// --- Normalisation (Meta's "Hashing and normalizing data" rules) ------------------------------

/** Letters only, lower case: Meta wants names and places without punctuation or spaces. */
function lettersOnly(raw: string): string | null {
  const letters = normalizeName(raw)?.replace(/[\s-]/g, '') ?? '';
  return letters === '' ? null : letters;
}

function twoDigits(raw: string, max: number): string | null {
  const n = Number(raw.trim());
  return /^\d{1,2}$/.test(raw.trim()) && n >= 1 && n <= max ? String(n).padStart(2, '0') : null;
}

type Normalizer = (raw: string, defaultCountry?: CountryCode) => string | null;

/**
 * One normaliser per Meta key; `null` means "not usable". E-mail: trimmed and lower-cased.
 * Phone: digits only, with the country code, without '+' or leading zeros (E.164 minus the '+').
 * Names, city, state: lower-case letters only. Gender: m/f. Dates: YYYY, MM, DD. Zip: lower
 * case without spaces, US ZIP+4 cut to 5 digits. Country: ISO alpha-2, lower case.
 */
export const metaNormalizers: Record<MetaIdentifierKey, Normalizer> = {
  EMAIL: (raw) => normalizeEmail(raw),
  PHONE: (raw, country) => normalizePhone(raw, country)?.replace(/^\+/, '') ?? null,
  FN: lettersOnly,
  LN: lettersOnly,
  FI: (raw) => Array.from(lettersOnly(raw) ?? '')[0] ?? null,
  GEN: (raw) => {
    const g = raw.trim().toLowerCase().charAt(0);
    return g === 'm' || g === 'f' ? g : null;
  },
  DOBY: (raw) => (/^\d{4}$/.test(raw.trim()) ? raw.trim() : null),
  DOBM: (raw) => twoDigits(raw, 12),
  DOBD: (raw) => twoDigits(raw, 31),
  CT: lettersOnly,
  ST: lettersOnly,
  ZIP: (raw) => {
    const zip = raw.trim().toLowerCase().replace(/\s/g, '');
    if (/^\d{5}-\d{4}$/.test(zip)) return zip.slice(0, 5);
    return zip === '' ? null : zip;
  },
  COUNTRY: (raw) => (/^[a-z]{2}$/i.test(raw.trim()) ? raw.trim().toLowerCase() : null),
};

/** The hash Meta matches on: SHA-256 of the normalised value, or null when it does not normalise. */
export function metaHash(key: MetaIdentifierKey, raw: string, defaultCountry?: string): string | null {
  const normalized = metaNormalizers[key](raw, defaultCountry as CountryCode | undefined);
  return normalized === null ? null : sha256Hex(normalized);
}

const invalidKeyReason: Record<'email' | 'phone', string> = {
  email: 'invalid e-mail: not sent to Meta',
  phone: 'invalid phone number (no country code and no valid defaultCountry?): not sent to Meta',
};

// --- Payloads ---------------------------------------------------------------------------------

const usersResponseSchema = z.object({
  audience_id: z.union([z.string(), z.number()]).optional(),
  session_id: z.union([z.string(), z.number()]).optional(),
  num_received: z.number(),
  num_invalid_entries: z.number().optional().default(0),
  // Documented as Map<string, string>: an invalid value as sent → why it is invalid.
  invalid_entry_samples: z
    .union([z.record(z.string(), z.string()), z.array(z.string())])
    .optional()
    .default({}),
});
type UsersResponse = z.output<typeof usersResponseSchema>;

/** One call's worth of people: Meta's payload, plus who each hash came from. */
interface EncodedBatch {
  payload: { schema: string | string[]; data: string[] | string[][] };
  /** Hash → dataset keys, to turn Meta's invalid_entry_samples back into rejections. */
  owners: Map<string, string[]>;
  keys: string[];
}

/** Meta's refusal to remove people when the audience would get too small ("Audience Size too Low"). */
function isAudienceTooSmall(err: unknown): err is MetaGraphError {
  return err instanceof MetaGraphError && err.is(200, 1870047);
}

export type MetaEndpoint = 'users:add' | 'users:remove' | 'usersreplace';

const nothingSent: BatchOutcome = { rejected: [], apiCalls: 0, rateLimitWaits: 0 };

// --- List ids ---------------------------------------------------------------------------------

/** A list id is the audience id, or `${audienceId}:${sessionId}` for one filled by a replace session. */
export function parseListId(listId: string): { audienceId: string; sessionId?: number } {
  const [audienceId, session, ...rest] = listId.split(':');
  if (
    !audienceId ||
    !/^\d+$/.test(audienceId) ||
    (session !== undefined && !/^\d+$/.test(session)) ||
    rest.length
  ) {
    throw new DestinationError(
      `${META_TYPE}: list id '${listId}' is neither an audience id nor audienceId:sessionId`,
      'fatal',
    );
  }
  return { audienceId, sessionId: session === undefined ? undefined : Number(session) };
}

/**
 * The replace session for a new list called `name`: derived from the name, so that a retried
 * createList gets the same session. 52 bits keep it exact as a JSON number.
 */
export function replaceSessionId(audienceId: string, name: string): number {
  return Number.parseInt(sha256Hex(`${audienceId}\n${name}`).slice(0, 13), 16);
}

// --- The destination --------------------------------------------------------------------------

/**
 * Next batch_seq per replace session, for the whole worker process: the engine fills a session
 * and swaps it in separate activities, each with its own destination, and Meta expects the
 * batches of one session numbered 1, 2, 3, … A worker restart in the middle of a session starts
 * the count again at 1 (Meta's reference does not say how it treats a repeated number).
 */
const nextBatchSeq = new Map<number, number>();

/**
 * Knobs for tests and tuning; production uses the defaults. Without a throttle, one per instance.
 */
export interface MetaCustomAudienceOptions extends HttpConnectorOptions {
  /** The list the connector points at now (after a swap, `audienceId:sessionId`). */
  listId?: string;
}

export function createMetaCustomAudienceDestination(
  input: MetaCustomAudienceConfigInput,
  secrets: SecretResolver,
  options: MetaCustomAudienceOptions = {},
): Destination {
  const config = metaCustomAudienceConfigSchema.parse(input);
  const { throttle = createThrottle(), listId, ...retry } = options;
  const limits: Limits = {
    recordsPerCall: config.recordsPerCall,
    callsPerSecond: config.callsPerSecond,
    maxConcurrent: config.maxConcurrent,
  };
  const account = `meta:${config.adAccountId}`;
  const encoder = createEncoder(config);
  const graph = createGraphClient({
    service: META_TYPE,
    baseUrl: `${config.graphUrl.replace(/\/+$/, '')}/${config.apiVersion}`,
    accessToken: lazySecret(secrets, config.accessTokenSecret, META_TYPE),
    schedule: (work) => throttle(account, limits, work),
    credentialsHint: `check the token in the secret named by accessTokenSecret ('${config.accessTokenSecret}'): it must be valid and have ads_management on ${config.adAccountId}`,
    fatalErrors: [
      {
        code: 100,
        subcode: 33, // "Object with ID … does not exist, cannot be loaded due to missing permissions"
        hint: (path) =>
          `audience '${path.split('/')[0]}' does not exist or the token may not use it: check audienceId and that the token's system user is assigned to ${config.adAccountId}`,
      },
      {
        code: 100,
        subcode: 1713230, // "Audience Upload Blocked" (operation_status 471)
        hint: () =>
          'the audience is flagged for its content: resolve the restriction in Audience Manager first',
      },
    ],
    retry,
  });

  const capabilities: Capabilities = {
    add: true,
    remove: true,
    truncate: false,
    listMembers: false,
    // Meta keeps no attributes, only identifiers. When identifier columns come from attributes
    // (attributeMap), a change to them must reach Meta, by adding the person again with the new
    // values; without such columns an attribute change has nothing to send.
    updateAttributes: Object.keys(config.attributeMap).length > 0,
    createList: true,
  };

  /** POSTs members in calls of at most recordsPerCall, with `extra` body fields per call. */
  async function upload(
    endpoint: MetaEndpoint,
    path: string,
    members: Member[],
    extra: () => Record<string, unknown> = () => ({}),
  ): Promise<BatchOutcome> {
    const tally = new CallTally();
    const rejected: Rejection[] = [];
    for (const chunk of chunks(members, config.recordsPerCall)) {
      const { batch, rejected: unusable } = encoder.members(chunk);
      rejected.push(...unusable);
      if (batch.keys.length === 0) continue;
      const result = await graph.request(
        { method: 'POST', path, body: { payload: batch.payload, ...extra() } },
        usersResponseSchema,
      );
      tally.count(endpoint, result);
      rejected.push(...rejectionsFrom(result.body, batch));
    }
    return tally.outcome(rejected);
  }

  async function removeFrom(audienceId: string, keys: string[]): Promise<BatchOutcome> {
    const tally = new CallTally();
    const rejected: Rejection[] = [];
    for (const chunk of chunks(keys, config.recordsPerCall)) {
      // A key that does not normalise was never sent, so Meta holds nothing under it: done.
      const batch = encoder.keys(chunk);
      if (batch.keys.length === 0) continue;
      try {
        const call = {
          method: 'DELETE' as const,
          path: `${audienceId}/users`,
          body: { payload: batch.payload },
        };
        const result = await graph.request(call, usersResponseSchema);
        tally.count('users:remove', result);
        rejected.push(...rejectionsFrom(result.body, batch));
      } catch (err) {
        if (!isAudienceTooSmall(err)) throw err;
        // Meta refuses the whole call. The deletions stay pending (the engine counts attempts)
        // and go again on the next run, when additions may have grown the audience.
        const reason = `refused by Meta: audience would fall below its minimum size (error ${err.code}/${err.subcode})`;
        tally.count('users:remove', err);
        rejected.push(...batch.keys.map((key) => ({ key, reason })));
      }
    }
    return tally.outcome(rejected);
  }

  /** The session fields of the next usersreplace call (batch_seq counts from 1 per session). */
  function sessionFields(sessionId: number, lastBatch: boolean): Record<string, unknown> {
    const batchSeq = nextBatchSeq.get(sessionId) ?? 1;
    if (lastBatch) nextBatchSeq.delete(sessionId);
    else nextBatchSeq.set(sessionId, batchSeq + 1);
    return { session: { session_id: sessionId, batch_seq: batchSeq, last_batch_flag: lastBatch } };
  }

  /**
   * The destination writing to `listId`. `filling` says whether its session part is a replace
   * session still being filled (a list from createList, reached through forList) or, for the
   * connector's live list, a session that finished with its swap: then writes go to the audience.
   */
  function forListId(listId: string, filling: boolean): Destination {
    const parsed = parseListId(listId);
    const audienceId = parsed.audienceId;
    const sessionId = filling ? parsed.sessionId : undefined;
    const refuse = (what: string): never => {
      throw new DestinationError(`${META_TYPE}: ${what}`, 'fatal');
    };

    return {
      type: META_TYPE,
      capabilities,
      limits,

      add: (members) =>
        sessionId === undefined
          ? upload('users:add', `${audienceId}/users`, members)
          : upload('usersreplace', `${audienceId}/usersreplace`, members, () =>
              sessionFields(sessionId, false),
            ),

      remove: async (keys) =>
        sessionId === undefined
          ? removeFrom(audienceId, keys)
          : refuse(
              `cannot remove from '${listId}', a replace session being filled (it only takes additions)`,
            ),

      truncate: async () =>
        refuse('a Custom Audience cannot be emptied in one call; use the diff or newList strategy'),

      listMembers: async () => refuse('Meta does not let anyone read the people in an audience'),

      // New list + swap on one audience: the "new list" is a usersreplace session. Its batches
      // stay invisible until the last one; then the audience is exactly what the session uploaded.
      createList: async (name) => ({
        listId: `${audienceId}:${replaceSessionId(audienceId, name)}`,
        outcome: nothingSent,
      }),

      forList: (id) => forListId(id, true),

      swapList: async (id) => {
        const target = parseListId(id);
        if (target.sessionId === undefined) return nothingSent;
        // An empty batch with last_batch_flag ends the session, whatever its last page was.
        const body = { payload: encoder.payload([]), ...sessionFields(target.sessionId, true) };
        const result = await graph.request(
          { method: 'POST', path: `${target.audienceId}/usersreplace`, body },
          usersResponseSchema,
        );
        const tally = new CallTally();
        tally.count('usersreplace', result);
        return tally.outcome([]);
      },

      // The old and the new list are the same audience: there is nothing to retire.
      deleteList: async () => nothingSent,

      close: async () => {
        // fetch's global connection pool needs no closing.
      },
    };
  }

  return forListId(listId ?? config.audienceId, false);
}

export const metaCustomAudienceDestination = defineDestination({
  type: META_TYPE,
  description:
    'Meta Custom Audience (Marketing API): hashed e-mail/phone add/remove, new list + swap via usersreplace sessions',
  configSchema: metaCustomAudienceConfigSchema,
  create: (config, context) =>
    createMetaCustomAudienceDestination(config, context.secrets, {
      throttle: context.throttle,
      listId: context.listId,
    }),
  targets: (config) => [httpTarget('destination.graphUrl', config.graphUrl)],
});

// --- Encoding ---------------------------------------------------------------------------------

/** Turns members and keys into Meta payloads of hashes; raw identifiers stop here. */
function createEncoder(config: MetaCustomAudienceConfig) {
  const primaryKey = primaryKeyOf(config.keyType);
  const extraColumns = Object.entries(config.attributeMap) as [MetaIdentifierKey, string][];
  const hashOf = (key: MetaIdentifierKey, raw: string) => metaHash(key, raw, config.defaultCountry);

  /** A single identifier goes as EMAIL_SHA256/PHONE_SHA256, several as a multi-key schema. */
  function payload(rows: string[][]): EncodedBatch['payload'] {
    if (extraColumns.length === 0)
      return { schema: `${primaryKey}_SHA256`, data: rows.map((row) => row[0]!) };
    return { schema: [primaryKey, ...extraColumns.map(([key]) => key)], data: rows };
  }

  /** An extra column that is empty or does not normalise is left blank, as Meta asks. */
  function cell(key: MetaIdentifierKey, value: AttributeValue | undefined): string {
    if (value === null || value === undefined || value === '') return '';
    return hashOf(key, String(value)) ?? '';
  }

  function batchOf(
    rows: { key: string; row: string[] }[],
    toPayload: (rows: string[][]) => EncodedBatch['payload'],
  ) {
    const owners = new Map<string, string[]>();
    for (const { key, row } of rows) {
      for (const hash of row) if (hash !== '') owners.set(hash, [...(owners.get(hash) ?? []), key]);
    }
    return { payload: toPayload(rows.map((r) => r.row)), owners, keys: rows.map((r) => r.key) };
  }

  return {
    payload,

    /** People to add; a key that does not normalise is rejected and not sent. */
    members(members: Member[]): { batch: EncodedBatch; rejected: Rejection[] } {
      const rows: { key: string; row: string[] }[] = [];
      const rejected: Rejection[] = [];
      for (const { key, attributes } of members) {
        const primary = hashOf(primaryKey, key);
        if (primary === null) rejected.push({ key, reason: invalidKeyReason[config.keyType] });
        else
          rows.push({ key, row: [primary, ...extraColumns.map(([k, attr]) => cell(k, attributes[attr]))] });
      }
      return { batch: batchOf(rows, payload), rejected };
    },

    /** People to remove: the primary identifier is enough; keys that do not normalise are skipped. */
    keys(keys: string[]): EncodedBatch {
      const rows = keys.flatMap((key) => {
        const hash = hashOf(primaryKey, key);
        return hash === null ? [] : [{ key, row: [hash] }];
      });
      return batchOf(rows, (data) => ({ schema: `${primaryKey}_SHA256`, data: data.map((row) => row[0]!) }));
    },
  };
}

/**
 * Meta's verdict on one call: record-level rejections where its samples name invalid entries,
 * and, when its counts do not add up to what was sent, every other person of the call as not
 * acknowledged (see the top of the file).
 */
function rejectionsFrom(response: UsersResponse, batch: EncodedBatch): Rejection[] {
  const samples: [string, string][] = Array.isArray(response.invalid_entry_samples)
    ? response.invalid_entry_samples.map((value) => [value, 'invalid entry'])
    : Object.entries(response.invalid_entry_samples);
  const rejected = new Map<string, string>();
  for (const [value, reason] of samples) {
    for (const key of batch.owners.get(value) ?? []) rejected.set(key, `Meta rejected the entry: ${reason}`);
  }
  const named = [...rejected].map(([key, reason]) => ({ key, reason }));
  const sent = batch.keys.length;
  const invalid = response.num_invalid_entries;
  if (response.num_received < sent) {
    const why = `Meta received ${response.num_received} of the ${sent} people sent`;
    return [...named, ...notAcknowledged(batch.keys, named, why)];
  }
  // Invalid entries Meta counts but does not name hide among the others: none of them is confirmed.
  if (invalid > named.length) {
    const why = `Meta counted ${invalid} invalid entries and named ${named.length}`;
    return [...named, ...notAcknowledged(batch.keys, named, why)];
  }
  return named;
}

// --- helpers ----------------------------------------------------------------------------------

function chunks<T>(items: T[], size: number): T[][] {
  const result: T[][] = [];
  for (let start = 0; start < items.length; start += size) result.push(items.slice(start, start + size));
  return result;
}
