/**
 * Store-wide totals: logical bytes of every cartridge against the chunk store's unique and
 * stored bytes, and the ratios between them. One definition for GET /stats and the capacity
 * history, so the chart and the cards can never disagree. Scans every cartridge's end of data
 * (O(media), in key order: tapes.totals).
 */
import type { Libraries } from '../library/index.js';
import type { DataStore } from '../stream/store.js';

export interface StoreTotals {
  libraries: number;
  cartridges: number;
  /** What clients wrote: the sum of every cartridge's logical bytes. */
  logicalBytes: number;
  /** Raw bytes of the distinct chunks. */
  uniqueBytes: number;
  /** Bytes of container files (after compression and encryption). */
  storedBytes: number;
  /** logical / unique, null while nothing is stored. */
  dedupRatio: number | null;
  /** unique / stored. */
  compressionRatio: number | null;
  /** logical / stored. */
  reductionRatio: number | null;
  containers: number;
  chunks: number;
}

export async function storeTotals(deps: { libraries: Libraries; store: DataStore }): Promise<StoreTotals> {
  const s = deps.store.chunks.getStats();
  const { media: cartridges, logicalBytes: logical } = await deps.libraries.tapes.totals();
  const ratio = (a: number, b: number) => (b > 0 ? a / b : null);
  return {
    libraries: (await deps.libraries.listLibraries()).length,
    cartridges,
    logicalBytes: logical,
    uniqueBytes: s.uniqueBytes,
    storedBytes: s.storedBytes,
    dedupRatio: ratio(logical, s.uniqueBytes),
    compressionRatio: ratio(s.uniqueBytes, s.storedBytes),
    reductionRatio: ratio(logical, s.storedBytes),
    containers: s.containers,
    chunks: s.chunks,
  };
}
