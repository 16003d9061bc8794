/**
 * Restore tests: a verify job reads every tape file of a cartridge through its stream, checks
 * each file's end-to-end checksum (the one the tape map stored when it was written) and keeps
 * a report per run as history (`jobs` / `verifications`: barcode!jobId -> report).
 *
 * A file whose chunks cannot be read (a damaged container fails its GCM tag) or whose bytes
 * hash to another checksum is listed with the reason; the job goes on with the next file, so
 * one report names every bad file. The stream reader fetches whole windows of chunks, so a
 * damaged chunk just past a file's end can fail that file's fast read: such a file is read
 * again chunk by chunk over exactly its own chunks, and only what it really depends on counts.
 */
import type { Libraries } from '../library/index.js';
import { FileChecksum, type Medium, type TapeFileInfo } from '../tape/index.js';
import { decodeRef } from '../dedup/fingerprint-index.js';
import type { StoredChunk } from '../dedup/store.js';
import { RECIPE_ENTRY, type ChunkSource, type RecipeStreams } from '../stream/recipes.js';

/** How verify reaches recipes: a RecipeStreams, or a StreamRouter that also reaches replicas. */
export type RecipeAccess = Pick<RecipeStreams<ChunkSource>, 'openReader' | 'pageAt' | 'pageRange' | 'sourceOf'>;
import { JobCancelled, type JobContext, type Jobs, type JobsDb, type JobRecord } from './jobs.js';

export interface FileVerdict {
  file: number;
  bytes: number;
  ok: boolean;
  /** Why it failed: checksum mismatch or the read error. */
  error: string | null;
}

export interface VerifyReport {
  barcode: string;
  jobId: string;
  startedAt: string;
  finishedAt: string;
  seconds: number;
  files: number;
  bytes: number;
  mbPerSecond: number;
  result: 'passed' | 'failed' | 'cancelled';
  failedFiles: FileVerdict[];
}

const READ = 1 << 20;
/** Chunks per read in the careful pass. */
const CAREFUL_GROUP = 32;

export class VerifyError extends Error {
  constructor(readonly report: VerifyReport) {
    super(`cartridge ${report.barcode}: ${report.failedFiles.length} of ${report.files} tape files failed verification (${report.failedFiles.map((f) => `file ${f.file}: ${f.error}`).join('; ')})`);
  }
}

export class Verifications {
  private readonly history;

  constructor(
    db: JobsDb,
    private readonly jobs: Jobs,
    private readonly libraries: Libraries,
    private readonly streams: RecipeAccess,
  ) {
    this.history = db.sublevel<string, unknown>('jobs', { valueEncoding: 'json' }).sublevel<string, VerifyReport>('verifications', { valueEncoding: 'json' });
  }

  /** Starts a verify job for a cartridge (which must exist). */
  async start(barcode: string, requestedBy: string | null = null): Promise<JobRecord> {
    await this.libraries.getCartridge(barcode);
    return this.jobs.start({ kind: 'verify', target: barcode, requestedBy, unit: 'bytes', run: (ctx) => this.run(barcode, ctx) });
  }

  /** Restore test of a random cartridge that holds data (the schedule's pick); null when there is none. */
  async startRandom(requestedBy: string | null = 'schedule'): Promise<JobRecord | null> {
    const withData = (await this.libraries.listCartridges()).filter((c) => c.logicalBytes > 0);
    if (!withData.length) return null;
    return this.start(withData[Math.floor(Math.random() * withData.length)].barcode, requestedBy);
  }

  /** Reports of a cartridge, newest first. */
  async list(barcode: string, limit = 100): Promise<VerifyReport[]> {
    const out: VerifyReport[] = [];
    for await (const r of this.history.values({ gt: `${barcode}!`, lt: `${barcode}!\xff`, reverse: true, limit })) out.push(r);
    return out;
  }

  private async run(barcode: string, ctx: JobContext): Promise<VerifyReport> {
    const started = Date.now();
    const report: VerifyReport = { barcode, jobId: ctx.id, startedAt: new Date(started).toISOString(), finishedAt: '', seconds: 0, files: 0, bytes: 0, mbPerSecond: 0, result: 'passed', failedFiles: [] };
    const finish = async (result: VerifyReport['result']) => {
      report.finishedAt = new Date().toISOString();
      report.seconds = (Date.now() - started) / 1000;
      report.mbPerSecond = report.seconds > 0 ? report.bytes / 1e6 / report.seconds : 0;
      report.result = result;
      await this.history.put(`${barcode}!${ctx.id}`, report);
      return report;
    };
    try {
      await this.withMedium(barcode, async (m) => {
        const files: TapeFileInfo[] = [];
        for await (const f of m.files()) files.push(f);
        const total = files.reduce((n, f) => n + f.bytes, 0);
        ctx.progress(0, total, `${files.length} tape files`);
        for (const f of files) {
          ctx.checkCancelled();
          let read = report.bytes;
          const verdict = await this.checkFile(m, f, ctx, (n) => ctx.progress((read += n), total));
          report.files++;
          report.bytes += f.bytes;
          if (!verdict.ok) report.failedFiles.push(verdict);
          ctx.progress(report.bytes, total, `file ${f.file}`);
        }
      });
    } catch (err) {
      if (err instanceof JobCancelled || ctx.signal.aborted) throw new JobCancelled(await finish('cancelled'));
      throw err;
    }
    await finish(report.failedFiles.length ? 'failed' : 'passed');
    if (report.failedFiles.length) throw new VerifyError(report);
    return report;
  }

  /** Reads one tape file; a read error or a wrong checksum makes a failed verdict. */
  private async checkFile(m: Medium, f: TapeFileInfo, ctx: JobContext, onBytes: (n: number) => void): Promise<FileVerdict> {
    const h = new FileChecksum();
    try {
      const sid = m.eod.streamId;
      if (f.bytes > 0) {
        if (sid === null) throw new Error('the cartridge has no stream');
        const r = await this.streams.openReader(sid, f.startByte);
        const buf = Buffer.allocUnsafe(Math.min(READ, f.bytes));
        for (let left = f.bytes; left > 0; ) {
          ctx.checkCancelled();
          const n = await r.readInto(buf, 0, Math.min(buf.length, left));
          if (n === 0) throw new Error(`the stream ends ${left} bytes before the end of the file`);
          h.update(buf.subarray(0, n));
          left -= n;
          onBytes(n);
        }
      }
    } catch (err) {
      if (err instanceof JobCancelled) throw err;
      const careful = await this.readExactly(m.eod.streamId!, f, ctx).catch((e: Error) => e);
      if (careful instanceof JobCancelled) throw careful;
      if (careful instanceof Error) return { file: f.file, bytes: f.bytes, ok: false, error: `read failed: ${careful.message}` };
      return this.judge(f, careful);
    }
    return this.judge(f, h);
  }

  private judge(f: TapeFileInfo, h: FileChecksum): FileVerdict {
    const sum = h.digest();
    if (sum !== f.checksum) return { file: f.file, bytes: f.bytes, ok: false, error: `checksum mismatch: read ${sum}, the tape map has ${f.checksum}` };
    return { file: f.file, bytes: f.bytes, ok: true, error: null };
  }

  /**
   * Hashes a file from its own recipe entries, reading a few chunks at a time and a failed group
   * chunk by chunk, so the error names a chunk this file really holds.
   */
  private async readExactly(sid: string, f: TapeFileInfo, ctx: JobContext): Promise<FileChecksum> {
    const h = new FileChecksum();
    const end = f.startByte + f.bytes;
    const first = await this.streams.pageAt(sid, f.startByte);
    if (!first) throw new Error(`the recipe has no page at byte ${f.startByte}`);
    let at = first.start;
    let group: Array<{ chunk: StoredChunk; from: number; to: number }> = [];
    const flush = async () => {
      ctx.checkCancelled();
      const data = await this.readGroup(sid, group.map((g) => g.chunk));
      group.forEach((g, i) => h.update(data[i].subarray(g.from, g.to)));
      group = [];
    };
    for await (const [, page] of this.streams.pageRange(sid, first.start)) {
      for (let e = 0; e < page.length && at < end; e += RECIPE_ENTRY) {
        const used = page.readUInt32BE(e + 32);
        if (at + used > f.startByte) {
          const chunk = { fingerprint: page.subarray(e, e + 16), ref: decodeRef(page, e + 16) };
          group.push({ chunk, from: Math.max(0, f.startByte - at), to: Math.min(used, end - at) });
          if (group.length === CAREFUL_GROUP) await flush();
        }
        at += used;
      }
      if (at >= end) break;
    }
    if (group.length) await flush();
    if (at < end) throw new Error(`the recipe ends at byte ${at}, before the file's end at ${end}`);
    return h;
  }

  private async readGroup(sid: string, chunks: StoredChunk[]): Promise<Buffer[]> {
    const source = this.streams.sourceOf(sid);
    try {
      return await source.readChunks(chunks);
    } catch {
      const out: Buffer[] = [];
      for (const c of chunks) {
        try {
          out.push((await source.readChunks([c]))[0]);
        } catch (err) {
          throw new Error(`chunk ${c.fingerprint.toString('hex')} (container ${c.ref.container}): ${(err as Error).message}`);
        }
      }
      return out;
    }
  }

  /**
   * Runs `fn` with the cartridge's medium: through a short drive session when it sits in a
   * drive (refused while a client holds that session), else mounted for the while.
   */
  private async withMedium<T>(barcode: string, fn: (m: Medium) => Promise<T>): Promise<T> {
    const c = await this.libraries.getCartridge(barcode);
    if (c.location.kind === 'drive') {
      const drive = await this.libraries.drive(c.location.library, c.location.index);
      const medium = await drive.open();
      try {
        return await fn(medium);
      } finally {
        await drive.close();
      }
    }
    const medium = await this.libraries.tapes.mount(barcode);
    try {
      return await fn(medium);
    } finally {
      await medium.unload();
    }
  }
}
