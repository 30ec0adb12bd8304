import { z } from 'zod';
import { sha256Hex } from '../../core/identifiers';
import { lazySecret, notAcknowledged } from '../kit/index';
import type { DestinationContext } from '../kit/module';
import {
  DestinationError,
  type AttributeValue,
  type BatchResult,
  type Destination,
  type Limits,
  type Member,
  type Rejection,
} from '../../core/destination';
import { createGraphClient, graphRequestDefaults, MetaGraphError, type GraphErrorCode } from './graph-api';
import { metaHash } from './hashing';
import {
  META_TYPE,
  metaCustomAudienceConfigSchema,
  primaryKeyOf,
  type MetaCustomAudienceConfig,
  type MetaCustomAudienceConfigInput,
  type MetaIdentifierKey,
} from './settings';

/**
 * `meta-custom-audience`: a Meta (Facebook/Instagram) customer-file Custom Audience, written
 * through the Marketing API:
 *
 *   GET    /{version}/{audience_id}               the audience (check)
 *   POST   /{version}/{audience_id}/users         add people       (at most 10,000 per call)
 *   DELETE /{version}/{audience_id}/users         remove people    (same payload)
 *   POST   /{version}/{audience_id}/usersreplace  replace everyone, in a session of batches
 *
 * People are matched by SHA-256 hashes of normalised identifiers (./hashing.ts); raw identifiers
 * never leave this process. The dataset key is the primary identifier (an e-mail address or a
 * phone number); more identifier columns (phone, first name, …) come from the record's
 * attributes. One batch is one call: recordsPerCall is at most Meta's 10,000.
 *
 * Requests, retries and Meta's throttling signals are handled by ./graph-api.ts, through the
 * context's HTTP client.
 *
 * Acknowledgement: per call, by count. Meta counts what it received (`num_received`) and how much
 * of it was invalid (`num_invalid_entries`) but names only a sample of the invalid entries. When
 * it received fewer than were sent, or names fewer invalid entries than it counts, which people it
 * took is unknown: every person of that call not named as invalid stays pending.
 */

const invalidKeyReason: Record<'email' | 'phone', string> = {
  email: 'invalid e-mail: not sent to Meta',
  phone: 'invalid phone number (no country code and no valid defaultCountry?): not sent to Meta',
};

/** The endpoints as the run counts their calls. */
export type MetaEndpoint = 'audience:read' | 'users:add' | 'users:remove' | 'usersreplace';

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

/** The audience fields check() reads. */
const audienceSchema = z.object({
  id: z.union([z.string(), z.number()]),
  name: z.string().optional(),
  approximate_count_lower_bound: z.number().optional(),
  approximate_count_upper_bound: z.number().optional(),
});

/** One call's worth of people: Meta's payload, plus who each hash came from. */
interface EncodedBatch {
  payload: { schema: string | string[]; data: string[] | string[][] };
  /** Hash → dataset keys, to turn Meta's invalid_entry_samples back into rejections. */
  owners: Map<string, string[]>;
  keys: string[];
}

/** Meta's refusal to remove people when the audience would get too small ("Audience Size too Low"). */
const AUDIENCE_TOO_SMALL: GraphErrorCode = { code: 200, subcode: 1870047 };

function isAudienceTooSmall(err: unknown): err is MetaGraphError {
  return err instanceof MetaGraphError && err.is(AUDIENCE_TOO_SMALL.code, AUDIENCE_TOO_SMALL.subcode);
}

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
 * replaceList.create gets the same session. 52 bits keep it exact as a JSON number.
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

/** The connector's live audience: changed in place, or replaced through a usersreplace session. */
export type MetaAudienceDestination = Destination &
  Required<Pick<Destination, 'add' | 'remove' | 'replaceList'>>;

/**
 * The destination for the connector's list: `context.listId` when a swap moved it
 * (`audienceId:sessionId`, whose writes go to the audience), else the configured audience.
 */
export function createMetaCustomAudienceDestination(
  input: MetaCustomAudienceConfigInput,
  context: DestinationContext,
): MetaAudienceDestination {
  const config = metaCustomAudienceConfigSchema.parse(input);
  const limits: Limits = {
    recordsPerCall: config.recordsPerCall,
    callsPerSecond: config.callsPerSecond,
    maxConcurrent: config.maxConcurrent,
  };
  const encoder = createEncoder(config);
  const graph = createGraphClient({
    service: META_TYPE,
    baseUrl: `${config.graphUrl.replace(/\/+$/, '')}/${config.apiVersion}`,
    accessToken: lazySecret(context.secrets, config.accessTokenSecret, META_TYPE),
    http: context.http({
      account: `meta:${config.adAccountId}`,
      limits,
      defaults: graphRequestDefaults(META_TYPE),
    }),
    credentialsHint: `check the token in the secret named by accessTokenSecret ('${config.accessTokenSecret}'): it must be valid and have ads_management on ${config.adAccountId}`,
    fatalErrors: [
      {
        code: 100,
        subcode: 33, // "Object with ID … does not exist, cannot be loaded due to missing permissions"
        hint: (path) =>
          `audience '${path.split(/[/?]/)[0]}' does not exist or the token may not use it: check audienceId and that the token's system user is assigned to ${config.adAccountId}`,
      },
      {
        code: 100,
        subcode: 1713230, // "Audience Upload Blocked" (operation_status 471)
        hint: () =>
          'the audience is flagged for its content: resolve the restriction in Audience Manager first',
      },
    ],
  });
  // Meta keeps no attributes, only identifiers. When identifier columns come from attributes
  // (attributeMap), a change to them must reach Meta, by adding the person again with the new
  // values; without such columns an attribute change has nothing to send.
  const keysOnly = Object.keys(config.attributeMap).length === 0;

  /** POSTs the batch's members in one call, with `extra` body fields. */
  async function upload(
    endpoint: MetaEndpoint,
    path: string,
    members: Member[],
    extra: () => Record<string, unknown> = () => ({}),
  ): Promise<BatchResult> {
    const { batch, rejected } = encoder.members(members);
    if (batch.keys.length === 0) return { rejected };
    const { body } = await graph.request(
      endpoint,
      { method: 'POST', path, body: { payload: batch.payload, ...extra() } },
      usersResponseSchema,
    );
    return { rejected: [...rejected, ...rejectionsFrom(body, batch)] };
  }

  async function removeFrom(audienceId: string, keys: string[]): Promise<BatchResult> {
    // A key that does not normalise was never sent, so Meta holds nothing under it: done.
    const batch = encoder.keys(keys);
    if (batch.keys.length === 0) return { rejected: [] };
    try {
      const call = {
        method: 'DELETE' as const,
        path: `${audienceId}/users`,
        body: { payload: batch.payload },
        answers: [AUDIENCE_TOO_SMALL],
      };
      const { body } = await graph.request('users:remove', call, usersResponseSchema);
      return { rejected: rejectionsFrom(body, batch) };
    } catch (err) {
      if (!isAudienceTooSmall(err)) throw err;
      // Meta refuses the whole call. The deletions stay pending (the engine counts attempts)
      // and go again on the next run, when additions may have grown the audience.
      const reason = `refused by Meta: audience would fall below its minimum size (error ${err.code}/${err.subcode})`;
      return { rejected: batch.keys.map((key) => ({ key, reason })) };
    }
  }

  /** The session fields of the next usersreplace call (batch_seq counts from 1 per session). */
  function sessionFields(sessionId: number, lastBatch: boolean): Record<string, unknown> {
    const batchSeq = nextBatchSeq.get(sessionId) ?? 1;
    if (lastBatch) nextBatchSeq.delete(sessionId);
    else nextBatchSeq.set(sessionId, batchSeq + 1);
    return { session: { session_id: sessionId, batch_seq: batchSeq, last_batch_flag: lastBatch } };
  }

  /** One cheap read: the audience, its name and Meta's estimate of its size. */
  async function check(audienceId: string): Promise<string> {
    const fields = 'id,name,approximate_count_lower_bound,approximate_count_upper_bound';
    const { body } = await graph.request(
      'audience:read',
      { method: 'GET', path: `${audienceId}?fields=${fields}` },
      audienceSchema,
    );
    const name = body.name ? ` ('${body.name}')` : '';
    const low = body.approximate_count_lower_bound;
    const high = body.approximate_count_upper_bound;
    const size =
      low === undefined || low < 0
        ? 'size not disclosed'
        : high !== undefined && high !== low
          ? `${low.toLocaleString('en')}–${high.toLocaleString('en')} people`
          : `${low.toLocaleString('en')} people`;
    return `${META_TYPE}: audience ${audienceId}${name} of ${config.adAccountId} reachable (${size})`;
  }

  const close = async () => {
    // fetch's global connection pool needs no closing.
  };

  /**
   * A list being filled by a replace session (from replaceList.create, reached through
   * forList): it only takes additions, which stay invisible until the swap ends the session.
   */
  function sessionList(audienceId: string, sessionId: number): Destination {
    return {
      type: META_TYPE,
      limits,
      ...(keysOnly ? { keysOnly } : {}),
      add: (members) =>
        upload('usersreplace', `${audienceId}/usersreplace`, members, () => sessionFields(sessionId, false)),
      check: () => check(audienceId),
      close,
    };
  }

  // The connector's list: after a swap `audienceId:sessionId`, a session that finished with its
  // swap, so writes go to the audience itself.
  const audienceId = parseListId(context.listId ?? config.audienceId).audienceId;
  return {
    type: META_TYPE,
    limits,
    ...(keysOnly ? { keysOnly } : {}),

    add: (members) => upload('users:add', `${audienceId}/users`, members),

    remove: (keys) => removeFrom(audienceId, keys),

    // New list + swap on one audience: the "new list" is a usersreplace session. Its batches
    // stay invisible until the last one; then the audience is exactly what the session uploaded.
    // No truncate (a Custom Audience cannot be emptied in one call) and no listMembers (Meta
    // does not let anyone read the people in an audience).
    replaceList: {
      create: async (name) => ({ listId: `${audienceId}:${replaceSessionId(audienceId, name)}` }),

      forList: (listId) => {
        const target = parseListId(listId);
        return target.sessionId === undefined
          ? createMetaCustomAudienceDestination(config, { ...context, listId })
          : sessionList(target.audienceId, target.sessionId);
      },

      swap: async (listId) => {
        const target = parseListId(listId);
        if (target.sessionId === undefined) return {};
        // An empty batch with last_batch_flag ends the session, whatever its last page was.
        const body = { payload: encoder.payload([]), ...sessionFields(target.sessionId, true) };
        await graph.request(
          'usersreplace',
          { method: 'POST', path: `${target.audienceId}/usersreplace`, body },
          usersResponseSchema,
        );
        // The connector then points at `audienceId:sessionId`, which writes to the audience.
        return {};
      },

      // The old and the new list are the same audience: there is nothing to retire.
      retire: async () => {},
    },

    check: () => check(audienceId),
    close,
  };
}

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
