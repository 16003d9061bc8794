/**
 * The tape map of one medium, persisted in LevelDB.
 *
 * - `runs`: key `<medium>!<lba as 14 hex digits>` -> [count, recordSize, byte, filemarksBefore]
 *   for each run of consecutive records of equal size (recordSize >= 1) or of consecutive
 *   filemarks (recordSize 0), keyed by the LBA of its first object. Any LBA resolves with one
 *   reverse seek (`lte`, limit 1).
 * - `marks`: key `<medium>!<filemark index as 14 hex digits>` -> [lba, count, checksum, byte]
 *   for each run of filemarks, keyed by the index of its first filemark. `checksum` is the
 *   checksum of the tape file that the run's first filemark ends; the other filemarks of a run
 *   end empty files.
 * Entries at or past the medium's EOD are stale (a crash between a truncation and its cleanup)
 * and are cleared on load before any write.
 */
import type { SyncBatch } from '../stream/index.js';
import type { TapeDb } from './index.js';

export interface Run {
  lba: number;
  n: number;
  /** Record size in bytes; 0 for a run of filemarks. */
  size: number;
  /** Stream offset of the run's first object. */
  byte: number;
  /** Filemarks before the run's first object. */
  fm: number;
}

export interface MarkRun {
  /** Index of the run's first filemark (0-based, in tape order). */
  index: number;
  lba: number;
  n: number;
  /** Checksum of the file the first filemark ends. */
  sum: string;
  /** Stream offset of the filemarks (they hold no bytes). */
  byte: number;
}

type RunValue = [number, number, number, number];
type MarkValue = [number, number, string, number];

const key = (id: string, n: number) => `${id}!${n.toString(16).padStart(14, '0')}`;
/** Upper bound of a medium's keys: '"' sorts right after '!'. */
const end = (id: string) => `${id}"`;

export class MapStore {
  readonly runs;
  readonly marks;

  constructor(root: TapeDb) {
    const tape = root.sublevel<string, unknown>('tape', { valueEncoding: 'json' });
    this.runs = tape.sublevel<string, RunValue>('runs', { valueEncoding: 'json' });
    this.marks = tape.sublevel<string, MarkValue>('marks', { valueEncoding: 'json' });
  }

  /** The run holding `lba`, if `lba` is before the end of the map. */
  async runAt(id: string, lba: number): Promise<Run | undefined> {
    for await (const [k, v] of this.runs.iterator({ lte: key(id, lba), gte: key(id, 0), reverse: true, limit: 1 })) {
      const run = toRun(k, v);
      return lba < run.lba + run.n ? run : undefined;
    }
    return undefined;
  }

  async lastRun(id: string): Promise<Run | undefined> {
    for await (const [k, v] of this.runs.iterator({ lt: end(id), gte: key(id, 0), reverse: true, limit: 1 })) return toRun(k, v);
    return undefined;
  }

  /** The run holding filemark number `index`. */
  async markAt(id: string, index: number): Promise<MarkRun | undefined> {
    for await (const [k, v] of this.marks.iterator({ lte: key(id, index), gte: key(id, 0), reverse: true, limit: 1 })) {
      const m = toMark(k, v);
      return index < m.index + m.n ? m : undefined;
    }
    return undefined;
  }

  async lastMark(id: string): Promise<MarkRun | undefined> {
    for await (const [k, v] of this.marks.iterator({ lt: end(id), gte: key(id, 0), reverse: true, limit: 1 })) return toMark(k, v);
    return undefined;
  }

  /** LBA of filemark number `index`. */
  async markLba(id: string, index: number): Promise<number | undefined> {
    const m = await this.markAt(id, index);
    return m ? m.lba + (index - m.index) : undefined;
  }

  /** `opts` may carry a LevelDB snapshot. */
  async *markRuns(id: string, opts: object = {}): AsyncGenerator<MarkRun> {
    for await (const [k, v] of this.marks.iterator({ ...opts, gte: key(id, 0), lt: end(id) })) yield toMark(k, v);
  }

  async *runsOf(id: string, opts: object = {}): AsyncGenerator<Run> {
    for await (const [k, v] of this.runs.iterator({ ...opts, gte: key(id, 0), lt: end(id) })) yield toRun(k, v);
  }

  putRun(b: SyncBatch, id: string, r: Run): void {
    b.put(key(id, r.lba), [r.n, r.size, r.byte, r.fm], { sublevel: this.runs });
  }

  delRun(b: SyncBatch, id: string, lba: number): void {
    b.del(key(id, lba), { sublevel: this.runs });
  }

  putMark(b: SyncBatch, id: string, m: MarkRun): void {
    b.put(key(id, m.index), [m.lba, m.n, m.sum, m.byte], { sublevel: this.marks });
  }

  delMark(b: SyncBatch, id: string, index: number): void {
    b.del(key(id, index), { sublevel: this.marks });
  }

  /** Removes runs starting at or after `lba` and filemark runs from `index` on (stale tails). */
  async clearFrom(id: string, lba: number, index: number): Promise<void> {
    await this.runs.clear({ gte: key(id, lba), lt: end(id) });
    await this.marks.clear({ gte: key(id, index), lt: end(id) });
  }
}

function toRun(k: string, v: RunValue): Run {
  return { lba: parseInt(k.slice(k.lastIndexOf('!') + 1), 16), n: v[0], size: v[1], byte: v[2], fm: v[3] };
}

function toMark(k: string, v: MarkValue): MarkRun {
  return { index: parseInt(k.slice(k.lastIndexOf('!') + 1), 16), lba: v[0], n: v[1], sum: v[2], byte: v[3] };
}

/** Stream offset of `lba` inside `run`. */
export function byteIn(run: Run, lba: number): number {
  return run.size === 0 ? run.byte : run.byte + (lba - run.lba) * run.size;
}

/** Filemarks before `lba` inside `run`. */
export function marksBefore(run: Run, lba: number): number {
  return run.size === 0 ? run.fm + (lba - run.lba) : run.fm;
}
