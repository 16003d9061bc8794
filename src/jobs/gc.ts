/**
 * Space reclamation (GC): mark and sweep from the recipes, no reference counts on the hot path.
 *
 * Mark: every fingerprint of every recipe page (also pages a writer spilled past its synced
 * length: keeping them live is only ever safe) goes into a Bloom filter, about 10 bits per
 * chunk, so memory stays bounded and far below the index's size; a false positive keeps a
 * little garbage, never loses data. Before marking, the chunk store starts adding every chunk
 * it hands out to the same filter, and that start waits for a moment when no stream writer
 * holds unsynced references (they are only in its memory): every reference is then either in
 * a recipe page or recorded.
 * Sweep: each sealed container, under the store's lock, is deleted when nothing in it is live
 * or compacted when its live share is below the threshold (dedup/store.ts, crash-safe order).
 */
import { BloomFilter } from '../dedup/bloom.js';
import type { ChunkStore, GcContainerResult } from '../dedup/store.js';
import { RECIPE_ENTRY, type RecipeStreams } from '../stream/recipes.js';
import type { JobContext, Jobs, JobRecord } from './jobs.js';

export interface GcOptions {
  /** Compact containers whose live share of stored bytes is below this (default 0.5). */
  threshold?: number;
  /** How long to wait for stream writers to reach a sync point before giving up (ms). */
  waitForWritersMs?: number;
}

export interface GcReport {
  threshold: number;
  recipePages: number;
  references: number;
  containers: number;
  deleted: number;
  compacted: number;
  kept: number;
  skipped: Array<{ container: number; reason: string }>;
  reclaimedBytes: number;
  movedBytes: number;
  movedChunks: number;
  storedBytesBefore: number;
  storedBytesAfter: number;
  seconds: number;
}

const POLL_MS = 50;

export class GarbageCollector {
  constructor(
    private readonly jobs: Jobs,
    private readonly chunks: ChunkStore,
    private readonly streams: RecipeStreams,
  ) {}

  start(requestedBy: string | null = null, opts: GcOptions = {}): Promise<JobRecord> {
    const threshold = opts.threshold ?? 0.5;
    if (!(threshold > 0 && threshold <= 1)) throw new RangeError(`the GC threshold must be in (0, 1], got ${threshold}`);
    return this.jobs.start({ kind: 'gc', requestedBy, unit: 'containers', run: (ctx) => this.run(ctx, threshold, opts.waitForWritersMs ?? 600_000) });
  }

  /** Runs a whole GC in the caller (the job calls this; so does the crash test's child). */
  async run(ctx: Pick<JobContext, 'progress' | 'checkCancelled'>, threshold = 0.5, waitMs = 600_000): Promise<GcReport> {
    const started = Date.now();
    const before = this.chunks.getStats();
    const report: GcReport = { threshold, recipePages: 0, references: 0, containers: 0, deleted: 0, compacted: 0, kept: 0, skipped: [], reclaimedBytes: 0, movedBytes: 0, movedChunks: 0, storedBytesBefore: before.storedBytes, storedBytesAfter: 0, seconds: 0 };
    const live = new BloomFilter(Math.max(1024, before.chunks));
    ctx.progress(0, null, 'waiting for stream writers to reach a sync point');
    const deadline = Date.now() + waitMs;
    while (!(await this.chunks.beginGc(live, () => this.streams.openWriters === 0))) {
      ctx.checkCancelled();
      if (Date.now() > deadline) throw new Error(`GC gave up: streams stayed open for writing for ${waitMs / 1000} s (it starts at a moment when none holds unsynced data)`);
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    try {
      ctx.progress(0, null, 'marking live chunks from the recipes');
      for await (const page of this.streams.pages.values()) {
        for (let e = 0; e + RECIPE_ENTRY <= page.length; e += RECIPE_ENTRY) live.add(page.subarray(e, e + 16));
        report.references += Math.floor(page.length / RECIPE_ENTRY);
        if (++report.recipePages % 256 === 0) ctx.checkCancelled();
      }
      const ids = await this.chunks.gcCandidates();
      ctx.progress(0, ids.length, 'sweeping containers');
      for (const id of ids) {
        ctx.checkCancelled();
        this.count(report, await this.chunks.collectContainer(id, threshold));
        ctx.progress(report.containers, ids.length, `container ${id}`);
      }
    } finally {
      this.chunks.endGc();
    }
    report.storedBytesAfter = this.chunks.getStats().storedBytes;
    report.seconds = (Date.now() - started) / 1000;
    return report;
  }

  private count(report: GcReport, r: GcContainerResult): void {
    report.containers++;
    if (r.action === 'deleted') report.deleted++;
    else if (r.action === 'compacted') report.compacted++;
    else if (r.action === 'kept') report.kept++;
    else report.skipped.push({ container: r.container, reason: r.reason ?? 'skipped' });
    report.reclaimedBytes += r.freedBytes;
    report.movedBytes += r.movedBytes;
    report.movedChunks += r.movedChunks;
  }
}
