/**
 * Capacity history: the store-wide totals of GET /stats (logical, unique and stored bytes,
 * ratios, counts) and the bytes each protocol moved, sampled by the server over time so the
 * dashboard can chart them. Kept in the shared LevelDB (sublevel `history`), so it survives
 * restarts.
 *
 * Guarantees:
 * - The sampler records one **fine** point per interval (VTL_HISTORY_INTERVAL_MS, default
 *   60 s; 0 turns sampling off) and one at start, and stops (waiting for a sample in flight)
 *   when the app closes, before the store below it closes.
 * - Every fine point is merged into its hour's **hourly** point in the same LevelDB batch, so
 *   the roll-up is never behind the fine points, also across crashes and restarts.
 * - Bounded size: fine points are kept 2 days and hourly points 400 days; every new point
 *   deletes the ones older than that (at the default interval: at most 2,880 fine and 9,600
 *   hourly points).
 * - Traffic is the bytes each protocol moved during the time a point covers (`seconds`):
 *   deltas of the process's counters, so a restart (which resets them) never shows as a
 *   negative value or a spike. Throughput = traffic / seconds.
 * - A point's totals are the last sample's; sums (traffic, seconds, samples) add up.
 */
import type { AbstractLevel } from 'abstract-level';
import type { StoreTotals } from './totals.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type HistoryDb = AbstractLevel<any, any, any>;

/** Bytes written (in) and read (out) per protocol ("http", "rmt", ...). */
export type Traffic = Record<string, { in: number; out: number }>;

export interface HistoryPoint extends StoreTotals {
  /** When the totals were read (the last sample merged into this point). */
  at: string;
  /** How long the traffic counts cover, ending at `at`. */
  seconds: number;
  /** Samples merged into this point. */
  samples: number;
  traffic: Traffic;
}

export type Resolution = 'fine' | 'hourly';

export interface HistoryQuery {
  /** Epoch ms; default: `to` minus one day. */
  from?: number;
  /** Epoch ms; default: now. */
  to?: number;
  /** auto: fine when the range starts inside the fine retention, else hourly. */
  resolution?: Resolution | 'auto';
  /** When the range holds more points, adjacent ones are merged into time buckets so that at most this many come back. */
  maxPoints?: number;
}

export interface HistoryPage {
  resolution: Resolution;
  from: string;
  to: string;
  points: HistoryPoint[];
  /** The newest fine point, whatever the range: "now" for the cards. */
  latest: HistoryPoint | null;
}

export const FINE_KEEP_MS = 2 * 86_400_000;
export const HOURLY_KEEP_MS = 400 * 86_400_000;
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
/** Keys are ISO times, which sort as text only within years 0000..9999. */
const MAX_TIME = Date.UTC(9999, 11, 31);

export interface HistoryOptions {
  now?: () => number;
  fineKeepMs?: number;
  hourlyKeepMs?: number;
}

export class CapacityHistory {
  private readonly fine;
  private readonly hourly;
  private readonly root;
  private readonly now: () => number;
  private readonly fineKeepMs: number;
  private readonly hourlyKeepMs: number;
  /** Records run one at a time: each reads its hour's point, merges and writes it back. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(db: HistoryDb, opts: HistoryOptions = {}) {
    this.root = db.sublevel<string, unknown>('history', { valueEncoding: 'json' });
    this.fine = this.root.sublevel<string, HistoryPoint>('fine', { valueEncoding: 'json' });
    this.hourly = this.root.sublevel<string, HistoryPoint>('hourly', { valueEncoding: 'json' });
    this.now = opts.now ?? Date.now;
    this.fineKeepMs = opts.fineKeepMs ?? FINE_KEEP_MS;
    this.hourlyKeepMs = opts.hourlyKeepMs ?? HOURLY_KEEP_MS;
  }

  /** Writes one fine point, merges it into its hour, and deletes points past retention. */
  record(totals: StoreTotals, traffic: Traffic, seconds: number, at: number = this.now()): Promise<HistoryPoint> {
    const next = this.queue.then(() => this.write(totals, traffic, seconds, at));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async write(totals: StoreTotals, traffic: Traffic, seconds: number, at: number): Promise<HistoryPoint> {
    checkTime(at, 'sample time');
    if (!(seconds >= 0)) throw new RangeError(`a sample covers 0 or more seconds, got ${seconds}`);
    const point: HistoryPoint = { ...totals, at: iso(at), seconds, samples: 1, traffic: copyTraffic(traffic) };
    const hourKey = iso(floorTo(at, HOUR_MS));
    const hour = await this.hourly.get(hourKey);
    const batch = this.root.batch();
    batch.put(point.at, point, { sublevel: this.fine });
    batch.put(hourKey, hour ? merge(hour, point) : point, { sublevel: this.hourly });
    await batch.write();
    await this.fine.clear({ lt: iso(Math.max(0, at - this.fineKeepMs)) });
    await this.hourly.clear({ lt: iso(Math.max(0, floorTo(at - this.hourlyKeepMs, HOUR_MS))) });
    return point;
  }

  async query(q: HistoryQuery = {}): Promise<HistoryPage> {
    const to = q.to ?? this.now();
    const from = q.from ?? to - DAY_MS;
    checkTime(from, 'from');
    checkTime(to, 'to');
    if (from > to) throw new RangeError(`from (${iso(from)}) is after to (${iso(to)})`);
    const maxPoints = q.maxPoints ?? 1000;
    if (!Number.isInteger(maxPoints) || maxPoints < 1) throw new RangeError(`maxPoints must be a positive integer, got ${maxPoints}`);
    const resolution: Resolution = q.resolution === 'fine' || q.resolution === 'hourly' ? q.resolution : from >= this.now() - this.fineKeepMs ? 'fine' : 'hourly';
    const level = resolution === 'fine' ? this.fine : this.hourly;
    const gte = iso(resolution === 'fine' ? from : floorTo(from, HOUR_MS));
    const range = { gte, lte: iso(to) };
    // More points than asked for: merged into equal time buckets, streamed, so memory is
    // bounded by maxPoints, not by the range.
    let n = 0;
    for await (const _ of level.keys(range)) n++;
    const bucketMs = n > maxPoints ? (to - from) / maxPoints : 0;
    const points: HistoryPoint[] = [];
    let bucket = -1;
    for await (const p of level.values(range)) {
      const b = bucketMs > 0 ? Math.min(maxPoints - 1, Math.floor((Date.parse(p.at) - from) / bucketMs)) : bucket + 1;
      if (points.length && b <= bucket) points[points.length - 1] = merge(points[points.length - 1], p);
      else points.push(p);
      bucket = Math.max(bucket, b);
    }
    return { resolution, from: iso(from), to: iso(to), points, latest: await this.latest() };
  }

  async latest(): Promise<HistoryPoint | null> {
    const [p] = await this.fine.values({ reverse: true, limit: 1 }).all();
    return p ?? null;
  }

  /** Waits for records in flight (the sampler's close). */
  async settle(): Promise<void> {
    await this.queue;
  }
}

/** Where the totals and the protocol counters come from. */
export interface HistorySource {
  totals(): Promise<StoreTotals>;
  /** Cumulative bytes per protocol since this process started (they only grow). */
  traffic(): Promise<Traffic>;
}

/** Samples the source every interval into the history; errors are logged, never thrown. */
export class HistorySampler {
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private closed = false;
  private failing = false;
  /** The counters as the previous sample saw them (all zero when the process started). */
  private last: { at: number; traffic: Traffic };

  constructor(
    private readonly history: CapacityHistory,
    private readonly source: HistorySource,
    readonly intervalMs: number,
    private readonly now: () => number = Date.now,
  ) {
    if (!Number.isFinite(intervalMs) || intervalMs <= 0) throw new RangeError(`the history interval must be positive, got ${intervalMs}`);
    this.last = { at: now(), traffic: {} };
  }

  /** One sample now, then one every interval. The timer never keeps the process alive. */
  start(): void {
    if (this.timer || this.closed) return;
    void this.sample();
    this.timer = setInterval(() => void this.sample(), this.intervalMs);
    this.timer.unref();
  }

  /** Takes a sample unless one is running (then waits for that one). */
  sample(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.inFlight ??= this.take().finally(() => (this.inFlight = undefined));
    return this.inFlight;
  }

  private async take(): Promise<void> {
    try {
      const totals = await this.source.totals();
      // Counters read after the totals walk, at the point's time: bytes a point's totals show
      // are in its traffic or an earlier one's, never only in a later one's.
      const traffic = await this.source.traffic();
      const at = this.now();
      const seconds = Math.max(0, (at - this.last.at) / 1000);
      await this.history.record(totals, delta(traffic, this.last.traffic), seconds, at);
      this.last = { at, traffic };
      this.failing = false;
    } catch (err) {
      // Once per failure streak: a full disk should not flood the log every interval.
      if (!this.failing) console.error(`vtl: capacity history sample failed: ${(err as Error).message}`);
      this.failing = true;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    this.timer = undefined;
    await this.inFlight;
    await this.history.settle();
  }
}

/** VTL_HISTORY_INTERVAL_MS: unset = 60 s, 0 = off, else at least 100 ms. */
export function historyInterval(value: string | undefined): number {
  if (value === undefined || value.trim() === '') return 60_000;
  const n = Number(value);
  if (n === 0) return 0;
  if (!Number.isInteger(n) || n < 100) throw new Error(`VTL_HISTORY_INTERVAL_MS must be 0 (off) or a whole number of milliseconds, at least 100; got ${JSON.stringify(value)}`);
  return n;
}

/** b merged into a (b is the later one): b's totals, summed traffic and time. */
export function merge(a: HistoryPoint, b: HistoryPoint): HistoryPoint {
  const [older, newer] = a.at <= b.at ? [a, b] : [b, a];
  const traffic = copyTraffic(older.traffic);
  for (const [proto, t] of Object.entries(newer.traffic)) {
    const sum = (traffic[proto] ??= { in: 0, out: 0 });
    sum.in += t.in;
    sum.out += t.out;
  }
  return { ...newer, seconds: older.seconds + newer.seconds, samples: older.samples + newer.samples, traffic };
}

/** What the counters moved since `before`; a counter that went down was reset (restart), so all of it is new. */
function delta(now: Traffic, before: Traffic): Traffic {
  const out: Traffic = {};
  for (const [proto, t] of Object.entries(now)) {
    const b = before[proto] ?? { in: 0, out: 0 };
    out[proto] = { in: t.in >= b.in ? t.in - b.in : t.in, out: t.out >= b.out ? t.out - b.out : t.out };
  }
  return out;
}

function copyTraffic(t: Traffic): Traffic {
  return Object.fromEntries(Object.entries(t).map(([k, v]) => [k, { in: v.in, out: v.out }]));
}

function checkTime(t: number, what: string): void {
  if (!Number.isFinite(t) || t < 0 || t > MAX_TIME) throw new RangeError(`${what} must be a time between 1970 and 9999, got ${t}`);
}

const iso = (t: number) => new Date(t).toISOString();
const floorTo = (t: number, unit: number) => Math.floor(t / unit) * unit;
