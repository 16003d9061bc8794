/**
 * The replication service of a store (region A): targets, per-library policies, and a
 * persistent queue of jobs (one cartridge to one target each) worked one at a time.
 *
 * - Jobs live in LevelDB (`replication` / `jobs`); a job running when the server stopped is
 *   queued again at the next start and resumes: containers already on the target are not sent
 *   again (ship.ts).
 * - A transient failure (the target down, throttling, a container removed by GC meanwhile) puts
 *   the job back in the queue with exponential backoff (1 s doubling to VTL_REPLICATION_RETRY_MAX_MS,
 *   default 60 s) for as long as it takes; anything else fails the job with its reason.
 * - A queued job for the same cartridge and target absorbs a new request (one catalog covers
 *   both); a running one does not (it may have taken its snapshot before the new data).
 * - Lag of a cartridge on a target: from its last sync point to the catalog that holds it; while
 *   the target holds an older state, from the last sync point until now.
 */
import { randomBytes } from 'node:crypto';
import type { CartridgeEvent, Libraries } from '../library/index.js';
import type { DataStore } from '../stream/store.js';
import { isTransient } from '../tier/index.js';
import type { ReplicationDb } from './index.js';
import { PermanentError, RetryNow, shipCartridge, shippedKey, shipTables, stateKey, type ReplicaState, type ShipDeps, type ShipResult } from './ship.js';
import { TargetError, Targets } from './targets.js';
import { CONTAINER_HEADER, containerObject, parseContainerHeader } from './layout.js';

export type ReplicationJobState = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';
export const REPLICATION_JOB_STATES: ReplicationJobState[] = ['queued', 'running', 'done', 'failed', 'cancelled'];

export interface ReplicationJob {
  id: string;
  barcode: string;
  target: string;
  reason: 'manual' | 'unloaded' | 'exported';
  requestedBy: string | null;
  state: ReplicationJobState;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  attempts: number;
  /** When a queued job may run next (after a transient failure). */
  nextAttemptAt: string | null;
  lastError: string | null;
  progress: { done: number; total: number | null; message: string | null };
  result: ShipResult | null;
}

export interface Policy {
  library: string;
  target: string;
  on: Array<'unloaded' | 'exported'>;
}

export type CartridgeReplicationState = 'replicated' | 'stale' | 'never';

export interface CartridgeReplication {
  target: string;
  state: CartridgeReplicationState;
  /** Seconds; null when the cartridge holds no data yet. */
  lagSeconds: number | null;
  bytesShipped: number;
  lastBytesShipped: number;
  replicatedAt: string | null;
  seq: number | null;
  /** The newest job for this cartridge and target, if any. */
  job: { id: string; state: ReplicationJobState; lastError: string | null } | null;
}

export interface TargetSummary {
  name: string;
  url: string;
  bandwidthLimit: number | null;
  cartridges: number;
  replicated: number;
  pending: number;
  failed: number;
  /** The largest lag now, in seconds: 0 when the target holds every cartridge up to date; null with none. */
  maxLagSeconds: number | null;
  bytesShipped: number;
  queued: number;
  running: number;
}

export class ReplicationError extends Error {
  constructor(
    readonly code: 'INVALID' | 'NOT_FOUND' | 'CONFLICT',
    message: string,
  ) {
    super(message);
  }
}

const RETRY_BASE_MS = 1000;
const DONE_KEPT = 10_000;

export class Replicator {
  readonly targets: Targets;
  private readonly jobsTable;
  private readonly policies;
  private readonly tables;
  private readonly queued = new Map<string, ReplicationJob>();
  private running: { job: ReplicationJob; cancel: boolean } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private pumping: Promise<void> | undefined;
  private closed = false;
  private readonly waiters = new Map<string, Array<(j: ReplicationJob) => void>>();
  private readonly endListeners: Array<(j: ReplicationJob) => void> = [];
  private readonly retryMaxMs: number;
  private ship: ShipDeps | undefined;

  constructor(
    private readonly store: DataStore,
    private readonly libraries: Libraries,
    opts: { env?: NodeJS.ProcessEnv } = {},
  ) {
    const env = opts.env ?? process.env;
    const db = store.db.sublevel<string, unknown>('replication', { valueEncoding: 'json' }) as unknown as ReplicationDb;
    this.targets = new Targets(db, env);
    this.jobsTable = db.sublevel<string, ReplicationJob>('jobs', { valueEncoding: 'json' });
    this.policies = db.sublevel<string, Policy>('policies', { valueEncoding: 'json' });
    this.tables = shipTables(db);
    this.retryMaxMs = Number(env.VTL_REPLICATION_RETRY_MAX_MS ?? 60_000);
    libraries.onCartridgeEvent((e) => void this.onCartridgeEvent(e));
  }

  /** Queues jobs cut off by the last stop again, and starts working the queue. */
  async open(): Promise<void> {
    const cutoff = Date.now() - 30 * 86_400_000;
    const finished: string[] = [];
    for await (const job of this.jobsTable.values()) {
      if (job.state === 'running' || job.state === 'queued') {
        const again: ReplicationJob = { ...job, state: 'queued', nextAttemptAt: null };
        await this.jobsTable.put(job.id, again);
        this.queued.set(job.id, again);
      } else if (Date.parse(job.finishedAt ?? job.createdAt) < cutoff) finished.push(job.id);
    }
    const all = await this.jobsTable.keys().all();
    const excess = all.length - DONE_KEPT;
    if (excess > 0) finished.push(...all.slice(0, excess).filter((id) => !this.queued.has(id)));
    if (finished.length) await this.jobsTable.batch(finished.map((key) => ({ type: 'del' as const, key })));
    this.kick();
  }

  // ---- requests -----------------------------------------------------------------------------

  async enqueue(barcode: string, target: string, reason: ReplicationJob['reason'] = 'manual', requestedBy: string | null = null): Promise<ReplicationJob> {
    if (this.closed) throw new ReplicationError('CONFLICT', 'replication is shutting down');
    await this.targets.get(target);
    await this.libraries.getCartridge(barcode);
    const cfg = await this.libraries.tapes.config(barcode);
    if (cfg.readOnly) throw new ReplicationError('INVALID', `cartridge ${barcode} is read-only (${cfg.readOnly}): only this store's own cartridges are replicated`);
    for (const j of this.queued.values()) if (j.barcode === barcode && j.target === target && j.state === 'queued') return j;
    const now = new Date();
    const job: ReplicationJob = {
      id: `${now.getTime().toString(36).padStart(9, '0')}${randomBytes(3).toString('hex')}`,
      barcode, target, reason, requestedBy,
      state: 'queued', createdAt: now.toISOString(), startedAt: null, finishedAt: null,
      attempts: 0, nextAttemptAt: null, lastError: null,
      progress: { done: 0, total: null, message: null }, result: null,
    };
    await this.jobsTable.put(job.id, job);
    this.queued.set(job.id, job);
    this.kick();
    return job;
  }

  async job(id: string): Promise<ReplicationJob> {
    const live = this.running?.job.id === id ? this.running.job : this.queued.get(id);
    if (live) return live;
    const j = await this.jobsTable.get(id);
    if (!j) throw new ReplicationError('NOT_FOUND', `no replication job ${id}`);
    return j;
  }

  /** Jobs newest first, filtered. */
  async jobs(f: { barcode?: string; target?: string; state?: ReplicationJobState } = {}, offset = 0, limit = 100): Promise<{ items: ReplicationJob[]; total: number }> {
    const items: ReplicationJob[] = [];
    let total = 0;
    for await (const stored of this.jobsTable.values({ reverse: true })) {
      const j = this.running?.job.id === stored.id ? this.running.job : (this.queued.get(stored.id) ?? stored);
      if ((f.barcode && j.barcode !== f.barcode) || (f.target && j.target !== f.target) || (f.state && j.state !== f.state)) continue;
      if (total >= offset && items.length < limit) items.push(j);
      total++;
    }
    return { items, total };
  }

  /** Resolves when the job has ended (done, failed or cancelled). */
  async wait(id: string): Promise<ReplicationJob> {
    const j = await this.job(id);
    if (j.state !== 'queued' && j.state !== 'running') return j;
    return new Promise((resolve) => {
      const list = this.waiters.get(id) ?? [];
      list.push(resolve);
      this.waiters.set(id, list);
    });
  }

  async cancel(id: string): Promise<ReplicationJob> {
    const j = await this.job(id);
    if (this.running?.job.id === id) {
      this.running.cancel = true;
      return j;
    }
    if (j.state !== 'queued') throw new ReplicationError('CONFLICT', `replication job ${id} has already ended (${j.state})`);
    this.queued.delete(id);
    return this.finish({ ...j, state: 'cancelled', finishedAt: new Date().toISOString() });
  }

  onJobEnd(fn: (j: ReplicationJob) => void): void {
    this.endListeners.push(fn);
  }

  // ---- policies -----------------------------------------------------------------------------

  async setPolicy(p: Policy): Promise<Policy> {
    await this.libraries.getLibrary(p.library);
    await this.targets.get(p.target);
    const on = [...new Set(p.on)];
    if (on.length === 0 || on.some((k) => k !== 'unloaded' && k !== 'exported')) throw new ReplicationError('INVALID', "a policy replicates on 'unloaded' and/or 'exported'");
    const policy = { library: p.library, target: p.target, on };
    await this.policies.put(p.library, policy);
    return policy;
  }

  async policy(library: string): Promise<Policy | undefined> {
    return this.policies.get(library);
  }

  async listPolicies(): Promise<Policy[]> {
    return this.policies.values().all();
  }

  async removePolicy(library: string): Promise<void> {
    await this.policies.del(library);
  }

  async removeTarget(name: string): Promise<void> {
    for (const p of await this.listPolicies()) if (p.target === name) throw new TargetError('IN_USE', `target ${name} is used by the policy of library ${p.library}`);
    if (this.running?.job.target === name || [...this.queued.values()].some((j) => j.target === name)) throw new TargetError('IN_USE', `target ${name} has replication jobs queued or running`);
    await this.targets.remove(name);
  }

  private async onCartridgeEvent(e: CartridgeEvent): Promise<void> {
    try {
      const p = await this.policies.get(e.library);
      if (!p || !p.on.includes(e.kind)) return;
      const cfg = await this.libraries.tapes.config(e.barcode);
      if (cfg.readOnly) return;
      await this.enqueue(e.barcode, p.target, e.kind, 'policy');
    } catch (err) {
      if (!this.closed) console.error(`vtl: replication policy of ${e.library} for ${e.barcode}: ${(err as Error).message}`);
    }
  }

  // ---- state and lag ------------------------------------------------------------------------

  /** Per target: whether the target holds the cartridge's last sync point, and the lag. */
  async cartridge(barcode: string): Promise<CartridgeReplication[]> {
    const info = await this.syncInfo(barcode);
    const out: CartridgeReplication[] = [];
    const newest = await this.newestJobs(barcode);
    for (const t of await this.targets.list()) {
      const s = await this.tables.state.get(stateKey(t.name, barcode));
      const job = newest.get(t.name) ?? null;
      if (!s && !job) continue;
      out.push({ ...lagOf(info, s), target: t.name, job: job && { id: job.id, state: job.state, lastError: job.lastError } });
    }
    return out;
  }

  async summary(): Promise<TargetSummary[]> {
    const out: TargetSummary[] = [];
    for (const t of await this.targets.list()) {
      const sum: TargetSummary = { name: t.name, url: t.url, bandwidthLimit: t.bandwidthLimit, cartridges: 0, replicated: 0, pending: 0, failed: 0, maxLagSeconds: null, bytesShipped: 0, queued: 0, running: 0 };
      for (const j of this.queued.values()) if (j.target === t.name) sum.queued++;
      if (this.running?.job.target === t.name) sum.running++;
      for await (const s of this.tables.state.values({ gte: `${t.name}!`, lt: `${t.name}"` })) {
        const info = await this.syncInfo(s.barcode).catch(() => undefined);
        if (!info) continue;
        const lag = lagOf(info, s);
        sum.cartridges++;
        sum.bytesShipped += s.bytesShipped;
        // The lag now: a cartridge the target holds up to date adds 0, not how long that took.
        sum.maxLagSeconds = Math.max(sum.maxLagSeconds ?? 0, lag.state === 'replicated' ? 0 : (lag.lagSeconds ?? 0));
        if (lag.state === 'replicated') sum.replicated++;
        else sum.pending++;
      }
      out.push(sum);
    }
    for await (const j of this.jobsTable.values({ reverse: true, limit: 1000 })) if (j.state === 'failed') {
      const s = out.find((x) => x.name === j.target);
      if (s) s.failed++;
    }
    return out;
  }

  /** Cartridges whose replica on some target is older than their last sync point by more than `seconds`. */
  async lagging(seconds: number): Promise<Array<{ barcode: string; target: string; lagSeconds: number; syncedAt: string | null }>> {
    const out: Array<{ barcode: string; target: string; lagSeconds: number; syncedAt: string | null }> = [];
    for await (const s of this.tables.state.values()) {
      const info = await this.syncInfo(s.barcode).catch(() => undefined);
      if (!info) continue;
      const lag = lagOf(info, s);
      if (lag.state === 'stale' && lag.lagSeconds !== null && lag.lagSeconds > seconds) out.push({ barcode: s.barcode, target: s.target, lagSeconds: lag.lagSeconds, syncedAt: info.syncedAt });
    }
    return out;
  }

  private async syncInfo(barcode: string): Promise<{ logicalBytes: number; syncedAt: string | null }> {
    const info = await this.libraries.tapes.info(barcode);
    return { logicalBytes: info.logicalBytes, syncedAt: await this.libraries.tapes.syncedAt(barcode) };
  }

  private async newestJobs(barcode: string): Promise<Map<string, ReplicationJob>> {
    const out = new Map<string, ReplicationJob>();
    for (const j of (await this.jobs({ barcode }, 0, 50)).items) if (!out.has(j.target)) out.set(j.target, j);
    return out;
  }

  /**
   * A sealed container's bytes as shipped to a target (for scrub to repair a damaged local
   * copy); undefined when no target has it.
   */
  async fetchContainer(id: number): Promise<Buffer | undefined> {
    for (const t of await this.targets.list()) {
      if ((await this.tables.shipped.get(shippedKey(t.name, id))) === undefined) continue;
      try {
        const target = await this.targets.connect(t.name);
        const body = await target.tier.get(containerObject(id));
        parseContainerHeader(body, containerObject(id));
        return body.subarray(CONTAINER_HEADER);
      } catch (err) {
        console.error(`vtl: container ${id} could not be fetched from target ${t.name}: ${(err as Error).message}`);
      }
    }
    return undefined;
  }

  // ---- the worker ---------------------------------------------------------------------------

  private kick(): void {
    if (this.closed || this.pumping) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.pumping = this.pump().finally(() => {
      this.pumping = undefined;
      this.schedule();
    });
  }

  /** Wakes up when the earliest backed-off job is due. */
  private schedule(): void {
    if (this.closed) return;
    let next = Infinity;
    for (const j of this.queued.values()) next = Math.min(next, j.nextAttemptAt ? Date.parse(j.nextAttemptAt) : 0);
    if (next === Infinity) return;
    const delay = Math.max(0, next - Date.now());
    if (delay === 0) return this.kick();
    this.timer = setTimeout(() => this.kick(), delay);
    this.timer.unref();
  }

  private async pump(): Promise<void> {
    for (;;) {
      if (this.closed) return;
      const now = Date.now();
      const due = [...this.queued.values()].filter((j) => !j.nextAttemptAt || Date.parse(j.nextAttemptAt) <= now).sort((a, b) => a.id.localeCompare(b.id))[0];
      if (!due) return;
      await this.runJob(due);
    }
  }

  private async runJob(queued: ReplicationJob): Promise<void> {
    const job: ReplicationJob = { ...queued, state: 'running', startedAt: new Date().toISOString(), attempts: queued.attempts + 1, nextAttemptAt: null };
    this.queued.delete(job.id);
    const run = { job, cancel: false };
    this.running = run;
    await this.jobsTable.put(job.id, job);
    try {
      const target = await this.targets.connect(job.target);
      this.ship ??= { db: this.store.db, chunks: this.store.chunks, streams: this.store.streams, tapes: this.libraries.tapes, cipher: await this.store.chunks.replicaCipher(), tables: this.tables };
      const result = await shipCartridge(this.ship, target, job.barcode, (done, total, message) => (job.progress = { done, total, message }), () => run.cancel || this.closed);
      await this.finish({ ...job, state: 'done', finishedAt: new Date().toISOString(), result, lastError: null, progress: { ...job.progress, message: `catalog ${result.seq} written` } });
    } catch (err) {
      const message = (err as Error).message;
      if (run.cancel) {
        await this.finish({ ...job, state: 'cancelled', finishedAt: new Date().toISOString(), lastError: message });
      } else if (this.closed) {
        // Stopping: the job stays queued for the next start (open() takes it up again).
        await this.jobsTable.put(job.id, { ...job, state: 'queued', lastError: message });
      } else if (err instanceof RetryNow || (!(err instanceof PermanentError) && !(err instanceof TargetError) && isRetryable(err))) {
        const delay = Math.min(this.retryMaxMs, RETRY_BASE_MS * 2 ** Math.min(20, job.attempts - 1));
        const again: ReplicationJob = { ...job, state: 'queued', lastError: message, nextAttemptAt: new Date(Date.now() + (err instanceof RetryNow ? 0 : delay)).toISOString() };
        await this.jobsTable.put(job.id, again);
        this.queued.set(job.id, again);
      } else {
        await this.finish({ ...job, state: 'failed', finishedAt: new Date().toISOString(), lastError: message });
      }
    } finally {
      this.running = undefined;
    }
  }

  private async finish(job: ReplicationJob): Promise<ReplicationJob> {
    await this.jobsTable.put(job.id, job);
    for (const fn of this.waiters.get(job.id) ?? []) fn(job);
    this.waiters.delete(job.id);
    for (const fn of this.endListeners) {
      try {
        fn(job);
      } catch {
        /* a listener's failure is its own */
      }
    }
    return job;
  }

  /** Stops taking jobs; a running one is cut off and stays queued for the next start. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.pumping;
    await this.targets.close();
  }
}

/** Transient by the tier's rules, or an error of the network below it. */
function isRetryable(err: unknown): boolean {
  return isTransient(err) || /ECONNREFUSED|ECONNRESET|socket hang up|fetch failed/i.test(String((err as Error)?.message));
}

function lagOf(info: { logicalBytes: number; syncedAt: string | null }, s: ReplicaState | undefined): Omit<CartridgeReplication, 'target' | 'job'> {
  const sinceSync = info.syncedAt ? Math.max(0, (Date.now() - Date.parse(info.syncedAt)) / 1000) : null;
  if (!s) return { state: 'never', lagSeconds: info.logicalBytes > 0 ? sinceSync : null, bytesShipped: 0, lastBytesShipped: 0, replicatedAt: null, seq: null };
  const base = { bytesShipped: s.bytesShipped, lastBytesShipped: s.lastBytesShipped, replicatedAt: s.replicatedAt, seq: s.seq };
  if (s.syncedAt === info.syncedAt) {
    const lag = s.syncedAt ? Math.max(0, (Date.parse(s.replicatedAt) - Date.parse(s.syncedAt)) / 1000) : null;
    return { ...base, state: 'replicated', lagSeconds: lag };
  }
  return { ...base, state: 'stale', lagSeconds: sinceSync };
}
