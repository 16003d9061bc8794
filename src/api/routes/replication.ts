/**
 * Replication (region A: targets, policies, jobs, per-cartridge state, the recovery key) and
 * disaster recovery (region B: attached sources, replicas, promote). Target URLs are shown as
 * parsed and rebuilt (never credentials); the recovery key leaves only through export-key, to an
 * admin, sealed by the passphrase the admin gives. Also: replication lag alerts and metrics.
 */
import type { FastifyInstance } from 'fastify';
import { Gauge } from 'prom-client';
import { exportRecoveryKey, replicationKeyId } from '../../crypto/index.js';
import { checkAlert, REPLICATION_JOB_STATES, type DisasterRecovery, type ReplicationJobState, type Replicator } from '../../replication/index.js';
import type { ApiContext } from '../app.js';
import { ApiError, isDamage } from '../errors.js';
import { barcode, cartridgeReplicationSchema, cartridgeSchema, errors, libName, replicaSchema } from '../schemas.js';

const str = { type: 'string' } as const;
const int = { type: 'integer' } as const;
const num = { type: 'number' } as const;
const bool = { type: 'boolean' } as const;
const nullable = <T extends object>(s: T) => ({ anyOf: [s, { type: 'null' }] }) as const;
const anything = {} as const;
const targetName = { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,31}$' } as const;
const jobId = { type: 'string', pattern: '^[0-9a-z]{1,40}$' } as const;

const targetSchema = { type: 'object', properties: { name: str, url: str, bandwidthLimit: nullable(int), createdAt: str } } as const;
const jobSchema = {
  type: 'object',
  properties: {
    id: str, barcode: str, target: str, reason: str, requestedBy: nullable(str),
    state: { type: 'string', enum: REPLICATION_JOB_STATES },
    createdAt: str, startedAt: nullable(str), finishedAt: nullable(str), attempts: int, nextAttemptAt: nullable(str), lastError: nullable(str),
    progress: { type: 'object', properties: { done: num, total: nullable(num), message: nullable(str) } },
    result: anything,
  },
} as const;
const summarySchema = {
  type: 'object',
  properties: {
    name: str, url: str, bandwidthLimit: nullable(int), cartridges: int, replicated: int, pending: int, failed: int,
    maxLagSeconds: nullable(num), bytesShipped: num, queued: int, running: int,
    lastCheck: nullable({
      type: 'object',
      properties: {
        target: str, at: str, scheduled: bool, deep: bool, ok: bool,
        missing: int, damaged: int, reshipped: int, lost: int, brokenReplicas: int, error: nullable(str),
      },
    }),
  },
} as const;
const refreshSchema = {
  type: 'object',
  properties: {
    source: str,
    imported: { type: 'array', items: { type: 'object', properties: { barcode: str, seq: int, logicalBytes: num } } },
    unchanged: int,
    conflicts: { type: 'array', items: { type: 'object', properties: { barcode: str, reason: str } } },
    damaged: { type: 'array', items: { type: 'object', properties: { barcode: str, catalogs: { type: 'array', items: int }, fallback: nullable(int), reason: str } } },
    failed: { type: 'array', items: { type: 'object', properties: { barcode: str, reason: str } } },
  },
} as const;
const policySchema = { type: 'object', properties: { library: str, target: str, on: { type: 'array', items: str } } } as const;


export async function replicationRoutes(app: FastifyInstance, ctx: ApiContext, r: { replicator: Replicator; dr: DisasterRecovery }): Promise<void> {
  const { replicator, dr } = r;
  const tags = ['replication'];
  watchLag(ctx, replicator);
  replicationMetrics(ctx, replicator, dr);

  // ---- targets and policies -----------------------------------------------------------------

  app.get('/api/v1/replication/targets', {
    config: { access: 'auditor' },
    schema: { summary: 'replication targets (URLs without credentials)', tags, response: { 200: { type: 'object', properties: { items: { type: 'array', items: targetSchema } } }, ...errors } },
    handler: async () => ({ items: await replicator.targets.list() }),
  });

  app.post<{ Body: { name: string; url: string; bandwidthLimit?: number | null; createBucket?: boolean } }>('/api/v1/replication/targets', {
    config: { access: 'admin' },
    schema: {
      summary: 'add a target: file://, s3://bucket/prefix?endpoint=..., azure://container/prefix?account=... (credentials from the SDK environment)',
      description:
        'The target is opened now: it must be reachable and accept the credentials (else 502 TARGET_UNREACHABLE or TARGET_ACCESS_DENIED). A bucket, container or directory that does not exist is refused ' +
        '(404 BUCKET_NOT_FOUND, naming it and where it was looked for) unless createBucket is true, so a mistyped name never becomes a new, empty replication target.',
      tags,
      body: {
        type: 'object',
        required: ['name', 'url'],
        additionalProperties: false,
        properties: {
          name: targetName,
          url: { type: 'string', minLength: 1, maxLength: 2048 },
          bandwidthLimit: nullable({ type: 'integer', minimum: 4096 }),
          createBucket: { type: 'boolean', default: false, description: 'create the bucket (S3), container (Azure) or directory (file://) when it does not exist' },
        },
      },
      response: { 201: targetSchema, ...errors },
    },
    handler: async (req, reply) => {
      const { name, url, bandwidthLimit, createBucket } = req.body;
      return reply.code(201).send(await replicator.targets.add(name, url, bandwidthLimit ?? null, { createBucket }));
    },
  });

  app.delete<{ Params: { name: string } }>('/api/v1/replication/targets/:name', {
    config: { access: 'admin' },
    schema: { summary: 'forget a target (nothing on it is deleted)', tags, params: { type: 'object', properties: { name: targetName } }, response: { 200: { type: 'object', properties: { ok: bool } }, ...errors } },
    handler: async (req) => {
      await replicator.removeTarget(req.params.name);
      return { ok: true };
    },
  });

  const ids = { type: 'array', items: int } as const;
  app.post<{ Params: { name: string }; Body: { deep?: boolean } }>('/api/v1/replication/targets/:name/check', {
    config: { access: 'admin' },
    schema: {
      summary: 'check a target against what was shipped to it (containers listed; with deep, every byte compared) and ship again what is missing or damaged there',
      tags,
      params: { type: 'object', properties: { name: targetName } },
      body: { type: 'object', additionalProperties: false, properties: { deep: { type: 'boolean', default: false } } },
      response: {
        200: {
          type: 'object',
          properties: {
            target: str,
            deep: bool,
            containersRecorded: int,
            missing: ids,
            damaged: ids,
            reshipped: ids,
            lost: ids,
            cartridgesChecked: int,
            brokenReplicas: { type: 'array', items: { type: 'object', properties: { barcode: str, seq: int, reason: str } } },
            bytesShipped: num,
          },
        },
        ...errors,
      },
    },
    handler: async (req) => {
      const report = await replicator.checkTarget(req.params.name, req.body?.deep ?? false);
      const found = report.missing.length + report.damaged.length + report.brokenReplicas.length;
      req.auditDetail = found === 0 ? `${report.containersRecorded} containers, ${report.cartridgesChecked} cartridges: whole` : `${report.missing.length} missing, ${report.damaged.length} damaged, ${report.reshipped.length} shipped again, ${report.lost.length} lost; replicas to ship again: ${report.brokenReplicas.map((b) => b.barcode).join(', ') || 'none'}`;
      return report;
    },
  });

  app.get('/api/v1/replication/status', {
    config: { access: 'auditor' },
    schema: { summary: 'per target: cartridges replicated and pending, failed jobs, the largest lag, bytes shipped', tags, response: { 200: { type: 'object', properties: { targets: { type: 'array', items: summarySchema } } }, ...errors } },
    handler: async () => ({ targets: await replicator.summary() }),
  });

  app.get('/api/v1/replication/policies', {
    config: { access: 'auditor' },
    schema: { summary: 'per-library replication policies', tags, response: { 200: { type: 'object', properties: { items: { type: 'array', items: policySchema } } }, ...errors } },
    handler: async () => ({ items: await replicator.listPolicies() }),
  });

  app.put<{ Params: { lib: string }; Body: { target: string; on: Array<'unloaded' | 'exported'> } }>('/api/v1/libraries/:lib/replication', {
    config: { access: 'admin' },
    schema: {
      summary: "replicate this library's cartridges automatically when they are unloaded and/or exported",
      tags,
      params: { type: 'object', properties: { lib: libName } },
      body: { type: 'object', required: ['target', 'on'], additionalProperties: false, properties: { target: targetName, on: { type: 'array', minItems: 1, items: { type: 'string', enum: ['unloaded', 'exported'] } } } },
      response: { 200: policySchema, ...errors },
    },
    handler: async (req) => replicator.setPolicy({ library: req.params.lib, target: req.body.target, on: req.body.on }),
  });

  app.delete<{ Params: { lib: string } }>('/api/v1/libraries/:lib/replication', {
    config: { access: 'admin' },
    schema: { summary: "remove the library's replication policy", tags, params: { type: 'object', properties: { lib: libName } }, response: { 200: { type: 'object', properties: { ok: bool } }, ...errors } },
    handler: async (req) => {
      await replicator.removePolicy(req.params.lib);
      return { ok: true };
    },
  });

  // ---- jobs ---------------------------------------------------------------------------------

  app.post<{ Params: { barcode: string }; Body: { target: string; wait?: boolean } }>('/api/v1/cartridges/:barcode/replicate', {
    config: { access: 'operator' },
    schema: {
      summary: 'replicate a cartridge to a target now (a queued job; with wait, answer when it has ended)',
      tags,
      params: { type: 'object', properties: { barcode } },
      body: { type: 'object', required: ['target'], additionalProperties: false, properties: { target: targetName, wait: bool } },
      response: { 200: jobSchema, 202: jobSchema, ...errors },
    },
    handler: async (req, reply) => {
      const job = await replicator.enqueue(req.params.barcode, req.body.target, 'manual', req.token?.name ?? null);
      if (!req.body.wait) return reply.code(202).send(job);
      return replicator.wait(job.id);
    },
  });

  app.get<{ Params: { barcode: string } }>('/api/v1/cartridges/:barcode/replication', {
    config: { access: 'auditor' },
    schema: {
      summary: "the cartridge's replication per target, and where it is itself a replica",
      tags,
      params: { type: 'object', properties: { barcode } },
      response: { 200: { type: 'object', properties: { items: { type: 'array', items: cartridgeReplicationSchema }, replica: nullable(replicaSchema) } }, ...errors },
    },
    handler: async (req) => {
      await ctx.libraries.getCartridge(req.params.barcode);
      return { items: await replicator.cartridge(req.params.barcode), replica: (await dr.replica(req.params.barcode)) ?? null };
    },
  });

  app.get<{ Querystring: { barcode?: string; target?: string; state?: ReplicationJobState; offset: number; limit: number } }>('/api/v1/replication/jobs', {
    config: { access: 'auditor' },
    schema: {
      summary: 'replication jobs, newest first',
      tags,
      querystring: { type: 'object', additionalProperties: false, properties: { barcode, target: targetName, state: { type: 'string', enum: REPLICATION_JOB_STATES }, offset: { type: 'integer', minimum: 0, default: 0 }, limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } } },
      response: { 200: { type: 'object', properties: { items: { type: 'array', items: jobSchema }, total: int, offset: int, limit: int } }, ...errors },
    },
    handler: async (req) => {
      const { offset, limit, ...f } = req.query;
      return { ...(await replicator.jobs(f, offset, limit)), offset, limit };
    },
  });

  app.get<{ Params: { id: string } }>('/api/v1/replication/jobs/:id', {
    config: { access: 'auditor' },
    schema: { summary: 'one replication job', tags, params: { type: 'object', properties: { id: jobId } }, response: { 200: jobSchema, ...errors } },
    handler: async (req) => replicator.job(req.params.id),
  });

  app.post<{ Params: { id: string } }>('/api/v1/replication/jobs/:id/cancel', {
    config: { access: 'operator' },
    schema: { summary: 'cancel a queued or running replication job', tags, params: { type: 'object', properties: { id: jobId } }, response: { 200: jobSchema, ...errors } },
    handler: async (req) => replicator.cancel(req.params.id),
  });

  // ---- disaster recovery --------------------------------------------------------------------

  const drTags = ['disaster recovery'];
  app.post<{ Body: { passphrase: string } }>('/api/v1/dr/export-key', {
    config: { access: 'admin' },
    schema: {
      summary: "the recovery key (this store's replication key, sealed by the passphrase): keep it away from this site",
      tags: drTags,
      body: { type: 'object', required: ['passphrase'], additionalProperties: false, properties: { passphrase: { type: 'string', minLength: 8, maxLength: 1024 } } },
      response: { 200: { type: 'object', properties: { keyFile: str, storeId: str, keyId: str } }, ...errors },
    },
    handler: async (req) => {
      const m = await ctx.store.chunks.recoveryMaterial();
      const keyFile = exportRecoveryKey(m, req.body.passphrase);
      return { keyFile, storeId: m.storeId, keyId: replicationKeyId(m.replicationKey) };
    },
  });

  app.get('/api/v1/dr/sources', {
    config: { access: 'auditor' },
    schema: {
      summary: "other stores' replication targets attached here (read-only)",
      tags: drTags,
      response: { 200: { type: 'object', properties: { items: { type: 'array', items: { type: 'object', properties: { name: str, url: str, storeId: str, keyId: str, attachedAt: str, lastRefreshAt: nullable(str), mounted: bool, cacheBytes: num } } } } }, ...errors },
    },
    handler: async () => ({ items: await dr.listSources() }),
  });

  app.post<{ Body: { url: string; keyFile: string; passphrase: string; name?: string } }>('/api/v1/dr/sources', {
    config: { access: 'admin' },
    schema: {
      summary: "attach another store's replication target with its recovery key, and import its cartridges into the vault",
      tags: drTags,
      body: { type: 'object', required: ['url', 'keyFile', 'passphrase'], additionalProperties: false, properties: { url: { type: 'string', minLength: 1, maxLength: 2048 }, keyFile: { type: 'string', minLength: 2, maxLength: 65536 }, passphrase: { type: 'string', minLength: 8, maxLength: 1024 }, name: targetName } },
      response: { 201: refreshSchema, ...errors },
    },
    handler: async (req, reply) => reply.code(201).send(await dr.attach(req.body.url, req.body.keyFile, req.body.passphrase, req.body.name)),
  });

  app.post<{ Body: { source?: string } }>('/api/v1/dr/refresh', {
    config: { access: 'operator' },
    schema: {
      summary: 'import catalogs newer than the replicas held here',
      tags: drTags,
      body: { type: 'object', additionalProperties: false, properties: { source: targetName } },
      response: { 200: { type: 'object', properties: { results: { type: 'array', items: refreshSchema } } }, ...errors },
    },
    handler: async (req) => ({ results: await dr.refresh(req.body.source) }),
  });

  app.get('/api/v1/dr/cartridges', {
    config: { access: 'auditor' },
    schema: { summary: 'replicas of other stores held here, and those promoted', tags: drTags, response: { 200: { type: 'object', properties: { items: { type: 'array', items: replicaSchema } } }, ...errors } },
    handler: async () => ({ items: await dr.list() }),
  });

  app.post<{ Params: { barcode: string } }>('/api/v1/dr/cartridges/:barcode/promote', {
    config: { access: 'admin' },
    schema: { summary: 'make a replica a writable cartridge of this store (failover): its data is copied in', tags: drTags, params: { type: 'object', properties: { barcode } }, response: { 200: cartridgeSchema, ...errors } },
    handler: async (req) => {
      try {
        return await dr.promote(req.params.barcode);
      } catch (err) {
        // The copy held by the DR source is damaged: say which replica, and that it stays as it was.
        if (isDamage(err)) {
          throw new ApiError(500, 'DATA_DAMAGED', `replica ${req.params.barcode} cannot be promoted: its data on the DR source is damaged (${err.message.replace(/\. Run 'vtl scrub'.*$/s, '')}). ` +
            'The replica stays as it was; replicate the cartridge again from its own site (or another target), then vtl dr refresh and promote again');
        }
        throw err;
      }
    },
  });

  app.post('/api/v1/dr/cache/clear', {
    config: { access: 'admin' },
    schema: { summary: 'drop the containers cached from attached targets', tags: drTags, response: { 200: { type: 'object', properties: { ok: bool } }, ...errors } },
    handler: async () => {
      await dr.clearCache();
      return { ok: true };
    },
  });
}

/** Raises a replication_lag alert once per cartridge, target and oldest sync point the target lacks. */
function watchLag(ctx: ApiContext, replicator: Replicator): void {
  // Alert when a target has lacked a cartridge's data (from the oldest sync point it does not
  // hold, or never replicated) for more than VTL_REPLICATION_LAG_ALERT_S
  // (default 1 day), checked every VTL_REPLICATION_LAG_CHECK_MS (default 5 min; 0: never).
  const LAG_ALERT_S = Number(process.env.VTL_REPLICATION_LAG_ALERT_S ?? 86_400);
  const LAG_CHECK_MS = Number(process.env.VTL_REPLICATION_LAG_CHECK_MS ?? 300_000);
  if (!(LAG_CHECK_MS > 0)) return;
  const raised = new Set<string>();
  ctx.ops.schedule.task(LAG_CHECK_MS, 'replication lag check', async () => {
    for (const l of await replicator.lagging(LAG_ALERT_S)) {
      // One alert per lag episode: new writes while the target still lacks older ones keep `since`.
      const key = `${l.target}!${l.barcode}!${l.since}`;
      if (raised.has(key)) continue;
      raised.add(key);
      await ctx.ops.alerts.raise('replication_lag', `cartridge ${l.barcode}: ${l.target} has lacked its data written since ${l.since} for ${Math.round(l.lagSeconds)} s (threshold ${LAG_ALERT_S} s)`, { ...l });
    }
  });
  replicator.onJobEnd((j) => {
    if (j.state === 'failed') void ctx.ops.alerts.raise('job_failed', `replication of ${j.barcode} to ${j.target} failed: ${j.lastError}`, { jobId: j.id, barcode: j.barcode, target: j.target }).catch(() => undefined);
  });
  // A scheduled check runs unattended: what it found or why it failed must reach someone. (A
  // manual one answers its caller.) An unreachable target alerts once per check period.
  replicator.onCheck((c) => {
    const message = c.scheduled ? checkAlert(c) : undefined;
    if (message) void ctx.ops.alerts.raise('target_check', message, { ...c }).catch(() => undefined);
  });
}

function replicationMetrics(ctx: ApiContext, replicator: Replicator, dr: DisasterRecovery): void {
  const registers = [ctx.metrics.registry];
  new Gauge({
    name: 'vtl_replication_lag_seconds',
    help: 'Largest replication lag of a cartridge per target',
    labelNames: ['target'],
    registers,
    async collect() {
      this.reset();
      for (const t of await replicator.summary()) if (t.maxLagSeconds !== null) this.set({ target: t.name }, t.maxLagSeconds);
    },
  });
  new Gauge({
    name: 'vtl_replication_shipped_bytes',
    help: 'Bytes shipped to each target (containers, recipe packs, catalogs)',
    labelNames: ['target'],
    registers,
    async collect() {
      this.reset();
      for (const t of await replicator.summary()) this.set({ target: t.name }, t.bytesShipped);
    },
  });
  new Gauge({
    name: 'vtl_replication_jobs',
    help: 'Replication jobs queued and running',
    labelNames: ['state'],
    registers,
    async collect() {
      this.reset();
      const all = await replicator.summary();
      this.set({ state: 'queued' }, all.reduce((n, t) => n + t.queued, 0));
      this.set({ state: 'running' }, all.reduce((n, t) => n + t.running, 0));
    },
  });
  new Gauge({
    name: 'vtl_dr_cache_bytes',
    help: 'Bytes of containers cached from attached DR sources',
    labelNames: ['source'],
    registers,
    collect() {
      this.reset();
      for (const s of dr.cacheStats()) this.set({ source: s.source }, s.cacheBytes);
    },
  });
}
