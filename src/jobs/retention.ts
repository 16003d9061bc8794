/**
 * Retention and expiry: per-library policies (`jobs` / `policies`: library -> policy) and the
 * expire job that applies them.
 *
 * The expire job looks at every cartridge that holds data:
 * - one without a retention date in a library with `scratchAfterDays` gets the date
 *   now + that many days (the first run that sees its data starts the clock; WORM cartridges
 *   without a date are kept forever and are left alone);
 * - one whose retention date has passed returns to scratch: it is erased (its chunks become
 *   garbage for GC) and its date cleared. One held by a drive session is skipped and listed.
 * Until its date, a cartridge cannot be erased, overwritten or deleted by anyone: the tape layer
 * refuses it.
 */
import { LibraryError, type Cartridge, type Libraries } from '../library/index.js';
import type { JobContext, Jobs, JobsDb, JobRecord } from './jobs.js';

export interface LibraryPolicy {
  /** Days a cartridge's data is kept after the expire job first sees it; null = no policy. */
  scratchAfterDays: number | null;
}

export interface ExpireReport {
  examined: number;
  /** Cartridges that got a retention date from their library's policy. */
  dated: Array<{ barcode: string; retentionUntil: string }>;
  /** Expired cartridges erased and returned to scratch. */
  scratched: string[];
  skipped: Array<{ barcode: string; reason: string }>;
  dryRun: boolean;
}

const DAY = 86_400_000;
export const NO_POLICY: LibraryPolicy = { scratchAfterDays: null };

export class Retention {
  private readonly policies;

  constructor(
    db: JobsDb,
    private readonly jobs: Jobs,
    private readonly libraries: Libraries,
  ) {
    this.policies = db.sublevel<string, unknown>('jobs', { valueEncoding: 'json' }).sublevel<string, LibraryPolicy>('policies', { valueEncoding: 'json' });
  }

  async policy(library: string): Promise<LibraryPolicy> {
    await this.libraries.getLibrary(library);
    return (await this.policies.get(library)) ?? { ...NO_POLICY };
  }

  async setPolicy(library: string, p: Partial<LibraryPolicy>): Promise<LibraryPolicy> {
    const next = { ...(await this.policy(library)), ...p };
    const d = next.scratchAfterDays;
    if (d !== null && (!Number.isSafeInteger(d) || d < 1 || d > 36_500)) {
      throw new LibraryError('INVALID', `scratchAfterDays must be a whole number of days 1..36500 or null, got ${JSON.stringify(d)}`);
    }
    await this.policies.put(library, next);
    return next;
  }

  start(requestedBy: string | null = null, opts: { dryRun?: boolean; now?: number } = {}): Promise<JobRecord> {
    return this.jobs.start({ kind: 'expire', requestedBy, unit: 'cartridges', run: (ctx) => this.run(ctx, opts.dryRun ?? false, opts.now) });
  }

  private async run(ctx: JobContext, dryRun: boolean, now = Date.now()): Promise<ExpireReport> {
    const report: ExpireReport = { examined: 0, dated: [], scratched: [], skipped: [], dryRun };
    const carts = await this.libraries.listCartridges();
    const policies = new Map<string, LibraryPolicy>();
    for await (const [lib, p] of this.policies.iterator()) policies.set(lib, p);
    ctx.progress(0, carts.length);
    for (const c of carts) {
      ctx.checkCancelled();
      report.examined++;
      await this.apply(c, policies, report, dryRun, now);
      ctx.progress(report.examined, carts.length, c.barcode);
    }
    return report;
  }

  private async apply(c: Cartridge, policies: Map<string, LibraryPolicy>, report: ExpireReport, dryRun: boolean, now: number): Promise<void> {
    if (c.logicalBytes === 0 && c.files === 0) return; // blank already
    if (c.retentionUntil === null) {
      const days = c.location.kind === 'vault' ? null : (policies.get(c.location.library)?.scratchAfterDays ?? null);
      if (days === null || c.worm) return;
      const until = new Date(now + days * DAY).toISOString();
      try {
        if (!dryRun) await this.libraries.updateCartridge(c.barcode, { retentionUntil: until });
        report.dated.push({ barcode: c.barcode, retentionUntil: until });
      } catch (err) {
        report.skipped.push({ barcode: c.barcode, reason: (err as Error).message }); // in use: dated next run
      }
      return;
    }
    if (Date.parse(c.retentionUntil) > now) return;
    if (dryRun) {
      report.scratched.push(c.barcode);
      return;
    }
    try {
      await this.libraries.eraseCartridge(c.barcode);
      await this.libraries.updateCartridge(c.barcode, { retentionUntil: null });
      report.scratched.push(c.barcode);
    } catch (err) {
      report.skipped.push({ barcode: c.barcode, reason: (err as Error).message });
    }
  }
}
