/**
 * Replication targets: a name, a tier URL (no credentials: the SDKs read them from their usual
 * environment variables or files) and an optional bandwidth limit, kept in LevelDB. Opened
 * tiers are cached, wrapped in retry (transient errors only) and metrics.
 *
 * Adding a target never creates its bucket, container or directory unless asked
 * (createBucket): a mistyped name would otherwise become an empty bucket that replication fills
 * and that another region's DR restore never finds. Nothing here creates one later either.
 */
import { BucketNotFoundError, openTier, parseTierUrl, TierAccessError, TierIOError, withMetrics, withRetry, type MeteredTier, type ObjectTier } from '../tier/index.js';
import type { ReplicationDb } from './index.js';

export interface TargetRecord {
  name: string;
  /** The URL as parsed and rebuilt (never credentials). */
  url: string;
  /** Bytes per second shipped at most; null: unlimited. */
  bandwidthLimit: number | null;
  createdAt: string;
}

export interface OpenTarget {
  record: TargetRecord;
  tier: ObjectTier;
  metered: MeteredTier;
  limiter: Bandwidth;
}

const NAME = /^[a-z0-9][a-z0-9-]{0,31}$/;

export class TargetError extends Error {
  constructor(
    /** BUCKET_NOT_FOUND: the bucket, container or directory the URL names does not exist. */
    readonly code: 'INVALID' | 'NOT_FOUND' | 'EXISTS' | 'IN_USE' | 'BUCKET_NOT_FOUND',
    message: string,
  ) {
    super(message);
  }
}

export class Targets {
  private readonly table;
  private readonly open = new Map<string, Promise<OpenTarget>>();

  constructor(
    db: ReplicationDb,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {
    this.table = db.sublevel<string, TargetRecord>('targets', { valueEncoding: 'json' });
  }

  /** opts.createBucket: create the bucket, container or directory when missing (else BUCKET_NOT_FOUND). */
  async add(name: string, url: string, bandwidthLimit: number | null = null, opts: { createBucket?: boolean } = {}): Promise<TargetRecord> {
    if (typeof name !== 'string' || !NAME.test(name)) throw new TargetError('INVALID', `invalid target name ${JSON.stringify(name)}: 1 to 32 of a-z 0-9 -, starting with a letter or digit`);
    if (bandwidthLimit !== null && !(Number.isSafeInteger(bandwidthLimit) && bandwidthLimit >= 4096)) throw new TargetError('INVALID', 'bandwidthLimit must be a whole number of bytes per second, at least 4096 (or null)');
    let redacted: string;
    try {
      redacted = parseTierUrl(url).redacted;
    } catch (err) {
      throw new TargetError('INVALID', (err as Error).message);
    }
    if (await this.table.get(name)) throw new TargetError('EXISTS', `target ${name} already exists`);
    // Reachable and usable now, not at the first replication.
    const tier = await openTier(url, { create: opts.createBucket === true, env: this.env }).catch((err: Error) => {
      throw openError(name, redacted, err);
    });
    await tier.close();
    const rec: TargetRecord = { name, url, bandwidthLimit, createdAt: new Date().toISOString() };
    await this.table.put(name, rec);
    return { ...rec, url: redacted };
  }

  async get(name: string): Promise<TargetRecord> {
    const rec = await this.table.get(name);
    if (!rec) throw new TargetError('NOT_FOUND', `no replication target ${name}`);
    return rec;
  }

  /** Records as shown to users: the URL rebuilt from its parsed parts. */
  async list(): Promise<TargetRecord[]> {
    const out: TargetRecord[] = [];
    for await (const rec of this.table.values()) out.push({ ...rec, url: parseTierUrl(rec.url).redacted });
    return out;
  }

  async remove(name: string): Promise<void> {
    await this.get(name);
    await this.table.del(name);
    const t = this.open.get(name);
    this.open.delete(name);
    await (await t?.catch(() => undefined))?.tier.close();
  }

  /** The target's tier, opened once and kept. */
  connect(name: string): Promise<OpenTarget> {
    let t = this.open.get(name);
    if (!t) {
      t = this.get(name).then(async (record) => {
        const metered = withMetrics(await openTier(record.url, { env: this.env }));
        const tier = withRetry(metered, { retries: 3, maxMs: 5000 });
        return { record, tier, metered, limiter: new Bandwidth(record.bandwidthLimit) };
      });
      t.catch(() => this.open.delete(name));
      this.open.set(name, t);
    }
    return t;
  }

  async close(): Promise<void> {
    for (const t of this.open.values()) await (await t.catch(() => undefined))?.tier.close();
    this.open.clear();
  }
}

/** Why a new target cannot be opened, with what the operator can do about a missing bucket. */
function openError(name: string, redacted: string, err: Error): Error {
  if (err instanceof BucketNotFoundError) {
    return new TargetError(
      'BUCKET_NOT_FOUND',
      `target ${name} (${redacted}) not added: ${err.message}. Check the ${err.kind} name in the URL; ` +
        `to create the ${err.kind}, add the target with --create-bucket (API: "createBucket": true)`,
    );
  }
  // The store down or refusing the credentials is not a bad request: it keeps its kind, so the
  // API answers 502 TARGET_UNREACHABLE / TARGET_ACCESS_DENIED as `dr attach` does.
  const what = `target ${name} (${redacted}) not added: ${err.message}`;
  if (err instanceof TierAccessError) return new TierAccessError(what, { transient: false, status: err.status, cause: err });
  if (err instanceof TierIOError) return new TierIOError(what, { transient: err.transient, status: err.status, cause: err });
  return new TargetError('INVALID', `target ${name} (${redacted}) cannot be opened: ${err.message}`);
}

/**
 * A token bucket of `rate` bytes per second holding at most one second of bytes: take(n)
 * resolves when n bytes may go. A body larger than a second's worth waits proportionally.
 */
export class Bandwidth {
  private tokens: number;
  private last = Date.now();
  private queue: Promise<void> = Promise.resolve();

  constructor(readonly rate: number | null) {
    this.tokens = rate ?? 0;
  }

  take(n: number): Promise<void> {
    const rate = this.rate;
    if (rate === null) return Promise.resolve();
    const run = this.queue.then(async () => {
      const now = Date.now();
      this.tokens = Math.min(rate, this.tokens + ((now - this.last) / 1000) * rate);
      this.last = now;
      this.tokens -= n;
      if (this.tokens < 0) await new Promise((r) => setTimeout(r, (-this.tokens / rate) * 1000));
    });
    this.queue = run;
    return run;
  }
}
