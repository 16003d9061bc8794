/**
 * The job runner: starts long-running work in the background, tracks its progress, cancels it
 * on request and keeps a record of every run in LevelDB (`jobs` / `runs`: id -> record).
 *
 * A record is written when the job starts, at most once a second while it runs (progress), and
 * when it ends. Ids sort by start time, so listing newest first is a reverse key scan. A job
 * still `running` in the store when a new process opens it was cut off by a crash or a stop:
 * `recover()` marks it `interrupted`, so no record claims to run forever.
 */
import type { AbstractLevel } from 'abstract-level';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type JobsDb = AbstractLevel<any, any, any>;

export type JobState = 'running' | 'succeeded' | 'failed' | 'cancelled' | 'interrupted';
export const JOB_STATES: readonly JobState[] = ['running', 'succeeded', 'failed', 'cancelled', 'interrupted'];

export interface JobProgress {
  done: number;
  total: number | null;
  /** What done/total count: bytes, files, containers... */
  unit: string;
  /** A short line about the current step. */
  message: string | null;
}

export interface JobRecord {
  id: string;
  kind: string;
  /** What the job works on (a barcode), or null for store-wide work. */
  target: string | null;
  state: JobState;
  /** Who asked for it (a token name), or null. */
  requestedBy: string | null;
  createdAt: string;
  finishedAt: string | null;
  progress: JobProgress;
  /** The job's own result object once it ended (also when it failed with a report). */
  result: unknown;
  error: string | null;
}

/** What a running job sees: its cancel signal and a way to report progress. */
export interface JobContext {
  readonly id: string;
  readonly signal: AbortSignal;
  progress(done: number, total?: number | null, message?: string | null): void;
  /** Throws JobCancelled when a cancel was requested; call it between steps. */
  checkCancelled(): void;
}

export type JobFn = (ctx: JobContext) => Promise<unknown>;

export class JobCancelled extends Error {
  override readonly name = 'JobCancelled';
  constructor(readonly partial?: unknown) {
    super('the job was cancelled');
  }
}

export class JobNotFound extends Error {
  readonly code = 'NOT_FOUND';
  constructor(id: string) {
    super(`no job with id ${JSON.stringify(id)}`);
  }
}

export interface StartJob {
  kind: string;
  target?: string | null;
  requestedBy?: string | null;
  unit?: string;
  run: JobFn;
}

interface Live {
  rec: JobRecord;
  abort: AbortController;
  done: Promise<JobRecord>;
  lastSave: number;
  saving: Promise<void>;
}

const SAVE_EVERY_MS = 1000;
const STOPPED = 'the server stopped while the job ran';
const ID = /^[0-9a-z]{1,40}$/;

export class Jobs {
  private readonly runs;
  private readonly live = new Map<string, Live>();
  private readonly endListeners: Array<(rec: JobRecord) => void | Promise<void>> = [];
  private lastMs = 0;
  private closing = false;
  private seq = 0;

  constructor(db: JobsDb) {
    this.runs = db.sublevel<string, unknown>('jobs', { valueEncoding: 'json' }).sublevel<string, JobRecord>('runs', { valueEncoding: 'json' });
  }

  /** Called with the final record of every job (after it is stored): alerts, metrics. */
  onEnd(fn: (rec: JobRecord) => void | Promise<void>): void {
    this.endListeners.push(fn);
  }

  /** Marks runs that a previous process left `running` as `interrupted`; returns them. */
  async recover(): Promise<JobRecord[]> {
    const out: JobRecord[] = [];
    for await (const rec of this.runs.values()) {
      if (rec.state !== 'running' || this.live.has(rec.id)) continue;
      const next: JobRecord = { ...rec, state: 'interrupted', finishedAt: new Date().toISOString(), error: rec.error ?? STOPPED };
      await this.runs.put(rec.id, next);
      out.push(next);
    }
    return out;
  }

  /** Starts a job in the background; resolves once its first record is durable. */
  async start(spec: StartJob): Promise<JobRecord> {
    const rec: JobRecord = {
      id: this.newId(),
      kind: spec.kind,
      target: spec.target ?? null,
      state: 'running',
      requestedBy: spec.requestedBy ?? null,
      createdAt: new Date().toISOString(),
      finishedAt: null,
      progress: { done: 0, total: null, unit: spec.unit ?? 'items', message: null },
      result: null,
      error: null,
    };
    await this.runs.put(rec.id, rec);
    const abort = new AbortController();
    const live: Live = { rec, abort, done: undefined as unknown as Promise<JobRecord>, lastSave: Date.now(), saving: Promise.resolve() };
    this.live.set(rec.id, live);
    live.done = this.execute(live, spec.run);
    return { ...rec };
  }

  async get(id: string): Promise<JobRecord> {
    const l = this.live.get(id);
    if (l) return snapshot(l.rec);
    const rec = ID.test(id) ? await this.runs.get(id) : undefined;
    if (!rec) throw new JobNotFound(id);
    return rec;
  }

  /** Newest first, filtered by kind, state and target. */
  async list(filter: { kind?: string; state?: JobState; target?: string; offset?: number; limit?: number } = {}): Promise<{ items: JobRecord[]; total: number }> {
    const offset = filter.offset ?? 0;
    const limit = filter.limit ?? 100;
    const items: JobRecord[] = [];
    let total = 0;
    for await (const stored of this.runs.values({ reverse: true })) {
      const rec = this.live.get(stored.id)?.rec ?? stored;
      if (filter.kind !== undefined && rec.kind !== filter.kind) continue;
      if (filter.state !== undefined && rec.state !== filter.state) continue;
      if (filter.target !== undefined && rec.target !== filter.target) continue;
      if (total >= offset && items.length < limit) items.push(snapshot(rec));
      total++;
    }
    return { items, total };
  }

  /** The newest `n` runs of a kind that `counts` accepts, newest first (a scan that stops there). */
  async newest(kind: string, n: number, counts: (rec: JobRecord) => boolean = () => true): Promise<JobRecord[]> {
    const out: JobRecord[] = [];
    for await (const stored of this.runs.values({ reverse: true })) {
      const rec = this.live.get(stored.id)?.rec ?? stored;
      if (rec.kind !== kind || !counts(rec)) continue;
      out.push(snapshot(rec));
      if (out.length >= n) break;
    }
    return out;
  }

  /** Asks a running job to stop; it ends `cancelled` at its next check. Ended jobs are left as they are. */
  async cancel(id: string): Promise<JobRecord> {
    const l = this.live.get(id);
    if (!l) return this.get(id);
    l.abort.abort();
    return snapshot(l.rec);
  }

  /** Resolves with the final record once the job has ended (at once for an ended job). */
  async wait(id: string): Promise<JobRecord> {
    const l = this.live.get(id);
    return l ? l.done : this.get(id);
  }

  /**
   * Running jobs of a kind (and target), to refuse a second copy of exclusive work. A job whose
   * work has ended is not one of them while its record is still being saved: a client that saw
   * it end may start the next at once.
   */
  running(kind: string, target?: string | null): JobRecord[] {
    return [...this.live.values()].map((l) => l.rec).filter((r) => r.state === 'running' && r.kind === kind && (target === undefined || r.target === target));
  }

  /**
   * Stops every running job and waits for them to record their end (shutdown). They end
   * `interrupted`, as after a crash, not `cancelled`: nobody chose to drop the work, and a
   * schedule runs it again soon after the next start (schedule.ts).
   */
  async close(): Promise<void> {
    this.closing = true;
    const all = [...this.live.values()];
    for (const l of all) l.abort.abort();
    await Promise.all(all.map((l) => l.done.catch(() => undefined)));
  }

  private async execute(live: Live, run: JobFn): Promise<JobRecord> {
    const { rec, abort } = live;
    const ctx: JobContext = {
      id: rec.id,
      signal: abort.signal,
      progress: (done, total, message) => {
        rec.progress = { ...rec.progress, done, total: total === undefined ? rec.progress.total : total, message: message === undefined ? rec.progress.message : message };
        this.saveSoon(live);
      },
      checkCancelled: () => {
        if (abort.signal.aborted) throw new JobCancelled();
      },
    };
    // Yield first: start() answers before the work takes the event loop.
    await new Promise((r) => setImmediate(r));
    try {
      rec.result = (await run(ctx)) ?? null;
      rec.state = abort.signal.aborted ? 'cancelled' : 'succeeded';
    } catch (err) {
      if (err instanceof JobCancelled || abort.signal.aborted) {
        rec.state = this.closing ? 'interrupted' : 'cancelled';
        if (this.closing) rec.error = STOPPED;
        if (err instanceof JobCancelled && err.partial !== undefined) rec.result = err.partial;
      } else {
        rec.state = 'failed';
        rec.error = (err as Error)?.message ?? String(err);
        const report = (err as { report?: unknown }).report;
        if (report !== undefined) rec.result = report;
      }
    }
    rec.finishedAt = new Date().toISOString();
    await live.saving;
    try {
      await this.runs.put(rec.id, rec);
    } finally {
      this.live.delete(rec.id);
    }
    for (const fn of this.endListeners) {
      try {
        await fn(snapshot(rec));
      } catch (err) {
        console.error(`vtl: after job ${rec.id}: ${(err as Error).message}`);
      }
    }
    return snapshot(rec);
  }

  /** Progress reaches the store at most once a second; one write at a time. */
  private saveSoon(live: Live): void {
    const now = Date.now();
    if (now - live.lastSave < SAVE_EVERY_MS) return;
    live.lastSave = now;
    const copy = snapshot(live.rec);
    live.saving = live.saving.then(() => this.runs.put(copy.id, copy)).catch(() => undefined);
  }

  /** Time-ordered ids: 9 base-36 digits of milliseconds, then a 4-digit sequence within the millisecond. */
  private newId(): string {
    const ms = Date.now();
    this.seq = ms === this.lastMs ? this.seq + 1 : 0;
    this.lastMs = ms;
    return ms.toString(36).padStart(9, '0') + this.seq.toString(36).padStart(4, '0');
  }
}

function snapshot(rec: JobRecord): JobRecord {
  return { ...rec, progress: { ...rec.progress } };
}
