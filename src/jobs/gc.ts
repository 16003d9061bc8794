/**
 * Space reclamation (GC): its cost grows with what was written, deleted and moved since the
 * last run, not with the whole store, and its memory is bounded.
 *
 * Guarantees:
 * - Nothing live is lost, whatever moment a SIGKILL hits (crash-safe order in dedup/store.ts).
 * - Only candidate containers are examined: those created since they were last examined, and
 *   those a recipe page stopped referring to (a page deleted or cut). For each, the reverse map
 *   (container -> recipe pages, kept in the same LevelDB batches as the pages) names the pages
 *   to read; a container with nothing referenced is deleted, one whose live share is below the
 *   threshold is compacted, and the pages that referred to it get their location hints pointed
 *   at the new container in the same synced batch that moves the index entries.
 * - Every recipe page in the database counts, past its stream's sync point or not: pages a
 *   writer spilled ahead of its sync point are its own until it syncs them. Those a crash or an
 *   abort leaves behind are dropped before GC can see them (at the store's open, or by the
 *   abort: stream/recipes.ts), and the containers they named become candidates again.
 * - A store made before the reverse map existed gets it built by its first GC: one pass over
 *   all recipe pages, resumable, after which every container is examined once.
 * - GC starts at once, even while backups are between filemarks. As it starts, the chunks
 *   that open stream writers refer to and no committed page names yet (batches in flight,
 *   pages in memory) join the live set; from then on the chunk store records every chunk it
 *   hands out (a Bloom filter that grows with those chunks only), so a backup running during
 *   GC keeps what it refers to. A writer's in-memory copy of a page that GC rewrote still
 *   names the old container: its next commit maps such hints through the index, and reads
 *   fall back to the index.
 */
import { BloomFilter } from '../dedup/bloom.js';
import type { ChunkStore, GcContainerResult } from '../dedup/store.js';
import type { BinarySublevel } from '../dedup/fingerprint-index.js';
import { recipePageAccess, type RecipeStreams } from '../stream/recipes.js';
import type { JobContext, Jobs, JobRecord } from './jobs.js';

export interface GcOptions {
  /** Compact containers whose live share of stored bytes is below this (default 0.5). */
  threshold?: number;
}

export interface GcReport {
  threshold: number;
  /** Recipe pages read to decide about the containers examined, and the references in them. */
  recipePages: number;
  references: number;
  /** Recipe pages read once to build the reverse map (a store made before it existed). */
  mapBuiltFromPages: number;
  /** Candidate containers examined. */
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

const CANDIDATES_AT_ONCE = 256;

export class GarbageCollector {
  constructor(
    private readonly jobs: Jobs,
    private readonly chunks: ChunkStore,
    private readonly streams: RecipeStreams,
  ) {}

  start(requestedBy: string | null = null, opts: GcOptions = {}): Promise<JobRecord> {
    const threshold = opts.threshold ?? 0.5;
    if (!(threshold > 0 && threshold <= 1)) throw new RangeError(`the GC threshold must be in (0, 1], got ${threshold}`);
    return this.jobs.start({ kind: 'gc', requestedBy, unit: 'containers', run: (ctx) => this.run(ctx, threshold) });
  }

  /** Runs a whole GC in the caller (the job calls this; so does the crash test's child). */
  async run(ctx: Pick<JobContext, 'progress' | 'checkCancelled'>, threshold = 0.5): Promise<GcReport> {
    const started = Date.now();
    const before = this.chunks.getStats();
    const report: GcReport = { threshold, recipePages: 0, references: 0, mapBuiltFromPages: 0, containers: 0, deleted: 0, compacted: 0, kept: 0, skipped: [], reclaimedBytes: 0, movedBytes: 0, movedChunks: 0, storedBytesBefore: before.storedBytes, storedBytesAfter: 0, seconds: 0 };
    const live = new BloomFilter(1 << 16);
    await this.chunks.beginGc(live, (l) => this.streams.markHeld(l));
    try {
      const pages = recipePageAccess(this.streams.pages as BinarySublevel);
      if (!(await this.chunks.pageRefsReady())) {
        ctx.progress(0, null, 'building the map from containers to recipe pages (once)');
        report.mapBuiltFromPages = await this.chunks.buildPageRefs(pages, (n) => {
          ctx.checkCancelled();
          ctx.progress(0, null, `map built from ${n} recipe pages`);
        });
      }
      ctx.progress(0, null, 'examining candidate containers');
      let after = -1;
      for (let ids = await this.chunks.gcCandidates(after, CANDIDATES_AT_ONCE); ids.length > 0; ids = await this.chunks.gcCandidates(after, CANDIDATES_AT_ONCE)) {
        for (const id of ids) {
          ctx.checkCancelled();
          this.count(report, await this.chunks.collectContainer(id, threshold, pages));
          ctx.progress(report.containers, null, `container ${id}`);
          after = id;
        }
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
    report.recipePages += r.pagesRead;
    report.references += r.references;
    if (r.action === 'deleted') report.deleted++;
    else if (r.action === 'compacted') report.compacted++;
    else if (r.action === 'kept') report.kept++;
    else report.skipped.push({ container: r.container, reason: r.reason ?? 'skipped' });
    report.reclaimedBytes += r.freedBytes;
    report.movedBytes += r.movedBytes;
    report.movedChunks += r.movedChunks;
  }
}
