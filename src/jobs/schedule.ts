/**
 * Periodic jobs: starts a job every `everyMs` unless one of the same kind still runs. Timers
 * are unref'd (they never keep the process alive) and stop at `close()`.
 *
 * The period is kept across restarts: the first run after a start is due one period after the
 * newest run of that kind in the job records, not one period after the start. A server that
 * restarts more often than its period (weekly scrub, nightly restarts) would otherwise never run
 * the job at all. A run that is already due, or whose last run was cut off by a crash or stop
 * (`interrupted`), starts `catchUpMs` after the schedule is set (the server settles first). Two
 * cut-off runs in a row do not start again at once: a job that takes the server down with it
 * must not do so on every start; it waits a whole period, and the log says so.
 */
import type { JobRecord, Jobs } from './jobs.js';

export interface ScheduleOptions {
  /** Delay before a run that is due at start (default 60 s). */
  catchUpMs?: number;
  /** Clock, for tests. */
  now?: () => number;
}

export interface EveryOptions {
  /** Which past runs count as this schedule's (default: every run of the kind). */
  counts?: (rec: JobRecord) => boolean;
}

/** When the first run after a start is due, and why (for the log). */
export interface FirstRun {
  atMs: number;
  reason: 'no earlier run' | 'on time' | 'overdue' | 'last run interrupted' | 'interrupted twice';
}

const DEFAULT_CATCH_UP_MS = 60_000;

export class Schedule {
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly catchUpMs: number;
  private readonly now: () => number;
  private closed = false;

  constructor(
    private readonly jobs: Jobs,
    opts: ScheduleOptions = {},
  ) {
    this.catchUpMs = opts.catchUpMs ?? DEFAULT_CATCH_UP_MS;
    this.now = opts.now ?? Date.now;
  }

  /** Starts `kind` every `everyMs`, the first time as `firstRun` says; resolves once the first run is timed. */
  async every(everyMs: number, kind: string, start: () => Promise<unknown>, opts: EveryOptions = {}): Promise<FirstRun> {
    if (!Number.isFinite(everyMs) || everyMs <= 0) throw new RangeError(`a schedule needs a positive interval, got ${everyMs}`);
    const first = await this.firstRun(everyMs, kind, opts.counts);
    if (first.reason === 'overdue' || first.reason === 'last run interrupted' || first.reason === 'interrupted twice') {
      console.error(`vtl: scheduled ${kind}: ${first.reason}; next run at ${new Date(first.atMs).toISOString()}`);
    }
    const run = () => {
      if (this.jobs.running(kind).length) return;
      start().catch((err: Error) => console.error(`vtl: scheduled ${kind} job could not start: ${err.message}`));
    };
    this.after(Math.max(0, first.atMs - this.now()), () => {
      run();
      this.repeat(everyMs, run);
    });
    return first;
  }

  /** A plain periodic task (not a job, nothing kept): errors are logged, never thrown. */
  task(everyMs: number, what: string, fn: () => Promise<unknown>): void {
    if (!Number.isFinite(everyMs) || everyMs <= 0) throw new RangeError(`a schedule needs a positive interval, got ${everyMs}`);
    this.repeat(everyMs, () => void fn().catch((err: Error) => console.error(`vtl: scheduled ${what} failed: ${err.message}`)));
  }

  close(): void {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  /** The first run after this start, from the newest two runs of the kind that count. */
  async firstRun(everyMs: number, kind: string, counts: (rec: JobRecord) => boolean = () => true): Promise<FirstRun> {
    const now = this.now();
    const [last, before] = await this.jobs.newest(kind, 2, counts);
    if (!last) return { atMs: now + everyMs, reason: 'no earlier run' };
    if (last.state === 'interrupted') {
      return before?.state === 'interrupted' ? { atMs: now + everyMs, reason: 'interrupted twice' } : { atMs: now + this.catchUpMs, reason: 'last run interrupted' };
    }
    const due = Date.parse(last.createdAt) + everyMs;
    return due > now + this.catchUpMs ? { atMs: due, reason: 'on time' } : { atMs: now + this.catchUpMs, reason: 'overdue' };
  }

  private after(ms: number, fn: () => void): void {
    if (this.closed) return;
    // setTimeout holds at most 2^31-1 ms (24.8 days); longer waits go in steps.
    const step = Math.min(ms, 2 ** 31 - 1);
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (step < ms) this.after(ms - step, fn);
      else fn();
    }, step);
    t.unref();
    this.timers.add(t);
  }

  private repeat(everyMs: number, fn: () => void): void {
    this.after(everyMs, () => {
      fn();
      this.repeat(everyMs, fn);
    });
  }
}
