/**
 * One replication of one cartridge to one target (layout.ts says what lands where):
 * 1. A LevelDB snapshot fixes the cartridge at its last sync point (config, end of data, tape
 *    map, recipe pages agree); the open container is sealed so every chunk it refers to is in a
 *    sealed container.
 * 2. Recipe pages whose digest differs from the one this target got last time are shipped in
 *    packs; location hints that name a container GC has since compacted are resolved through the
 *    index first, so the replica never names a container that will not be on the target.
 * 3. Containers those pages need and the target lacks are shipped (checked against a local
 *    record, and when that has no word, against the target itself, so a job cut off by a crash
 *    or an outage never ships a container twice).
 * 4. The catalog goes last: the commit point. Only then is the local record updated.
 * Nothing here deletes anything on the target.
 */
import type { ReplicaCipher } from '../crypto/index.js';
import { decodeRef, encodeRef } from '../dedup/fingerprint-index.js';
import type { ChunkStore } from '../dedup/store.js';
import { RECIPE_ENTRY, type RecipeStreams } from '../stream/recipes.js';
import type { DataDb } from '../stream/store.js';
import type { TapeStore } from '../tape/index.js';
import type { ReplicationDb } from './index.js';
import { CONTAINER_HEADER, MANIFEST, readManifest, catalogObject, containerHeader, containerObject, encodeCatalog, packObject, parseCatalogName, type Catalog, type Manifest, type PageRef } from './layout.js';
import type { OpenTarget } from './targets.js';

/** A failure that retrying cannot fix (the cartridge is gone, the target holds another store). */
export class PermanentError extends Error {}
/** The store changed under the job (GC removed a container it meant to ship): start over. */
export class RetryNow extends Error {}

export interface ShipDeps {
  db: DataDb;
  chunks: ChunkStore;
  streams: RecipeStreams;
  tapes: TapeStore;
  cipher: ReplicaCipher;
  tables: ShipTables;
}

/** What the cartridge looked like when it was last replicated to a target (small; listed often). */
export interface ReplicaState {
  target: string;
  barcode: string;
  seq: number;
  replicatedAt: string;
  /** The sync point the replica holds (the cartridge is replicated while its own is the same). */
  syncedAt: string | null;
  /** All bytes this cartridge sent to this target (containers, packs, catalogs). */
  bytesShipped: number;
  lastBytesShipped: number;
}

/** The page table of the last catalog, to ship only pages that changed (large; read per job). */
interface PageTable {
  packs: string[];
  pages: PageRef[];
  digests: string[];
}

export type ShipTables = ReturnType<typeof shipTables>;

export function shipTables(db: ReplicationDb) {
  return {
    root: db,
    state: db.sublevel<string, ReplicaState>('state', { valueEncoding: 'json' }),
    pageTables: db.sublevel<string, PageTable>('pagetables', { valueEncoding: 'json' }),
    shipped: db.sublevel<string, number>('shipped', { valueEncoding: 'json' }),
  };
}

export const stateKey = (target: string, barcode: string) => `${target}!${barcode}`;
export const shippedKey = (target: string, id: number) => `${target}!${id.toString(16).padStart(8, '0')}`;

export interface ShipResult {
  seq: number;
  bytesShipped: number;
  containersShipped: number;
  containersSkipped: number;
  pagesShipped: number;
  pagesKept: number;
  logicalBytes: number;
  seconds: number;
}

export interface ShipProgress {
  (done: number, total: number | null, message: string): void;
}

const PACK_BYTES = 32 * 1024 * 1024;
const PARALLEL_PUTS = 3;
/** Above this many containers with no local record, one listing beats a HEAD each. */
const LIST_THRESHOLD = 32;

export async function shipCartridge(deps: ShipDeps, target: OpenTarget, barcode: string, progress: ShipProgress, cancelled: () => boolean): Promise<ShipResult> {
  const started = Date.now();
  await checkManifest(deps, target);
  const name = target.record.name;
  const key = stateKey(name, barcode);
  const prevState = await deps.tables.state.get(key);
  const prevTable = (await deps.tables.pageTables.get(key)) ?? { packs: [], pages: [], digests: [] };
  const seq = prevState ? prevState.seq + 1 : (await lastSeqOnTarget(target, barcode)) + 1;

  const snap = deps.db.snapshot();
  let catalog: Catalog;
  const table: PageTable = { packs: [], pages: [], digests: [] };
  const needed = new Set<number>();
  let sent = 0;
  const packsSent: Array<Promise<void>> = [];
  let pagesShipped = 0;
  try {
    const img = await deps.tapes.image(barcode, snap);
    if (!img) throw new PermanentError(`no cartridge ${barcode}`);
    if (img.config.readOnly) throw new PermanentError(`cartridge ${barcode} is read-only (${img.config.readOnly}): only a store's own cartridges are replicated`);
    await deps.chunks.sealOpenContainer();
    const existing = new Set(await deps.chunks.sealedContainers());
    const prevAt = new Map(prevTable.pages.map((p, i) => [p[0], i]));
    const packIndex = new Map<string, number>();
    const packOf = (packName: string) => {
      let i = packIndex.get(packName);
      if (i === undefined) packIndex.set(packName, (i = table.packs.push(packName) - 1));
      return i;
    };
    const order: number[] = [];
    const seen = new Set<number>();
    // The pack being filled: its name is registered when its first page arrives, so the page
    // refs made meanwhile (to older packs too) keep their indexes.
    let pack: Buffer[] = [];
    let packFill = 0;
    let current: { name: string; index: number } | undefined;
    let part = 0;
    const flushPack = () => {
      if (!current) return;
      const body = deps.cipher.seal(current.name, Buffer.concat(pack));
      const put = putLimited(target, current.name, body).then(() => void (sent += body.length));
      put.catch(() => undefined); // awaited below; a job that fails first must not leave it unhandled
      packsSent.push(put);
      pack = [];
      packFill = 0;
      current = undefined;
    };
    const addToPack = (start: number, page: Buffer) => {
      if (current && packFill + page.length > PACK_BYTES) flushPack();
      if (!current) {
        const name = packObject(barcode, seq, part++);
        current = { name, index: packOf(name) };
      }
      table.pages.push([start, current.index, packFill, page.length]);
      pack.push(page);
      packFill += page.length;
    };
    const sid = img.geometry.streamId;
    const pages = sid ? deps.streams.snapshotPages(sid, img.geometry.eodByte, snap) : [];
    for await (const { start, page } of pages) {
      if (cancelled()) throw new Error('cancelled');
      const digest = deps.cipher.digest(page);
      const was = prevAt.get(start);
      if (was !== undefined && prevTable.digests[was] === digest) {
        const [, p, off, len] = prevTable.pages[was];
        table.pages.push([start, packOf(prevTable.packs[p]), off, len]);
        table.digests.push(digest);
        for (const id of containersOf(page)) if (!seen.has(id)) seen.add(id), order.push(id);
        continue;
      }
      const fixed = await normalize(deps.chunks, page, existing);
      for (const id of containersOf(fixed)) {
        needed.add(id);
        if (!seen.has(id)) seen.add(id), order.push(id);
      }
      addToPack(start, fixed);
      table.digests.push(digest);
      pagesShipped++;
    }
    flushPack();
    catalog = {
      format: 'vtl-catalog',
      version: 1,
      storeId: deps.chunks.storeId,
      barcode,
      seq,
      createdAt: '',
      syncedAt: img.geometry.syncedAt ?? null,
      chunkMax: deps.chunks.chunker.params.max,
      medium: { ...img, geometry: { ...img.geometry, streamId: null } },
      stream: { length: img.geometry.eodByte, packs: table.packs, pages: table.pages },
      containers: order,
    };
  } finally {
    await snap.close();
  }

  const shipped = await shipContainers(deps, target, [...needed], progress, cancelled);
  await Promise.all(packsSent);
  sent += shipped.bytes;
  catalog.createdAt = new Date().toISOString();
  const catName = catalogObject(barcode, seq);
  const body = deps.cipher.seal(catName, encodeCatalog(catalog));
  await putLimited(target, catName, body);
  sent += body.length;

  const g = catalog.medium.geometry;
  const state: ReplicaState = {
    target: name,
    barcode,
    seq,
    replicatedAt: catalog.createdAt,
    syncedAt: catalog.syncedAt,
    bytesShipped: (prevState?.bytesShipped ?? 0) + sent,
    lastBytesShipped: sent,
  };
  // Both tables in one synced batch (a sublevel batch is atomic within the same LevelDB).
  const b = deps.tables.root.batch();
  b.put(key, state, { sublevel: deps.tables.state });
  b.put(key, table, { sublevel: deps.tables.pageTables });
  await b.write({ sync: true } as object);
  return {
    seq,
    bytesShipped: sent,
    containersShipped: shipped.count,
    containersSkipped: needed.size - shipped.count,
    pagesShipped,
    pagesKept: table.pages.length - pagesShipped,
    logicalBytes: g.eodByte,
    seconds: (Date.now() - started) / 1000,
  };
}

/** Distinct container ids of a page's location hints. */
function containersOf(page: Buffer): Set<number> {
  const ids = new Set<number>();
  for (let at = 0; at + RECIPE_ENTRY <= page.length; at += RECIPE_ENTRY) ids.add(page.readUInt32BE(at + 16));
  return ids;
}

/** A copy of `page` whose hints all name containers that exist (stale ones resolved by the index). */
async function normalize(chunks: ChunkStore, page: Buffer, existing: Set<number>): Promise<Buffer> {
  const stale: number[] = [];
  for (let at = 0; at + RECIPE_ENTRY <= page.length; at += RECIPE_ENTRY) if (!existing.has(page.readUInt32BE(at + 16))) stale.push(at);
  const out = Buffer.from(page);
  if (stale.length === 0) return out;
  const refs = await chunks.locate(stale.map((at) => Buffer.from(page.subarray(at, at + 16))));
  stale.forEach((at, i) => {
    const ref = refs[i];
    if (!ref) throw new PermanentError(`chunk ${page.subarray(at, at + 16).toString('hex')} of container ${decodeRef(page, at + 16).container} is missing from the store: run 'vtl scrub'`);
    if (!existing.has(ref.container)) throw new RetryNow(`container ${ref.container} changed while replicating`);
    encodeRef(ref, out, at + 16);
  });
  return out;
}

async function shipContainers(deps: ShipDeps, target: OpenTarget, ids: number[], progress: ShipProgress, cancelled: () => boolean): Promise<{ count: number; bytes: number }> {
  const name = target.record.name;
  const unknown: number[] = [];
  for (const id of ids) if ((await deps.tables.shipped.get(shippedKey(name, id))) === undefined) unknown.push(id);
  // What the target already has (a job cut off after its put, before its record).
  const onTarget = new Map<number, number>();
  if (unknown.length > LIST_THRESHOLD) {
    for await (const e of target.tier.list('containers/')) onTarget.set(parseInt(e.key.slice('containers/'.length), 16), e.size);
  } else {
    for (const id of unknown) {
      const info = await target.tier.head(containerObject(id));
      if (info) onTarget.set(id, info.size);
    }
  }
  let count = 0;
  let bytes = 0;
  let done = 0;
  const queue = [...unknown];
  const worker = async () => {
    for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
      if (cancelled()) throw new Error('cancelled');
      const c = await deps.chunks.sealedContainer(id);
      if (!c) throw new RetryNow(`container ${id} was removed (GC) while replicating; starting over`);
      const size = CONTAINER_HEADER + c.bytes.length;
      if (onTarget.get(id) !== size) {
        // Awaited first, then added: `bytes += await ...` reads `bytes` before the put, and the
        // other workers' additions made meanwhile were lost (a job reported a third of its bytes).
        const sent = await putContainer(deps, target, id, c);
        bytes += sent;
        count++;
      }
      await deps.tables.shipped.put(shippedKey(name, id), size);
      progress(++done, unknown.length, `containers shipped to ${name}`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL_PUTS, unknown.length) }, worker));
  return { count, bytes };
}

/** Ships a sealed container as it is, its data key wrapped for the target; the bytes sent. */
export async function putContainer(deps: ShipDeps, target: OpenTarget, id: number, c: { bytes: Buffer; dataKey: Buffer }): Promise<number> {
  const body = Buffer.concat([containerHeader(deps.cipher.wrapDataKey(id, c.dataKey)), c.bytes]);
  await putLimited(target, containerObject(id), body);
  return body.length;
}

async function putLimited(target: OpenTarget, key: string, body: Buffer): Promise<void> {
  await target.limiter.take(body.length);
  await target.tier.put(key, body, { contentLength: body.length });
}

/** The target names this store (or nothing yet: then it is claimed). */
async function checkManifest(deps: ShipDeps, target: OpenTarget): Promise<void> {
  const m = await readManifest(target.tier);
  if (!m) {
    const mine: Manifest = { format: 'vtl-replica', version: 1, storeId: deps.chunks.storeId, keyId: deps.cipher.keyId, createdAt: new Date().toISOString() };
    await target.tier.put(MANIFEST, Buffer.from(`${JSON.stringify(mine, null, 2)}\n`));
    return;
  }
  if (m.format !== 'vtl-replica' || m.storeId !== deps.chunks.storeId) {
    throw new PermanentError(`target ${target.record.name} holds replicas of another store (${m.storeId ?? 'unknown'}); use another bucket or prefix`);
  }
  if (m.keyId !== deps.cipher.keyId) throw new PermanentError(`target ${target.record.name} was written with another replication key (${m.keyId})`);
}

async function lastSeqOnTarget(target: OpenTarget, barcode: string): Promise<number> {
  let last = 0;
  for await (const e of target.tier.list(`catalogs/${barcode}/`)) {
    const c = parseCatalogName(e.key);
    if (c && c.barcode === barcode) last = Math.max(last, c.seq);
  }
  return last;
}
