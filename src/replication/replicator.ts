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
 *   the target lacks its data, from the oldest sync point the target does not have until now.
 *   That time is kept in a small mark per target and cartridge (`replication` / `stale`), written
 *   when the replicator first sees the cartridge stale for the target: at an unload or export
 *   (the events libraries send), at a request, after a job, and at every status read or lag
 *   check; nothing is added to the write path. A job that ends with the cartridge changed under
 *   it marks it stale from the job's start. The mark goes when a replication covers it.
 * - A cartridge counts for a target when the target holds it, or a library policy or a job assigns
 *   it there; one never replicated is pending with the age of its data.
 * - A deleted cartridge's state (replica state, page table, marks) is forgotten on the source
 *   (forget(), on the library's 'deleted' event); a record older than the cartridge of its
 *   barcode is a leftover of a deleted one and dropped when met. What the target holds stays.
 * - A deleted cartridge's jobs end `cancelled`, lastError "cartridge X was deleted", through the
 *   same end as any job (waiters such as `vtl replicate --wait` return): queued ones at once, on
 *   every target; a running one (the library deletes a cartridge in a slot while it is being
 *   shipped) at its next step, unless its catalog is already written (then it is done, and its
 *   record goes like the rest). A job that finds its cartridge gone, or replaced by a newer one
 *   of its barcode, when it starts (deleted while the server was down) ends the same way.
 * - Every target gets a listing-only check (check.ts) when VTL_TARGET_CHECK_EVERY_MS (default a
 *   week; 0: never) has passed since its last check (manual or scheduled; its creation if none),
 *   so restarts do not postpone it for ever; looked for a minute after open, then at most
 *   hourly; run between jobs, one target at a time; unref'd timer, stopped at close. The
 *   outcome of each target's last check is kept (`replication` / `checks`) and shown in the
 *   target summary (`lastCheck`); a scheduled one that found something missing or damaged, or
 *   could not run, is logged to stderr, and every check goes to the onCheck listeners
 *   (checkAlert() says whether it calls for an alert; the API raises it as `target_check`).
 * - Status without the job table: the newest job per target and cartridge is kept in memory
 *   (built at open, updated at every job write), and reads of the summary at the same moment
 *   (the replication gauges of one /metrics scrape) share one walk, unless something the
 *   replicator knows of changed since that walk began. Status reads still write stale marks
 *   (track): that is how the lag start of data written in a drive is caught without a hook in
 *   the write path.
 */
import { randomBytes } from 'node:crypto';
import { LibraryError, type CartridgeEvent, type Libraries } from '../library/index.js';
import type { DataStore } from '../stream/store.js';
import { isTransient } from '../tier/index.js';
import type { ReplicationDb } from './index.js';
import { checkTarget, type TargetCheck } from './check.js';
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
  /** Cartridges whose newest job for this target failed (they need attention; a later job clears it). */
  failed: number;
  /** The largest lag now, in seconds: 0 when the target holds every cartridge up to date; null with none. */
  maxLagSeconds: number | null;
  bytesShipped: number;
  queued: number;
  running: number;
  /** The outcome of the newest check of this target (manual or scheduled); null: never checked. */
  lastCheck: TargetCheckRecord | null;
}

/** What one check of a target found (counts; the full report goes to its caller). */
export interface TargetCheckRecord {
  target: string;
  /** When the check ended. */
  at: string;
  scheduled: boolean;
  deep: boolean;
  /** It ran to the end and found the target whole. */
  ok: boolean;
  missing: number;
  damaged: number;
  reshipped: number;
  /** Missing or damaged containers this store no longer has (collected since). */
  lost: number;
  /** Replicas that cannot be read back whole: replicated in full at their next job. */
  brokenReplicas: number;
  /** Why the check could not run or stopped (the target unreachable, ...); null when it ran. */
  error: string | null;
}

export interface ReplicatorOptions {
  env?: NodeJS.ProcessEnv;
  /** Milliseconds between scheduled checks of a target; 0: none. Default: VTL_TARGET_CHECK_EVERY_MS, else a week. */
  checkEveryMs?: number;
}

export class ReplicationError extends Error {
  constructor(
    readonly code: 'INVALID' | 'NOT_FOUND' | 'CONFLICT',
    message: string,
  ) {
    super(message);
  }
}

/** The oldest sync point of a cartridge that a target does not hold yet. */
interface StaleMark {
  target: string;
  barcode: string;
  /** That sync point (or a time no later than it). */
  since: string;
  /** When this mark was written (a mark older than the cartridge is a deleted one's). */
  recordedAt: string;
}

interface SyncInfo {
  logicalBytes: number;
  syncedAt: string | null;
  /** When the cartridge of this barcode was created. */
  createdAt: string;
}

const RETRY_BASE_MS = 1000;
const DONE_KEPT = 10_000;
const CHECK_EVERY_MS = 7 * 86_400_000;
/** The schedule looks for targets due a check this often at most (targets come and go meanwhile). */
const CHECK_POLL_MS = 3_600_000;
/** Its first look after a start, when the server has settled: a check overdue then runs soon. */
const CHECK_FIRST_MS = 60_000;

export class Replicator {
  readonly targets: Targets;
  private readonly jobsTable;
  private readonly policies;
  private readonly tables;
  private readonly marks;
  private readonly checks;
  private readonly queued = new Map<string, ReplicationJob>();
  /** The newest job per target and cartridge (stateKey), as in the table: status reads this instead. */
  private readonly newest = new Map<string, ReplicationJob>();
  /** `reason`: why it was cut off, when not by an operator. */
  private running: { job: ReplicationJob; cancel: boolean; reason?: string } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private pumping: Promise<void> | undefined;
  private closed = false;
  private readonly waiters = new Map<string, Array<(j: ReplicationJob) => void>>();
  private readonly endListeners: Array<(j: ReplicationJob) => void> = [];
  private readonly checkListeners: Array<(c: TargetCheckRecord) => void> = [];
  private readonly retryMaxMs: number;
  private readonly checkEveryMs: number;
  private checkTimer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  /** Bumped by every change the replicator makes or hears of: a summary walk begun before it is not shared after it. */
  private generation = 0;
  private summaryWalk: { generation: number; result: Promise<TargetSummary[]> } | undefined;
  private ship: ShipDeps | undefined;

  constructor(
    private readonly store: DataStore,
    private readonly libraries: Libraries,
    opts: ReplicatorOptions = {},
  ) {
    const env = opts.env ?? process.env;
    const db = store.db.sublevel<string, unknown>('replication', { valueEncoding: 'json' }) as unknown as ReplicationDb;
    this.targets = new Targets(db, env);
    this.jobsTable = db.sublevel<string, ReplicationJob>('jobs', { valueEncoding: 'json' });
    this.policies = db.sublevel<string, Policy>('policies', { valueEncoding: 'json' });
    this.tables = shipTables(db);
    this.marks = db.sublevel<string, StaleMark>('stale', { valueEncoding: 'json' });
    this.checks = db.sublevel<string, TargetCheckRecord>('checks', { valueEncoding: 'json' });
    this.retryMaxMs = Number(env.VTL_REPLICATION_RETRY_MAX_MS ?? 60_000);
    this.checkEveryMs = opts.checkEveryMs ?? checkInterval(env.VTL_TARGET_CHECK_EVERY_MS);
    libraries.onCartridgeEvent((e) => void this.onCartridgeEvent(e));
  }

  /** Queues jobs cut off by the last stop again, starts working the queue and the check schedule. */
  async open(): Promise<void> {
    const cutoff = Date.now() - 30 * 86_400_000;
    const finished: string[] = [];
    const kept: ReplicationJob[] = [];
    const all: string[] = [];
    for await (const job of this.jobsTable.values()) {
      all.push(job.id);
      if (job.state === 'running' || job.state === 'queued') {
        const again: ReplicationJob = { ...job, state: 'queued', nextAttemptAt: null };
        await this.jobsTable.put(job.id, again);
        this.queued.set(job.id, again);
        kept.push(again);
      } else if (Date.parse(job.finishedAt ?? job.createdAt) < cutoff) finished.push(job.id);
      else kept.push(job);
    }
    const excess = all.length - DONE_KEPT;
    if (excess > 0) finished.push(...all.slice(0, excess).filter((id) => !this.queued.has(id)));
    if (finished.length) await this.jobsTable.batch(finished.map((key) => ({ type: 'del' as const, key })));
    const gone = new Set(finished);
    for (const job of kept) if (!gone.has(job.id)) this.noteNewest(job);
    this.kick();
    this.armChecks(true);
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
    await this.save(job);
    this.queued.set(job.id, job);
    await this.observe(barcode, [target]);
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

  /** Calls `fn` after every check of a target, manual or scheduled, that ran or failed. */
  onCheck(fn: (c: TargetCheckRecord) => void): void {
    this.checkListeners.push(fn);
  }

  // ---- policies -----------------------------------------------------------------------------

  async setPolicy(p: Policy): Promise<Policy> {
    await this.libraries.getLibrary(p.library);
    await this.targets.get(p.target);
    const on = [...new Set(p.on)];
    if (on.length === 0 || on.some((k) => k !== 'unloaded' && k !== 'exported')) throw new ReplicationError('INVALID', "a policy replicates on 'unloaded' and/or 'exported'");
    const policy = { library: p.library, target: p.target, on };
    await this.policies.put(p.library, policy);
    this.generation++;
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
    this.generation++;
  }

  async removeTarget(name: string): Promise<void> {
    for (const p of await this.listPolicies()) if (p.target === name) throw new TargetError('IN_USE', `target ${name} is used by the policy of library ${p.library}`);
    if (this.running?.job.target === name || [...this.queued.values()].some((j) => j.target === name)) throw new TargetError('IN_USE', `target ${name} has replication jobs queued or running`);
    await this.targets.remove(name);
    await this.checks.del(name);
    this.generation++;
  }

  private async onCartridgeEvent(e: CartridgeEvent): Promise<void> {
    this.generation++;
    if (e.kind === 'deleted') return this.cartridgeDeleted(e.barcode);
    try {
      // A sync point: note when the cartridge became stale for its targets.
      await this.observe(e.barcode);
      const p = await this.policies.get(e.library);
      if (!p || !p.on.includes(e.kind)) return;
      const cfg = await this.libraries.tapes.config(e.barcode);
      if (cfg.readOnly) return;
      await this.enqueue(e.barcode, p.target, e.kind, 'policy');
    } catch (err) {
      if (!this.closed) console.error(`vtl: replication policy of ${e.library} for ${e.barcode}: ${(err as Error).message}`);
    }
  }

  /**
   * A deleted cartridge: its queued jobs end now and a running one at its next step (the
   * library deletes a cartridge that sits in a slot, shipped or not), all as cancelled with the
   * reason; then what this store recorded about replicating it goes (forget()).
   */
  private async cartridgeDeleted(barcode: string): Promise<void> {
    const reason = deletedReason(barcode);
    if (this.running?.job.barcode === barcode) {
      this.running.cancel = true;
      this.running.reason = reason;
    }
    // Out of the queue before anything awaits: the worker must not start one of them.
    const dropped = [...this.queued.values()].filter((j) => j.barcode === barcode);
    for (const j of dropped) this.queued.delete(j.id);
    const finishedAt = new Date().toISOString();
    const ends = dropped.map((j) => this.finish({ ...j, state: 'cancelled', finishedAt, lastError: reason }));
    for (const r of await Promise.allSettled([this.forget(barcode), ...ends])) {
      if (r.status === 'rejected') console.error(`vtl: replication state of deleted ${barcode}: ${(r.reason as Error).message}`);
    }
  }

  /**
   * Checks a target against what was shipped to it and ships again what went missing or bad
   * there (check.ts). It runs between jobs: the job running now, and those due behind it,
   * finish first, and none starts until the check has ended. Its outcome is kept as the
   * target's last check.
   */
  async checkTarget(name: string, deep: boolean): Promise<TargetCheck> {
    return this.runCheck(name, deep, false);
  }

  /** A check that ran, or failed (not one cut off by close), is recorded and reported. */
  private async runCheck(name: string, deep: boolean, scheduled: boolean): Promise<TargetCheck> {
    await this.targets.get(name); // an unknown name is the caller's mistake, not the target's
    const base = { target: name, scheduled, deep };
    let report: TargetCheck;
    try {
      report = await this.checkBetweenJobs(name, deep);
    } catch (err) {
      if (!this.closed) await this.recordCheck({ ...base, ...NOTHING_FOUND, at: new Date().toISOString(), ok: false, error: (err as Error).message });
      throw err;
    }
    await this.recordCheck({
      ...base,
      at: new Date().toISOString(),
      ok: report.missing.length + report.damaged.length + report.brokenReplicas.length === 0,
      missing: report.missing.length,
      damaged: report.damaged.length,
      reshipped: report.reshipped.length,
      lost: report.lost.length,
      brokenReplicas: report.brokenReplicas.length,
      error: null,
    });
    return report;
  }

  /** Never throws: the check's own outcome (its report or its error) goes to the caller. */
  private async recordCheck(rec: TargetCheckRecord): Promise<void> {
    try {
      // A target removed during its check keeps no record (one of its name added later would show it).
      if (!(await this.targets.get(rec.target).catch(() => undefined))) return;
      await this.checks.put(rec.target, rec);
      this.generation++;
    } catch (err) {
      console.error(`vtl: the outcome of the check of target ${rec.target} could not be recorded: ${(err as Error).message}`);
    }
    const alert = checkAlert(rec);
    if (rec.scheduled && alert) console.error(`vtl: ${alert}`);
    for (const fn of this.checkListeners) {
      try {
        fn(rec);
      } catch {
        /* a listener's failure is its own */
      }
    }
  }

  private async checkBetweenJobs(name: string, deep: boolean): Promise<TargetCheck> {
    const target = await this.targets.connect(name);
    while (this.pumping) await this.pumping;
    if (this.closed) throw new ReplicationError('CONFLICT', 'replication is shutting down');
    const run = (async () => {
      this.ship ??= { db: this.store.db, chunks: this.store.chunks, streams: this.store.streams, tapes: this.libraries.tapes, cipher: await this.store.chunks.replicaCipher(), tables: this.tables };
      return checkTarget(this.ship, target, { deep, progress: () => undefined, cancelled: () => this.closed });
    })();
    this.pumping = run.then(
      () => undefined,
      () => undefined,
    ).finally(() => {
      this.pumping = undefined;
      this.schedule();
    });
    return run;
  }

  /** The next look for targets due a check; the one after is armed when this one's checks end. */
  private armChecks(first = false): void {
    if (this.closed || !(this.checkEveryMs > 0)) return;
    this.checkTimer = setTimeout(() => {
      this.checking = this.dueChecks().finally(() => {
        this.checking = undefined;
        this.armChecks();
      });
    }, Math.min(this.checkEveryMs, first ? CHECK_FIRST_MS : CHECK_POLL_MS));
    this.checkTimer.unref();
  }

  /** A listing-only check of each target whose last check (or creation) is a period old. */
  private async dueChecks(): Promise<void> {
    try {
      for (const t of await this.targets.list()) {
        if (this.closed) return;
        const last = await this.checks.get(t.name);
        if (Date.parse(last?.at ?? t.createdAt) + this.checkEveryMs > Date.now()) continue;
        await this.runCheck(t.name, false, true).catch(() => undefined); // recorded and reported by runCheck
      }
    } catch (err) {
      if (!this.closed) console.error(`vtl: scheduled target checks: ${(err as Error).message}`);
    }
  }

  // ---- state and lag ------------------------------------------------------------------------

  /** Per target: whether the target holds the cartridge's last sync point, and the lag. */
  async cartridge(barcode: string): Promise<CartridgeReplication[]> {
    const info = await this.syncInfo(barcode);
    const out: CartridgeReplication[] = [];
    const newest = this.newestJobs({ barcode });
    const policy = await this.policyTarget(barcode);
    for (const t of await this.targets.list()) {
      const job = jobOf(newest, t.name, barcode, info);
      const assigned = assigns(job) || policy === t.name;
      const { state, since } = await this.track(t.name, barcode, info, assigned);
      if (!state && !assigned && !job) continue; // a cancelled job is still shown, with its state
      out.push({ ...lagOf(info, state, since), target: t.name, job: job ? { id: job.id, state: job.state, lastError: job.lastError } : null });
    }
    return out;
  }

  /**
   * Per target: its cartridges, lag, jobs and last check. Callers at the same moment (the
   * replication gauges of one /metrics scrape) share one walk, unless the replicator changed
   * something since it began (a job queued or ended, a cartridge event, a policy).
   */
  summary(): Promise<TargetSummary[]> {
    const current = this.summaryWalk;
    if (current && current.generation === this.generation) return current.result;
    const walk = { generation: this.generation, result: this.walkSummary() };
    this.summaryWalk = walk;
    const done = () => {
      if (this.summaryWalk === walk) this.summaryWalk = undefined;
    };
    walk.result.then(done, done);
    return walk.result;
  }

  private async walkSummary(): Promise<TargetSummary[]> {
    const out: TargetSummary[] = [];
    const newest = this.newestJobs();
    for (const t of await this.targets.list()) {
      const lastCheck = (await this.checks.get(t.name)) ?? null;
      const sum: TargetSummary = { name: t.name, url: t.url, bandwidthLimit: t.bandwidthLimit, cartridges: 0, replicated: 0, pending: 0, failed: 0, maxLagSeconds: null, bytesShipped: 0, queued: 0, running: 0, lastCheck };
      for (const j of this.queued.values()) if (j.target === t.name) sum.queued++;
      if (this.running?.job.target === t.name) sum.running++;
      for await (const { job, state, lag } of this.standings(t.name, newest)) {
        sum.cartridges++;
        sum.bytesShipped += state?.bytesShipped ?? 0;
        if (job?.state === 'failed') sum.failed++;
        // The lag now: a cartridge the target holds up to date adds 0, not how long that took.
        sum.maxLagSeconds = Math.max(sum.maxLagSeconds ?? 0, lag.state === 'replicated' ? 0 : (lag.lagSeconds ?? 0));
        if (lag.state === 'replicated') sum.replicated++;
        else sum.pending++;
      }
      out.push(sum);
    }
    return out;
  }

  /**
   * Cartridges whose data a target has lacked for more than `seconds` (`since`: the oldest sync
   * point it lacks; `syncedAt`: the cartridge's last one).
   */
  async lagging(seconds: number): Promise<Array<{ barcode: string; target: string; lagSeconds: number; since: string | null; syncedAt: string | null }>> {
    const out: Array<{ barcode: string; target: string; lagSeconds: number; since: string | null; syncedAt: string | null }> = [];
    const newest = this.newestJobs();
    for (const t of await this.targets.list()) {
      for await (const { barcode, info, since, lag } of this.standings(t.name, newest)) {
        if (lag.state !== 'replicated' && lag.lagSeconds !== null && lag.lagSeconds > seconds) {
          out.push({ barcode, target: t.name, lagSeconds: lag.lagSeconds, since: since ?? info.syncedAt, syncedAt: info.syncedAt });
        }
      }
    }
    return out;
  }

  /**
   * Each cartridge that counts for a target (it holds it, or a policy or a live job assigns it
   * there, and it has data), with its newest job there, its replica state and its lag now.
   */
  private async *standings(target: string, newest: Map<string, ReplicationJob>) {
    for (const [barcode, byPolicy] of await this.members(target, newest)) {
      const info = await this.syncInfo(barcode).catch(() => undefined);
      if (!info) continue;
      const job = jobOf(newest, target, barcode, info);
      const assigned = byPolicy || assigns(job);
      const { state, since } = await this.track(target, barcode, info, assigned);
      if (!state && (info.logicalBytes === 0 || !assigned)) continue; // nothing (meant) to replicate
      yield { barcode, info, job, state, since, lag: lagOf(info, state, since) };
    }
  }

  /**
   * Forgets what this store recorded about replicating a cartridge (it was deleted): replica
   * state, page tables and stale marks for every target. What the targets hold stays there.
   */
  async forget(barcode: string): Promise<void> {
    const keys = new Set<string>();
    for (const t of await this.targets.list()) keys.add(stateKey(t.name, barcode));
    for await (const k of this.tables.state.keys()) if (k.endsWith(`!${barcode}`)) keys.add(k);
    for await (const k of this.marks.keys()) if (k.endsWith(`!${barcode}`)) keys.add(k);
    const b = this.tables.root.batch();
    for (const key of keys) {
      b.del(key, { sublevel: this.tables.state });
      b.del(key, { sublevel: this.tables.pageTables });
      b.del(key, { sublevel: this.marks });
    }
    await b.write();
    this.generation++;
  }

  /** Notes, for `targets` (by default every one that holds it or a policy assigns), when the cartridge became stale. */
  private async observe(barcode: string, targets?: string[]): Promise<void> {
    const info = await this.syncInfo(barcode).catch(() => undefined);
    if (!info) return;
    const names = targets ?? (await this.targets.list()).map((t) => t.name);
    const policy = targets ? undefined : await this.policyTarget(barcode);
    for (const name of names) {
      if (!targets && name !== policy && !(await this.tables.state.get(stateKey(name, barcode)))) continue;
      await this.track(name, barcode, info);
    }
  }

  /**
   * The replica state and stale mark of a cartridge on a target, brought up to date: records
   * older than the cartridge (a deleted one's of the same barcode) are dropped, a mark is written
   * the first time the cartridge is seen stale and removed once the target holds its sync point.
   */
  private async track(target: string, barcode: string, info: SyncInfo, assigned = true): Promise<{ state?: ReplicaState; since?: string }> {
    const key = stateKey(target, barcode);
    let state = await this.tables.state.get(key);
    let mark = await this.marks.get(key);
    if ((state && state.replicatedAt < info.createdAt) || (mark && mark.recordedAt < info.createdAt)) {
      const b = this.tables.root.batch();
      b.del(key, { sublevel: this.tables.state });
      b.del(key, { sublevel: this.tables.pageTables });
      b.del(key, { sublevel: this.marks });
      await b.write();
      state = mark = undefined;
    }
    const current = state ? state.syncedAt === info.syncedAt : info.logicalBytes === 0;
    if (current) {
      if (mark) await this.marks.del(key);
      return { state };
    }
    // Not on the target, nor meant for it (no policy or job): nothing lags there.
    if (!state && !assigned) return {};
    // A mark at or before the sync point the target holds was covered by a replication since.
    if (!mark || (state?.syncedAt && mark.since <= state.syncedAt)) {
      const now = new Date().toISOString();
      mark = { target, barcode, since: info.syncedAt ?? now, recordedAt: now };
      await this.marks.put(key, mark);
    }
    return { state, since: mark.since };
  }

  /**
   * The cartridges that may count for a target: it holds them, or a policy (true) or a job
   * assigns them there (the caller checks that a job or state is not a deleted cartridge's).
   */
  private async members(target: string, newest: Map<string, ReplicationJob>): Promise<Map<string, boolean>> {
    const out = new Map<string, boolean>();
    const range = { gte: `${target}!`, lt: `${target}"` };
    for await (const k of this.tables.state.keys(range)) out.set(k.slice(target.length + 1), false);
    for (const j of newest.values()) if (j.target === target) out.set(j.barcode, false);
    for (const p of await this.listPolicies()) {
      if (p.target !== target) continue;
      for (const c of await this.libraries.listCartridges({ library: p.library }).catch(() => [])) {
        const cfg = await this.libraries.tapes.config(c.barcode).catch(() => undefined);
        if (cfg && !cfg.readOnly) out.set(c.barcode, true);
      }
    }
    return out;
  }

  /** The target of the policy of the library that holds the cartridge, if any. */
  private async policyTarget(barcode: string): Promise<string | undefined> {
    const c = await this.libraries.getCartridge(barcode).catch(() => undefined);
    if (!c || c.location.kind === 'vault') return undefined;
    const cfg = await this.libraries.tapes.config(barcode).catch(() => undefined);
    if (!cfg || cfg.readOnly) return undefined;
    return (await this.policies.get(c.location.library))?.target;
  }

  private async syncInfo(barcode: string): Promise<SyncInfo> {
    const c = await this.libraries.getCartridge(barcode);
    return { logicalBytes: c.logicalBytes, createdAt: c.createdAt, syncedAt: await this.libraries.tapes.syncedAt(barcode) };
  }

  /** The newest job per target and cartridge (keyed like the replica state), as it is now. */
  private newestJobs(f: { barcode?: string } = {}): Map<string, ReplicationJob> {
    const out = new Map<string, ReplicationJob>();
    for (const [key, j] of this.newest) {
      if (f.barcode && j.barcode !== f.barcode) continue;
      out.set(key, this.running?.job.id === j.id ? this.running.job : (this.queued.get(j.id) ?? j));
    }
    return out;
  }

  /** Every write of a job goes through here, so that `newest` stays the table's. */
  private async save(job: ReplicationJob): Promise<void> {
    await this.jobsTable.put(job.id, job);
    this.noteNewest(job);
    this.generation++;
  }

  private noteNewest(job: ReplicationJob): void {
    const key = stateKey(job.target, job.barcode);
    const was = this.newest.get(key);
    if (!was || was.id <= job.id) this.newest.set(key, job);
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
    const run: NonNullable<Replicator['running']> = { job, cancel: false };
    this.running = run;
    await this.save(job);
    try {
      if (await this.cartridgeGone(job)) {
        run.cancel = true;
        throw new Error((run.reason = deletedReason(job.barcode)));
      }
      const target = await this.targets.connect(job.target);
      // Records a deleted cartridge of this barcode left are not this one's (its bytes, pages).
      const before = await this.syncInfo(job.barcode).catch(() => undefined);
      if (before) await this.track(job.target, job.barcode, before);
      this.ship ??= { db: this.store.db, chunks: this.store.chunks, streams: this.store.streams, tapes: this.libraries.tapes, cipher: await this.store.chunks.replicaCipher(), tables: this.tables };
      const result = await shipCartridge(this.ship, target, job.barcode, (done, total, message) => (job.progress = { done, total, message }), () => run.cancel || this.closed);
      // Deleted after the commit point: the catalog is on the target, the cartridge gone here.
      const after = run.reason ? this.dropRecord(job.target, job.barcode) : this.afterShip(job);
      await after.catch((err: unknown) => console.error(`vtl: replication state of ${job.barcode} on ${job.target}: ${(err as Error).message}`));
      await this.finish({ ...job, state: 'done', finishedAt: new Date().toISOString(), result, lastError: null, progress: { ...job.progress, message: `catalog ${result.seq} written` } });
    } catch (err) {
      const message = (err as Error).message;
      if (run.cancel) {
        await this.finish({ ...job, state: 'cancelled', finishedAt: new Date().toISOString(), lastError: run.reason ?? message });
      } else if (this.closed) {
        // Stopping: the job stays queued for the next start (open() takes it up again).
        await this.save({ ...job, state: 'queued', lastError: message });
      } else if (err instanceof RetryNow || (!(err instanceof PermanentError) && !(err instanceof TargetError) && isRetryable(err))) {
        const delay = Math.min(this.retryMaxMs, RETRY_BASE_MS * 2 ** Math.min(20, job.attempts - 1));
        const again: ReplicationJob = { ...job, state: 'queued', lastError: message, nextAttemptAt: new Date(Date.now() + (err instanceof RetryNow ? 0 : delay)).toISOString() };
        await this.save(again);
        this.queued.set(job.id, again);
      } else {
        await this.finish({ ...job, state: 'failed', finishedAt: new Date().toISOString(), lastError: message });
      }
    } finally {
      this.running = undefined;
    }
  }

  /**
   * After a catalog was written: the mark goes when the target now holds the cartridge's last
   * sync point; when the cartridge changed during the job, the target lacks sync points that
   * came after the job's snapshot, so it is stale from the job's start.
   */
  private async afterShip(job: ReplicationJob): Promise<void> {
    const key = stateKey(job.target, job.barcode);
    const info = await this.syncInfo(job.barcode);
    const state = await this.tables.state.get(key);
    if (!state || state.syncedAt === info.syncedAt) return this.marks.del(key);
    const mark = await this.marks.get(key);
    if (mark && state.syncedAt && mark.since > state.syncedAt) return;
    const now = new Date().toISOString();
    await this.marks.put(key, { target: job.target, barcode: job.barcode, since: job.startedAt ?? now, recordedAt: now });
  }

  /**
   * The job's cartridge was deleted (or replaced by a newer one of its barcode) after it was
   * queued: a deletion the replicator did not hear of, as while the server was down.
   */
  private async cartridgeGone(job: ReplicationJob): Promise<boolean> {
    const c = await this.libraries.getCartridge(job.barcode).catch((err: unknown) => {
      if (err instanceof LibraryError && err.code === 'NOT_FOUND') return undefined;
      throw err;
    });
    return !c || c.createdAt > job.createdAt;
  }

  /** What one replication of a deleted cartridge left on record for its target. */
  private async dropRecord(target: string, barcode: string): Promise<void> {
    const key = stateKey(target, barcode);
    const b = this.tables.root.batch();
    b.del(key, { sublevel: this.tables.state });
    b.del(key, { sublevel: this.tables.pageTables });
    await b.write();
  }

  private async finish(job: ReplicationJob): Promise<ReplicationJob> {
    await this.save(job);
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
    if (this.checkTimer) clearTimeout(this.checkTimer);
    await this.pumping;
    await this.checking; // it sees `closed` (a check in progress is cut off at its next step)
    await this.targets.close();
  }
}

const NOTHING_FOUND = { missing: 0, damaged: 0, reshipped: 0, lost: 0, brokenReplicas: 0 } as const;

function deletedReason(barcode: string): string {
  return `cartridge ${barcode} was deleted`;
}

/** The scheduled checks' period from VTL_TARGET_CHECK_EVERY_MS (unset: a week; 0: off). */
function checkInterval(v: string | undefined): number {
  if (v === undefined || v.trim() === '') return CHECK_EVERY_MS;
  const ms = Number(v);
  if (Number.isFinite(ms) && ms >= 0) return ms;
  console.error(`vtl: VTL_TARGET_CHECK_EVERY_MS must be a number of milliseconds (0: off), not ${JSON.stringify(v)}: targets are not checked on a schedule`);
  return 0;
}

/**
 * What an alert about a check would say, or undefined when it needs none: it found objects
 * missing or damaged, or replicas broken, on the target, or it could not run (unreachable).
 */
export function checkAlert(c: TargetCheckRecord): string | undefined {
  const what = `${c.scheduled ? 'scheduled ' : ''}check of replication target ${c.target}`;
  if (c.error !== null) return `${what} failed: ${c.error}`;
  if (c.ok) return undefined;
  const found = [[c.missing, 'container', 'missing'], [c.damaged, 'container', 'damaged'], [c.brokenReplicas, 'replica', 'that cannot be read back whole']] as const;
  const parts = found.filter(([n]) => n > 0).map(([n, noun, how]) => `${n} ${noun}${n === 1 ? '' : 's'} ${how}`);
  return `${what} found ${parts.join(', ')}: ${c.reshipped} shipped again, ${c.lost} no longer here to ship${c.brokenReplicas ? ', broken replicas replicated in full at their next job' : ''}`;
}

/** The newest job for a cartridge on a target; one older than the cartridge was a deleted one's of its barcode. */
function jobOf(newest: Map<string, ReplicationJob>, target: string, barcode: string, info: SyncInfo): ReplicationJob | undefined {
  const job = newest.get(stateKey(target, barcode));
  return job && job.createdAt >= info.createdAt ? job : undefined;
}

/**
 * A job assigns its cartridge to its target unless an operator cancelled it: that says not to
 * replicate it there (now), and the cartridge must not then lag there forever.
 */
function assigns(job: ReplicationJob | undefined): boolean {
  return job !== undefined && job.state !== 'cancelled';
}

/** Transient by the tier's rules, or an error of the network below it. */
function isRetryable(err: unknown): boolean {
  return isTransient(err) || /ECONNREFUSED|ECONNRESET|socket hang up|fetch failed/i.test(String((err as Error)?.message));
}

/** `since`: the oldest sync point the target lacks, when known (else the last one counts). */
function lagOf(info: SyncInfo, s: ReplicaState | undefined, since?: string): Omit<CartridgeReplication, 'target' | 'job'> {
  const from = since ?? info.syncedAt;
  const lacking = from ? Math.max(0, (Date.now() - Date.parse(from)) / 1000) : null;
  if (!s) return { state: 'never', lagSeconds: info.logicalBytes > 0 ? lacking : null, bytesShipped: 0, lastBytesShipped: 0, replicatedAt: null, seq: null };
  const base = { bytesShipped: s.bytesShipped, lastBytesShipped: s.lastBytesShipped, replicatedAt: s.replicatedAt, seq: s.seq };
  if (s.syncedAt === info.syncedAt) {
    const lag = s.syncedAt ? Math.max(0, (Date.parse(s.replicatedAt) - Date.parse(s.syncedAt)) / 1000) : null;
    return { ...base, state: 'replicated', lagSeconds: lag };
  }
  return { ...base, state: 'stale', lagSeconds: lacking };
}
