/**
 * The media of an installation: each medium's configuration (type, capacity, WORM, write
 * protect, retention), its end of data and its tape map, in the `tape` sublevels of the shared
 * LevelDB. A medium is loaded (mounted) by at most one holder at a time.
 */
import type { SyncBatch } from '../stream/index.js';
import type { TapeDeps } from './index.js';
import { CHECKSUM_ALGORITHM } from './checksum.js';
import { MapStore, type MarkRun, type Run } from './map.js';
import { earlyWarningZone, isMediaType, mediaCapacity, MEDIA_TYPES, type MediaType } from './media.js';
import { Medium, blankGeometry, retentionHolds, type Geometry, type MediumConfig, type MediumContext, type TapeFileInfo } from './medium.js';

/** The medium is held by another handle (a drive, an image transfer): one holder at a time. */
export class MediumInUseError extends Error {
  readonly code = 'IN_USE';
  constructor(readonly medium: string) {
    super(`medium ${medium} is already loaded`);
  }
}
import type { TapeResult } from './index.js';

export type { TapeFileInfo, MediumConfig };

export interface MediumSpec {
  mediaType: MediaType;
  /** Bytes; only (and required) for `custom`. */
  capacity?: number;
  /** Early-warning zone in bytes (default 64 MiB, at most a quarter of the capacity). */
  earlyWarning?: number;
  worm?: boolean;
  writeProtected?: boolean;
  retentionUntil?: string | null;
}

/** A medium's configuration, end of data and tape map: what a replica carries. */
export interface MediumImage {
  config: MediumConfig;
  geometry: Geometry;
  runs: Run[];
  marks: MarkRun[];
}

export interface MediumFlags {
  writeProtected?: boolean;
  retentionUntil?: string | null;
}

export interface MediumInfo extends MediumConfig {
  id: string;
  /** Logical bytes up to EOD. */
  logicalBytes: number;
  /** Objects (records and filemarks) up to EOD. */
  objects: number;
  filemarks: number;
  /** Tape files: one per filemark, plus the unterminated last one if it holds data. */
  files: number;
  beyondEarlyWarning: boolean;
  retentionHolds: boolean;
  loaded: boolean;
  streamId: string | null;
}

const ID = /^[A-Za-z0-9._-]{1,64}$/;

export class TapeStore {
  readonly map: MapStore;
  private readonly media;
  private readonly geos;
  private readonly loaded = new Map<string, Medium>();
  private readonly ctx: MediumContext;

  constructor(private readonly deps: TapeDeps) {
    this.map = new MapStore(deps.db);
    const tape = deps.db.sublevel<string, unknown>('tape', { valueEncoding: 'json' });
    this.media = tape.sublevel<string, MediumConfig>('media', { valueEncoding: 'json' });
    this.geos = tape.sublevel<string, Geometry>('eod', { valueEncoding: 'json' });
    this.ctx = {
      streams: deps.streams,
      map: this.map,
      putGeometry: (b, id, geo) => b.put(id, geo, { sublevel: this.geos }),
      getGeometry: (id) => this.geos.get(id),
      acquire: (id, m) => {
        const held = this.loaded.get(id);
        if (held && held !== m) throw new MediumInUseError(id);
        this.loaded.set(id, m);
      },
      release: (id) => this.loaded.delete(id),
    };
  }

  /** Checks a spec and turns it into a stored configuration; throws a clear error. */
  static configure(spec: MediumSpec): MediumConfig {
    if (!isMediaType(spec.mediaType)) {
      throw new Error(`unknown media type ${JSON.stringify(spec.mediaType)}; expected one of ${MEDIA_TYPES.join(', ')}`);
    }
    const capacity = mediaCapacity(spec.mediaType, spec.capacity);
    return {
      mediaType: spec.mediaType,
      capacity,
      earlyWarning: earlyWarningZone(capacity, spec.earlyWarning),
      worm: spec.worm ?? false,
      writeProtected: spec.writeProtected ?? false,
      retentionUntil: checkDate(spec.retentionUntil ?? null),
      checksum: CHECKSUM_ALGORITHM,
      createdAt: new Date().toISOString(),
    };
  }

  static checkId(id: string): void {
    if (typeof id !== 'string' || !ID.test(id)) throw new Error(`invalid medium id ${JSON.stringify(id)}: use 1 to 64 of A-Z a-z 0-9 . _ -`);
  }

  async exists(id: string): Promise<boolean> {
    return (await this.media.get(id)) !== undefined;
  }

  /** Adds a new blank medium to `b` (the caller checked that `id` is free). */
  createOps(b: SyncBatch, id: string, cfg: MediumConfig): void {
    TapeStore.checkId(id);
    b.put(id, cfg, { sublevel: this.media });
  }

  async create(id: string, spec: MediumSpec): Promise<MediumInfo> {
    TapeStore.checkId(id);
    const cfg = TapeStore.configure(spec);
    if (await this.exists(id)) throw new Error(`medium ${id} already exists`);
    await this.media.put(id, cfg);
    return this.info(id);
  }

  async config(id: string): Promise<MediumConfig> {
    const m = this.loaded.get(id);
    if (m) return m.cfg;
    const cfg = await this.media.get(id);
    if (!cfg) throw new Error(`no medium ${id}`);
    return cfg;
  }

  async info(id: string): Promise<MediumInfo> {
    const cfg = await this.config(id);
    const m = this.loaded.get(id);
    const geo = m ? m.eod : ((await this.geos.get(id)) ?? blankGeometry());
    return {
      ...cfg,
      id,
      logicalBytes: geo.eodByte,
      objects: geo.eodLba,
      filemarks: geo.filemarks,
      files: geo.filemarks + (geo.eodLba > geo.tailLba ? 1 : 0),
      beyondEarlyWarning: geo.eodByte > cfg.capacity - cfg.earlyWarning,
      retentionHolds: retentionHolds(cfg),
      loaded: m !== undefined,
      streamId: geo.streamId,
    };
  }

  /**
   * When the medium's data last changed at a sync point (null if unknown: media synced before
   * this was recorded). Replication compares it with the sync point its replica holds.
   */
  async syncedAt(id: string): Promise<string | null> {
    const m = this.loaded.get(id);
    const geo = m ? m.eod : await this.geos.get(id);
    return geo?.syncedAt ?? null;
  }

  /** Changes write protect or retention; takes effect at once on a loaded medium. */
  async setFlags(id: string, flags: MediumFlags): Promise<MediumConfig> {
    const cfg = await this.config(id);
    const next = { ...cfg };
    if (flags.writeProtected !== undefined) {
      if (typeof flags.writeProtected !== 'boolean') throw new Error('writeProtected must be true or false');
      if (cfg.readOnly && !flags.writeProtected) throw new Error(`medium ${id} is read-only: ${cfg.readOnly}`);
      next.writeProtected = flags.writeProtected;
    }
    if (flags.retentionUntil !== undefined) {
      const until = checkDate(flags.retentionUntil);
      // On WORM, no date means forever: a date shortens that (once it holds data), and going
      // back to no date extends any date.
      if (cfg.worm && cfg.retentionUntil === null && until !== null && !(await this.isBlank(id))) {
        throw new Error(`medium ${id} is WORM and holds data with no retention date: it is kept forever, and a retention date would shorten that`);
      }
      const longer = until === null ? cfg.worm : cfg.retentionUntil !== null && until >= cfg.retentionUntil;
      if (retentionHolds(cfg) && cfg.retentionUntil !== null && !longer) {
        throw new Error(`medium ${id} is under retention until ${cfg.retentionUntil}: its retention can be extended but not shortened`);
      }
      next.retentionUntil = until;
    }
    await this.media.put(id, next);
    Object.assign(cfg, next); // a loaded medium shares this object
    return cfg;
  }

  /** Nothing was ever written to the medium (or it was erased): end of data at BOT. */
  private async isBlank(id: string): Promise<boolean> {
    const geo = this.loaded.get(id)?.eod ?? (await this.geos.get(id));
    return !geo || geo.eodLba === 0;
  }

  /** Loads a medium: the returned handle is positioned at BOT. */
  async mount(id: string): Promise<Medium> {
    if (this.loaded.has(id)) throw new MediumInUseError(id);
    const cfg = await this.config(id);
    const m = new Medium(this.ctx, id, cfg);
    await m.load();
    return m;
  }

  isLoaded(id: string): boolean {
    return this.loaded.has(id);
  }

  /** Erases a medium that is not loaded, from BOT: its data becomes garbage. */
  async erase(id: string): Promise<TapeResult> {
    const m = await this.mount(id);
    try {
      return await m.erase();
    } finally {
      await m.unload();
    }
  }

  /**
   * Removes a medium that is not loaded; its stream's chunks become garbage. Refused while a
   * retention date lies ahead, and for WORM data without one (a blank WORM medium may go).
   */
  async delete(id: string, extra?: (b: SyncBatch) => void): Promise<void> {
    if (this.loaded.has(id)) throw new Error(`medium ${id} is loaded`);
    const cfg = await this.config(id);
    const geo = await this.geos.get(id);
    // A WORM medium without a date holds its data forever; one never written holds nothing.
    const blank = !geo || geo.eodLba === 0;
    // The operator's write protect, not a read-only replica's (its data lives on its source).
    if (cfg.writeProtected && !cfg.readOnly && !blank) {
      throw new Error(`medium ${id} is write protected and holds data: clear write protect first (vtl cartridge protect ${id} --off) if it really is to go`);
    }
    if (cfg.worm && cfg.retentionUntil === null && !blank) {
      throw new Error(`medium ${id} is WORM and holds data with no retention date: it is kept forever and cannot be deleted`);
    }
    if (cfg.retentionUntil !== null && retentionHolds(cfg)) {
      throw new Error(`medium ${id} is under retention until ${cfg.retentionUntil}: it cannot be deleted before then`);
    }
    const ops = (b: SyncBatch) => {
      b.del(id, { sublevel: this.media });
      b.del(id, { sublevel: this.geos });
      extra?.(b);
    };
    if (geo?.streamId && (await this.deps.streams.exists(geo.streamId))) {
      await this.deps.streams.delete(geo.streamId, ops);
    } else {
      const b = this.deps.db.batch();
      ops(b);
      await b.write();
    }
    await this.map.clearFrom(id, 0, 0);
  }

  /**
   * A medium's whole state as of `snapshot` (a snapshot of the root LevelDB, so that config,
   * end of data and tape map agree with one sync point), for replication. undefined when the
   * medium does not exist.
   */
  async image(id: string, snapshot: unknown): Promise<MediumImage | undefined> {
    const opts = (snapshot === undefined ? {} : { snapshot }) as object;
    const config = await this.media.get(id, opts);
    if (!config) return undefined;
    const geometry = (await this.geos.get(id, opts)) ?? blankGeometry();
    const runs: Run[] = [];
    const marks: MarkRun[] = [];
    for await (const r of this.map.runsOf(id, opts)) if (r.lba < geometry.eodLba) runs.push(r);
    for await (const m of this.map.markRuns(id, opts)) if (m.index < geometry.filemarks) marks.push(m);
    return { config, geometry, runs, marks };
  }

  /**
   * Puts a medium's whole state in place of whatever `id` held (a replica arriving or being
   * refreshed), with the caller's operations, in one synced batch. The medium must not be loaded.
   */
  async putImage(id: string, img: MediumImage, extra?: (b: SyncBatch) => void): Promise<void> {
    TapeStore.checkId(id);
    if (this.loaded.has(id)) throw new MediumInUseError(id);
    const b = this.deps.db.batch();
    for await (const k of this.map.runs.keys({ gte: `${id}!`, lt: `${id}"` })) b.del(k, { sublevel: this.map.runs });
    for await (const k of this.map.marks.keys({ gte: `${id}!`, lt: `${id}"` })) b.del(k, { sublevel: this.map.marks });
    b.put(id, img.config, { sublevel: this.media });
    b.put(id, img.geometry, { sublevel: this.geos });
    for (const r of img.runs) this.map.putRun(b, id, r);
    for (const m of img.marks) this.map.putMark(b, id, m);
    extra?.(b);
    await b.write({ sync: true } as object);
  }

  async *list(): AsyncGenerator<string> {
    for await (const id of this.media.keys()) yield id;
  }

  /**
   * How many media there are and their logical bytes together, loaded ones as they stand: two
   * key-ordered scans, not a configuration and end-of-data read per medium (store-wide totals
   * for /stats, /metrics and the history sampler, on stores of tens of thousands of media).
   */
  async totals(): Promise<{ media: number; logicalBytes: number }> {
    let media = 0;
    for await (const _ of this.media.keys()) media++;
    let logicalBytes = 0;
    const seen = new Set<string>();
    for await (const [id, geo] of this.geos.iterator()) {
      logicalBytes += this.loaded.get(id)?.eod.eodByte ?? geo.eodByte;
      seen.add(id);
    }
    for (const [id, m] of this.loaded) if (!seen.has(id)) logicalBytes += m.eod.eodByte;
    return { media, logicalBytes };
  }
}

function checkDate(d: string | null): string | null {
  if (d === null) return null;
  const t = typeof d === 'string' ? Date.parse(d) : NaN;
  if (Number.isNaN(t)) throw new Error(`invalid retention date ${JSON.stringify(d)}: use an ISO 8601 date`);
  return new Date(t).toISOString();
}
