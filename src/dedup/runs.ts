/** Reading chunks grouped by container: shared by the chunk store and replica sources. */
import type { StoredChunk } from './store.js';

export type RunReader = (container: number, run: StoredChunk[], target?: { buf: Buffer; at: number }) => Promise<Buffer[]>;

/**
 * Reads chunks (in any order) one run of consecutive same-container chunks at a time, the runs
 * in parallel. With `into`, each run is given the part of it that follows the raw lengths of
 * the runs before it (when it fits). Every run settles before this does, even on failure: the
 * caller reuses `into` right after.
 */
export async function readInRuns(items: StoredChunk[], into: Buffer | undefined, readRun: RunReader): Promise<Buffer[]> {
  const out = new Array<Buffer>(items.length);
  const jobs: Promise<void>[] = [];
  let at = 0;
  for (let i = 0; i < items.length; ) {
    const container = items[i].ref.container;
    let j = i + 1;
    let bytes = items[i].ref.rawLength;
    while (j < items.length && items[j].ref.container === container) bytes += items[j++].ref.rawLength;
    const from = i;
    const target = into && at + bytes <= into.length ? { buf: into, at } : undefined;
    jobs.push(readRun(container, items.slice(i, j), target).then((bufs) => bufs.forEach((b, k) => (out[from + k] = b))));
    at += bytes;
    i = j;
  }
  const failed = (await Promise.allSettled(jobs)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return out;
}
