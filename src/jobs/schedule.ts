/**
 * Periodic jobs: starts a job every `everyMs` unless one of the same kind still runs. Timers
 * are unref'd (they never keep the process alive) and stop at `close()`.
 */
import type { Jobs } from './jobs.js';

export class Schedule {
  private readonly timers: NodeJS.Timeout[] = [];

  constructor(private readonly jobs: Jobs) {}

  every(everyMs: number, kind: string, start: () => Promise<unknown>): void {
    if (!Number.isFinite(everyMs) || everyMs <= 0) throw new RangeError(`a schedule needs a positive interval, got ${everyMs}`);
    const timer = setInterval(() => {
      if (this.jobs.running(kind).length) return;
      start().catch((err: Error) => console.error(`vtl: scheduled ${kind} job could not start: ${err.message}`));
    }, everyMs);
    timer.unref();
    this.timers.push(timer);
  }

  /** A plain periodic task (not a job): errors are logged, never thrown. */
  task(everyMs: number, what: string, fn: () => Promise<unknown>): void {
    if (!Number.isFinite(everyMs) || everyMs <= 0) throw new RangeError(`a schedule needs a positive interval, got ${everyMs}`);
    const timer = setInterval(() => void fn().catch((err: Error) => console.error(`vtl: scheduled ${what} failed: ${err.message}`)), everyMs);
    timer.unref();
    this.timers.push(timer);
  }

  close(): void {
    for (const t of this.timers.splice(0)) clearInterval(t);
  }
}
