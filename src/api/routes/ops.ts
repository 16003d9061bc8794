/**
 * Operations: jobs (list, show, cancel), restore tests (start a verify job, its history) and
 * the audit log (filtered and paged listing, chain check), plus the hook that appends every
 * authenticated mutation to the audit log before its answer leaves.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Counter, Gauge, Histogram } from 'prom-client';
import { Alerts, AuditLog, GarbageCollector, JOB_STATES, Jobs, JobNotFound, Retention, Schedule, Scrubber, Verifications, type JobState, type LibraryPolicy } from '../../jobs/index.js';
import type { ApiContext } from '../app.js';
import { ApiError } from '../errors.js';
import { barcode, errors, libName } from '../schemas.js';

export interface Ops {
  jobs: Jobs;
  verifications: Verifications;
  audit: AuditLog;
  retention: Retention;
  gc: GarbageCollector;
  scrub: Scrubber;
  alerts: Alerts;
  schedule: Schedule;
}

/** How often the expire job runs on its own (VTL_EXPIRE_EVERY_MS; 0 turns it off). */
const EXPIRE_EVERY_MS = Number(process.env.VTL_EXPIRE_EVERY_MS ?? 3_600_000);
/** How often GC runs on its own (VTL_GC_EVERY_MS; 0 turns it off). */
const GC_EVERY_MS = Number(process.env.VTL_GC_EVERY_MS ?? 86_400_000);
/** How often scrub runs on its own (VTL_SCRUB_EVERY_MS, default weekly; 0 turns it off). */
const SCRUB_EVERY_MS = Number(process.env.VTL_SCRUB_EVERY_MS ?? 7 * 86_400_000);
/** How often a random cartridge gets a restore test (VTL_VERIFY_EVERY_MS, default daily; 0 turns it off). */
const VERIFY_EVERY_MS = Number(process.env.VTL_VERIFY_EVERY_MS ?? 86_400_000);
/** How often disk capacity is checked against VTL_CAPACITY_ALERT (a share, default 0.9). */
const CAPACITY_EVERY_MS = Number(process.env.VTL_CAPACITY_EVERY_MS ?? 300_000);

/** The operations objects over the service's LevelDB; runs cut off by the last stop become `interrupted`. */
export async function openOps(ctx: Pick<ApiContext, 'store' | 'libraries' | 'streams' | 'replication' | 'audit'>): Promise<Ops> {
  const jobs = new Jobs(ctx.store.db);
  await jobs.recover();
  const audit = ctx.audit ?? new AuditLog(ctx.store.db);
  const env = (k: string) => (process.env[k] === undefined ? undefined : Number(process.env[k]));
  const alerts = new Alerts(ctx.store.db, audit, { retryMs: env('VTL_ALERT_RETRY_MS'), attempts: env('VTL_ALERT_ATTEMPTS'), capacityThreshold: env('VTL_CAPACITY_ALERT') });
  jobs.onEnd((rec) => alerts.jobEnded(rec));
  const retention = new Retention(ctx.store.db, jobs, ctx.libraries);
  const schedule = new Schedule(jobs, { catchUpMs: env('VTL_SCHEDULE_CATCH_UP_MS') });
  const gc = new GarbageCollector(jobs, ctx.store.chunks, ctx.store.streams);
  if (EXPIRE_EVERY_MS > 0) await schedule.every(EXPIRE_EVERY_MS, 'expire', () => retention.start('schedule'));
  if (GC_EVERY_MS > 0) await schedule.every(GC_EVERY_MS, 'gc', () => gc.start('schedule'));
  const scrub = new Scrubber(jobs, ctx.store.chunks, ctx.store.streams, ctx.libraries, ctx.replication?.replicator);
  if (SCRUB_EVERY_MS > 0) await schedule.every(SCRUB_EVERY_MS, 'scrub', () => scrub.start('schedule'));
  const verifications = new Verifications(ctx.store.db, jobs, ctx.libraries, ctx.streams ?? ctx.store.streams);
  // A restore test an operator asked for checks one chosen cartridge; the random one still runs.
  if (VERIFY_EVERY_MS > 0) await schedule.every(VERIFY_EVERY_MS, 'verify', () => verifications.startRandom(), { counts: (r) => r.requestedBy === 'schedule' });
  if (CAPACITY_EVERY_MS > 0) schedule.task(CAPACITY_EVERY_MS, 'capacity check', () => alerts.checkCapacity(ctx.store.dir));
  return { jobs, verifications, audit, retention, gc, scrub, alerts, schedule };
}

const str = { type: 'string' } as const;
const int = { type: 'integer' } as const;
const num = { type: 'number' } as const;
const nullable = <T extends object>(s: T) => ({ anyOf: [s, { type: 'null' }] }) as const;
const anything = {} as const;

export const jobSchema = {
  type: 'object',
  properties: {
    id: str,
    kind: str,
    target: nullable(str),
    state: { type: 'string', enum: [...JOB_STATES] },
    requestedBy: nullable(str),
    createdAt: str,
    finishedAt: nullable(str),
    progress: { type: 'object', properties: { done: num, total: nullable(num), unit: str, message: nullable(str) } },
    result: anything,
    error: nullable(str),
  },
} as const;

const verdictSchema = { type: 'object', properties: { file: int, bytes: num, ok: { type: 'boolean' }, error: nullable(str) } } as const;
export const verifyReportSchema = {
  type: 'object',
  properties: {
    barcode: str,
    jobId: str,
    startedAt: str,
    finishedAt: str,
    seconds: num,
    files: int,
    bytes: num,
    mbPerSecond: num,
    result: { type: 'string', enum: ['passed', 'failed', 'cancelled'] },
    failedFiles: { type: 'array', items: verdictSchema },
  },
} as const;

export const auditEntrySchema = {
  type: 'object',
  properties: {
    seq: int,
    at: str,
    actor: str,
    tokenId: nullable(str),
    role: nullable(str),
    action: str,
    target: str,
    status: int,
    result: { type: 'string', enum: ['ok', 'error', 'interrupted'] },
    detail: nullable(str),
    prevHash: str,
    hash: str,
  },
} as const;

const jobId = { type: 'string', pattern: '^[0-9a-z]{1,40}$' } as const;
const paging = { offset: { type: 'integer', minimum: 0, default: 0 }, limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } } as const;
const page = (items: object) => ({ type: 'object', properties: { items: { type: 'array', items }, total: int, offset: int, limit: int } }) as const;

/** Job durations, GC reclaimed bytes and alerts in the service's /metrics. */
function opsMetrics(ctx: ApiContext, ops: Ops): void {
  const registers = [ctx.metrics.registry];
  const durations = new Histogram({ name: 'vtl_job_duration_seconds', help: 'Duration of ended jobs', labelNames: ['kind', 'state'], buckets: [0.1, 1, 10, 60, 600, 3600, 21600], registers });
  const reclaimed = new Counter({ name: 'vtl_gc_reclaimed_bytes_total', help: 'Container bytes GC freed', registers });
  const alerted = new Counter({ name: 'vtl_alerts_total', help: 'Alerts raised', labelNames: ['kind'], registers });
  ops.jobs.onEnd((rec) => {
    if (rec.finishedAt) durations.observe({ kind: rec.kind, state: rec.state }, (Date.parse(rec.finishedAt) - Date.parse(rec.createdAt)) / 1000);
    const r = rec.result as { reclaimedBytes?: number } | null;
    if (rec.kind === 'gc' && r?.reclaimedBytes) reclaimed.inc(r.reclaimedBytes);
  });
  ops.alerts.onAlert((a) => alerted.inc({ kind: a.kind }));
  const store = ctx.store.chunks;
  new Counter({
    name: 'vtl_chunk_lookups_total',
    help: 'Chunk lookups on ingest by the level that answered: recent (open container), locality, bloom (known new), leveldb',
    labelNames: ['level'],
    registers,
    collect() {
      this.reset();
      for (const [level, n] of Object.entries(store.lookupCounts())) this.inc({ level }, n);
    },
  });
  new Gauge({
    name: 'vtl_store_compression_ratio',
    help: 'Raw bytes of unique chunks per stored byte',
    registers,
    collect() {
      const s = store.getStats();
      this.set(s.storedBytes > 0 ? s.uniqueBytes / s.storedBytes : 0);
    },
  });
  new Gauge({
    name: 'vtl_store_dedup_ratio',
    help: 'Logical bytes of all cartridges per unique byte',
    registers,
    async collect() {
      const logical = (await ctx.libraries.tapes.totals()).logicalBytes;
      const u = store.getStats().uniqueBytes;
      this.set(u > 0 ? logical / u : 0);
    },
  });
}

export async function opsRoutes(app: FastifyInstance, ctx: ApiContext, ops: Ops): Promise<void> {
  opsMetrics(ctx, ops);
  const notFound = async <T>(p: Promise<T>): Promise<T> =>
    p.catch((err) => {
      throw err instanceof JobNotFound ? new ApiError(404, 'NOT_FOUND', err.message) : err;
    });

  app.get<{ Querystring: { kind?: string; state?: JobState; target?: string; offset: number; limit: number } }>('/api/v1/jobs', {
    config: { access: 'auditor' },
    schema: {
      summary: 'list jobs, newest first, filtered by kind, state and target',
      tags: ['jobs'],
      querystring: { type: 'object', additionalProperties: false, properties: { kind: str, state: { type: 'string', enum: [...JOB_STATES] }, target: str, ...paging } },
      response: { 200: page(jobSchema), ...errors },
    },
    handler: async (req) => ({ ...(await ops.jobs.list(req.query)), offset: req.query.offset, limit: req.query.limit }),
  });

  app.get<{ Params: { id: string } }>('/api/v1/jobs/:id', {
    config: { access: 'auditor' },
    schema: { summary: 'show a job: state, progress, result', tags: ['jobs'], params: { type: 'object', required: ['id'], properties: { id: jobId } }, response: { 200: jobSchema, ...errors } },
    handler: async (req) => notFound(ops.jobs.get(req.params.id)),
  });

  app.post<{ Params: { id: string } }>('/api/v1/jobs/:id/cancel', {
    config: { access: 'operator' },
    schema: { summary: 'ask a running job to stop (an ended job is left as it is)', tags: ['jobs'], params: { type: 'object', required: ['id'], properties: { id: jobId } }, response: { 200: jobSchema, ...errors } },
    handler: async (req) => notFound(ops.jobs.cancel(req.params.id)),
  });

  app.post<{ Params: { barcode: string } }>('/api/v1/cartridges/:barcode/verify', {
    config: { access: 'operator' },
    schema: {
      summary: 'start a restore test: read every tape file and check its checksum (a job)',
      tags: ['cartridges', 'jobs'],
      params: { type: 'object', required: ['barcode'], properties: { barcode } },
      response: { 202: jobSchema, ...errors },
    },
    handler: async (req, reply) => {
      if (ops.jobs.running('verify', req.params.barcode).length) throw new ApiError(409, 'JOB_RUNNING', `a verify job of ${req.params.barcode} is already running`);
      return reply.code(202).send(await ops.verifications.start(req.params.barcode, req.token?.name ?? null));
    },
  });

  app.get<{ Params: { barcode: string }; Querystring: { limit: number } }>('/api/v1/cartridges/:barcode/verifications', {
    config: { access: 'auditor' },
    schema: {
      summary: 'restore-test reports of a cartridge, newest first',
      tags: ['cartridges', 'jobs'],
      params: { type: 'object', required: ['barcode'], properties: { barcode } },
      querystring: { type: 'object', additionalProperties: false, properties: { limit: paging.limit } },
      response: { 200: { type: 'object', properties: { items: { type: 'array', items: verifyReportSchema } } }, ...errors },
    },
    handler: async (req) => {
      await ctx.libraries.getCartridge(req.params.barcode);
      return { items: await ops.verifications.list(req.params.barcode, req.query.limit) };
    },
  });

  app.get<{ Querystring: { since?: string; until?: string; actor?: string; action?: string; offset: number; limit: number } }>('/api/v1/audit', {
    config: { access: 'auditor' },
    schema: {
      summary: 'the audit log, oldest first: filtered by time (since inclusive, until exclusive), actor (token name or id) and action prefix; paged',
      tags: ['audit'],
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: { since: { type: 'string', format: 'date-time' }, until: { type: 'string', format: 'date-time' }, actor: str, action: str, ...paging },
      },
      response: { 200: page(auditEntrySchema), ...errors },
    },
    handler: async (req) => {
      const q = req.query;
      const iso = (d?: string) => (d === undefined ? undefined : new Date(d).toISOString());
      return { ...(await ops.audit.list({ ...q, since: iso(q.since), until: iso(q.until) })), offset: q.offset, limit: q.limit };
    },
  });

  const libParams = { type: 'object', required: ['lib'], properties: { lib: libName } } as const;
  const policySchema = { type: 'object', properties: { scratchAfterDays: nullable(int) } } as const;
  app.get<{ Params: { lib: string } }>('/api/v1/libraries/:lib/retention', {
    config: { access: 'auditor' },
    schema: { summary: "a library's retention policy", tags: ['retention'], params: libParams, response: { 200: policySchema, ...errors } },
    handler: async (req) => ops.retention.policy(req.params.lib),
  });

  app.put<{ Params: { lib: string }; Body: Partial<LibraryPolicy> }>('/api/v1/libraries/:lib/retention', {
    config: { access: 'operator' },
    schema: {
      summary: "set a library's retention policy: cartridges holding data get a retention date that many days ahead, and return to scratch after it",
      tags: ['retention'],
      params: libParams,
      body: { type: 'object', additionalProperties: false, minProperties: 1, properties: { scratchAfterDays: { type: ['integer', 'null'], minimum: 1, maximum: 36500 } } },
      response: { 200: policySchema, ...errors },
    },
    handler: async (req) => ops.retention.setPolicy(req.params.lib, req.body),
  });

  app.post<{ Body: { dryRun?: boolean } }>('/api/v1/retention/expire', {
    config: { access: 'operator' },
    schema: {
      summary: 'start the expire job: date cartridges by policy, return expired ones to scratch (dryRun: only report)',
      tags: ['retention', 'jobs'],
      body: { type: 'object', additionalProperties: false, properties: { dryRun: { type: 'boolean' } } },
      response: { 202: jobSchema, ...errors },
    },
    handler: async (req, reply) => {
      if (ops.jobs.running('expire').length) throw new ApiError(409, 'JOB_RUNNING', 'an expire job is already running');
      return reply.code(202).send(await ops.retention.start(req.token?.name ?? null, { dryRun: req.body.dryRun }));
    },
  });

  app.post<{ Body: { threshold?: number } }>('/api/v1/gc', {
    config: { access: 'operator' },
    schema: {
      summary: 'start space reclamation (a job): mark live chunks from all recipes, delete dead containers, compact those below the live threshold (default 0.5)',
      tags: ['jobs'],
      body: { type: 'object', additionalProperties: false, properties: { threshold: { type: 'number', exclusiveMinimum: 0, maximum: 1 } } },
      response: { 202: jobSchema, ...errors },
    },
    handler: async (req, reply) => {
      if (ops.jobs.running('gc').length) throw new ApiError(409, 'JOB_RUNNING', 'a GC job is already running');
      return reply.code(202).send(await ops.gc.start(req.token?.name ?? null, { threshold: req.body.threshold }));
    },
  });

  app.post<{ Body: { maxMBps?: number } }>('/api/v1/scrub', {
    config: { access: 'operator' },
    schema: {
      summary: 'start a scrub (a job): read every container, check every chunk, list damaged chunks and the cartridges that depend on them',
      tags: ['jobs'],
      body: { type: 'object', additionalProperties: false, properties: { maxMBps: { type: 'number', minimum: 0 } } },
      response: { 202: jobSchema, ...errors },
    },
    handler: async (req, reply) => {
      if (ops.jobs.running('scrub').length) throw new ApiError(409, 'JOB_RUNNING', 'a scrub job is already running');
      return reply.code(202).send(await ops.scrub.start(req.token?.name ?? null, { maxMBps: req.body.maxMBps }));
    },
  });

  const alertSchema = { type: 'object', properties: { id: str, at: str, kind: str, message: str, details: { type: 'object', additionalProperties: true } } } as const;
  const hookSchema = { type: 'object', properties: { id: str, url: str, createdAt: str } } as const;
  app.get<{ Querystring: { limit: number } }>('/api/v1/alerts', {
    config: { access: 'auditor' },
    schema: {
      summary: 'recent alerts, newest first (failed jobs, scrub damage, capacity)',
      tags: ['alerts'],
      querystring: { type: 'object', additionalProperties: false, properties: { limit: paging.limit } },
      response: { 200: { type: 'object', properties: { items: { type: 'array', items: alertSchema } } }, ...errors },
    },
    handler: async (req) => ({ items: await ops.alerts.list(req.query.limit) }),
  });

  app.get('/api/v1/alerts/webhooks', {
    config: { access: 'admin' },
    schema: { summary: 'webhooks that receive alerts (JSON POST)', tags: ['alerts'], response: { 200: { type: 'object', properties: { items: { type: 'array', items: hookSchema } } }, ...errors } },
    handler: async () => ({ items: await ops.alerts.webhooks() }),
  });

  app.post<{ Body: { url: string } }>('/api/v1/alerts/webhooks', {
    config: { access: 'admin' },
    schema: {
      summary: 'add a webhook: every alert is POSTed to it as JSON, retried with backoff',
      tags: ['alerts'],
      body: { type: 'object', required: ['url'], additionalProperties: false, properties: { url: { type: 'string', minLength: 8, maxLength: 2000 } } },
      response: { 201: hookSchema, ...errors },
    },
    handler: async (req, reply) => {
      try {
        return reply.code(201).send(await ops.alerts.addWebhook(req.body.url));
      } catch (err) {
        throw new ApiError(400, 'INVALID', (err as Error).message);
      }
    },
  });

  app.delete<{ Params: { id: string } }>('/api/v1/alerts/webhooks/:id', {
    config: { access: 'admin' },
    schema: {
      summary: 'remove a webhook',
      tags: ['alerts'],
      params: { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: '^[0-9a-f]{1,32}$' } } },
      response: { 200: { type: 'object', properties: { ok: { type: 'boolean' } } }, ...errors },
    },
    handler: async (req) => {
      if (!(await ops.alerts.removeWebhook(req.params.id))) throw new ApiError(404, 'NOT_FOUND', `no webhook with id ${JSON.stringify(req.params.id)}`);
      return { ok: true };
    },
  });

  app.get('/api/v1/audit/verify', {
    config: { access: 'auditor' },
    schema: {
      summary: 'check the audit log hash chain: intact, or the first edited or missing entry',
      tags: ['audit'],
      response: {
        200: { type: 'object', properties: { intact: { type: 'boolean' }, entries: int, problem: nullable({ type: 'object', properties: { seq: int, reason: str } }) } },
        ...errors,
      },
    },
    handler: async () => ops.audit.verify(),
  });
}

const MUTATIONS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * Appends every authenticated mutation (including refused ones) to the audit log before the
 * answer is sent, so a client never sees a result the log does not hold. A mutation that
 * reaches its handler is noted first (AuditLog.begin): one the server dies in is logged as
 * interrupted at the next start. Calls without a valid token are not logged: they have no
 * actor and changed nothing.
 */
export function auditHook(app: FastifyInstance, audit: AuditLog): void {
  const who = (req: FastifyRequest) => ({
    actor: req.token!.name,
    tokenId: req.token!.id,
    role: req.token!.role,
    action: `${req.method} ${req.routeOptions.url ?? req.url.split('?')[0]}`,
    target: req.url.split('?')[0],
  });
  app.addHook('preHandler', async (req: FastifyRequest) => {
    if (MUTATIONS.has(req.method) && req.token) req.auditStarted = await audit.begin(who(req));
  });
  app.addHook('onSend', async (req: FastifyRequest, reply: FastifyReply, payload: unknown) => {
    if (!MUTATIONS.has(req.method) || !req.token) return payload;
    const status = reply.statusCode;
    try {
      await audit.append(
        { ...who(req), status, result: status < 400 ? 'ok' : 'error', detail: status < 400 ? (req.auditDetail ?? null) : errorCode(payload) },
        req.auditStarted,
      );
    } catch (err) {
      // The answer stands (a full disk must not turn it into another error). The note `begin`
      // made is still there: the next start logs this request as interrupted, so it is not lost.
      console.error(`vtl: audit log append failed (${req.method} ${req.url.split('?')[0]}, answered ${status}): ${(err as Error).message}; the next start logs it from its note`);
    }
    return payload;
  });
}

function errorCode(payload: unknown): string | null {
  if (typeof payload !== 'string') return null;
  try {
    const b = JSON.parse(payload) as { error?: string; message?: string };
    return b.error ? `${b.error}: ${b.message ?? ''}`.slice(0, 300) : null;
  } catch {
    return null;
  }
}
