import { z } from 'zod';
import { sha256Hex } from '../../core/identifiers';
import { lazySecret, notAcknowledged } from '../kit/index';
import { realSleep } from '../kit/http';
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
import {
  AUDIENCE_TOO_SMALL,
  FIRST_BATCH_SEQ,
  OPERATION_STATUS,
  REPLACE_ERROR_CODE,
  REPLACE_ERROR_SUBCODES,
  UPLOAD_BLOCKED,
  USERS_LOCKED,
} from './vendor-limits';

/**
 * `meta-custom-audience`: a Meta (Facebook/Instagram) customer-file Custom Audience, written
 * through the Marketing API (as documented in test/vendor-specs/meta/, see SOURCE.md there):
 *
 *   GET    /{version}/{audience_id}               the audience: check, operation_status
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
 *
 * A replace runs asynchronously at Meta: from its first batch until Meta has processed it, the
 * audience's operation_status is 414 "Replace in progress" and it takes no /users writes and no
 * other replace. So a replace starts only once the audience is not being replaced (the guide:
 * "Make sure your audience's operation_status is Normal"), the swap ends the session with a
 * batch that carries last_batch_flag (never an empty one, whose fate Meta does not document)
 * and returns only once Meta has finished (reading operation_status with backoff), and a write
 * the audience refuses because a replace holds it waits the same way and goes again.
 */

const invalidKeyReason: Record<'email' | 'phone', string> = {
  email: 'invalid e-mail: not sent to Meta',
  phone: 'invalid phone number (no country code and no valid defaultCountry?): not sent to Meta',
};

/** The endpoints as the run counts their calls. */
export type MetaEndpoint = 'audience:read' | 'users:add' | 'users:remove' | 'usersreplace';

/**
 * How the connector waits for Meta to finish a replace: it reads operation_status at once, then
 * after 2 s, 4 s, … (at most 1 min apart), for up to 100 min in one go — the 90 minutes a
 * session may last when nobody ends it, plus Meta's processing (for which Meta gives no figure).
 * Every read is one short call and the activity heartbeats between them (the swap step may run 2
 * hours, src/workflows/refresh.ts). Past that the wait fails as retryable; a retry that finds no
 * progress since is then stopped by the connector's failure budget, with this reason on the run.
 */
export const REPLACE_WAIT = { firstPollMs: 2_000, maxPollMs: 60_000, maxWaitMs: 100 * 60_000 };

/** How often one write goes again after the audience refused it because a replace held it. */
const LOCKED_WRITE_ATTEMPTS = 3;

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

const operationStatusSchema = z.object({ code: z.number(), description: z.string().optional() });
type OperationStatus = z.output<typeof operationStatusSchema>;

/** The audience fields check() reads. */
const audienceSchema = z.object({
  id: z.union([z.string(), z.number()]),
  name: z.string().optional(),
  approximate_count_lower_bound: z.number().optional(),
  approximate_count_upper_bound: z.number().optional(),
  operation_status: operationStatusSchema.optional(),
});

/** One call's worth of people: Meta's payload, plus who each hash came from. */
interface EncodedBatch {
  payload: { schema: string | string[]; data: string[] | string[][] };
  /** Hash → dataset keys, to turn Meta's invalid_entry_samples back into rejections. */
  owners: Map<string, string[]>;
  keys: string[];
}

const replaceError = (subcode: number): GraphErrorCode => ({ code: REPLACE_ERROR_CODE, subcode });
const SESSION_FINISHED = replaceError(REPLACE_ERROR_SUBCODES.sessionFinished);
const SESSION_TIMED_OUT = replaceError(REPLACE_ERROR_SUBCODES.sessionTimedOut);
const FIRST_BATCH_MISSING = replaceError(REPLACE_ERROR_SUBCODES.firstBatchMissing);
/** A second replace while one runs ("Audience Update In Progress"); also what a locked /users write gets. */
const UPDATE_IN_PROGRESS = replaceError(REPLACE_ERROR_SUBCODES.audienceUpdateInProgress);

function isError(err: unknown, expected: GraphErrorCode): err is MetaGraphError {
  return err instanceof MetaGraphError && err.is(expected.code, expected.subcode);
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
 * What this worker process knows of each replace session it fills: the next batch_seq, and the
 * last batch it uploaded, which the swap sends again to end the session (the guide allows a
 * session's later batches to repeat). The engine fills a session and swaps it in separate
 * activities, each with its own destination, so this lives beyond one destination. A worker
 * restart forgets it: the next batch then asks Meta whether a replace runs (see sessionList),
 * and a swap that knows no batch waits for Meta to end the session by itself (90 minutes).
 */
interface SessionMemory {
  nextBatchSeq: number;
  lastBatch?: EncodedBatch['payload'];
  /**
   * Meta's num_received after the last batch: for a session it is the "Total number of users
   * received in this session so far" (guide), so a batch's own count is the difference.
   * Undefined when this process did not see the session's earlier batches.
   */
  received?: number;
}
const replaceSessions = new Map<number, SessionMemory>();

/** Forgets every replace session this process knows, as a worker restart does (for tests). */
export function forgetReplaceSessions(): void {
  replaceSessions.clear();
}

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
  const sleep = context.retry.sleep ?? realSleep;
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
        ...UPLOAD_BLOCKED, // "Audience Upload Blocked" (operation_status 471)
        hint: () =>
          'the audience is flagged for its content: resolve the restriction in Audience Manager first',
      },
      {
        ...replaceError(REPLACE_ERROR_SUBCODES.sizeNotSupported),
        hint: () =>
          'Meta replaces only audiences of fewer than 100 million people: refresh this one by diff (strategy other than newList)',
      },
    ],
  });
  // Meta keeps no attributes, only identifiers. When identifier columns come from attributes
  // (attributeMap), a change to them must reach Meta, by adding the person again with the new
  // values; without such columns an attribute change has nothing to send.
  const keysOnly = Object.keys(config.attributeMap).length === 0;

  /** The audience's operation_status (code 0, "Status not available", when Meta gives none). */
  async function operationStatus(audienceId: string): Promise<OperationStatus> {
    const { body } = await graph.request(
      'audience:read',
      { method: 'GET', path: `${audienceId}?fields=operation_status` },
      audienceSchema,
    );
    return body.operation_status ?? { code: 0 };
  }

  /**
   * Waits until Meta is not replacing the audience (operation_status other than 414) and
   * returns that status; `what` says, for the message, what is waiting. See REPLACE_WAIT.
   */
  async function awaitNoReplace(audienceId: string, what: string): Promise<OperationStatus> {
    let waited = 0;
    let pause = REPLACE_WAIT.firstPollMs;
    for (;;) {
      const status = await operationStatus(audienceId);
      if (status.code !== OPERATION_STATUS.replaceInProgress) return status;
      if (waited + pause > REPLACE_WAIT.maxWaitMs) {
        throw new DestinationError(
          `${META_TYPE}: audience ${audienceId} is still being replaced by Meta (operation_status 414 "Replace in progress") after ${Math.round(waited / 1000)} s; ${what} waits until Meta has finished (retried)`,
          'retryable',
        );
      }
      await sleep(pause);
      waited += pause;
      pause = Math.min(pause * 2, REPLACE_WAIT.maxPollMs);
    }
  }

  /**
   * One write to the live audience: when the audience refuses it because a replace holds it
   * (Meta does not document that answer; see vendor-limits.ts USERS_LOCKED), it waits for the
   * replace to finish and goes again.
   */
  async function writeToAudience<T>(audienceId: string, write: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await write();
      } catch (err) {
        if (!isError(err, USERS_LOCKED) || attempt >= LOCKED_WRITE_ATTEMPTS) throw err;
        await awaitNoReplace(audienceId, 'the write to it');
      }
    }
  }

  /** POSTs the batch's members in one call, with `extra` body fields. */
  async function upload(
    endpoint: MetaEndpoint,
    path: string,
    batch: EncodedBatch,
    extra: Record<string, unknown> = {},
    answers: GraphErrorCode[] = [],
  ): Promise<UsersResponse> {
    const { body } = await graph.request(
      endpoint,
      { method: 'POST', path, body: { payload: batch.payload, ...extra }, answers },
      usersResponseSchema,
    );
    return body;
  }

  async function addTo(audienceId: string, members: Member[]): Promise<BatchResult> {
    const { batch, rejected } = encoder.members(members);
    if (batch.keys.length === 0) return { rejected };
    const body = await writeToAudience(audienceId, () =>
      upload('users:add', `${audienceId}/users`, batch, {}, [USERS_LOCKED]),
    );
    return {
      rejected: [...rejected, ...rejectionsFrom(body, batch)],
      report: { received: body.num_received, invalid: Math.min(body.num_invalid_entries, body.num_received) },
    };
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
        answers: [AUDIENCE_TOO_SMALL, USERS_LOCKED],
      };
      const { body } = await writeToAudience(audienceId, () =>
        graph.request('users:remove', call, usersResponseSchema),
      );
      return { rejected: rejectionsFrom(body, batch) };
    } catch (err) {
      if (!isError(err, AUDIENCE_TOO_SMALL)) throw err;
      // Meta refuses the whole call, for the audience's sake, not the records': the deletions
      // stay pending without using up attempts (deferred) and go again on the next run, when
      // additions may have grown the audience.
      const reason = `refused by Meta: audience would fall below its minimum size (error ${err.code}/${err.subcode})`;
      return { rejected: batch.keys.map((key) => ({ key, reason, deferred: true })) };
    }
  }

  /** One cheap read: the audience, its name, Meta's estimate of its size and its status. */
  async function check(audienceId: string): Promise<string> {
    const fields = 'id,name,approximate_count_lower_bound,approximate_count_upper_bound,operation_status';
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
    const status = body.operation_status;
    const state =
      status && status.code !== OPERATION_STATUS.normal && status.code !== 0
        ? `; operation_status ${status.code}${status.description ? ` "${status.description}"` : ''}`
        : '';
    return `${META_TYPE}: audience ${audienceId}${name} of ${config.adAccountId} reachable (${size}${state})`;
  }

  const close = async () => {
    // fetch's global connection pool needs no closing.
  };

  /**
   * A list being filled by a replace session (from replaceList.create, reached through
   * forList): it only takes additions, which stay invisible until the swap ends the session.
   */
  function sessionList(audienceId: string, sessionId: number): Destination {
    const field = (batchSeq: number, last = false) => ({
      session: { session_id: sessionId, batch_seq: batchSeq, last_batch_flag: last },
    });

    async function send(batch: EncodedBatch, memory: SessionMemory): Promise<UsersResponse> {
      const path = `${audienceId}/usersreplace`;
      if (memory.nextBatchSeq > FIRST_BATCH_SEQ) {
        return upload('usersreplace', path, batch, field(memory.nextBatchSeq));
      }
      // The first batch starts the replace, which Meta refuses while another one runs.
      await awaitNoReplace(audienceId, 'a new replace of it');
      try {
        return await upload('usersreplace', path, batch, field(FIRST_BATCH_SEQ), [UPDATE_IN_PROGRESS]);
      } catch (err) {
        if (!isError(err, UPDATE_IN_PROGRESS)) throw err;
        // Another replace started in between: wait for it too, once.
        await awaitNoReplace(audienceId, 'a new replace of it');
        return upload('usersreplace', path, batch, field(FIRST_BATCH_SEQ));
      }
    }

    /**
     * This process knows nothing of the session (a worker restart in the middle of a fill): a
     * replace holding the audience is taken to be this session, whose next batches may carry
     * any number but 1 (a second batch_seq 1 would start it again, dropping what it holds);
     * Meta saying the session never started (1870147) corrects that.
     */
    async function sendUnknown(batch: EncodedBatch, memory: SessionMemory): Promise<UsersResponse> {
      const status = await operationStatus(audienceId);
      if (status.code !== OPERATION_STATUS.replaceInProgress) {
        memory.received = 0;
        return send(batch, memory);
      }
      try {
        memory.nextBatchSeq = FIRST_BATCH_SEQ + 1;
        return await upload('usersreplace', `${audienceId}/usersreplace`, batch, field(memory.nextBatchSeq), [
          FIRST_BATCH_MISSING,
        ]);
      } catch (err) {
        if (!isError(err, FIRST_BATCH_MISSING)) throw err;
        memory.nextBatchSeq = FIRST_BATCH_SEQ;
        memory.received = 0;
        return send(batch, memory);
      }
    }

    return {
      type: META_TYPE,
      limits,
      ...(keysOnly ? { keysOnly } : {}),
      add: async (members) => {
        const { batch, rejected } = encoder.members(members);
        if (batch.keys.length === 0) return { rejected };
        const known = replaceSessions.get(sessionId);
        const memory: SessionMemory = known ? { ...known } : { nextBatchSeq: FIRST_BATCH_SEQ };
        const body = known ? await send(batch, memory) : await sendUnknown(batch, memory);
        replaceSessions.set(sessionId, {
          nextBatchSeq: memory.nextBatchSeq + 1,
          lastBatch: batch.payload,
          received: body.num_received,
        });
        // This batch's own count; without the session's earlier total it cannot be told apart.
        const sent = batch.keys.length;
        const received =
          memory.received === undefined
            ? Math.min(body.num_received, sent)
            : body.num_received - memory.received;
        return {
          rejected: [...rejected, ...rejectionsFrom({ ...body, num_received: received }, batch)],
          report: { received, invalid: Math.min(body.num_invalid_entries, received) },
        };
      },
      check: () => check(audienceId),
      close,
    };
  }

  /**
   * Ends the replace session and waits for Meta to finish it. The session ends with its last
   * batch sent again with last_batch_flag (allowed: "the rest of the batches of a session can be
   * duplicates"); an empty closing batch is not documented, so none is sent.
   */
  async function endSession(audienceId: string, sessionId: number): Promise<void> {
    const memory = replaceSessions.get(sessionId);
    if (memory && !memory.lastBatch) {
      throw new DestinationError(
        `${META_TYPE}: nothing was uploaded to replace audience ${audienceId} (no record could be sent): Meta documents no way to replace an audience with nobody; refresh it by diff to remove people`,
        'fatal',
      );
    }
    if (memory?.lastBatch) {
      const body = {
        payload: memory.lastBatch,
        session: { session_id: sessionId, batch_seq: memory.nextBatchSeq, last_batch_flag: true },
      };
      try {
        await graph.request(
          'usersreplace',
          {
            method: 'POST',
            path: `${audienceId}/usersreplace`,
            body,
            answers: [SESSION_FINISHED, SESSION_TIMED_OUT],
          },
          usersResponseSchema,
        );
      } catch (err) {
        if (isError(err, SESSION_TIMED_OUT)) {
          throw new DestinationError(
            `${META_TYPE}: the replace session of audience ${audienceId} ran past Meta's 90-minute limit (error 2650/1870158): Meta replaces the audience with the batches it received in time, so people sent later are missing; refresh it again once Meta has finished (a smaller recordsPerCall or a higher callsPerSecond shortens the fill)`,
            'fatal',
          );
        }
        // 1870159: a retried swap; the session had already ended.
        if (!isError(err, SESSION_FINISHED)) throw err;
      }
      memory.nextBatchSeq++;
    }
    // Without a batch to repeat (a worker restart since the fill), Meta ends the session by
    // itself 90 minutes after its first batch: the wait below covers that.
    const status = await awaitNoReplace(audienceId, 'the swap');
    if (status.code === OPERATION_STATUS.replaceFailed) {
      throw new DestinationError(
        `${META_TYPE}: Meta reports the replace of audience ${audienceId} failed (operation_status 415 "Replace failed"): the audience may not hold what was uploaded; refresh it again`,
        'fatal',
      );
    }
    replaceSessions.delete(sessionId);
  }

  // The connector's list: after a swap `audienceId:sessionId`, a session that finished with its
  // swap, so writes go to the audience itself.
  const audienceId = parseListId(context.listId ?? config.audienceId).audienceId;
  return {
    type: META_TYPE,
    limits,
    ...(keysOnly ? { keysOnly } : {}),

    add: (members) => addTo(audienceId, members),

    remove: (keys) => removeFrom(audienceId, keys),

    // New list + swap on one audience: the "new list" is a usersreplace session. Its batches
    // stay invisible until it ends; then, once Meta has processed it, the audience is exactly
    // what the session uploaded. No truncate (a Custom Audience cannot be emptied in one call)
    // and no listMembers (Meta does not let anyone read the people in an audience).
    replaceList: {
      create: async (name) => {
        const sessionId = replaceSessionId(audienceId, name);
        // Remembered so that the session's first batch is numbered 1 (a retried create keeps it).
        if (!replaceSessions.has(sessionId))
          replaceSessions.set(sessionId, { nextBatchSeq: FIRST_BATCH_SEQ, received: 0 });
        return { listId: `${audienceId}:${sessionId}` };
      },

      forList: (listId) => {
        const target = parseListId(listId);
        return target.sessionId === undefined
          ? createMetaCustomAudienceDestination(config, { ...context, listId })
          : sessionList(target.audienceId, target.sessionId);
      },

      swap: async (listId) => {
        const target = parseListId(listId);
        if (target.sessionId !== undefined) await endSession(target.audienceId, target.sessionId);
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
