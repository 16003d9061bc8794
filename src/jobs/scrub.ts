/**
 * Scrub: reads every sealed container and checks every chunk (GCM tag, decompression,
 * fingerprint of the plaintext) and the footer against the index, then every index entry
 * against the containers that exist, throttled to `maxMBps` so
 * that backups keep their speed. Damaged chunks are listed with the cartridges and tape files
 * that depend on them (found by one pass over the recipes: by fingerprint, and by location
 * hint for containers whose footer is unreadable).
 *
 * Self-heal: a container with damage is fetched again from a replication target that holds it
 * (`replicas`), checked whole with this store's key, and swapped in atomically
 * (ChunkStore.restoreContainer); it is then scrubbed again, and its damaged chunks count as
 * repaired only when that second pass is clean. Without a replica they are reported.
 */
import type { ChunkStore } from '../dedup/store.js';
import type { Libraries } from '../library/index.js';
import { RECIPE_ENTRY, type RecipeStreams } from '../stream/recipes.js';
import type { JobContext, Jobs, JobRecord } from './jobs.js';

/** Where a damaged container may be fetched again (the replication targets). */
export interface ReplicaSource {
  fetchContainer(id: number): Promise<Buffer | undefined>;
}

export interface ScrubOptions {
  /** Read at most this many MB per second (default 200; 0 = unthrottled). */
  maxMBps?: number;
}

export interface DamagedChunk {
  container: number;
  offset: number | null;
  fingerprint: string | null;
  reason: string;
}

export interface AffectedCartridge {
  barcode: string;
  /** Tape files holding a damaged chunk. */
  files: number[];
}

export interface ScrubReport {
  containers: number;
  chunksChecked: number;
  bytesRead: number;
  damagedChunks: number;
  repairedChunks: number;
  /** Containers replaced by their replica. */
  repairedContainers: number[];
  /** Containers whose footer failed (their chunks cannot be listed one by one). */
  damagedContainers: number[];
  damaged: DamagedChunk[];
  indexMismatches: number;
  /** Index entries pointing at a container that is gone: those chunks are lost. */
  danglingIndexEntries: number;
  affectedCartridges: AffectedCartridge[];
  seconds: number;
  mbPerSecond: number;
}

const MAX_LISTED = 10_000;

export class Scrubber {
  constructor(
    private readonly jobs: Jobs,
    private readonly chunks: ChunkStore,
    private readonly streams: RecipeStreams,
    private readonly libraries: Libraries,
    private readonly replicas?: ReplicaSource,
  ) {}

  start(requestedBy: string | null = null, opts: ScrubOptions = {}): Promise<JobRecord> {
    return this.jobs.start({ kind: 'scrub', requestedBy, unit: 'containers', run: (ctx) => this.run(ctx, opts) });
  }

  async run(ctx: Pick<JobContext, 'progress' | 'checkCancelled'>, opts: ScrubOptions = {}): Promise<ScrubReport> {
    const maxMBps = opts.maxMBps ?? 200;
    const started = Date.now();
    const report: ScrubReport = { containers: 0, chunksChecked: 0, bytesRead: 0, damagedChunks: 0, repairedChunks: 0, repairedContainers: [], damagedContainers: [], damaged: [], indexMismatches: 0, danglingIndexEntries: 0, affectedCartridges: [], seconds: 0, mbPerSecond: 0 };
    const badFps = new Set<string>();
    const ids = await this.chunks.sealedContainers();
    ctx.progress(0, ids.length, 'reading containers');
    for (const id of ids) {
      ctx.checkCancelled();
      let r = await this.chunks.scrubContainer(id);
      if ((r.footerDamaged || r.damaged.length) && (await this.repair(id, r.footerDamaged ?? r.damaged[0].reason))) {
        const healed = await this.chunks.scrubContainer(id);
        if (!healed.footerDamaged && !healed.damaged.length) {
          report.repairedChunks += r.footerDamaged ? healed.chunksChecked : r.damaged.length;
          report.damagedChunks += r.footerDamaged ? healed.chunksChecked : r.damaged.length;
          report.repairedContainers.push(id);
          report.bytesRead += r.bytesRead;
          r = healed;
        }
      }
      report.containers++;
      report.chunksChecked += r.chunksChecked;
      report.bytesRead += r.bytesRead;
      report.indexMismatches += r.indexMismatches;
      if (r.footerDamaged) {
        report.damagedContainers.push(id);
        this.list(report, { container: id, offset: null, fingerprint: null, reason: r.footerDamaged });
      }
      for (const d of r.damaged) {
        report.damagedChunks++;
        badFps.add(d.fingerprint);
        this.list(report, { container: id, ...d });
      }
      ctx.progress(report.containers, ids.length, `container ${id}`);
      await throttle(started, report.bytesRead, maxMBps);
    }
    ctx.progress(report.containers, ids.length, 'cross-checking the index');
    const idx = await this.chunks.scrubIndex();
    report.danglingIndexEntries = idx.dangling;
    for (const d of idx.sample) {
      badFps.add(d.fingerprint);
      this.list(report, { container: d.container, offset: null, fingerprint: d.fingerprint, reason: 'the index points at a container that is gone' });
    }
    if (badFps.size || report.damagedContainers.length) report.affectedCartridges = await this.affected(badFps, new Set(report.damagedContainers));
    report.seconds = (Date.now() - started) / 1000;
    report.mbPerSecond = report.seconds > 0 ? report.bytesRead / 1e6 / report.seconds : 0;
    return report;
  }

  /** Swaps in the replica of a damaged container; false when there is none or it fails. */
  private async repair(id: number, why: string): Promise<boolean> {
    const bytes = await this.replicas?.fetchContainer(id).catch(() => undefined);
    if (!bytes) return false;
    try {
      await this.chunks.restoreContainer(id, bytes);
      console.error(`vtl: scrub: container ${id} was damaged (${why}); replaced by its replica`);
      return true;
    } catch (err) {
      console.error(`vtl: scrub: container ${id} could not be repaired from its replica: ${(err as Error).message}`);
      return false;
    }
  }

  private list(report: ScrubReport, d: DamagedChunk): void {
    if (report.damaged.length < MAX_LISTED) report.damaged.push(d);
  }

  /** One pass over the recipes: which streams hold a damaged chunk, and at which bytes. */
  private async affected(badFps: Set<string>, badContainers: Set<number>): Promise<AffectedCartridge[]> {
    const hits = new Map<string, number[]>(); // stream id -> byte offsets
    for await (const [key, page] of this.streams.pages.iterator()) {
      const sid = key.subarray(0, 8).toString('hex');
      let at = Number(key.readBigUInt64BE(8));
      for (let e = 0; e + RECIPE_ENTRY <= page.length; e += RECIPE_ENTRY) {
        const fp = page.subarray(e, e + 16).toString('hex');
        if (badFps.has(fp) || badContainers.has(page.readUInt32BE(e + 16))) (hits.get(sid) ?? hits.set(sid, []).get(sid)!).push(at);
        at += page.readUInt32BE(e + 32);
      }
    }
    const out: AffectedCartridge[] = [];
    if (!hits.size) return out;
    for await (const barcode of this.libraries.tapes.list()) {
      const info = await this.libraries.tapes.info(barcode);
      const bytes = info.streamId ? hits.get(info.streamId) : undefined;
      if (!bytes) continue;
      const files = new Set<number>();
      for (const b of bytes) if (b < info.logicalBytes) files.add(await this.fileAt(barcode, b));
      if (files.size) out.push({ barcode, files: [...files].sort((a, b) => a - b) });
    }
    return out;
  }

  /** The tape file holding logical byte `b`: the number of filemarks at or before it. */
  private async fileAt(barcode: string, b: number): Promise<number> {
    let file = 0;
    for await (const m of this.libraries.tapes.map.markRuns(barcode)) {
      if (m.byte > b) break;
      file += m.n;
    }
    return file;
  }
}

/** Sleeps so that `bytes` since `started` stay under `maxMBps`. */
async function throttle(started: number, bytes: number, maxMBps: number): Promise<void> {
  if (maxMBps <= 0) return;
  const due = started + (bytes / (maxMBps * 1e6)) * 1000;
  const wait = due - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
}
