/**
 * What a replication target holds (object names are relative to the target's URL):
 *
 *   vtl-replica.json           plaintext: { format, version, storeId, keyId, createdAt }. Names
 *                              the store whose replicas these are and the id of its replication
 *                              key; a target never holds two stores.
 *   containers/<id, 8 hex>     a sealed container exactly as on disk, after a 128-byte header:
 *                              "VTLRCTR1", u16 LE length n, the container's data key wrapped by
 *                              the replication key (n bytes), zeros to 128. Only unique data,
 *                              already compressed and encrypted, crosses the wire.
 *   packs/<barcode>/<seq>-<n>  recipe pages shipped by one replication of a cartridge,
 *                              concatenated (up to 32 MiB a pack), sealed by the replication key
 *                              (bound to the name). Unchanged pages stay in older packs.
 *   catalogs/<barcode>/<seq>   the commit point: the cartridge's configuration, end of data, tape
 *                              map and the table of its recipe pages (which pack, where), sealed
 *                              like packs. seq counts up per cartridge (12 decimal digits); the
 *                              newest catalog is the cartridge's replica.
 * Catalogs reference containers by id; a catalog is written only after every container and pack
 * it needs is on the target, so a reader never meets a catalog it cannot restore.
 */
import type { MediumImage } from '../tape/index.js';
import { ObjectNotFoundError, type ObjectTier } from '../tier/index.js';

export const MANIFEST = 'vtl-replica.json';
export const CONTAINER_HEADER = 128;
const CONTAINER_MAGIC = Buffer.from('VTLRCTR1', 'latin1');

export const containerObject = (id: number) => `containers/${id.toString(16).padStart(8, '0')}`;
export const packObject = (barcode: string, seq: number, part: number) => `packs/${barcode}/${seqName(seq)}-${part}`;
export const catalogObject = (barcode: string, seq: number) => `catalogs/${barcode}/${seqName(seq)}`;
const seqName = (seq: number) => String(seq).padStart(12, '0');

/** Parses `catalogs/<barcode>/<seq>`; undefined for anything else. */
export function parseCatalogName(key: string): { barcode: string; seq: number } | undefined {
  const m = /^catalogs\/([A-Za-z0-9._-]{1,64})\/(\d{12})$/.exec(key);
  return m ? { barcode: m[1], seq: Number(m[2]) } : undefined;
}

export interface Manifest {
  format: 'vtl-replica';
  version: 1;
  storeId: string;
  keyId: string;
  createdAt: string;
}

/** The target's manifest; undefined when it holds none (nothing replicated there yet). */
export async function readManifest(tier: ObjectTier): Promise<Manifest | undefined> {
  try {
    return JSON.parse((await tier.get(MANIFEST)).toString()) as Manifest;
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return undefined;
    throw err;
  }
}

export function containerHeader(wrappedKey: Buffer): Buffer {
  if (wrappedKey.length > CONTAINER_HEADER - 10) throw new RangeError('wrapped data key too long for the container header');
  const h = Buffer.alloc(CONTAINER_HEADER);
  CONTAINER_MAGIC.copy(h, 0);
  h.writeUInt16LE(wrappedKey.length, 8);
  wrappedKey.copy(h, 10);
  return h;
}

/** The wrapped data key of a container object's header; throws on anything else. */
export function parseContainerHeader(h: Buffer, name: string): Buffer {
  if (h.length < CONTAINER_HEADER || !h.subarray(0, 8).equals(CONTAINER_MAGIC)) throw new Error(`replica object ${name} is not a replicated container (bad header)`);
  const n = h.readUInt16LE(8);
  if (n > CONTAINER_HEADER - 10) throw new Error(`replica object ${name} has a damaged header`);
  return Buffer.from(h.subarray(10, 10 + n));
}

/** Where one recipe page of a replica is: a slice of a pack (an index into `stream.packs`). */
export type PageRef = [start: number, pack: number, offset: number, length: number];

export interface Catalog {
  format: 'vtl-catalog';
  version: 1;
  storeId: string;
  barcode: string;
  seq: number;
  /** When this catalog was written (the replica's commit). */
  createdAt: string;
  /** The sync point it captures. */
  syncedAt: string | null;
  chunkMax: number;
  medium: MediumImage;
  stream: { length: number; packs: string[]; pages: PageRef[] };
  /** Containers the recipe references, in the order a full read meets them first. */
  containers: number[];
}

export function encodeCatalog(c: Catalog): Buffer {
  return Buffer.from(JSON.stringify(c));
}

export function decodeCatalog(plain: Buffer, name: string): Catalog {
  const c = JSON.parse(plain.toString()) as Catalog;
  if (c?.format !== 'vtl-catalog' || c.version !== 1 || !c.medium?.config || !Array.isArray(c.stream?.pages)) {
    throw new Error(`replica object ${name} is not a vtl catalog of a known version`);
  }
  return c;
}
