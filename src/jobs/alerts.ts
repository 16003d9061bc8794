/**
 * Alerts: failed jobs, scrub damage and disk capacity over a threshold. Each alert is kept
 * (`jobs` / `alerts`), appended to the audit log (actor `system`), counted for /metrics, and
 * POSTed as JSON to every configured webhook (`jobs` / `webhooks`), retried with backoff until
 * the receiver answers 2xx or the attempts run out. Delivery never blocks the work that
 * raised the alert.
 */
import { randomBytes } from 'node:crypto';
import { statfs } from 'node:fs/promises';
import type { AuditLog } from './audit.js';
import type { JobRecord, JobsDb } from './jobs.js';

export type AlertKind = 'job_failed' | 'scrub_damage' | 'capacity' | 'replication_lag' | 'target_check';

export interface Alert {
  id: string;
  at: string;
  kind: AlertKind;
  message: string;
  details: Record<string, unknown>;
}

export interface Webhook {
  id: string;
  url: string;
  createdAt: string;
}

export interface AlertOptions {
  /** Delivery attempts per webhook (default 5). */
  attempts?: number;
  /** First retry delay; doubles each time (default 1000 ms). */
  retryMs?: number;
  /** Alert when the data directory's file system is fuller than this share (default 0.9). */
  capacityThreshold?: number;
}

export class Alerts {
  private readonly store;
  private readonly hooks;
  private readonly listeners: Array<(a: Alert) => void> = [];
  private readonly opts: Required<AlertOptions>;
  private deliveries = new Set<Promise<void>>();
  private overCapacity = false;
  /** Aborted at close: deliveries stop retrying and fetches in flight end. */
  private readonly stopping = new AbortController();
  private seq = 0;

  constructor(
    db: JobsDb,
    private readonly audit: AuditLog,
    opts: AlertOptions = {},
  ) {
    const jobs = db.sublevel<string, unknown>('jobs', { valueEncoding: 'json' });
    this.store = jobs.sublevel<string, Alert>('alerts', { valueEncoding: 'json' });
    this.hooks = jobs.sublevel<string, Webhook>('webhooks', { valueEncoding: 'json' });
    this.opts = { attempts: opts.attempts ?? 5, retryMs: opts.retryMs ?? 1000, capacityThreshold: opts.capacityThreshold ?? 0.9 };
  }

  onAlert(fn: (a: Alert) => void): void {
    this.listeners.push(fn);
  }

  async addWebhook(url: string): Promise<Webhook> {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new RangeError(`invalid webhook URL ${JSON.stringify(url)}`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new RangeError(`a webhook URL must be http or https, got ${u.protocol}`);
    const hook: Webhook = { id: randomBytes(6).toString('hex'), url: u.href, createdAt: new Date().toISOString() };
    await this.hooks.put(hook.id, hook);
    return hook;
  }

  async webhooks(): Promise<Webhook[]> {
    return [...(await this.hooks.values().all())].sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  async removeWebhook(id: string): Promise<boolean> {
    if (!(await this.hooks.get(id))) return false;
    await this.hooks.del(id);
    return true;
  }

  /** Newest first. */
  async list(limit = 100): Promise<Alert[]> {
    return this.store.values({ reverse: true, limit }).all();
  }

  async raise(kind: AlertKind, message: string, details: Record<string, unknown> = {}): Promise<Alert> {
    const at = new Date();
    const alert: Alert = { id: at.getTime().toString(36).padStart(9, '0') + (this.seq++ % 1296).toString(36).padStart(2, '0'), at: at.toISOString(), kind, message, details };
    await this.store.put(alert.id, alert);
    await this.audit.append({ actor: 'system', tokenId: null, role: null, action: `alert ${kind}`, target: message.slice(0, 200), status: 0, result: 'error', detail: JSON.stringify(details).slice(0, 300) });
    for (const l of this.listeners) l(alert);
    for (const hook of await this.webhooks()) this.track(this.deliver(hook, alert));
    return alert;
  }

  /** Alerts for a job that ended: failed, or a scrub that found damage. */
  async jobEnded(rec: JobRecord): Promise<void> {
    if (rec.state === 'failed') await this.raise('job_failed', `${rec.kind} job ${rec.id}${rec.target ? ` on ${rec.target}` : ''} failed: ${rec.error}`, { job: rec.id, kind: rec.kind, target: rec.target });
    const r = rec.result as { damagedChunks?: number; damagedContainers?: number[]; danglingIndexEntries?: number; affectedCartridges?: unknown[] } | null;
    if (rec.kind === 'scrub' && r && ((r.damagedChunks ?? 0) > 0 || (r.damagedContainers?.length ?? 0) > 0 || (r.danglingIndexEntries ?? 0) > 0)) {
      await this.raise('scrub_damage', `scrub found ${r.damagedChunks} damaged chunks, ${r.damagedContainers?.length ?? 0} damaged container footers and ${r.danglingIndexEntries ?? 0} index entries into missing containers`, {
        danglingIndexEntries: r.danglingIndexEntries,
        job: rec.id,
        damagedChunks: r.damagedChunks,
        damagedContainers: r.damagedContainers,
        affectedCartridges: r.affectedCartridges,
      });
    }
  }

  /** Raises a capacity alert when the file system crosses the threshold (once per crossing). */
  async checkCapacity(dir: string): Promise<number> {
    const s = await statfs(dir);
    const used = s.blocks > 0 ? 1 - s.bavail / s.blocks : 0;
    const over = used > this.opts.capacityThreshold;
    if (over && !this.overCapacity) {
      await this.raise('capacity', `the data directory's file system is ${(used * 100).toFixed(1)}% full (threshold ${(this.opts.capacityThreshold * 100).toFixed(0)}%)`, { used, threshold: this.opts.capacityThreshold });
    }
    this.overCapacity = over;
    return used;
  }

  /** Stops deliveries (no more retries, fetches in flight aborted) and waits for them to end. */
  async close(): Promise<void> {
    this.stopping.abort();
    await this.settle();
  }

  /** Waits for webhook deliveries in flight (tests). */
  async settle(): Promise<void> {
    while (this.deliveries.size) await Promise.all([...this.deliveries]);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.stopping.signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
    });
  }

  private track(p: Promise<void>): void {
    this.deliveries.add(p);
    void p.finally(() => this.deliveries.delete(p));
  }

  private async deliver(hook: Webhook, alert: Alert): Promise<void> {
    const body = JSON.stringify({ source: 'vtl', ...alert });
    for (let attempt = 1; attempt <= this.opts.attempts; attempt++) {
      try {
        const signal = AbortSignal.any([AbortSignal.timeout(10_000), this.stopping.signal]);
        const res = await fetch(hook.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal });
        await res.arrayBuffer().catch(() => undefined);
        if (res.ok) return;
      } catch {
        // unreachable receiver: retried like a 5xx
      }
      if (this.stopping.signal.aborted) return;
      if (attempt < this.opts.attempts) await this.sleep(this.opts.retryMs * 2 ** (attempt - 1));
    }
    console.error(`vtl: alert ${alert.id} (${alert.kind}) could not be delivered to webhook ${hook.id} after ${this.opts.attempts} attempts`);
  }
}
