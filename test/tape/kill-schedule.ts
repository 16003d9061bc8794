/**
 * The deterministic tape the kill test writes: object k (its LBA) is a filemark or a record
 * whose bytes depend only on k, so any prefix can be checked bit for bit. Sync points follow
 * every filemark and an explicit flush (write filemarks 0) after every fifth object.
 */
import { rec } from './util.js';

export const isMark = (k: number) => k % 13 === 12;
export const isSync = (k: number) => isMark(k) || k % 5 === 4;
export const recordSize = (k: number) => 1 + ((k * 7919) % 65536);
export const objectData = (k: number) => rec(k + 1, recordSize(k));
/** True when a tape ending at `eod` objects ends right after a sync point. */
export const endsAtSync = (eod: number) => eod === 0 || isSync(eod - 1);
