import { z } from 'zod';
import { realSleep, type JsonRequest, type Sleep } from '../kit/http';
import { lazySecret, parseAnswer } from '../kit/index';
import type { DestinationContext } from '../kit/module';
import { DestinationError, type Limits } from '../../core/destination';
import { KLAVIYO_TYPE, type KlaviyoListConfig } from './settings';
import { PAGE_SIZE_MAX, RATE_LIMITS } from './vendor-limits';

/**
 * The parts of Klaviyo's JSON:API (revision-pinned) that keep a list in sync, as calls: the list,
 * its profiles, removals from it, and bulk import jobs (create, wait for, read the errors of).
 * Every call goes through the context's HTTP client under its operation's name, which is how the
 * run counts it: writes (imports, job reads, removals) on the account's write quota at
 * `callsPerSecond`, reads of the list and its profiles on their own, larger quota.
 */

export type Operation =
  | 'get_list'
  | 'get_profiles_for_list'
  | 'remove_profiles_from_list'
  | 'bulk_import_profiles'
  | 'get_bulk_import_profiles_job'
  | 'get_errors_for_bulk_import_profiles_job';

/** Knobs of the bulk import jobs, for tests and tuning; production uses the defaults. */
export interface KlaviyoJobOptions {
  /** First wait before reading a job's status; later waits double up to maxPollIntervalMs. */
  pollIntervalMs?: number;
  maxPollIntervalMs?: number;
  /** The waits between reads of a job's status (tests: one that does not wait). */
  sleep?: Sleep;
}

/**
 * Reads (get_list, get_profiles_for_list) have their own, larger quota: 75/s burst, 750/min each
 * (their x-klaviyo-ratelimit, vendor-limits.ts).
 */
const READ_CALLS_PER_SECOND =
  Math.min(RATE_LIMITS.get_list.steady, RATE_LIMITS.get_profiles_for_list.steady) / 60;
/** Profiles per page of get_profiles_for_list: Klaviyo's maximum. */
export const PROFILES_PAGE = PAGE_SIZE_MAX;

const READS = new Set<Operation>(['get_list', 'get_profiles_for_list']);
const JOB_OPERATIONS = new Set<Operation>([
  'get_bulk_import_profiles_job',
  'get_errors_for_bulk_import_profiles_job',
]);

const jobSchema = z.object({
  data: z.object({
    id: z.string(),
    attributes: z.object({
      status: z.enum(['queued', 'processing', 'complete', 'cancelled']),
      completed_count: z.number().nullable().optional(),
      failed_count: z.number().nullable().optional(),
    }),
  }),
});
export type JobAttributes = z.output<typeof jobSchema>['data']['attributes'];

const linksSchema = z.object({ next: z.string().nullable().optional() }).optional();
const importErrorsSchema = z.object({
  data: z.array(
    z.object({
      attributes: z.object({
        code: z.string(),
        detail: z.string(),
        source: z.object({ pointer: z.string().nullable().optional() }).nullable().optional(),
        original_payload: z.unknown().optional(),
      }),
    }),
  ),
  links: linksSchema,
});
export type ImportError = z.output<typeof importErrorsSchema>['data'][number]['attributes'];
const profilesSchema = z.object({
  data: z.array(
    z.object({ id: z.string(), attributes: z.object({ email: z.string().nullable().optional() }) }),
  ),
  links: linksSchema,
});
/** The list: only its name is read (a list that is there is all verifying it asks). */
const listSchema = z.object({
  data: z.object({ attributes: z.object({ name: z.string().optional() }).optional() }),
});

export type KlaviyoApi = ReturnType<typeof createKlaviyoApi>;

export function createKlaviyoApi(
  config: KlaviyoListConfig & { listId: string },
  context: DestinationContext,
  writeLimits: Limits,
  options: KlaviyoJobOptions = {},
) {
  const baseUrl = config.baseUrl.replace(/\/+$/, '');
  const listPath = `/api/lists/${encodeURIComponent(config.listId)}`;
  const sleep = options.sleep ?? realSleep;
  const apiKey = lazySecret(context.secrets, config.apiKeySecret, KLAVIYO_TYPE);
  const hints = {
    401: `the private API key was refused — check the secret named in apiKeySecret ('${config.apiKeySecret}')`,
    403: `the API key lacks a scope (lists:read, lists:write, profiles:read, profiles:write) — check the key in '${config.apiKeySecret}'`,
    404: `Klaviyo has no list '${config.listId}' in the account of the key in '${config.apiKeySecret}' — check listId`,
  };
  // Private keys share one quota per Klaviyo account: every list behind the same key does too.
  const account = `klaviyo:${baseUrl}:${config.apiKeySecret}`;
  const defaults = { service: KLAVIYO_TYPE, hints };
  const writes = context.http({ account, limits: writeLimits, defaults });
  const reads = context.http({
    account: `${account}:reads`,
    limits: { recordsPerCall: PROFILES_PAGE, callsPerSecond: READ_CALLS_PER_SECOND },
    defaults,
  });

  /** One API call, counted under its operation, its answer checked. */
  async function call<T>(
    operation: Operation,
    method: JsonRequest['method'],
    path: string,
    schema: z.ZodType<T>,
    body?: unknown,
  ): Promise<T> {
    const key = apiKey();
    const response = await (READS.has(operation) ? reads : writes).request(operation, {
      method,
      url: path.startsWith('http') ? path : `${baseUrl}${path}`,
      body,
      headers: {
        authorization: `Klaviyo-API-Key ${key}`,
        revision: config.revision,
        accept: 'application/vnd.api+json',
        ...(body === undefined ? {} : { 'content-type': 'application/vnd.api+json' }),
      },
      ...(JOB_OPERATIONS.has(operation)
        ? { hints: { ...hints, 404: 'Klaviyo no longer knows this bulk import job' } }
        : {}),
      // The redaction of the authorization header knows Bearer/Basic/Token prefixes, not Klaviyo's
      // own `Klaviyo-API-Key` scheme: a server echoing the bare key must not leak it into a message.
      redactValues: [key],
    });
    return parseAnswer(
      schema,
      response,
      `${KLAVIYO_TYPE}: unexpected answer from ${method} ${path} (is baseUrl Klaviyo's API, and revision ${config.revision} supported?)`,
    );
  }

  /** A `links.next` from the server, as a path on our base URL: the key only ever goes there. */
  function sameOrigin(link: string | null | undefined): string | null {
    if (!link) return null;
    const next = new URL(link, baseUrl);
    return `${new URL(baseUrl).origin}${next.pathname}${next.search}`;
  }

  return {
    /** The list itself, with its name (a 404 says it is not in the key's account). */
    async getList() {
      return (await call('get_list', 'GET', listPath, listSchema)).data;
    },

    /** Starts a bulk import job of these profile resources, joining them to the list. */
    async createJob(profiles: Record<string, unknown>[]) {
      const document = {
        data: {
          type: 'profile-bulk-import-job',
          attributes: { profiles: { data: profiles } },
          relationships: { lists: { data: [{ type: 'list', id: config.listId }] } },
        },
      };
      const created = await call(
        'bulk_import_profiles',
        'POST',
        '/api/profile-bulk-import-jobs',
        jobSchema,
        document,
      );
      return created.data;
    },

    /** Polls with doubling waits until the job is done or jobTimeoutSeconds of waiting are spent. */
    async waitForJob(jobId: string, initial: JobAttributes): Promise<JobAttributes> {
      const budgetMs = config.jobTimeoutSeconds * 1000;
      let interval = options.pollIntervalMs ?? 1000;
      let waited = 0;
      let attributes = initial;
      while (attributes.status === 'queued' || attributes.status === 'processing') {
        if (waited >= budgetMs) {
          throw new DestinationError(
            `${KLAVIYO_TYPE}: bulk import job ${jobId} is still ${attributes.status} after ${config.jobTimeoutSeconds} s; the page is sent again on retry (imports are upserts)`,
            'retryable',
          );
        }
        const wait = Math.min(interval, budgetMs - waited);
        await sleep(wait);
        waited += wait;
        interval = Math.min(interval * 2, options.maxPollIntervalMs ?? 10_000);
        const job = await call(
          'get_bulk_import_profiles_job',
          'GET',
          `/api/profile-bulk-import-jobs/${jobId}`,
          jobSchema,
        );
        attributes = job.data.attributes;
      }
      return attributes;
    },

    /** The import errors of a finished job, a page at a time. */
    async *importErrorPages(jobId: string): AsyncGenerator<ImportError[]> {
      let url: string | null = `/api/profile-bulk-import-jobs/${jobId}/import-errors?page%5Bsize%5D=100`;
      while (url !== null) {
        const page: z.output<typeof importErrorsSchema> = await call(
          'get_errors_for_bulk_import_profiles_job',
          'GET',
          url,
          importErrorsSchema,
        );
        yield page.data.map((error) => error.attributes);
        url = sameOrigin(page.links?.next);
      }
    },

    /** Profile ids of those `emails` (at most one page's worth) that are in the list. */
    async memberIds(emails: string[]): Promise<string[]> {
      const ids: string[] = [];
      const query = new URLSearchParams({
        filter: `any(email,${JSON.stringify(emails)})`,
        'fields[profile]': 'email',
        'page[size]': String(PROFILES_PAGE),
      });
      let url: string | null = `${listPath}/profiles?${query}`;
      while (url !== null) {
        const page: z.output<typeof profilesSchema> = await call(
          'get_profiles_for_list',
          'GET',
          url,
          profilesSchema,
        );
        ids.push(...page.data.map((profile) => profile.id));
        url = sameOrigin(page.links?.next);
      }
      return ids;
    },

    /** Takes these profiles (≤ 1,000 ids) out of the list; the profiles themselves stay. */
    async removeProfiles(ids: string[]): Promise<void> {
      const data = ids.map((id) => ({ type: 'profile', id }));
      await call('remove_profiles_from_list', 'DELETE', `${listPath}/relationships/profiles`, z.unknown(), {
        data,
      });
    },

    /** One page of the list's profiles, in join order, and the cursor of the next one. */
    async profilesPage(cursor: string | null, size: number) {
      const query = new URLSearchParams({ 'fields[profile]': 'email', 'page[size]': String(size) });
      if (cursor !== null) query.set('page[cursor]', cursor);
      const page = await call(
        'get_profiles_for_list',
        'GET',
        `${listPath}/profiles?${query}`,
        profilesSchema,
      );
      const next = page.links?.next ? new URL(page.links.next).searchParams.get('page[cursor]') : null;
      return { profiles: page.data, next };
    },
  };
}
