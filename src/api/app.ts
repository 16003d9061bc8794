/**
 * The fastify application: error shape, bearer-token access per route, request metrics, and
 * the route modules. Routes declare who may call them in `config.access`; the onRequest hook
 * enforces it before any body is read, so a refused upload costs nothing.
 */
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import type { Libraries } from '../library/index.js';
import type { DataStore } from '../stream/store.js';
import type { StreamRouter } from '../stream/router.js';
import type { DisasterRecovery, Replicator } from '../replication/index.js';
import type { AuditLog } from '../jobs/index.js';
import { replicationRoutes } from './routes/replication.js';
import { roleAllows, type Access, type TokenRecord, type TokenStore } from './auth.js';
import { ApiError, toErrorBody } from './errors.js';
import { ApiMetrics } from './metrics.js';
import { OpenApiCollector } from './openapi.js';
import { libraryRoutes } from './routes/libraries.js';
import { cartridgeRoutes } from './routes/cartridges.js';
import { driveRoutes } from './routes/drives.js';
import { systemRoutes } from './routes/system.js';
import { auditHook, openOps, opsRoutes, type Ops } from './routes/ops.js';
import { dashboardRoutes } from './dashboard.js';
import { UsageCounter } from './usage.js';
import { CapacityHistory, HistorySampler, historyInterval, type Traffic } from './history.js';
import { historyRoutes } from './routes/history.js';
import { storeTotals } from './totals.js';

export interface ApiDeps {
  libraries: Libraries;
  store: DataStore;
  tokens: TokenStore;
  version: string;
  /** Shown by /health: where rmt listens, when it does. */
  rmt?: () => string | null;
  logger?: boolean;
  /** Jobs, restore tests and the audit log; opened over `store.db` when not given. */
  ops?: Ops;
  /**
   * The audit log, when the composition root shares it with a protocol (rmt's changes): one
   * instance per store, since appends are serialized per instance. Opened with `ops` if absent.
   */
  audit?: AuditLog;
  /** Local streams and attached replicas (verify and usage read through it); store.streams when absent. */
  streams?: StreamRouter;
  /** Replication to object tiers and DR replicas of other stores; no routes when absent. */
  replication?: { replicator: Replicator; dr: DisasterRecovery };
  /** Where the built dashboard is (default: dist/web of this package). */
  dashboardDir?: string;
  /**
   * Routes of layers above the API (protocols: e.g. tape images), handed in by the composition
   * root so that the API never imports them. They get the same auth (config.access) and errors.
   */
  routes?: Array<(app: FastifyInstance, ctx: ApiContext) => Promise<void>>;
  /**
   * Cumulative bytes moved by protocols the API does not serve itself (e.g. `{rmt: {in, out}}`
   * since the process started), for the capacity history's throughput. HTTP tape streams are
   * counted by the API.
   */
  traffic?: () => Traffic | Promise<Traffic>;
}

export interface ApiContext extends ApiDeps {
  ops: Ops;
  metrics: ApiMetrics;
  usage: UsageCounter;
  openapi: OpenApiCollector;
  startedAt: number;
  history: CapacityHistory;
  /** Null when VTL_HISTORY_INTERVAL_MS is 0. */
  historySampler: HistorySampler | null;
}

declare module 'fastify' {
  interface FastifyRequest {
    token?: TokenRecord;
    /** What a successful mutation changed, for its audit entry (routes that know set it). */
    auditDetail?: string;
    /** The audit log's note that this mutation began (settled by its entry). */
    auditStarted?: string;
  }
  interface FastifyContextConfig {
    access?: Access;
  }
  /** Documentation fields the OpenAPI document takes from each route's schema. */
  interface FastifySchema {
    summary?: string;
    description?: string;
    tags?: string[];
    consumes?: string[];
    produces?: string[];
    hide?: boolean;
  }
}

export async function buildApp(deps: ApiDeps): Promise<FastifyInstance> {
  const app = Fastify({
    logger: deps.logger ? { level: 'info' } : false,
    // Tape streams are long; the upload's own pace decides, not a timer.
    requestTimeout: 0,
    bodyLimit: 1024 * 1024,
    forceCloseConnections: 'idle',
    ajv: { customOptions: { removeAdditional: false, coerceTypes: true } },
  });
  const ctx: ApiContext = {
    ...deps,
    ops: deps.ops ?? (await openOps(deps)),
    metrics: new ApiMetrics(
      () => deps.store.chunks.getStats(),
      async () => ({ libraries: (await deps.libraries.listLibraries()).length, cartridges: await countMedia(deps.libraries) }),
    ),
    usage: new UsageCounter(deps.streams ?? deps.store.streams),
    openapi: new OpenApiCollector(),
    startedAt: Date.now(),
    history: new CapacityHistory(deps.store.db),
    historySampler: null,
  };
  const every = historyInterval(process.env.VTL_HISTORY_INTERVAL_MS);
  if (every > 0) ctx.historySampler = new HistorySampler(ctx.history, { totals: () => storeTotals(deps), traffic: () => traffic(ctx) }, every);
  ctx.openapi.attach(app);

  app.setErrorHandler((err, req, reply) => {
    const { status, body, internal } = toErrorBody(err);
    if (internal) req.log.error({ err }, 'internal error');
    if (internal && !deps.logger) console.error(`vtl: ${req.method} ${req.url}: ${(err as Error).stack ?? err}`);
    if (status === 401) void reply.header('www-authenticate', 'Bearer realm="vtl"');
    void reply.code(status).send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ error: 'NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` });
  });

  app.addHook('onRequest', async (req) => {
    const access = req.routeOptions.config?.access;
    if (access === undefined || access === 'public') return;
    req.token = await authenticate(req, ctx.tokens);
    if (!roleAllows(req.token.role, access)) {
      throw new ApiError(403, 'FORBIDDEN', `this needs the ${access} role; token ${req.token.name} has ${req.token.role}`);
    }
  });
  // A POST without a body (curl -X POST) counts as `{}`: optional fields stay optional and
  // missing required ones get the schema's message.
  app.addHook('preValidation', async (req) => {
    if (req.body === undefined && req.routeOptions.schema?.body) req.body = {};
  });
  auditHook(app, ctx.ops.audit);
  app.addHook('onReady', async () => ctx.historySampler?.start());
  // Running jobs stop (and record it) before the store below them closes.
  app.addHook('onClose', async () => {
    await ctx.historySampler?.close();
    ctx.ops.schedule.close();
    await ctx.ops.jobs.close();
    await ctx.ops.alerts.close();
  });
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    ctx.metrics.requests.inc({ method: req.method, route, status: String(reply.statusCode) });
    ctx.metrics.duration.observe({ method: req.method, route }, reply.elapsedTime / 1000);
  });

  await app.register(async (api) => {
    await systemRoutes(api, ctx);
    await libraryRoutes(api, ctx);
    await cartridgeRoutes(api, ctx);
    await opsRoutes(api, ctx, ctx.ops);
    if (deps.replication) await replicationRoutes(api, ctx, deps.replication);
    await historyRoutes(api, ctx);
    await api.register(async (streams) => driveRoutes(streams, ctx));
    await dashboardRoutes(api, deps.dashboardDir);
    for (const r of deps.routes ?? []) await api.register(async (scope) => r(scope, ctx));
  });
  return app;
}

async function authenticate(req: FastifyRequest, tokens: TokenStore): Promise<TokenRecord> {
  const h = req.headers.authorization;
  if (!h) throw new ApiError(401, 'UNAUTHORIZED', 'this needs a bearer token (Authorization: Bearer vtl_...)');
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  const rec = m ? await tokens.verify(m[1]) : undefined;
  if (!rec) throw new ApiError(401, 'UNAUTHORIZED', 'the bearer token is not valid (unknown or revoked)');
  return rec;
}

/** HTTP tape streams (and image transfers) as counted by /metrics, plus the other protocols' counters. */
async function traffic(ctx: ApiContext): Promise<Traffic> {
  const http = { in: 0, out: 0 };
  for (const v of (await ctx.metrics.tapeBytes.get()).values) {
    if (v.labels.direction === 'write') http.in += v.value;
    else if (v.labels.direction === 'read') http.out += v.value;
  }
  return { http, ...(await ctx.traffic?.()) };
}

async function countMedia(libraries: Libraries): Promise<number> {
  let n = 0;
  for await (const _ of libraries.tapes.list()) n++;
  return n;
}
