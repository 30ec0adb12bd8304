import { randomUUID } from 'node:crypto';
import { KLAVIYO_PROFILE_FIELDS } from './destination';
import type { AttributeValue, Attributes } from '../../core/destination';
import type { ContractHarness } from '../kit/contract';
import {
  Counters,
  FaultBoard,
  FixedWindowLimiter,
  decodeCursor,
  encodeCursor,
  matchRoute,
  parseJson,
  secondsUntil,
  startJsonServer,
  statsAndFaults,
  zeroCounts,
  type CommonFaults,
  type EmulatorRequest,
  type Reply,
  type RouteTable,
} from '../kit/emulator-kit';
import { openApiCheck, type SpecCheck, type SpecExchange } from '../kit/vendor-spec';
import {
  IMPORT_PAYLOAD_MAX_BYTES,
  PAGE_SIZE_DEFAULT,
  PAGE_SIZE_MAX,
  PROFILE_MAX_BYTES,
  PROFILES_PER_IMPORT_JOB,
  PROFILES_PER_MEMBERSHIP_CALL,
  RATE_LIMITS,
} from './vendor-limits';

/**
 * An in-memory emulator of the parts of Klaviyo's REST API (JSON:API, `revision` header) that
 * keep a list in sync, for tests, demos and users' own tests:
 *
 *   GET    /api/lists/{id}                                  get_list
 *   GET    /api/lists/{id}/profiles?filter=&page[size]=&page[cursor]=   get_profiles_for_list
 *   POST   /api/lists/{id}/relationships/profiles           add_profiles_to_list (≤ 1,000 ids)
 *   DELETE /api/lists/{id}/relationships/profiles           remove_profiles_from_list (≤ 1,000 ids)
 *   POST   /api/profile-bulk-import-jobs                    bulk_import_profiles (≤ 10,000, ≤ 5 MB)
 *   GET    /api/profile-bulk-import-jobs/{id}               get_bulk_import_profiles_job
 *   GET    /api/profile-bulk-import-jobs/{id}/import-errors get_errors_for_bulk_import_profiles_job
 *
 * As the real API: `Authorization: Klaviyo-API-Key …`, JSON:API error documents
 * (`errors: [{ id, status, code, title, detail, source: { pointer } }]`), per-endpoint burst
 * (1 s) and steady (1 min) fixed windows answered with 429 + Retry-After, bulk imports that
 * upsert asynchronously and report per-profile failures as import errors, nulls that the bulk
 * import ignores (use `meta.patch_properties.unset` to remove a custom property). A job here
 * goes queued → processing → complete (or cancelled) after `jobStatusReads` reads of its status,
 * so tests are deterministic. Limits are Klaviyo's published ones (./vendor-limits.ts).
 *
 * Every request and answer is checked against Klaviyo's OpenAPI document of revision 2026-04-15,
 * one file per operation (test/vendor-specs/klaviyo/apis/): a field, query parameter or value the
 * spec does not allow fails the test run (kit/vendor-spec.ts), and the request is refused with
 * Klaviyo's 400 before the emulated API sees it.
 */

/** What this emulator still does not do that the real API does (docs/connectors.md lists it too). */
export const NOT_EMULATED: readonly string[] = [
  'Revisions: every request is held to the 2026-04-15 document whatever `revision` it sends; older or newer revisions’ differences, and revision sunsets, are not modelled.',
  'Processing time and queueing: a job completes after `jobStatusReads` reads of its status, not after Klaviyo’s seconds to minutes; jobs never expire (expires_at is null).',
  'What a cancelled job applied: cancelJobs makes jobs end cancelled having applied nothing; Klaviyo does not document what a cancelled job leaves behind.',
  'Profile identity beyond e-mail, phone_number and external_id: no merging of profiles, no _kx, no secondary e-mails (meta.patch_identifiers is accepted and ignored), no append/unappend of property values.',
  'Consent and subscriptions: bulk import and list membership never change consent; no suppressions, no double opt-in lists, no subscriptions or predictive_analytics in profile answers.',
  'Filters other than any()/equals() on email for get_profiles_for_list; sort, include, additional-fields and most sparse fieldsets are accepted by the spec check but not applied.',
  'Rate limits are per emulator, not per account and key, and additional-fields’ lower limits are not applied; the burst and steady windows are fixed, not sliding.',
  'Import error codes: every per-profile failure is `invalid` with a pointer; Klaviyo’s other codes and texts are not reproduced.',
];

export const klaviyoOperations = [
  'get_list',
  'get_profiles_for_list',
  'add_profiles_to_list',
  'remove_profiles_from_list',
  'bulk_import_profiles',
  'get_bulk_import_profiles_job',
  'get_errors_for_bulk_import_profiles_job',
] as const;
export type KlaviyoOperation = (typeof klaviyoOperations)[number];

/** Burst per second and steady per minute: Klaviyo's x-klaviyo-ratelimit of each operation. */
export const klaviyoRateLimits: Record<KlaviyoOperation, { burst: number; steady: number }> = RATE_LIMITS;

export interface KlaviyoEmulatorFaults extends CommonFaults {
  /** An import error for this e-mail (the job fails just that profile), or null to accept it. */
  reject?: (email: string) => string | null;
  /** A synchronous 400 pointing at this profile, refusing the whole bulk import request. */
  refuse?: (email: string) => string | null;
  /** Bulk import jobs stay `processing` for ever. */
  stuckJobs?: boolean;
  /** The next `jobs` jobs to complete end `cancelled`, applying nothing. */
  cancelJobs?: { jobs: number };
  /**
   * The next `jobs` jobs to complete skip their last profile without a word: not imported, no
   * import error, so `completed_count` falls short. A short acknowledgement, for the destination.
   */
  shortAck?: { jobs: number };
}

export interface KlaviyoEmulatorOptions {
  port?: number;
  host?: string;
  /** The private API key clients must send. */
  apiKey: string;
  /** Ids of lists that exist from the start. */
  lists?: string[];
  /**
   * Reads of a job's status before it completes (default 2: processing, then complete); 0: a job
   * is complete as soon as it is created (tests and demos that should not wait for polling).
   */
  jobStatusReads?: number;
  /** Enforce the per-endpoint burst and steady limits (default true). */
  rateLimits?: boolean;
  /** Largest request body in bytes (default 5,000,000: the bulk import limit). */
  maxPayloadBytes?: number;
  /**
   * Check every request and answer against Klaviyo's OpenAPI document (default true): an
   * off-spec request is refused with Klaviyo's 400 and recorded as a violation that fails the run.
   */
  specCheck?: boolean;
}

export interface KlaviyoEmulatorStats {
  calls: Record<KlaviyoOperation, number>;
  statuses: Record<number, number>;
  jobsCreated: number;
  /** Profiles upserted by completed jobs (failed ones excluded), re-imports included. */
  profilesImported: number;
}

export interface KlaviyoEmulator {
  /** Base URL for the destination's `baseUrl`. */
  url: string;
  port: number;
  close(): Promise<void>;
  /** Creates an empty list and returns its id (a generated one unless given). */
  createList(id?: string): string;
  /** The list's members by e-mail, with their attributes flattened (custom properties inlined). */
  members(listId: string): Map<string, Attributes>;
  /** Replaces a list's members, creating the list and the profiles as needed. */
  setMembers(listId: string, members: Map<string, Attributes>): void;
  /** Any profile by e-mail, member of a list or not. */
  profile(email: string): { id: string; attributes: Attributes } | undefined;
  stats(): KlaviyoEmulatorStats;
  resetStats(): void;
  faults: {
    set(faults: KlaviyoEmulatorFaults): void;
    clear(name?: keyof KlaviyoEmulatorFaults): void;
    get(): KlaviyoEmulatorFaults;
  };
}

interface StoredProfile {
  id: string;
  email: string | null;
  fields: Record<string, string>;
  properties: Record<string, AttributeValue>;
}

interface ImportedProfile {
  /** The profile resource as sent, for `original_payload`. */
  resource: Record<string, unknown>;
  attributes: Record<string, unknown>;
  unset: string[];
}

interface Job {
  id: string;
  createdAt: string;
  completedAt: string | null;
  reads: number;
  profiles: ImportedProfile[];
  listIds: string[];
  errors: Record<string, unknown>[];
  /** Profiles the job skipped without an import error (the shortAck fault). */
  skipped: number;
  cancelled: boolean;
}

/** A JSON:API error answer, thrown from deep inside a handler. */
class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly title: string,
    readonly detail: string,
    readonly pointer?: string,
    readonly parameter?: string,
  ) {
    super(detail);
  }
}

const invalid = (detail: string, pointer?: string, parameter?: string) =>
  new ApiError(400, 'invalid', 'Invalid input.', detail, pointer, parameter);
const notFound = (detail: string) => new ApiError(404, 'not_found', 'Not found.', detail);

const MUTATING = new Set<KlaviyoOperation>([
  'add_profiles_to_list',
  'remove_profiles_from_list',
  'bulk_import_profiles',
]);
const PROFILE_ATTRIBUTES = new Set<string>(['email', ...KLAVIYO_PROFILE_FIELDS, 'location', 'properties']);
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const E164 = /^\+[1-9]\d{6,14}$/;

export async function startKlaviyoEmulator(options: KlaviyoEmulatorOptions): Promise<KlaviyoEmulator> {
  const jobStatusReads = options.jobStatusReads ?? 2;
  const maxPayloadBytes = options.maxPayloadBytes ?? IMPORT_PAYLOAD_MAX_BYTES;
  const profiles = new Map<string, StoredProfile>();
  const byEmail = new Map<string, string>();
  /** List id → profile id → join sequence (the order list members are paged in). */
  const lists = new Map<string, Map<string, number>>();
  /** Join sequence → when the profile joined (joined_group_at). */
  const joinedAt = new Map<number, string>();
  const jobs = new Map<string, Job>();
  const faults = new FaultBoard<KlaviyoEmulatorFaults>();
  const limiters = new Map<KlaviyoOperation, FixedWindowLimiter>(
    klaviyoOperations.map((op) => [
      op,
      new FixedWindowLimiter([
        { limit: klaviyoRateLimits[op].burst, ms: 1000 },
        { limit: klaviyoRateLimits[op].steady, ms: 60_000 },
      ]),
    ]),
  );
  const stats = new Counters(emptyStats);
  let sequence = 0;
  for (const id of options.lists ?? []) lists.set(id, new Map());

  // --- Storage ------------------------------------------------------------------------------------

  function list(listId: string): Map<string, number> {
    const found = lists.get(listId);
    if (!found) throw notFound(`A list with id ${listId} does not exist.`);
    return found;
  }

  function join(listId: string, profileId: string): void {
    const members = list(listId);
    if (members.has(profileId)) return;
    members.set(profileId, ++sequence);
    joinedAt.set(sequence, new Date().toISOString());
  }

  /** Upsert as the bulk import does: non-null values overwrite, nulls are ignored. */
  function upsert(attributes: Record<string, unknown>, unset: string[]): StoredProfile {
    const email = typeof attributes.email === 'string' ? attributes.email : null;
    let profile = email !== null ? profiles.get(byEmail.get(email) ?? '') : undefined;
    profile ??=
      findByField('phone_number', attributes.phone_number) ??
      findByField('external_id', attributes.external_id);
    if (!profile) {
      profile = { id: profileId(), email: null, fields: {}, properties: {} };
      profiles.set(profile.id, profile);
    }
    if (email !== null && profile.email !== email) {
      if (profile.email !== null) byEmail.delete(profile.email);
      profile.email = email;
      byEmail.set(email, profile.id);
    }
    for (const field of KLAVIYO_PROFILE_FIELDS) {
      const value = attributes[field];
      if (typeof value === 'string') profile.fields[field] = value;
    }
    const properties = (attributes.properties ?? {}) as Record<string, AttributeValue>;
    for (const [name, value] of Object.entries(properties)) {
      if (value !== null) profile.properties[name] = value;
    }
    for (const name of unset) delete profile.properties[name];
    return profile;
  }

  function findByField(field: string, value: unknown): StoredProfile | undefined {
    if (typeof value !== 'string') return undefined;
    for (const profile of profiles.values()) if (profile.fields[field] === value) return profile;
    return undefined;
  }

  // --- Requests -----------------------------------------------------------------------------------

  async function handle(req: EmulatorRequest): Promise<Reply> {
    await faults.latency();
    const route = routeOf(req.method, req.url.pathname);
    if (!route) return errorReply(notFound(`No route for ${req.method} ${req.url.pathname}`));
    stats.current.calls[route.operation]++;

    const refusal = authenticate(req) ?? throttle(route.operation) ?? injectedServerError();
    if (refusal) return refusal;
    if (Buffer.byteLength(req.body) > maxPayloadBytes) {
      return errorReply(
        new ApiError(
          413,
          'request_too_large',
          'Request too large.',
          `Payload exceeds ${maxPayloadBytes} bytes.`,
        ),
      );
    }
    const mutating = MUTATING.has(route.operation);
    const down = mutating ? faults.down() : undefined;
    if (down) return errorReply(serverError(down.status ?? 503));

    let reply: Reply;
    try {
      reply = dispatch(route, req.url.searchParams, req.body, `http://${req.headers.host}`);
    } catch (err) {
      if (err instanceof ApiError) return errorReply(err);
      throw err;
    }
    if (mutating) {
      if (faults.take('applyThenFail')) return errorReply(serverError(500));
      faults.succeeded();
    }
    return { ...reply, headers: { ...reply.headers, ...rateLimitHeaders(route.operation) } };
  }

  function authenticate(req: EmulatorRequest): Reply | undefined {
    const header = req.headers.authorization;
    if (!header) {
      return errorReply(
        new ApiError(
          401,
          'not_authenticated',
          'Authentication credentials were not provided.',
          'Missing or invalid authorization scheme. Please use Klaviyo-API-Key.',
        ),
      );
    }
    if (header !== `Klaviyo-API-Key ${options.apiKey}`) {
      return errorReply(
        new ApiError(
          401,
          'authentication_failed',
          'Incorrect authentication credentials.',
          'Incorrect authentication credentials.',
        ),
      );
    }
    const revision = req.headers.revision;
    if (typeof revision !== 'string' || !/^\d{4}-\d{2}-\d{2}(\.[a-z0-9]+)?$/.test(revision)) {
      return errorReply(invalid('A valid revision header (YYYY-MM-DD) is required.', undefined, 'revision'));
    }
    return undefined;
  }

  function throttle(operation: KlaviyoOperation): Reply | undefined {
    const injected = faults.take('rateLimit');
    let retryAfter: number | undefined;
    if (injected) retryAfter = injected.retryAfterSeconds;
    else if (options.rateLimits ?? true) {
      const full = limiters.get(operation)!.take('account');
      if (full) retryAfter = secondsUntil(full.resetAtMs);
    }
    if (retryAfter === undefined) return undefined;
    const detail = `Request was throttled. Expected available in ${retryAfter} second${retryAfter === 1 ? '' : 's'}.`;
    return {
      ...errorReply(new ApiError(429, 'throttled', 'Request was throttled.', detail)),
      headers: { 'retry-after': String(retryAfter) },
    };
  }

  function injectedServerError(): Reply | undefined {
    const fault = faults.take('serverError');
    if (fault) return errorReply(serverError(fault.status ?? 500));
    return undefined;
  }

  function rateLimitHeaders(operation: KlaviyoOperation): Record<string, string> {
    if (!(options.rateLimits ?? true)) return {};
    const steady = limiters.get(operation)!.report('account');
    return {
      'ratelimit-limit': String(steady.limit),
      'ratelimit-remaining': String(Math.max(0, steady.remaining)),
      'ratelimit-reset': String(secondsUntil(steady.resetAtMs)),
    };
  }

  function dispatch(route: Route, query: URLSearchParams, raw: string, origin: string): Reply {
    switch (route.operation) {
      case 'get_list':
        list(route.id);
        return ok({
          data: {
            type: 'list',
            id: route.id,
            attributes: { name: route.id },
            links: { self: `${origin}/api/lists/${route.id}/` },
          },
        });
      case 'get_profiles_for_list':
        return ok(profilesPage(route.id, query, origin));
      case 'add_profiles_to_list':
      case 'remove_profiles_from_list':
        changeMembership(route.operation, route.id, raw);
        return { status: 204 };
      case 'bulk_import_profiles':
        return { status: 202, body: { data: jobResource(createJob(raw), origin) } };
      case 'get_bulk_import_profiles_job':
        return ok({ data: jobResource(readJob(route.id), origin) });
      case 'get_errors_for_bulk_import_profiles_job':
        return ok(importErrorsPage(route.id, query, origin));
    }
  }

  // --- Lists --------------------------------------------------------------------------------------

  function profilesPage(listId: string, query: URLSearchParams, origin: string) {
    const members = list(listId);
    const size = pageSize(query);
    const after = cursorOf(query);
    const emails = parseEmailFilter(query.get('filter'));
    const fields = query.get('fields[profile]')?.split(',');
    const rows = [...members]
      .filter(([, position]) => position > after)
      .sort((a, b) => a[1] - b[1])
      .map(([id, position]) => ({ profile: profiles.get(id)!, position }))
      .filter(({ profile }) => emails === null || (profile.email !== null && emails.has(profile.email)));
    const page = rows.slice(0, size);
    const more = rows.length > size;
    return {
      data: page.map(({ profile, position }) =>
        profileResource(profile, fields, joinedAt.get(position)!, origin),
      ),
      links: {
        self: `${origin}/api/lists/${listId}/profiles/?${query}`,
        // CollectionLinks: next and prev are URIs, present only when there is such a page.
        ...(more
          ? {
              next: nextLink(
                `${origin}/api/lists/${listId}/profiles/`,
                query,
                page[page.length - 1]!.position,
              ),
            }
          : {}),
      },
    };
  }

  function changeMembership(operation: KlaviyoOperation, listId: string, raw: string): void {
    const members = list(listId);
    const data = field(parseBody(raw), 'data', '/data');
    if (!Array.isArray(data)) throw invalid('data must be an array of profile identifiers.', '/data');
    if (data.length > PROFILES_PER_MEMBERSHIP_CALL) {
      throw invalid(
        `A maximum of ${PROFILES_PER_MEMBERSHIP_CALL} profiles can be sent per request.`,
        '/data',
      );
    }
    const ids = data.map((item, i) => {
      const { type, id } = (item ?? {}) as Record<string, unknown>;
      if (type !== 'profile' || typeof id !== 'string')
        throw invalid('Expected a profile identifier.', `/data/${i}`);
      return id;
    });
    for (const id of ids) {
      if (operation === 'remove_profiles_from_list') members.delete(id);
      else if (profiles.has(id)) join(listId, id);
    }
  }

  // --- Bulk import jobs ---------------------------------------------------------------------------

  function createJob(raw: string): Job {
    const data = field(parseBody(raw), 'data', '/data') as Record<string, unknown> | undefined;
    if (data?.type !== 'profile-bulk-import-job')
      throw invalid("type must be 'profile-bulk-import-job'.", '/data/type');
    const items = field(
      field(data.attributes, 'profiles', '/data/attributes/profiles'),
      'data',
      '/data/attributes/profiles/data',
    );
    if (!Array.isArray(items))
      throw invalid('profiles.data must be an array.', '/data/attributes/profiles/data');
    if (items.length === 0 || items.length > PROFILES_PER_IMPORT_JOB) {
      throw invalid(
        `Between 1 and ${PROFILES_PER_IMPORT_JOB} profiles can be imported per job.`,
        '/data/attributes/profiles/data',
      );
    }
    const imported = items.map(parseImportedProfile);
    const listIds = parseListRelationship(data.relationships);
    const job: Job = {
      id: randomUUID().replace(/-/g, ''),
      createdAt: new Date().toISOString(),
      completedAt: null,
      reads: 0,
      profiles: imported,
      listIds,
      errors: [],
      skipped: 0,
      cancelled: false,
    };
    jobs.set(job.id, job);
    stats.current.jobsCreated++;
    if (jobStatusReads <= 0 && !faults.current.stuckJobs) completeJob(job);
    return job;
  }

  function readJob(jobId: string): Job {
    const job = jobs.get(jobId);
    if (!job) throw notFound(`A profile-bulk-import-job with id ${jobId} does not exist.`);
    if (job.completedAt) return job;
    job.reads++;
    if (job.reads >= jobStatusReads && !faults.current.stuckJobs) completeJob(job);
    return job;
  }

  /** Applies a job: profiles that pass the checks are upserted and joined to the lists. */
  function completeJob(job: Job): void {
    // Counted in jobs, not calls, so not one for faults.take.
    const cancel = faults.current.cancelJobs;
    if (cancel && cancel.jobs > 0) {
      cancel.jobs--;
      if (cancel.jobs === 0) faults.clear('cancelJobs');
      job.cancelled = true;
      job.completedAt = new Date().toISOString();
      return;
    }
    const shortAck = faults.current.shortAck;
    if (shortAck && shortAck.jobs > 0) {
      shortAck.jobs--;
      if (shortAck.jobs === 0) faults.clear('shortAck');
      job.skipped = 1;
    }
    job.profiles.slice(0, job.profiles.length - job.skipped).forEach((item, i) => {
      const failure = asyncFailure(item, i);
      if (failure) {
        job.errors.push(importError(failure.detail, failure.pointer, item.resource));
        return;
      }
      const profile = upsert(item.attributes, item.unset);
      for (const listId of job.listIds) if (lists.has(listId)) join(listId, profile.id);
      stats.current.profilesImported++;
    });
    job.completedAt = new Date().toISOString();
  }

  /** What the job, not the request, finds wrong with a profile. */
  function asyncFailure(item: ImportedProfile, i: number): { detail: string; pointer: string } | null {
    const at = `/data/attributes/profiles/data/${i}/attributes`;
    const { email, phone_number: phone } = item.attributes;
    if (typeof email === 'string' && !EMAIL.test(email))
      return { detail: 'Invalid email address', pointer: `${at}/email` };
    if (typeof phone === 'string' && !E164.test(phone))
      return { detail: 'Invalid phone number format', pointer: `${at}/phone_number` };
    const reason = typeof email === 'string' ? faults.current.reject?.(email) : null;
    return reason ? { detail: reason, pointer: `${at}/email` } : null;
  }

  function importErrorsPage(jobId: string, query: URLSearchParams, origin: string) {
    const job = jobs.get(jobId);
    if (!job) throw notFound(`A profile-bulk-import-job with id ${jobId} does not exist.`);
    const size = pageSize(query);
    const after = cursorOf(query);
    const start = after + 1;
    const page = job.errors.slice(start, start + size);
    const base = `${origin}/api/profile-bulk-import-jobs/${jobId}/import-errors/`;
    return {
      data: page,
      links: {
        self: `${base}?${query}`,
        ...(start + size < job.errors.length ? { next: nextLink(base, query, start + size - 1) } : {}),
      },
    };
  }

  function jobResource(job: Job, origin: string) {
    const status = job.cancelled
      ? 'cancelled'
      : job.completedAt
        ? 'complete'
        : job.reads === 0
          ? 'queued'
          : 'processing';
    const failed = job.completedAt ? job.errors.length : 0;
    return {
      type: 'profile-bulk-import-job',
      id: job.id,
      attributes: {
        status,
        created_at: job.createdAt,
        total_count: job.profiles.length,
        completed_count: job.completedAt ? job.profiles.length - failed - job.skipped : 0,
        failed_count: failed,
        completed_at: job.completedAt,
        expires_at: null,
        started_at: job.reads > 0 ? job.createdAt : null,
      },
      relationships: { lists: { data: job.listIds.map((id) => ({ type: 'list', id })) } },
      links: { self: `${origin}/api/profile-bulk-import-jobs/${job.id}/` },
    };
  }

  // --- Validation of a bulk import profile (synchronous, as the request's schema check) ----------

  function parseImportedProfile(item: unknown, i: number): ImportedProfile {
    const at = `/data/attributes/profiles/data/${i}`;
    const resource = item as Record<string, unknown>;
    if (!resource || typeof resource !== 'object' || resource.type !== 'profile') {
      throw invalid("Each profile must be an object of type 'profile'.", `${at}/type`);
    }
    if (Buffer.byteLength(JSON.stringify(resource)) > PROFILE_MAX_BYTES)
      throw invalid('A profile may not exceed 100KB.', at);
    const attributes = resource.attributes as Record<string, unknown>;
    if (!attributes || typeof attributes !== 'object')
      throw invalid('attributes must be an object.', `${at}/attributes`);
    for (const [name, value] of Object.entries(attributes)) {
      if (!PROFILE_ATTRIBUTES.has(name))
        throw invalid(
          `'${name}' is not a valid field for the resource 'profile'.`,
          `${at}/attributes/${name}`,
        );
      if (name !== 'properties' && name !== 'location' && value !== null && typeof value !== 'string') {
        throw invalid(`'${name}' must be a string.`, `${at}/attributes/${name}`);
      }
    }
    if (
      attributes.properties != null &&
      (typeof attributes.properties !== 'object' || Array.isArray(attributes.properties))
    ) {
      throw invalid('properties must be an object.', `${at}/attributes/properties`);
    }
    if (
      !['email', 'phone_number', 'external_id'].some(
        (name) => typeof attributes[name] === 'string' && attributes[name] !== '',
      )
    ) {
      throw invalid('One of email, phone_number or external_id is required.', `${at}/attributes`);
    }
    const refused = typeof attributes.email === 'string' ? faults.current.refuse?.(attributes.email) : null;
    if (refused) throw invalid(refused, `${at}/attributes/email`);
    return { resource, attributes, unset: parseUnset(resource.meta, at) };
  }

  function parseListRelationship(relationships: unknown): string[] {
    const data = (relationships as { lists?: { data?: unknown } } | undefined)?.lists?.data;
    if (data === undefined) return [];
    if (!Array.isArray(data)) throw invalid('lists.data must be an array.', '/data/relationships/lists/data');
    return data.map((item, i) => {
      const { type, id } = (item ?? {}) as Record<string, unknown>;
      if (type !== 'list' || typeof id !== 'string')
        throw invalid('Expected a list identifier.', `/data/relationships/lists/data/${i}`);
      list(id);
      return id;
    });
  }

  return {
    ...(await startJsonServer(options, {
      handle,
      stats,
      ...(options.specCheck === false
        ? {}
        : {
            spec: {
              name: 'klaviyo-list',
              check: klaviyoSpec(),
              routes: specRoutes,
              // Klaviyo's 400, pointing at the first field the spec check names.
              refuse: (problems: string[]) =>
                errorReply(invalid(problems.join('; '), / at (\/[^:\s]*)/.exec(problems[0] ?? '')?.[1])),
            },
          }),
    })),
    createList: (id = `L${(++sequence).toString(36).toUpperCase()}x`) => {
      if (!lists.has(id)) lists.set(id, new Map());
      return id;
    },
    members: (listId) => {
      const result = new Map<string, Attributes>();
      const members = [...(lists.get(listId) ?? [])].sort((a, b) => a[1] - b[1]);
      for (const [id] of members) {
        const profile = profiles.get(id)!;
        if (profile.email !== null) result.set(profile.email, flatten(profile));
      }
      return result;
    },
    setMembers: (listId, members) => {
      lists.set(listId, new Map());
      for (const [email, attributes] of members) {
        const { fields, properties } = splitAttributes(attributes);
        join(listId, upsert({ ...fields, email, properties }, []).id);
      }
    },
    profile: (email) => {
      const profile = profiles.get(byEmail.get(email) ?? '');
      return profile && { id: profile.id, attributes: flatten(profile) };
    },
    ...statsAndFaults(stats, faults),
  };
}

// --- Klaviyo's spec --------------------------------------------------------------------------------

let spec: SpecCheck | undefined;

/**
 * Klaviyo's OpenAPI document of revision 2026-04-15, one file per operation as Klaviyo publishes
 * them (test/vendor-specs/klaviyo/SOURCE.md), loaded once per process: each endpoint is checked
 * against its own operation's file.
 */
export function klaviyoSpec(): SpecCheck {
  if (spec) return spec;
  const checks = new Map<string, SpecCheck>();
  for (const [operation, path] of Object.entries(SPEC_PATHS)) {
    checks.set(
      operation,
      openApiCheck({
        document: `test/vendor-specs/klaviyo/apis/${operation}.json`,
        operations: { [operation]: path },
      }),
    );
  }
  const of = (exchange: SpecExchange) => checks.get(exchange.endpoint);
  // Klaviyo's own links end in '/', which its paths do not spell: checked without it.
  const bare = (exchange: SpecExchange) => ({ ...exchange, pathname: exchange.pathname.replace(/\/+$/, '') });
  return (spec = {
    request: (exchange) => of(exchange)?.request(bare(exchange)) ?? [],
    response: (exchange, reply) => of(exchange)?.response(bare(exchange), reply) ?? [],
  });
}

/** Each operation as its document's `paths` spell it. */
const SPEC_PATHS: Record<KlaviyoOperation, string> = {
  get_list: 'GET /api/lists/{id}',
  get_profiles_for_list: 'GET /api/lists/{id}/profiles',
  add_profiles_to_list: 'POST /api/lists/{id}/relationships/profiles',
  remove_profiles_from_list: 'DELETE /api/lists/{id}/relationships/profiles',
  bulk_import_profiles: 'POST /api/profile-bulk-import-jobs',
  get_bulk_import_profiles_job: 'GET /api/profile-bulk-import-jobs/{job_id}',
  get_errors_for_bulk_import_profiles_job: 'GET /api/profile-bulk-import-jobs/{id}/import-errors',
};

// --- Helpers ----------------------------------------------------------------------------------------

interface Route {
  operation: KlaviyoOperation;
  id: string;
}

const routes: RouteTable<KlaviyoOperation> = [
  ['GET', /^\/api\/lists\/([^/]+)$/, 'get_list'],
  ['GET', /^\/api\/lists\/([^/]+)\/profiles$/, 'get_profiles_for_list'],
  ['POST', /^\/api\/lists\/([^/]+)\/relationships\/profiles$/, 'add_profiles_to_list'],
  ['DELETE', /^\/api\/lists\/([^/]+)\/relationships\/profiles$/, 'remove_profiles_from_list'],
  ['POST', /^\/api\/profile-bulk-import-jobs()$/, 'bulk_import_profiles'],
  ['GET', /^\/api\/profile-bulk-import-jobs\/([^/]+)$/, 'get_bulk_import_profiles_job'],
  [
    'GET',
    /^\/api\/profile-bulk-import-jobs\/([^/]+)\/import-errors$/,
    'get_errors_for_bulk_import_profiles_job',
  ],
];

/** The same routes with the trailing '/' of Klaviyo's own links, for the spec check. */
const specRoutes: RouteTable<KlaviyoOperation> = routes.map(
  ([method, path, operation]) => [method, new RegExp(path.source.replace(/\$$/, '/*$')), operation] as const,
);

/** Klaviyo's own links end in '/', and it accepts paths with or without it. */
function routeOf(method: string, rawPath: string): Route | undefined {
  const match = matchRoute(routes, method, rawPath.replace(/\/+$/, ''));
  return match && { operation: match.endpoint, id: decodeURIComponent(match.params[0]!) };
}

function errorReply(error: ApiError): Reply {
  const source = error.pointer
    ? { pointer: error.pointer }
    : error.parameter
      ? { parameter: error.parameter }
      : undefined;
  return {
    status: error.status,
    body: {
      errors: [
        {
          id: randomUUID(),
          code: error.code,
          title: error.title,
          detail: error.detail,
          source,
        },
      ],
    },
  };
}

function serverError(status: number): ApiError {
  return new ApiError(status, 'error', 'A server error occurred.', 'A server error occurred.');
}

function ok(body: unknown): Reply {
  return { status: 200, body };
}

function importError(detail: string, pointer: string, payload: Record<string, unknown>) {
  return {
    type: 'import-error',
    id: randomUUID(),
    attributes: {
      code: 'invalid',
      title: 'Invalid input.',
      detail,
      source: { pointer },
      original_payload: payload,
    },
  };
}

function parseBody(raw: string): unknown {
  return parseJson(raw, () => invalid('The request body is not valid JSON.', '/'));
}

function field(value: unknown, name: string, pointer: string): unknown {
  if (!value || typeof value !== 'object') throw invalid(`'${name}' is required.`, pointer);
  return (value as Record<string, unknown>)[name];
}

function parseUnset(meta: unknown, at: string): string[] {
  const unset = (meta as { patch_properties?: { unset?: unknown } } | undefined)?.patch_properties?.unset;
  if (unset === undefined || unset === null) return [];
  const names = typeof unset === 'string' ? [unset] : unset;
  if (!Array.isArray(names) || !names.every((n) => typeof n === 'string')) {
    throw invalid('unset must be a string or an array of strings.', `${at}/meta/patch_properties/unset`);
  }
  return names;
}

function pageSize(query: URLSearchParams): number {
  const text = query.get('page[size]') ?? String(PAGE_SIZE_DEFAULT);
  const size = Number(text);
  if (!/^\d+$/.test(text) || size < 1 || size > PAGE_SIZE_MAX) {
    throw invalid(`Page size must be an integer between 1 and ${PAGE_SIZE_MAX}.`, undefined, 'page[size]');
  }
  return size;
}

function cursorOf(query: URLSearchParams): number {
  const cursor = query.get('page[cursor]');
  if (cursor === null) return -1;
  // Cursors carry a position: a join sequence or an index into a job's errors.
  const after = decodeCursor(cursor);
  if (typeof after !== 'number') throw invalid('Invalid page cursor.', undefined, 'page[cursor]');
  return after;
}

function nextLink(base: string, query: URLSearchParams, after: number): string {
  const next = new URLSearchParams(query);
  next.set('page[cursor]', encodeCursor(after));
  return `${base}?${next}`;
}

/** `any(email,["a","b"])` or `equals(email,"a")` → the e-mails; no filter → null. */
function parseEmailFilter(filter: string | null): Set<string> | null {
  if (filter === null) return null;
  const match = /^(any|equals)\(email,(.*)\)$/s.exec(filter.trim());
  let value: unknown;
  try {
    value = match ? JSON.parse(match[2]!) : undefined;
  } catch {
    value = undefined;
  }
  const emails = match?.[1] === 'any' ? value : [value];
  if (!Array.isArray(emails) || !emails.every((e) => typeof e === 'string')) {
    throw invalid(`Invalid filter: ${filter}`, undefined, 'filter');
  }
  return new Set(emails);
}

function profileResource(
  profile: StoredProfile,
  fields: string[] | undefined,
  joinedGroupAt: string,
  origin: string,
) {
  const all: Record<string, unknown> = {
    email: profile.email,
    ...profile.fields,
    properties: profile.properties,
  };
  // joined_group_at is required in every list member (ListMemberResponseObjectResource), so it is
  // there whatever sparse fieldset was asked for.
  const attributes = {
    ...(fields ? Object.fromEntries(fields.map((name) => [name, all[name] ?? null])) : all),
    joined_group_at: joinedGroupAt,
  };
  return {
    type: 'profile',
    id: profile.id,
    attributes,
    links: { self: `${origin}/api/profiles/${profile.id}/` },
  };
}

function flatten(profile: StoredProfile): Attributes {
  return { ...profile.fields, ...profile.properties };
}

/** The same split the destination makes: Klaviyo's profile fields top-level, the rest custom. */
function splitAttributes(attributes: Attributes) {
  const fields: Record<string, AttributeValue> = {};
  const properties: Record<string, AttributeValue> = {};
  for (const [name, value] of Object.entries(attributes)) {
    if ((KLAVIYO_PROFILE_FIELDS as readonly string[]).includes(name)) fields[name] = value;
    else properties[name] = value;
  }
  return { fields, properties };
}

let profileCounter = 0;
/** Klaviyo profile ids are 26-character ULIDs; these only need to look the part and be unique. */
function profileId(): string {
  return `01K${(++profileCounter).toString(36).toUpperCase().padStart(23, '0')}`;
}

function emptyStats(): KlaviyoEmulatorStats {
  return {
    calls: zeroCounts(klaviyoOperations),
    statuses: {},
    jobsCreated: 0,
    profilesImported: 0,
  };
}

/**
 * The shared destination contract suite's view of this emulator (test/connectors/contract.test.ts):
 * a fresh emulator and list per start, jobs that complete as soon as they are created (so nothing
 * waits for a poll), profiles keyed by e-mail with a profile field and a custom property, an
 * address the job fails as invalid, and a job that skips a profile without a word.
 */
export const contractHarness: ContractHarness = {
  type: 'klaviyo-list',
  async start() {
    const apiKey = 'pk_contract_7e3b9c1d';
    const listId = 'Ctr4ct';
    const emu = await startKlaviyoEmulator({ apiKey, lists: [listId], jobStatusReads: 0 });
    return {
      settings: { type: 'klaviyo-list', baseUrl: emu.url, listId, apiKeySecret: 'KLAVIYO_CONTRACT_KEY' },
      secrets: { KLAVIYO_CONTRACT_KEY: apiKey },
      key: (i) => `profile${i}@example.com`,
      attributes: (i) => ({ first_name: `K${i}`, plan: i % 2 ? 'gold' : 'free' }),
      members: async () => [...emu.members(listId).keys()],
      rateLimit: (calls) => emu.faults.set({ rateLimit: { calls, retryAfterSeconds: 1 } }),
      serverError: (calls) => emu.faults.set({ serverError: { calls } }),
      shortAcknowledgeNext: () => emu.faults.set({ shortAck: { jobs: 1 } }),
      refusedKey: () => 'not-an-email',
      received: () => Object.values(emu.stats().statuses).reduce((sum, n) => sum + n, 0),
      close: () => emu.close(),
    };
  },
};
