/**
 * The second region (`vtl dr ...`): attaches another store's replication target read-only with
 * that store's recovery key, imports its catalogs as read-only cartridges in this server's
 * vault, and promotes a replica to a writable cartridge of this store (failover).
 *
 * - Nothing here writes to an attached target.
 * - A replica is a medium whose configuration, end of data and tape map come from the newest
 *   catalog, and whose stream is a recipe of the source's chunks (`<source>:<id>` in the
 *   StreamRouter) read through ReplicaChunks (fetch on demand, local cache). It is
 *   write-protected and read-only until promoted; a newer catalog replaces it on refresh
 *   (tape map and stream switch in one batch), unless it is in a drive or was promoted.
 * - A barcode that belongs to a cartridge of this store is never replaced: it is reported as a
 *   conflict, with what to do about it.
 * - A catalog that cannot be read whole (an object missing, failing authentication, not a
 *   catalog) is damaged: refresh falls back to the newest older catalog that is whole, and
 *   reports the damage (the replica is then older than the source's latest). A target that
 *   cannot be reached is not damage: nothing older is imported for it.
 * - The recovery material is kept sealed by this store's own replication key.
 * - Promote copies the replica's bytes into a new local stream (deduplicated here), then switches
 *   the medium to it and clears read-only in one batch; a crash before that leaves the replica
 *   as it was, and the partial copy is removed at the next start.
 */
import { join } from 'node:path';
import { importRecoveryKey, ReplicaCipher, RecoveryKeyError, type RecoveryMaterial } from '../crypto/index.js';
import { LibraryError, type Cartridge, type Libraries } from '../library/index.js';
import type { MediumConfig } from '../tape/index.js';
import { RecipeStreams } from '../stream/recipes.js';
import type { StreamRouter } from '../stream/router.js';
import type { DataStore } from '../stream/store.js';
import { ObjectNotFoundError, openTier, parseTierUrl, TierError, withRetry, type ObjectTier } from '../tier/index.js';
import type { ReplicationDb } from './index.js';
import { MANIFEST, catalogObject, decodeCatalog, parseCatalogName, readManifest, type Catalog } from './layout.js';
import { ReplicaChunks } from './replica-source.js';
import { ReplicationError } from './replicator.js';

export interface SourceRecord {
  name: string;
  url: string;
  storeId: string;
  keyId: string;
  attachedAt: string;
  lastRefreshAt: string | null;
  /** The recovery material, sealed by this store's replication key (base64). */
  sealed: string;
}

export interface ReplicaRecord {
  barcode: string;
  source: string;
  seq: number;
  /** When the source wrote the catalog, and the sync point it holds. */
  catalogCreatedAt: string;
  syncedAt: string | null;
  importedAt: string;
  logicalBytes: number;
  streamId: string;
  state: 'replica' | 'promoted';
  promotedAt: string | null;
  /** A promote in progress: the local stream being filled (removed at start if it was cut off). */
  promoting?: string;
}

export interface RefreshResult {
  source: string;
  imported: Array<{ barcode: string; seq: number; logicalBytes: number }>;
  unchanged: number;
  /** Barcodes not imported because of something in this region (a cartridge of its own, a promote). */
  conflicts: Array<{ barcode: string; reason: string }>;
  /**
   * Cartridges whose newest catalogs on the target are damaged: `catalogs` (newest first) could
   * not be imported; `fallback` is the older catalog imported or still held here instead (older
   * than the source's latest), null when the cartridge has no usable catalog here at all.
   */
  damaged: Array<{ barcode: string; catalogs: number[]; fallback: number | null; reason: string }>;
  /** Cartridges not imported because the target could not be read now (try again). */
  failed: Array<{ barcode: string; reason: string }>;
}

interface Mounted {
  record: SourceRecord;
  tier: ObjectTier;
  cipher: ReplicaCipher;
  chunks: ReplicaChunks;
  streams: RecipeStreams<ReplicaChunks>;
}

const SOURCE_NAME = /^[a-z0-9][a-z0-9-]{0,31}$/;
const COPY_BYTES = 4 * 1024 * 1024;
const READ_ONLY_PREFIX = 'replica of';

export class DisasterRecovery {
  private readonly sources;
  private readonly replicas;
  private readonly orders;
  private readonly mounted = new Map<string, Mounted>();
  private readonly cacheBytes: number;
  private own: ReplicaCipher | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly store: DataStore,
    private readonly libraries: Libraries,
    private readonly router: StreamRouter,
    private readonly opts: { env?: NodeJS.ProcessEnv } = {},
  ) {
    const db = store.db.sublevel<string, unknown>('dr', { valueEncoding: 'json' }) as unknown as ReplicationDb;
    this.sources = db.sublevel<string, SourceRecord>('sources', { valueEncoding: 'json' });
    this.replicas = db.sublevel<string, ReplicaRecord>('replicas', { valueEncoding: 'json' });
    this.orders = db.sublevel<string, number[]>('orders', { valueEncoding: 'json' });
    this.cacheBytes = Number(opts.env?.VTL_DR_CACHE_BYTES ?? process.env.VTL_DR_CACHE_BYTES ?? 8 * 1024 ** 3);
  }

  /** Mounts every attached source; removes partial copies of promotes a stop cut off. */
  async open(): Promise<void> {
    for await (const rec of this.sources.values()) {
      try {
        await this.mount(rec);
      } catch (err) {
        console.error(`vtl: DR source ${rec.name} (${rec.url}) cannot be opened now: ${(err as Error).message}`);
      }
    }
    for await (const r of this.replicas.values()) {
      if (r.state === 'replica' && r.promoting) {
        if (await this.store.streams.exists(r.promoting)) await this.store.streams.delete(r.promoting);
        await this.replicas.put(r.barcode, { ...r, promoting: undefined });
      }
    }
  }

  // ---- sources ------------------------------------------------------------------------------

  attach(url: string, keyText: string, passphrase: string, name?: string): Promise<RefreshResult> {
    return this.serial(async () => {
      let material: RecoveryMaterial;
      try {
        material = importRecoveryKey(keyText, passphrase);
      } catch (err) {
        if (err instanceof RecoveryKeyError) throw new ReplicationError('INVALID', err.message);
        throw err;
      }
      if (material.storeId === this.store.chunks.storeId) throw new ReplicationError('INVALID', 'this recovery key is the key of this very store: attach it in another region');
      const srcName = name ?? `r-${material.storeId.slice(0, 12)}`;
      if (!SOURCE_NAME.test(srcName)) throw new ReplicationError('INVALID', `invalid source name ${JSON.stringify(srcName)}: 1 to 32 of a-z 0-9 -`);
      if (await this.sources.get(srcName)) throw new ReplicationError('CONFLICT', `a DR source named ${srcName} is already attached`);
      for await (const s of this.sources.values()) if (s.storeId === material.storeId) throw new ReplicationError('CONFLICT', `the replicas of store ${material.storeId} are already attached as ${s.name}`);
      let redacted: string;
      try {
        redacted = parseTierUrl(url).redacted;
      } catch (err) {
        throw new ReplicationError('INVALID', (err as Error).message);
      }
      const cipher = new ReplicaCipher(material.replicationKey);
      const tier = await this.openTier(url);
      try {
        await checkManifest(tier, material.storeId, cipher.keyId, redacted);
      } finally {
        await tier.close();
      }
      const own = await this.ownCipher();
      const rec: SourceRecord = {
        name: srcName,
        url,
        storeId: material.storeId,
        keyId: cipher.keyId,
        attachedAt: new Date().toISOString(),
        lastRefreshAt: null,
        sealed: own.seal(`dr-source/${srcName}`, Buffer.from(JSON.stringify(sealable(material)))).toString('base64'),
      };
      await this.sources.put(srcName, rec);
      await this.mount(rec);
      return this.refreshOne(srcName);
    });
  }

  /** Sources as shown to users (no key material; the URL without credentials). */
  async listSources(): Promise<Array<Omit<SourceRecord, 'sealed'> & { mounted: boolean; cacheBytes: number }>> {
    const out = [];
    for await (const { sealed: _s, ...rec } of this.sources.values()) {
      const m = this.mounted.get(rec.name);
      out.push({ ...rec, url: parseTierUrl(rec.url).redacted, mounted: m !== undefined, cacheBytes: m?.chunks.cacheBytes ?? 0 });
    }
    return out;
  }

  /** Imports catalogs newer than what this server holds, from one source or all. */
  refresh(name?: string): Promise<RefreshResult[]> {
    return this.serial(async () => {
      const names = name ? [name] : (await this.sources.keys().all());
      const out: RefreshResult[] = [];
      for (const n of names) out.push(await this.refreshOne(n));
      return out;
    });
  }

  // ---- replicas -----------------------------------------------------------------------------

  async list(): Promise<ReplicaRecord[]> {
    return this.replicas.values().all();
  }

  async replica(barcode: string): Promise<ReplicaRecord | undefined> {
    return this.replicas.get(barcode);
  }

  promote(barcode: string): Promise<Cartridge> {
    return this.serial(async () => {
      const rec = await this.replicas.get(barcode);
      if (!rec) throw new ReplicationError('NOT_FOUND', `${barcode} is not a replica attached here`);
      if (rec.state === 'promoted') return this.libraries.getCartridge(barcode);
      return this.libraries.withIdleCartridge(barcode, async () => {
        const local = await this.store.streams.create();
        await this.replicas.put(barcode, { ...rec, promoting: local });
        await this.copyStream(rec.streamId, local, rec.logicalBytes);
        const img = await this.libraries.tapes.image(barcode, undefined);
        if (!img) throw new ReplicationError('NOT_FOUND', `no cartridge ${barcode}`);
        const config: MediumConfig = { ...img.config, writeProtected: false };
        delete config.readOnly;
        const promoted: ReplicaRecord = { ...rec, state: 'promoted', promotedAt: new Date().toISOString(), streamId: local };
        delete promoted.promoting;
        await this.libraries.tapes.putImage(barcode, { ...img, config, geometry: { ...img.geometry, streamId: local } }, (b) => b.put(barcode, promoted, { sublevel: this.replicas }));
        await this.router.delete(rec.streamId).catch(() => undefined);
        return this.libraries.getCartridge(barcode);
      });
    });
  }

  /** Cache figures per mounted source (for /metrics and the dashboard). */
  cacheStats(): Array<{ source: string; cacheBytes: number; fetched: number; fetchedBytes: number; cacheHits: number }> {
    return [...this.mounted.values()].map((m) => ({ source: m.record.name, cacheBytes: m.chunks.cacheBytes, ...m.chunks.counters }));
  }

  /** Drops every cached container (the next reads fetch from the target again). */
  async clearCache(): Promise<void> {
    for (const m of this.mounted.values()) await m.chunks.clearCache();
  }

  async close(): Promise<void> {
    await this.queue;
    for (const m of this.mounted.values()) await m.tier.close();
    this.mounted.clear();
  }

  // ---- internals ----------------------------------------------------------------------------

  private async refreshOne(name: string): Promise<RefreshResult> {
    const src = await this.sources.get(name);
    if (!src) throw new ReplicationError('NOT_FOUND', `no DR source ${name}`);
    const m = this.mounted.get(name) ?? (await this.mount(src));
    const seqs = new Map<string, number[]>();
    for await (const e of m.tier.list('catalogs/')) {
      const c = parseCatalogName(e.key);
      if (c) seqs.set(c.barcode, [...(seqs.get(c.barcode) ?? []), c.seq]);
    }
    const res: RefreshResult = { source: name, imported: [], unchanged: 0, conflicts: [], damaged: [], failed: [] };
    for (const [barcode, all] of [...seqs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      all.sort((a, b) => b - a);
      const seq = all[0];
      const have = await this.replicas.get(barcode);
      if (have && have.source !== name) {
        res.conflicts.push({ barcode, reason: `already a replica from source ${have.source}` });
        continue;
      }
      if (have?.state === 'promoted') {
        if (seq > have.seq) res.conflicts.push({ barcode, reason: `promoted in this region; catalog ${seq} of the source was not imported` });
        else res.unchanged++;
        continue;
      }
      if (have && have.seq >= seq) {
        res.unchanged++;
        continue;
      }
      // Newest first; a damaged catalog gives way to the next older one (never to one older
      // than what is held here).
      const bad: Array<{ seq: number; reason: string }> = [];
      let done: { barcode: string; seq: number; logicalBytes: number } | undefined;
      for (const s of all.filter((x) => !have || x > have.seq)) {
        try {
          done = await this.importCatalog(m, barcode, s, have);
          break;
        } catch (err) {
          if (err instanceof DamagedCatalog) {
            bad.push({ seq: s, reason: err.message });
            continue;
          }
          if (err instanceof TierError) res.failed.push({ barcode, reason: `catalog ${s}: the target could not be read: ${(err as Error).message} (nothing older was imported; run vtl dr refresh again)` });
          else res.conflicts.push({ barcode, reason: await this.conflictReason(barcode, err as Error) });
          break;
        }
      }
      if (done) res.imported.push(done);
      if (bad.length) {
        const fallback = done?.seq ?? have?.seq ?? null;
        const what = `${bad.length === 1 ? 'catalog' : 'catalogs'} ${bad.map((b) => b.seq).join(', ')} on the target ${bad.length === 1 ? 'is' : 'are'} damaged (${bad.map((b) => b.reason).join('; ')})`;
        const then = done
          ? `catalog ${done.seq} was imported instead: this replica is older than the source's latest (catalog ${seq})`
          : have
            ? `the replica here stays at catalog ${have.seq}, older than the source's latest (catalog ${seq})`
            : res.conflicts.some((c) => c.barcode === barcode) || res.failed.some((c) => c.barcode === barcode)
              ? 'no older catalog was imported'
              : 'no catalog of this cartridge is whole: it was not imported';
        res.damaged.push({ barcode, catalogs: bad.map((b) => b.seq), fallback, reason: `${what}; ${then}` });
      }
    }
    await this.sources.put(name, { ...src, lastRefreshAt: new Date().toISOString() });
    return res;
  }

  /** Why a replica could not take its barcode here, and what to do about it. */
  private async conflictReason(barcode: string, err: Error): Promise<string> {
    if (!(err instanceof LibraryError) || err.code !== 'EXISTS') return err.message;
    const c = await this.libraries.getCartridge(barcode).catch(() => undefined);
    if (!c) return `${err.message}: it is never replaced by a replica; delete it (vtl cartridge delete ${barcode}), then run vtl dr refresh`;
    const where = c.location.kind === 'vault' ? 'in the vault' : `in ${c.location.library} ${c.location.kind} ${c.location.address}`;
    const unload = c.location.kind === 'drive' ? `unload it (vtl unload ${c.location.library} ${c.location.index}), ` : '';
    if (c.files === 0 && c.logicalBytes === 0) {
      return `barcode ${barcode} is already in use by a blank cartridge of this store (${where}; e.g. the demo library of a first vtl serve without --no-demo): ${unload}delete it (vtl cartridge delete ${barcode}), then run vtl dr refresh`;
    }
    return `barcode ${barcode} is already in use by a cartridge of this store holding data (${c.files} tape files, ${c.logicalBytes} bytes; ${where}): it is never replaced by a replica; only if its data is not needed, ${unload}delete it (vtl cartridge delete ${barcode}) and run vtl dr refresh`;
  }

  private async importCatalog(m: Mounted, barcode: string, seq: number, have: ReplicaRecord | undefined): Promise<{ barcode: string; seq: number; logicalBytes: number }> {
    const name = catalogObject(barcode, seq);
    const catalog = await damage(async () => {
      const c = decodeCatalog(m.cipher.open(name, await m.tier.get(name)), name);
      if (c.storeId !== m.record.storeId || c.barcode !== barcode || c.seq !== seq) throw new Error(`catalog ${name} does not describe ${barcode} #${seq} of store ${m.record.storeId}`);
      return c;
    });
    m.chunks.setChunkMax(catalog.chunkMax);
    const id = await m.streams.create();
    const routed = `${m.record.name}:${id}`;
    try {
      await damage(() => m.streams.importPages(id, this.pagesOf(m, catalog), catalog.stream.length));
      const rec: ReplicaRecord = {
        barcode,
        source: m.record.name,
        seq,
        catalogCreatedAt: catalog.createdAt,
        syncedAt: catalog.syncedAt,
        importedAt: new Date().toISOString(),
        logicalBytes: catalog.stream.length,
        streamId: routed,
        state: 'replica',
        promotedAt: null,
      };
      const config: MediumConfig = { ...catalog.medium.config, writeProtected: true, readOnly: `${READ_ONLY_PREFIX} ${barcode} of store ${m.record.storeId} (DR source ${m.record.name}); promote it to write (vtl dr promote ${barcode})` };
      const mine = (existing: MediumConfig) => have !== undefined && existing.readOnly?.startsWith(READ_ONLY_PREFIX) === true;
      await this.libraries.adoptCartridge(barcode, { ...catalog.medium, config, geometry: { ...catalog.medium.geometry, streamId: routed } }, mine, (b) => {
        b.put(barcode, rec, { sublevel: this.replicas });
        b.put(barcode, catalog.containers, { sublevel: this.orders });
      });
    } catch (err) {
      await m.streams.delete(id).catch(() => undefined);
      throw err;
    }
    if (have) await this.router.delete(have.streamId).catch(() => undefined);
    m.chunks.learnOrder(catalog.containers);
    return { barcode, seq, logicalBytes: catalog.stream.length };
  }

  /** The catalog's recipe pages, fetched pack by pack (each pack once). */
  private async *pagesOf(m: Mounted, c: Catalog): AsyncGenerator<{ start: number; page: Buffer }> {
    const packs = new Map<number, Buffer>();
    for (const [start, p, offset, length] of c.stream.pages) {
      let pack = packs.get(p);
      if (!pack) {
        const name = c.stream.packs[p];
        if (name === undefined) throw new Error(`catalog ${c.barcode} #${c.seq} names pack ${p}, which it does not list`);
        pack = m.cipher.open(name, await m.tier.get(name));
        if (packs.size >= 4) packs.delete(packs.keys().next().value!);
        packs.set(p, pack);
      }
      if (offset + length > pack.length) throw new Error(`catalog ${c.barcode} #${c.seq}: a page lies outside its pack`);
      yield { start, page: Buffer.from(pack.subarray(offset, offset + length)) };
    }
  }

  private async mount(rec: SourceRecord): Promise<Mounted> {
    const own = await this.ownCipher();
    const material = unsealable(own.open(`dr-source/${rec.name}`, Buffer.from(rec.sealed, 'base64')));
    const cipher = new ReplicaCipher(material.replicationKey);
    const tier = await this.openTier(rec.url);
    const chunks = new ReplicaChunks(this.store.db, tier, cipher, join(this.store.dir, 'dr', rec.name), this.cacheBytes, 64 * 1024);
    await chunks.open();
    const root = this.store.db.sublevel<string, unknown>('drstreams', { valueEncoding: 'json' }).sublevel<string, unknown>(rec.name, { valueEncoding: 'json' });
    // RecipeStreams only calls sublevel() on its db, which a sublevel provides like the root.
    const streams = new RecipeStreams<ReplicaChunks>(root as unknown as DataStore['db'], chunks);
    const m: Mounted = { record: rec, tier, cipher, chunks, streams };
    for await (const [barcode, order] of this.orders.iterator()) {
      const r = await this.replicas.get(barcode);
      if (r?.source === rec.name && r.state === 'replica') chunks.learnOrder(order);
    }
    this.mounted.set(rec.name, m);
    this.router.mount(rec.name, streams);
    return m;
  }

  private async openTier(url: string): Promise<ObjectTier> {
    return withRetry(await openTier(url, { env: this.opts.env }), { retries: 3, maxMs: 5000 });
  }

  private async ownCipher(): Promise<ReplicaCipher> {
    this.own ??= await this.store.chunks.replicaCipher();
    return this.own;
  }

  private async copyStream(from: string, to: string, length: number): Promise<void> {
    const reader = await this.router.openReader(from, 0);
    const writer = await this.store.streams.openWriter(to);
    try {
      const buf = Buffer.allocUnsafe(COPY_BYTES);
      for (let left = length; left > 0; ) {
        const n = await reader.readInto(buf, 0, Math.min(buf.length, left));
        if (n === 0) throw new Error(`the replica ends ${left} bytes early`);
        await writer.write(Buffer.from(buf.subarray(0, n)));
        left -= n;
      }
      await writer.close();
    } catch (err) {
      await writer.abort().catch(() => undefined);
      throw err;
    }
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

/** A catalog, or a pack it names, that cannot be read whole from a target that answers. */
class DamagedCatalog extends Error {
  override readonly name = 'DamagedCatalog';
}

/**
 * Runs a read of replica objects; what fails in it is damage (DamagedCatalog), except a target
 * that does not answer (a TierError other than a missing object), which is passed on as it is.
 */
async function damage<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof TierError && !(err instanceof ObjectNotFoundError)) throw err;
    throw new DamagedCatalog((err as Error).message);
  }
}

async function checkManifest(tier: ObjectTier, storeId: string, keyId: string, where: string): Promise<void> {
  const m = await readManifest(tier);
  if (!m) throw new ReplicationError('INVALID', `${where} holds no vtl replicas (no ${MANIFEST})`);
  if (m.storeId !== storeId) throw new ReplicationError('INVALID', `${where} holds the replicas of store ${m.storeId}, but the recovery key is for store ${storeId}`);
  if (m.keyId !== keyId) throw new ReplicationError('INVALID', `${where} was written with replication key ${m.keyId}, not this recovery key's ${keyId}`);
}

function sealable(m: RecoveryMaterial): Record<string, string> {
  return { storeId: m.storeId, replicationKey: m.replicationKey.toString('base64'), fingerprintSecret: m.fingerprintSecret.toString('base64'), gearSeed: m.gearSeed.toString('base64') };
}

function unsealable(plain: Buffer): RecoveryMaterial {
  const o = JSON.parse(plain.toString()) as Record<string, string>;
  return { storeId: o.storeId, replicationKey: Buffer.from(o.replicationKey, 'base64'), fingerprintSecret: Buffer.from(o.fingerprintSecret, 'base64'), gearSeed: Buffer.from(o.gearSeed, 'base64') };
}
