/**
 * The audit log: an append-only, hash-chained record of every mutation (LevelDB `audit` /
 * `log`: 12-digit sequence -> entry, and `audit` / `head`: the last sequence and hash).
 *
 * Each entry holds the SHA-256 of the previous entry and its own hash over its fields and
 * that link, so editing an entry breaks its hash, deleting one breaks the link of its
 * successor (and the sequence), and cutting the tail off disagrees with the head record.
 * Appends are serialized in this process; entry and head are written in one batch.
 *
 * A mutation is noted before it runs (`begin`: `audit` / `inflight`) and its entry, when it
 * has an answer, removes the note in the same batch. A note a crash left behind becomes an
 * entry with result `interrupted` at the next start (`recoverInterrupted`): a change made just
 * before a crash (an erase the client never heard back about) is never missing from the log.
 * API mutations are noted before their handler runs; rmt device sessions before their first
 * write, filemark or erase, once per open, and their entry at close removes the note. A note
 * may carry its own account of what a stop leaves behind (`ifInterrupted`: rmt says which
 * cartridge and what was rolled back); the interrupted entry's detail uses it.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { JobsDb } from './jobs.js';

export interface AuditInput {
  /** Token name (or 'system' for work the service does itself). */
  actor: string;
  tokenId: string | null;
  role: string | null;
  /** What was done: `METHOD /route/pattern`, or a job kind. */
  action: string;
  /** The concrete target: the URL path, a barcode. */
  target: string;
  /** HTTP status or 0 for non-HTTP events. */
  status: number;
  /** `interrupted`: the server stopped before the mutation had an answer (it may have been made). */
  result: 'ok' | 'error' | 'interrupted';
  /** Error code or message when result is error. */
  detail: string | null;
}

export interface AuditEntry extends AuditInput {
  seq: number;
  at: string;
  prevHash: string;
  hash: string;
}

export interface AuditFilter {
  since?: string;
  until?: string;
  actor?: string;
  /** Prefix of the action (e.g. `POST /api/v1/cartridges`). */
  action?: string;
  offset?: number;
  limit?: number;
}

export interface ChainCheck {
  intact: boolean;
  entries: number;
  /** The first problem found: which sequence and what is wrong. */
  problem: { seq: number; reason: string } | null;
}

/** What `begin` notes: who is about to change what. */
export interface AuditBegin extends Omit<AuditInput, 'status' | 'result' | 'detail'> {
  /**
   * What a server stop before the outcome leaves behind, for the `interrupted` entry's detail
   * (e.g. rmt: the records after the cartridge's last filemark were rolled back). Without it,
   * the API's account: the request may or may not have been done.
   */
  ifInterrupted?: string;
}

/** A mutation noted as begun, without an outcome yet. */
interface Started extends AuditBegin {
  at: string;
}

const GENESIS = '0'.repeat(64);
const key = (seq: number) => String(seq).padStart(12, '0');

/** The hash covers every field but `hash` itself, in a fixed order. */
export function entryHash(e: Omit<AuditEntry, 'hash'>): string {
  const fields = [e.seq, e.at, e.actor, e.tokenId, e.role, e.action, e.target, e.status, e.result, e.detail, e.prevHash];
  return createHash('sha256').update(JSON.stringify(fields)).digest('hex');
}

/** When the change began, and what the stop left: the note's own account, or the API's. */
function interruptedDetail(s: Started): string {
  if (s.ifInterrupted) return `the server stopped during this change (begun at ${s.at}): ${s.ifInterrupted}`;
  return `the server stopped before this had an answer (asked at ${s.at}): it may or may not have been done; look at ${s.target}`;
}

export class AuditLog {
  private readonly log;
  private readonly head;
  private readonly inflight;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly db: JobsDb) {
    const audit = db.sublevel<string, unknown>('audit', { valueEncoding: 'json' });
    this.log = audit.sublevel<string, AuditEntry>('log', { valueEncoding: 'json' });
    this.head = audit.sublevel<string, { seq: number; hash: string }>('head', { valueEncoding: 'json' });
    this.inflight = audit.sublevel<string, Started>('inflight', { valueEncoding: 'json' });
  }

  /** Notes a mutation about to run; the `append` of its outcome with the returned id settles it. */
  async begin(input: AuditBegin): Promise<string> {
    const id = `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
    await this.inflight.put(id, { ...input, at: new Date().toISOString() });
    return id;
  }

  /** Appends an entry; with `started` (from `begin`), that note goes in the same batch. */
  append(input: AuditInput, started?: string): Promise<AuditEntry> {
    const run = this.queue.then(async () => {
      const head = (await this.head.get('head')) ?? { seq: 0, hash: GENESIS };
      const base = { ...input, seq: head.seq + 1, at: new Date().toISOString(), prevHash: head.hash };
      const entry: AuditEntry = { ...base, hash: entryHash(base) };
      const batch = this.db.batch().put(key(entry.seq), entry, { sublevel: this.log }).put('head', { seq: entry.seq, hash: entry.hash }, { sublevel: this.head });
      if (started) batch.del(started, { sublevel: this.inflight });
      await batch.write();
      return entry;
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Logs every mutation that was running when the server stopped (its note is still there) as
   * `interrupted`, once; returns how many. Run at start, before anything new begins.
   */
  async recoverInterrupted(): Promise<number> {
    let n = 0;
    for await (const [id, s] of this.inflight.iterator()) {
      await this.append({ actor: s.actor, tokenId: s.tokenId, role: s.role, action: s.action, target: s.target, status: 0, result: 'interrupted', detail: interruptedDetail(s) }, id);
      n++;
    }
    return n;
  }

  /** Resolves once every append asked for so far has finished (before the store closes). */
  async settled(): Promise<void> {
    await this.queue;
  }

  /** Entries oldest first, filtered; `total` counts all matches. */
  async list(f: AuditFilter = {}): Promise<{ items: AuditEntry[]; total: number }> {
    const offset = f.offset ?? 0;
    const limit = f.limit ?? 100;
    const items: AuditEntry[] = [];
    let total = 0;
    for await (const e of this.log.values()) {
      if (f.since !== undefined && e.at < f.since) continue;
      if (f.until !== undefined && e.at >= f.until) continue;
      if (f.actor !== undefined && e.actor !== f.actor && e.tokenId !== f.actor) continue;
      if (f.action !== undefined && !e.action.startsWith(f.action)) continue;
      if (total >= offset && items.length < limit) items.push(e);
      total++;
    }
    return { items, total };
  }

  /** Walks the whole chain; stops at the first broken link. */
  async verify(): Promise<ChainCheck> {
    await this.queue;
    let prev = GENESIS;
    let seq = 0;
    const bad = (s: number, reason: string): ChainCheck => ({ intact: false, entries: seq, problem: { seq: s, reason } });
    for await (const [k, e] of this.log.iterator()) {
      const expected = seq + 1;
      if (k !== key(expected) || e.seq !== expected) return bad(expected, `entry ${expected} is missing (found ${Number(k)} next)`);
      if (e.prevHash !== prev) return bad(expected, `entry ${expected} does not link to entry ${seq}`);
      const { hash, ...rest } = e;
      if (entryHash(rest) !== hash) return bad(expected, `entry ${expected} was altered (its hash does not match its content)`);
      prev = hash;
      seq = expected;
    }
    const head = await this.head.get('head');
    if ((head?.seq ?? 0) !== seq || (head?.hash ?? GENESIS) !== prev) {
      return bad(seq + 1, `the log ends at entry ${seq} but its head record says ${head?.seq ?? 0}: entries were removed from the end`);
    }
    return { intact: true, entries: seq, problem: null };
  }
}
