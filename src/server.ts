/**
 * Composition root: config -> store -> library -> protocols -> api.
 *
 * `startServer` opens (and on first use creates) a data directory, makes sure it has an admin
 * token file, undoes image imports a crash cut off (before any medium is mounted), creates the
 * demo library on the directory's first start, starts the rmt server when that protocol module
 * is present, and serves the HTTP API with the tape-image routes. `close()` stops accepting,
 * gives running requests a grace period, then unloads every drive (sync points) and closes
 * the store, so a SIGTERM never loses acknowledged data.
 */
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Gauge, type Registry } from 'prom-client';
import { buildApp, type ApiDeps } from './api/app.js';
import { TokenStore, ensureAdminToken, type AdminTokenFile } from './api/auth.js';
import { Libraries } from './library/index.js';
import { RmtServer } from './protocols/rmt/server.js';
import type { RmtChange } from './protocols/rmt/index.js';
import { AuditLog } from './jobs/index.js';
import { ImportJournal, type Recovered } from './protocols/images/index.js';
import { imageRoutes } from './protocols/images/routes.js';
import { initDataStore, openDataStore, type DataStore } from './stream/store.js';
import { StreamRouter } from './stream/router.js';
import { DisasterRecovery, Replicator } from './replication/index.js';

export interface ServerConfig {
  data: string;
  host: string;
  port: number;
  rmtHost: string;
  rmtPort: number;
  /** Create the demo library on the data directory's first start. */
  demo: boolean;
  logger: boolean;
}

export interface StartOptions extends Partial<ServerConfig> {
  /** Route plugins of upper layers (protocols), registered under the API's auth and errors. */
  routes?: ApiDeps['routes'];
}

export const DEFAULTS: ServerConfig = {
  data: './vtl-data',
  host: '127.0.0.1',
  port: 7420,
  rmtHost: '127.0.0.1',
  rmtPort: 7421,
  demo: true,
  logger: false,
};

export const DEMO = { name: 'lib1', drives: 4, slots: 32, mailslots: 4, prefix: 'VT', count: 32, mediaType: 'LTO-7' as const };

/** The `server` section a data directory's config.json may carry. */
type FileSection = Partial<Omit<ServerConfig, 'data'>>;

/**
 * Precedence: explicit options (command-line flags), then VTL_* environment variables, then
 * the `server` section of `<data>/config.json`, then the defaults.
 */
export async function resolveConfig(flags: Partial<ServerConfig>, env: NodeJS.ProcessEnv = process.env): Promise<ServerConfig> {
  const data = flags.data ?? env.VTL_DATA ?? DEFAULTS.data;
  const file = await readSection(data);
  const port = (v: unknown, what: string) => {
    if (v === undefined || v === '') return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`${what} must be a port number 0..65535, got ${JSON.stringify(v)}`);
    return n;
  };
  const bool = (v: string | undefined) => (v === undefined ? undefined : !/^(0|false|no|off)$/i.test(v));
  return {
    data,
    host: flags.host ?? env.VTL_HOST ?? file.host ?? DEFAULTS.host,
    port: port(flags.port, '--port') ?? port(env.VTL_PORT, 'VTL_PORT') ?? port(file.port, 'config.json server.port') ?? DEFAULTS.port,
    rmtHost: flags.rmtHost ?? env.VTL_RMT_HOST ?? file.rmtHost ?? flags.host ?? env.VTL_HOST ?? file.host ?? DEFAULTS.rmtHost,
    rmtPort: port(flags.rmtPort, '--rmt-port') ?? port(env.VTL_RMT_PORT, 'VTL_RMT_PORT') ?? port(file.rmtPort, 'config.json server.rmtPort') ?? DEFAULTS.rmtPort,
    demo: flags.demo ?? bool(env.VTL_DEMO) ?? file.demo ?? DEFAULTS.demo,
    logger: flags.logger ?? bool(env.VTL_LOG) ?? file.logger ?? DEFAULTS.logger,
  };
}

async function readSection(data: string): Promise<FileSection> {
  let text: string;
  try {
    text = await readFile(join(data, 'config.json'), 'utf8');
  } catch {
    return {};
  }
  const s = (JSON.parse(text) as { server?: unknown }).server;
  if (s === undefined) return {};
  if (typeof s !== 'object' || s === null || Array.isArray(s)) throw new Error(`${join(data, 'config.json')}: "server" must be an object`);
  return s as FileSection;
}

export interface VtlServer {
  config: ServerConfig;
  url: string;
  /** host:port of the rmt server. */
  rmtAddress: string;
  adminTokenFile: string;
  /** True when this start created the data directory. */
  initialized: boolean;
  demoCreated: boolean;
  /** Image imports a crash had cut off, undone at this start. */
  recoveredImports: Recovered[];
  app: FastifyInstance;
  libraries: Libraries;
  store: DataStore;
  replicator: Replicator;
  dr: DisasterRecovery;
  close(opts?: { graceMs?: number }): Promise<void>;
}

export async function startServer(flags: StartOptions = {}): Promise<VtlServer> {
  const config = await resolveConfig(flags);
  const version = await packageVersion();
  let initialized = false;
  if (!(await exists(join(config.data, 'config.json')))) {
    await initDataStore(config.data);
    initialized = true;
  }
  const store = await openDataStore(config.data);
  let libraries: Libraries | undefined;
  let rmt: RmtServer | undefined;
  let replicator: Replicator | undefined;
  let dr: DisasterRecovery | undefined;
  let app: FastifyInstance | undefined;
  try {
    // Media read their streams through the router: local ones, and replicas of other stores.
    const router = new StreamRouter(store.streams);
    libraries = new Libraries({ db: store.db, streams: router });
    dr = new DisasterRecovery(store, libraries, router);
    await dr.open();
    replicator = new Replicator(store, libraries);
    // Before anything mounts a medium: undo image imports that a crash cut off.
    const journal = new ImportJournal(store.db);
    const recoveredImports = await journal.recover(libraries.tapes);
    logRecovered(recoveredImports);
    const tokens = new TokenStore(store.db);
    const admin = await ensureAdminToken(config.data, tokens);
    const demoCreated = await firstStart(store, libraries, config.demo);
    await replicator.open();

    // ---- protocols --------------------------------------------------------------------------
    // One audit log for the API and rmt: appends are serialized per instance.
    const audit = new AuditLog(store.db);
    await noteAdminToken(audit, admin);
    const interrupted = await audit.recoverInterrupted();
    if (interrupted > 0) console.error(`vtl: ${interrupted} change${interrupted === 1 ? ' was' : 's were'} running when the server stopped (API requests, rmt sessions writing): logged as interrupted in the audit log (vtl audit list --last 20)`);
    rmt = new RmtServer({ libraries, host: config.rmtHost, port: config.rmtPort, ...auditRmt(audit) });
    const listening = await rmt.listen();
    const rmtAddress = `${listening.host}:${listening.port}`;

    // ---- api ----------------------------------------------------------------------------------
    const rmtServer = rmt;
    app = await buildApp({
      libraries, store, streams: router, replication: { replicator, dr }, tokens, version, logger: config.logger, audit,
      rmt: () => rmtAddress,
      traffic: () => ({ rmt: rmtServer.bytes() }),
      routes: [imageRoutes(journal), rmtMetrics(rmtServer), ...(flags.routes ?? [])],
    });
    await app.listen({ host: config.host, port: config.port });
    const a = app.server.address();
    const port = typeof a === 'object' && a ? a.port : config.port;
    const hostForUrl = config.host.includes(':') ? `[${config.host}]` : config.host;
    const libs = libraries;
    const repl = { replicator, dr };
    const api = app;
    let closing: Promise<void> | undefined;
    return {
      config,
      url: `http://${hostForUrl}:${port}`,
      rmtAddress,
      adminTokenFile: admin.path,
      initialized,
      demoCreated,
      recoveredImports,
      app: api,
      libraries: libs,
      store,
      replicator,
      dr,
      close: (opts = {}) => (closing ??= shutdown(api, rmt, audit, libs, store, repl, opts.graceMs ?? 10_000)),
    };
  } catch (err) {
    // The app first: its timers (the capacity history) must not run against a closing store.
    await app?.close().catch(() => undefined);
    await rmt?.close().catch(() => undefined);
    await replicator?.close().catch(() => undefined);
    await libraries?.close().catch(() => undefined);
    await dr?.close().catch(() => undefined);
    await store.close();
    throw err;
  }
}

/**
 * Says what start did with the admin token file when it was not simply kept: a revoked one stays
 * revoked; a new one (not on a new data directory) is logged and audited, as any token made.
 */
async function noteAdminToken(audit: AuditLog, admin: AdminTokenFile): Promise<void> {
  if (admin.revoked) {
    console.error(`vtl: the token in ${admin.path} was revoked; it stays revoked (other admin tokens exist). To have a new one made, delete the file and restart`);
  }
  if (!admin.created || admin.reason === null) return;
  console.error(`vtl: made a new admin token in ${admin.path}: ${admin.reason}`);
  await audit.append({ actor: 'system', tokenId: null, role: null, action: 'token create', target: `admin (${admin.path})`, status: 0, result: 'ok', detail: `a new admin token at start: ${admin.reason}` });
}

/**
 * rmt's hooks into the audit log. rmt has no tokens: its entries name the client's address as
 * the actor. A session's first change is noted (a crash mid-session leaves an interrupted
 * entry) and its entry at close settles the note. Failures are reported, not thrown: a tape
 * session never fails for its audit, and at close the data is already durable.
 */
function auditRmt(audit: AuditLog): Pick<ConstructorParameters<typeof RmtServer>[0], 'onBegin' | 'onChange'> {
  const actor = (peer: string) => `rmt ${peer}`;
  return {
    onBegin: (b) =>
      audit.begin({ actor: actor(b.peer), tokenId: null, role: null, action: b.action, target: b.barcode, ifInterrupted: b.ifInterrupted }).catch((err: Error) => {
        console.error(`vtl: audit note failed (${b.action} ${b.barcode}): ${err.message}; the session goes on without one`);
        return undefined;
      }),
    // The session answers its close once this settles: the entry is in the log first.
    onChange: (c: RmtChange) =>
      audit
        .append({ actor: actor(c.peer), tokenId: null, role: null, action: c.action, target: c.barcode, status: 0, result: c.ok ? 'ok' : 'error', detail: c.detail }, c.started)
        .then(
          () => undefined,
          (err: Error) => console.error(`vtl: audit log append failed (${c.action} ${c.barcode}): ${err.message}`),
        ),
  };
}

/** Stop accepting, let requests finish (then cut them: their handlers roll back), sync, close. */
async function shutdown(app: FastifyInstance, rmt: RmtServer | undefined, audit: AuditLog, libraries: Libraries, store: DataStore, repl: { replicator: Replicator; dr: DisasterRecovery }, graceMs: number): Promise<void> {
  const timer = setTimeout(() => app.server.closeAllConnections(), graceMs);
  try {
    await app.close();
  } finally {
    clearTimeout(timer);
  }
  // Every step runs even when one before failed (a full disk fails the sync points): the store
  // must still be closed, or its lock stays held; the first failure is reported.
  let failed: unknown;
  const step = async (fn: () => Promise<unknown> | undefined) => {
    try {
      await fn();
    } catch (err) {
      failed ??= err;
    }
  };
  await step(() => rmt?.close());
  await step(() => audit.settled()); // the entries of the rmt sessions just closed
  await step(() => repl.replicator.close()); // a running job stays queued for the next start
  await step(() => libraries.close()); // unloads every medium: sync points
  await step(() => repl.dr.close());
  await step(() => store.close());
  if (failed !== undefined) throw failed;
}

/** The rmt server's bytes in /metrics (it lives below the API, which cannot import it). */
function rmtMetrics(rmt: RmtServer) {
  return async (_app: FastifyInstance, ctx: { metrics: { registry: Registry } }) => {
    new Gauge({
      name: 'vtl_rmt_bytes_total',
      help: 'Bytes received (in) and sent (out) by the rmt server, commands and replies included',
      labelNames: ['direction'],
      registers: [ctx.metrics.registry],
      collect() {
        const b = rmt.bytes();
        this.set({ direction: 'in' }, b.in);
        this.set({ direction: 'out' }, b.out);
      },
    });
    new Gauge({
      name: 'vtl_rmt_connections',
      help: 'rmt connections being served, by transport (tcp; local: the abstract Unix socket vtl rmt uses on this host)',
      labelNames: ['transport'],
      registers: [ctx.metrics.registry],
      collect() {
        const c = rmt.connectionsByTransport();
        this.set({ transport: 'tcp' }, c.tcp);
        this.set({ transport: 'local' }, c.local);
      },
    });
  };
}

function logRecovered(done: Recovered[]): void {
  for (const r of done) {
    if (r.error) console.error(`vtl: could not undo the interrupted image import into ${r.medium} (from lba ${r.startLba}): ${r.error}; retrying at the next start`);
    else console.error(`vtl: undid the interrupted image import into ${r.medium}: ${r.removed} objects after lba ${r.startLba} removed`);
  }
}

/** Creates the demo library the first time a data directory is served. */
async function firstStart(store: DataStore, libraries: Libraries, demo: boolean): Promise<boolean> {
  const meta = store.db.sublevel<string, unknown>('api', { valueEncoding: 'json' }).sublevel<string, { firstStartAt: string }>('server', { valueEncoding: 'json' });
  if (await meta.get('started')) return false;
  let created = false;
  if (demo && (await libraries.listLibraries()).length === 0) {
    await libraries.createLibrary({ name: DEMO.name, drives: DEMO.drives, slots: DEMO.slots, mailslots: DEMO.mailslots });
    await libraries.createCartridges({ library: DEMO.name, prefix: DEMO.prefix, start: 1, count: DEMO.count, mediaType: DEMO.mediaType });
    created = true;
  }
  await meta.put('started', { firstStartAt: new Date().toISOString() });
  return created;
}

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}

async function packageVersion(): Promise<string> {
  try {
    return (JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}
