import type { DestinationContext } from '../kit/module';
import { notAcknowledged } from '../kit/index';
import {
  DestinationError,
  type AttributeValue,
  type BatchResult,
  type Destination,
  type Limits,
  type Member,
  type MemberPage,
  type Rejection,
} from '../../core/destination';
import {
  createKlaviyoApi,
  PROFILES_PAGE,
  type ImportError,
  type JobAttributes,
  type KlaviyoApi,
  type KlaviyoJobOptions,
} from './api';
import { KLAVIYO_TYPE, klaviyoListConfigSchema, type KlaviyoListConfigInput } from './settings';
import { IMPORT_PAYLOAD_MAX_BYTES, PROFILE_MAX_BYTES, PROFILES_PER_MEMBERSHIP_CALL } from './vendor-limits';

/**
 * `klaviyo-list`: a Klaviyo list whose members are profiles keyed by e-mail (the dataset key is
 * the e-mail address; normalise it, e.g. with normalizeEmail from core/identifiers).
 *
 * How the engine's operations map onto Klaviyo's JSON:API (api.ts):
 * - add / update attributes: one batch is one bulk import job (≤ 10,000 profiles, ≤ 5 MB: the
 *   destination's limits), with the list as the job's relationship: Klaviyo upserts the profiles
 *   by e-mail and joins them to the list in one asynchronous job; we poll it, then read its import
 *   errors, whose JSON:API pointers name the profile that failed (→ record-level rejections).
 *   Dataset attributes named like Klaviyo's profile fields (first_name, phone_number, …) go to
 *   those fields, all others to custom `properties`; a null custom property is removed with
 *   `meta.patch_properties.unset` (the bulk import ignores nulls, so a null profile field leaves
 *   the old value in place).
 * - remove: list membership is a relationship between list and profile *ids*, so the e-mails are
 *   first resolved to ids, 100 at a time, with `filter=any(email,[…])` on the list's own profiles
 *   (e-mails not in the list are already removed), then removed ≤ 1,000 ids per DELETE. The
 *   profiles themselves stay.
 * - list members: the list's profiles, 100 per page, cursor from `links.next`.
 * - check: the list itself (get_list), which proves the key, its account and the list id.
 * No truncate (Klaviyo has no "empty this list"), and no new-list-and-swap: a new list gets a new
 * id, which every flow, segment and campaign that targets the old list would silently lose.
 *
 * Acknowledgement: a bulk import job names the profiles that failed but only counts the ones it
 * imported (`completed_count`, `failed_count`). Unless its named failures match failed_count and
 * completed_count covers every profile not named, which profiles made it is unknown: all the
 * job's unnamed ones stay pending. A removal's 2xx is its acknowledgement (no per-profile answer).
 */

/** Klaviyo profile attributes besides `email` that are top-level strings, not custom properties. */
export const KLAVIYO_PROFILE_FIELDS = [
  'phone_number',
  'external_id',
  'first_name',
  'last_name',
  'organization',
  'locale',
  'title',
  'image',
] as const;

/** Knobs for tests and tuning; production uses the defaults. */
export interface KlaviyoListOptions extends KlaviyoJobOptions {
  /** Largest request body (Klaviyo: 5 MB per bulk import). */
  maxPayloadBytes?: number;
  /** Splits spent isolating profiles a bulk import refuses synchronously, per batch. */
  maxIsolationSplits?: number;
}

const MAX_PROFILE_BYTES = PROFILE_MAX_BYTES;
/** Room for the job document around the profiles. */
const ENVELOPE_BYTES = 1024;
/**
 * Most bytes a profile resource in a job document takes beyond the member the engine measured
 * (`{"key","attributes"}`): the `type`, the `properties` and `meta.patch_properties.unset`
 * wrappers and the separator, about 80 bytes at most (a test holds it under this).
 */
export const PROFILE_OVERHEAD_BYTES = 100;
/** Keeps lookup URLs well under common 8 KB request-line limits. */
const MAX_FILTER_CHARS = 4000;
/** Profile ids per remove_profiles_from_list call: Klaviyo's maximum. */
const REMOVE_BATCH = PROFILES_PER_MEMBERSHIP_CALL;
/** A complete profile index: a truncated message must not turn profile 12 into profile 1. */
const PROFILE_POINTER = /\/data\/attributes\/profiles\/data\/(\d+)(?=[/"]|$)/;

/** A profile ready for a bulk import job. */
interface PreparedProfile {
  key: string;
  resource: Record<string, unknown>;
}

/**
 * The bytes of members (as the engine measures them) that one job of `profilesPerJob` profiles
 * may carry so that its document stays within `maxPayloadBytes`: the engine splits batches to
 * this, so a batch is always one job.
 */
export function memberBytesPerJob(maxPayloadBytes: number, profilesPerJob: number): number {
  return Math.max(1, maxPayloadBytes - ENVELOPE_BYTES - profilesPerJob * PROFILE_OVERHEAD_BYTES);
}

export function createKlaviyoListDestination(
  input: KlaviyoListConfigInput,
  context: DestinationContext,
  options: KlaviyoListOptions = {},
): Destination {
  const config = klaviyoListConfigSchema.parse(input);
  const listId = context.listId ?? config.listId;
  const limits: Limits = {
    recordsPerCall: config.profilesPerJob,
    bytesPerCall: memberBytesPerJob(
      options.maxPayloadBytes ?? IMPORT_PAYLOAD_MAX_BYTES,
      config.profilesPerJob,
    ),
    callsPerSecond: config.callsPerSecond,
  };
  const api = createKlaviyoApi({ ...config, listId }, context, limits, options);
  let listVerified = false;

  /** A missing list must stop the refresh with a clear message, whatever endpoint would notice. */
  async function verifyList(): Promise<void> {
    if (listVerified) return;
    await api.getList();
    listVerified = true;
  }

  return {
    type: KLAVIYO_TYPE,
    limits,

    async add(members: Member[]): Promise<BatchResult> {
      const rejected: Rejection[] = [];
      const profiles: PreparedProfile[] = [];
      for (const member of members) {
        const prepared = prepare(member);
        if ('reason' in prepared) rejected.push(prepared);
        else profiles.push(prepared);
      }
      if (profiles.length === 0) return { rejected };
      await verifyList();
      const budget = { splits: options.maxIsolationSplits ?? 32 };
      const refused = await importIsolating(api, profiles, budget);
      rejected.push(...refused);
      // Klaviyo's own count: the profiles its import jobs took in, and those they reported errors for.
      return { rejected, report: { received: profiles.length, invalid: refused.length } };
    },

    /**
     * Resolve, then delete. The lookups (≤ 100 e-mails each, a page of get_profiles_for_list,
     * and a filter that fits a URL) and the DELETEs (≤ 1,000 ids) are sub-calls with limits of
     * their own, far below the 10,000 profiles of a job: declaring them as recordsPerCall would cut
     * every import to 100 profiles, so a removal batch is split here, for these two calls only.
     */
    async remove(keys: string[]): Promise<BatchResult> {
      if (keys.length === 0) return { rejected: [] };
      await verifyList();
      const ids: string[] = [];
      for (const group of lookupGroups(keys)) ids.push(...(await api.memberIds(group)));
      for (let start = 0; start < ids.length; start += REMOVE_BATCH) {
        await api.removeProfiles(ids.slice(start, start + REMOVE_BATCH));
      }
      return { rejected: [] };
    },

    async listMembers(cursor: string | null, limit: number): Promise<MemberPage> {
      const page = await api.profilesPage(cursor, Math.min(Math.max(1, limit), PROFILES_PAGE));
      // Profiles known only by phone number have no key in an e-mail-keyed list.
      const keys = page.profiles.flatMap((profile) =>
        profile.attributes.email ? [profile.attributes.email] : [],
      );
      return { keys, next: page.next };
    },

    /** Reads the list: the key, its account and the list id in one call. */
    async check() {
      const list = await api.getList();
      listVerified = true;
      const name = list.attributes?.name === undefined ? '' : ` '${list.attributes.name}'`;
      return `${KLAVIYO_TYPE}: list ${listId}${name} reachable with the key in '${config.apiKeySecret}'`;
    },

    async close() {
      // fetch's global connection pool needs no closing.
    },
  };
}

/** A member as a bulk-import profile, or the reason it cannot be one. */
function prepare(member: Member): PreparedProfile | Rejection {
  const attributes: Record<string, unknown> = { email: member.key };
  const properties: Record<string, AttributeValue> = {};
  const unset: string[] = [];
  for (const [name, value] of Object.entries(member.attributes)) {
    if (name === 'email') {
      throw new DestinationError(
        `${KLAVIYO_TYPE}: the dataset has an attribute named 'email', but the dataset key is the profile's e-mail — drop 'email' from dataset.attributes`,
        'fatal',
      );
    }
    if (!(KLAVIYO_PROFILE_FIELDS as readonly string[]).includes(name)) {
      if (value === null) unset.push(name);
      else properties[name] = value;
    } else if (value !== null) {
      if (typeof value !== 'string') {
        return {
          key: member.key,
          reason: `Klaviyo's profile field '${name}' takes text, got ${typeof value}`,
        };
      }
      attributes[name] = value;
    }
  }
  if (Object.keys(properties).length > 0) attributes.properties = properties;
  const resource = {
    type: 'profile',
    attributes,
    ...(unset.length ? { meta: { patch_properties: { unset } } } : {}),
  };
  const bytes = Buffer.byteLength(JSON.stringify(resource));
  if (bytes > MAX_PROFILE_BYTES) {
    return {
      key: member.key,
      reason: `profile is ${bytes} bytes; Klaviyo takes at most 100 KB per profile`,
    };
  }
  return { key: member.key, resource };
}

/**
 * Imports the profiles in one job; when Klaviyo refuses the whole request (a 400) because of some
 * profiles, those are set aside and the rest imported. A refusal whose JSON:API pointer names a
 * profile drops that one; otherwise the profiles are halved (which also gets a document past the
 * payload limit, should it ever exceed it). `budget` bounds the extra calls: what is left
 * unresolved when it runs out is reported as refused, like any refused batch.
 */
async function importIsolating(
  api: KlaviyoApi,
  chunk: PreparedProfile[],
  budget: { splits: number },
): Promise<Rejection[]> {
  let job: { id: string; attributes: JobAttributes };
  try {
    job = await api.createJob(chunk.map((p) => p.resource));
  } catch (err) {
    if (!(err instanceof DestinationError) || err.kind !== 'batch') throw err;
    const reason = refusalReason(err);
    const pointed = Number(PROFILE_POINTER.exec(err.message)?.[1] ?? NaN);
    if (chunk.length === 1) return [{ key: chunk[0]!.key, reason }];
    if (budget.splits <= 0) return chunk.map((p) => ({ key: p.key, reason: `batch refused: ${reason}` }));
    budget.splits--;
    if (pointed >= 0 && pointed < chunk.length) {
      const rest = chunk.filter((_, i) => i !== pointed);
      return [{ key: chunk[pointed]!.key, reason }, ...(await importIsolating(api, rest, budget))];
    }
    const middle = Math.ceil(chunk.length / 2);
    return [
      ...(await importIsolating(api, chunk.slice(0, middle), budget)),
      ...(await importIsolating(api, chunk.slice(middle), budget)),
    ];
  }
  const finished = await api.waitForJob(job.id, job.attributes);
  if (finished.status === 'cancelled') {
    throw new DestinationError(
      `${KLAVIYO_TYPE}: bulk import job ${job.id} was cancelled in Klaviyo`,
      'batch',
    );
  }
  const rejected = finished.failed_count ? await importErrors(api, job.id, chunk) : [];
  return [...rejected, ...unconfirmed(job.id, finished, chunk, rejected)];
}

/** The job's per-profile failures, mapped back to keys through their JSON:API pointers. */
async function importErrors(api: KlaviyoApi, jobId: string, chunk: PreparedProfile[]): Promise<Rejection[]> {
  const rejected: Rejection[] = [];
  for await (const errors of api.importErrorPages(jobId)) {
    for (const error of errors) {
      const key = keyOfImportError(error, chunk);
      if (key === undefined) {
        // Not knowing which profile failed, no profile of the job can be counted as delivered.
        throw new DestinationError(
          `${KLAVIYO_TYPE}: bulk import job ${jobId} reported an error that names no profile: ${error.detail}`,
          'batch',
        );
      }
      rejected.push({ key, reason: `${error.detail} (${error.code})` });
    }
  }
  return rejected;
}

/** The profiles of a finished job that its counts do not confirm (see the top of the file). */
function unconfirmed(
  jobId: string,
  job: JobAttributes,
  chunk: PreparedProfile[],
  rejected: Rejection[],
): Rejection[] {
  const named = new Set(rejected.map((r) => r.key)).size;
  const failed = job.failed_count ?? 0;
  const completed = job.completed_count ?? 0;
  const expected = chunk.length - named;
  if (failed <= named && completed >= expected) return [];
  const why = `bulk import job ${jobId} completed ${completed} of the ${expected} profiles it named no failure for (failed_count ${failed}, ${named} named)`;
  return notAcknowledged(
    chunk.map((p) => p.key),
    rejected,
    why,
  );
}

/** Lookup batches: ≤ 100 e-mails (one page answers the whole lookup), a filter short enough for a URL. */
function lookupGroups(keys: string[]): string[][] {
  const groups: string[][] = [];
  let group: string[] = [];
  let chars = 0;
  for (const key of keys) {
    const size = encodeURIComponent(JSON.stringify(key)).length + 3;
    if (group.length > 0 && (group.length >= PROFILES_PAGE || chars + size > MAX_FILTER_CHARS)) {
      groups.push(group);
      group = [];
      chars = 0;
    }
    group.push(key);
    chars += size;
  }
  if (group.length > 0) groups.push(group);
  return groups;
}

/** Which profile of the job an import error is about: its pointer, else its original payload. */
function keyOfImportError(error: ImportError, chunk: PreparedProfile[]): string | undefined {
  const index = Number(PROFILE_POINTER.exec(error.source?.pointer ?? '')?.[1] ?? NaN);
  if (index >= 0 && index < chunk.length) return chunk[index]!.key;
  const payload = error.original_payload as { attributes?: { email?: unknown } } | undefined;
  const email = payload?.attributes?.email;
  return chunk.find((profile) => profile.key === email)?.key;
}

/**
 * The JSON:API `detail` of a refusal, for the rejection reason, read from the start of the error
 * document that the message quotes (cut at 200 characters, hence the '…'; a pointer cut off there
 * makes importIsolating halve the chunk instead). The whole document is in the error's `body`;
 * reading it instead would change which refusals are pinned on a profile at once.
 */
function refusalReason(err: DestinationError): string {
  const match = /"detail":"((?:[^"\\]|\\.)*)("?)/.exec(err.message);
  if (!match) return err.message;
  const detail = match[1]!.replace(/\\(.)/g, '$1');
  return `Klaviyo refused the profile: ${detail}${match[2] ? '' : '…'}`;
}
