/**
 * Libraries, their elements and the cartridges in them, persisted in the `lib` sublevels:
 * - `libs`: name -> LibraryRecord
 * - `carts`: barcode -> CartridgeRecord (where it is; its medium lives in the tape layer under
 *   the same id)
 * - `elems`: `<library>!<address as 5 digits>` -> barcode (which element holds what)
 * A cartridge's record and the element index change in one batch. Mutations run one at a time.
 */
import type { SyncBatch } from '../stream/index.js';
import { MediumInUseError, TapeStore, tapeResult, type Medium, type MediumConfig, type MediumImage, type MediumInfo, type MediumSpec, type TapeDeps, type TapePosition, type TapeResult } from '../tape/index.js';
import { barcodeRange, barcodeRangeFrom, checkBarcode, mediaSuffix, suffixMedia } from './barcode.js';
import { DEFAULT_DRIVE, DEFAULT_MODEL, allElements, checkGeometry, elementAt, elementOf, modelOf, type ElementRef } from './elements.js';
import { LibraryError } from './errors.js';
import type { MediaType } from '../tape/index.js';

export interface LibrarySpec {
  name: string;
  drives: number;
  slots: number;
  mailslots: number;
  /** `IBM 03584L32` (default) or `STK L700`. */
  model?: string;
  /** What the drives identify as (default `IBM ULT3580-TD7`). */
  driveModel?: string;
}

export interface LibraryRecord {
  name: string;
  model: string;
  vendor: string;
  product: string;
  driveVendor: string;
  driveProduct: string;
  drives: number;
  slots: number;
  mailslots: number;
  createdAt: string;
}

export type Location =
  | { kind: 'drive' | 'slot' | 'mailslot'; library: string; address: number; index: number }
  | { kind: 'vault' };

export type CartridgeState = 'scratch' | 'in use' | 'full' | 'expired';

export interface Cartridge {
  barcode: string;
  mediaType: string;
  capacity: number;
  worm: boolean;
  writeProtected: boolean;
  retentionUntil: string | null;
  state: CartridgeState;
  location: Location;
  logicalBytes: number;
  files: number;
  createdAt: string;
}

/**
 * What upper layers may react to (replication): a cartridge left a drive (its data is at a sync
 * point), went to a mail slot, or was deleted (`library`: where it was, null in the vault).
 * Listeners run after the change is recorded; their errors are theirs (they never fail it).
 */
export type CartridgeEvent = { kind: 'unloaded' | 'exported'; barcode: string; library: string } | { kind: 'deleted'; barcode: string; library: string | null };

export interface ElementStatus extends ElementRef {
  barcode: string | null;
}

export interface CartridgeSpec {
  /** Where to put them (free storage slots, in address order); the vault when absent. */
  library?: string;
  barcodes?: string[];
  /** A range: prefix + number + media suffix (`VT` 1 3 LTO-7 -> VT0001L7..VT0003L7). */
  prefix?: string;
  start?: number;
  count?: number;
  /** A range counting up from this barcode. */
  first?: string;
  mediaType?: MediaType;
  capacity?: number;
  worm?: boolean;
  writeProtected?: boolean;
  retentionUntil?: string | null;
}

interface CartridgeRecord {
  barcode: string;
  library: string | null;
  address: number | null;
  /** The storage slot it came from when loaded into a drive. */
  home: number | null;
  createdAt: string;
}

interface DriveState {
  barcode: string | null;
  medium: Medium | null;
  blockSize: number;
  open: boolean;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/;
const elemKey = (lib: string, address: number) => `${lib}!${String(address).padStart(5, '0')}`;

export class Libraries {
  readonly tapes: TapeStore;
  private readonly libs;
  private readonly carts;
  private readonly elems;
  private readonly drives = new Map<string, DriveState>();
  private queue: Promise<unknown> = Promise.resolve();
  private readonly listeners: Array<(e: CartridgeEvent) => void> = [];

  constructor(private readonly deps: TapeDeps) {
    this.tapes = new TapeStore(deps);
    const lib = deps.db.sublevel<string, unknown>('lib', { valueEncoding: 'json' });
    this.libs = lib.sublevel<string, LibraryRecord>('libs', { valueEncoding: 'json' });
    this.carts = lib.sublevel<string, CartridgeRecord>('carts', { valueEncoding: 'json' });
    this.elems = lib.sublevel<string, string>('elems', { valueEncoding: 'json' });
  }

  /** Calls `fn` for every cartridge unloaded from a drive, exported to a mail slot, or deleted. */
  onCartridgeEvent(fn: (e: CartridgeEvent) => void): void {
    this.listeners.push(fn);
  }

  private emit(e: CartridgeEvent): void {
    for (const fn of this.listeners) {
      try {
        fn(e);
      } catch (err) {
        console.error(`vtl: cartridge event listener failed: ${(err as Error).message}`);
      }
    }
  }

  // ---- libraries -------------------------------------------------------------------------------

  createLibrary(spec: LibrarySpec): Promise<LibraryRecord> {
    return this.locked(async () => {
      if (typeof spec?.name !== 'string' || !NAME.test(spec.name)) {
        throw new LibraryError('INVALID', `invalid library name ${JSON.stringify(spec?.name)}: 1 to 32 of A-Z a-z 0-9 _ -, starting with a letter or digit`);
      }
      const model = spec.model ?? DEFAULT_MODEL;
      const m = modelOf(model);
      checkGeometry({ model, drives: spec.drives, slots: spec.slots, mailslots: spec.mailslots });
      const [driveVendor, ...rest] = (spec.driveModel ?? DEFAULT_DRIVE).split(' ');
      if (!driveVendor || rest.length !== 1) throw new LibraryError('INVALID', `drive model must be "VENDOR PRODUCT", got ${JSON.stringify(spec.driveModel)}`);
      if (await this.libs.get(spec.name)) throw new LibraryError('EXISTS', `library ${spec.name} already exists`);
      const rec: LibraryRecord = {
        name: spec.name,
        model,
        vendor: m.vendor,
        product: m.product,
        driveVendor,
        driveProduct: rest[0],
        drives: spec.drives,
        slots: spec.slots,
        mailslots: spec.mailslots,
        createdAt: new Date().toISOString(),
      };
      await this.libs.put(rec.name, rec);
      return rec;
    });
  }

  async getLibrary(name: string): Promise<LibraryRecord> {
    const rec = typeof name === 'string' ? await this.libs.get(name) : undefined;
    if (!rec) throw new LibraryError('NOT_FOUND', `no library ${JSON.stringify(name)}`);
    return rec;
  }

  async listLibraries(): Promise<LibraryRecord[]> {
    return this.libs.values().all();
  }

  /** Removes an empty library. */
  deleteLibrary(name: string): Promise<void> {
    return this.locked(async () => {
      await this.getLibrary(name);
      for await (const _ of this.elems.keys({ gte: `${name}!`, lt: `${name}"`, limit: 1 })) {
        throw new LibraryError('IN_USE', `library ${name} still holds cartridges: export or move them first`);
      }
      await this.libs.del(name);
      for (const k of [...this.drives.keys()]) if (k.startsWith(`${name}/`)) this.drives.delete(k);
    });
  }

  /** READ ELEMENT STATUS: every drive, storage slot and mail slot with its cartridge. */
  async elements(name: string): Promise<ElementStatus[]> {
    const lib = await this.getLibrary(name);
    const held = new Map<number, string>();
    for await (const [k, v] of this.elems.iterator({ gte: `${name}!`, lt: `${name}"` })) held.set(Number(k.slice(name.length + 1)), v);
    return allElements(lib).map((e) => ({ ...e, barcode: held.get(e.address) ?? null }));
  }

  // ---- cartridges ------------------------------------------------------------------------------

  createCartridges(spec: CartridgeSpec): Promise<Cartridge[]> {
    return this.locked(async () => {
      const barcodes = this.barcodesOf(spec);
      const specs = barcodes.map((b) => this.mediumSpec(b, spec));
      const seen = new Set<string>();
      for (const b of barcodes) {
        if (seen.has(b)) throw new LibraryError('INVALID', `barcode ${b} is listed twice`);
        seen.add(b);
        if ((await this.carts.get(b)) || (await this.tapes.exists(b))) throw new LibraryError('EXISTS', `barcode ${b} is already in use (${await this.whereIs(b)}): choose another barcode`);
      }
      let slots: ElementRef[] = [];
      if (spec.library !== undefined) {
        const lib = await this.getLibrary(spec.library);
        const { free, reserved } = await this.freeSlots(lib.name);
        slots = free;
        if (slots.length < barcodes.length) {
          throw new LibraryError('NO_FREE_ELEMENT', `library ${lib.name} has ${slots.length} free slot${slots.length === 1 ? '' : 's'} for ${barcodes.length} cartridge${barcodes.length === 1 ? '' : 's'}${roomHint(lib.name, reserved)}`);
        }
      }
      const now = new Date().toISOString();
      const b = this.deps.db.batch();
      barcodes.forEach((code, i) => {
        const slot = slots[i];
        const rec: CartridgeRecord = { barcode: code, library: slot ? spec.library! : null, address: slot?.address ?? null, home: null, createdAt: now };
        this.tapes.createOps(b, code, TapeStore.configure(specs[i]));
        b.put(code, rec, { sublevel: this.carts });
        if (slot) b.put(elemKey(spec.library!, slot.address), code, { sublevel: this.elems });
      });
      await b.write();
      return Promise.all(barcodes.map((c) => this.getCartridge(c)));
    });
  }

  /**
   * Puts a medium that arrives whole (a replica from another region) into the vault, or
   * refreshes one that is there: its configuration, end of data and tape map, with the caller's
   * operations, in one batch. A barcode in use by another cartridge (not `replaceable`) is
   * refused; so is a cartridge that is in a drive.
   */
  adoptCartridge(barcode: string, img: MediumImage, replaceable: (existing: MediumConfig) => boolean, extra?: (b: SyncBatch) => void): Promise<Cartridge> {
    return this.locked(async () => {
      checkBarcode(barcode);
      const rec = await this.carts.get(barcode);
      if (rec || (await this.tapes.exists(barcode))) {
        if (!replaceable(await this.tapes.config(barcode))) throw new LibraryError('EXISTS', `barcode ${barcode} is already in use by a cartridge of this installation`);
        if (rec && (await this.locationOf(rec)).kind === 'drive') throw new LibraryError('IN_USE', `cartridge ${barcode} is in a drive: unload it first`);
      }
      const next: CartridgeRecord = rec ?? { barcode, library: null, address: null, home: null, createdAt: new Date().toISOString() };
      await this.tapes.putImage(barcode, img, (b) => {
        b.put(barcode, next, { sublevel: this.carts });
        extra?.(b);
      });
      return this.getCartridge(barcode);
    });
  }

  /** Changes a medium that is not in a drive, under the library lock (e.g. promoting a replica). */
  withIdleCartridge<T>(barcode: string, fn: () => Promise<T>): Promise<T> {
    return this.locked(async () => {
      const rec = await this.cartridge(barcode);
      if ((await this.locationOf(rec)).kind === 'drive') throw new LibraryError('IN_USE', `cartridge ${barcode} is in a drive: unload it first`);
      return fn();
    });
  }

  async getCartridge(barcode: string): Promise<Cartridge> {
    return this.describe(await this.cartridge(barcode));
  }

  /** A cartridge's full view from its record (its tape's state and where it is). */
  private async describe(rec: CartridgeRecord): Promise<Cartridge> {
    const barcode = rec.barcode;
    const info = await this.tapes.info(barcode);
    return {
      barcode,
      mediaType: info.mediaType,
      capacity: info.capacity,
      worm: info.worm,
      writeProtected: info.writeProtected,
      retentionUntil: info.retentionUntil,
      state: stateOf(info),
      location: await this.locationOf(rec),
      logicalBytes: info.logicalBytes,
      files: info.files,
      createdAt: rec.createdAt,
    };
  }

  /** Cartridges in barcode order; `barcode` picks by barcode before anything else is read. */
  async listCartridges(filter: { library?: string; barcode?: (barcode: string) => boolean } = {}): Promise<Cartridge[]> {
    const out: Cartridge[] = [];
    for (const rec of await this.cartridgeRecords(filter)) out.push(await this.describe(rec));
    return out;
  }

  /**
   * The barcodes that pass `filter`, in barcode order, from the cartridge records alone (one
   * key-ordered scan, no tape read): a page of a big list then reads only its own cartridges.
   */
  async listBarcodes(filter: { library?: string; barcode?: (barcode: string) => boolean } = {}): Promise<string[]> {
    return (await this.cartridgeRecords(filter)).map((r) => r.barcode);
  }

  private async cartridgeRecords(filter: { library?: string; barcode?: (barcode: string) => boolean }): Promise<CartridgeRecord[]> {
    const out: CartridgeRecord[] = [];
    for await (const rec of this.carts.values()) {
      if ((filter.library === undefined || rec.library === filter.library) && (filter.barcode === undefined || filter.barcode(rec.barcode))) out.push(rec);
    }
    return out;
  }

  /**
   * Changes write protect or retention; not while a drive session has the cartridge open (a
   * cartridge's tab cannot move in a drive, and a backup should not fail halfway through).
   */
  updateCartridge(barcode: string, flags: { writeProtected?: boolean; retentionUntil?: string | null }): Promise<Cartridge> {
    return this.locked(async () => {
      const rec = await this.cartridge(barcode);
      const drive = rec.library && rec.address !== null ? this.driveAt(rec.library, rec.address) : undefined;
      if (drive?.open) {
        throw new LibraryError('IN_USE', `cartridge ${barcode} is in use in a drive with an open session: change its write protect or retention once the session ends`);
      }
      try {
        await this.tapes.setFlags(barcode, flags);
      } catch (err) {
        throw new LibraryError('INVALID', (err as Error).message);
      }
      return this.getCartridge(barcode);
    });
  }

  /**
   * Erases the whole cartridge (its data becomes garbage) and clears a retention date that has
   * passed; not while a session has it open.
   */
  eraseCartridge(barcode: string): Promise<Cartridge> {
    return this.locked(async () => {
      const rec = await this.cartridge(barcode);
      const drive = rec.library && rec.address !== null ? this.driveAt(rec.library, rec.address) : undefined;
      let r: TapeResult;
      if (drive?.medium) {
        if (drive.open) throw new LibraryError('REMOVAL_PREVENTED', `cartridge ${barcode} is in use in a drive with an open session`);
        r = await drive.medium.eraseAll();
      } else {
        r = await this.tapes.erase(barcode);
      }
      if (!r.ok) throw new LibraryError('DATA_PROTECT', `cannot erase ${barcode}: ${r.sense?.message}`);
      const after = await this.getCartridge(barcode);
      if (after.retentionUntil === null || Date.parse(after.retentionUntil) > Date.now()) return after;
      // Blank again, as the expire job leaves it: a date that has passed protects nothing now,
      // and left in place it would read as a policy for the next backup.
      await this.tapes.setFlags(barcode, { retentionUntil: null });
      return this.getCartridge(barcode);
    });
  }

  /** Removes a cartridge that is not in a drive; its data becomes garbage. */
  deleteCartridge(barcode: string): Promise<void> {
    return this.locked(async () => {
      const rec = await this.cartridge(barcode);
      if ((await this.locationOf(rec)).kind === 'drive') {
        throw new LibraryError('IN_USE', `cartridge ${barcode} is in a drive: unload it first`);
      }
      try {
        await this.tapes.delete(barcode, (b) => {
          b.del(barcode, { sublevel: this.carts });
          if (rec.library && rec.address !== null) b.del(elemKey(rec.library, rec.address), { sublevel: this.elems });
        });
      } catch (err) {
        throw new LibraryError('DATA_PROTECT', (err as Error).message);
      }
      this.emit({ kind: 'deleted', barcode, library: rec.library });
    });
  }

  // ---- movement -----------------------------------------------------------------------------------

  /** MOVE MEDIUM between two element addresses of a library. */
  move(library: string, from: number, to: number): Promise<void> {
    return this.locked(async () => {
      const lib = await this.getLibrary(library);
      await this.moveIn(lib, elementAt(lib, from), elementAt(lib, to));
    });
  }

  /** Loads a cartridge of this library into drive `drive` (0-based). */
  load(library: string, drive: number, barcode: string): Promise<void> {
    return this.locked(async () => {
      const lib = await this.getLibrary(library);
      const rec = await this.cartridge(barcode);
      if (rec.library !== lib.name || rec.address === null) {
        throw new LibraryError('SOURCE_EMPTY', `cartridge ${barcode} is not in library ${lib.name}`);
      }
      await this.moveIn(lib, elementAt(lib, rec.address), elementOf(lib, 'drive', drive));
    });
  }

  /** Unloads drive `drive` back to the slot its cartridge came from (or the first free one). */
  unload(library: string, drive: number): Promise<void> {
    return this.locked(async () => {
      const lib = await this.getLibrary(library);
      const d = elementOf(lib, 'drive', drive);
      const code = await this.elems.get(elemKey(lib.name, d.address));
      if (!code) throw new LibraryError('SOURCE_EMPTY', `drive ${drive} of ${lib.name} is empty`);
      const rec = await this.cartridge(code);
      const home = rec.home !== null && !(await this.elems.get(elemKey(lib.name, rec.home))) ? elementAt(lib, rec.home) : await this.freeElement(lib, 'slot');
      await this.moveIn(lib, d, home);
    });
  }

  /** Moves a cartridge from a mail slot into a free storage slot (all of them when no barcode). */
  importCartridges(library: string, barcode?: string): Promise<string[]> {
    return this.locked(async () => {
      const lib = await this.getLibrary(library);
      const mail = (await this.elements(lib.name)).filter((e) => e.type === 'mailslot' && e.barcode && (barcode === undefined || e.barcode === barcode));
      if (barcode !== undefined && mail.length === 0) throw new LibraryError('SOURCE_EMPTY', `cartridge ${barcode} is not in a mail slot of ${lib.name}`);
      const moved: string[] = [];
      for (const e of mail) {
        await this.moveIn(lib, e, await this.freeElement(lib, 'slot'));
        moved.push(e.barcode!);
      }
      return moved;
    });
  }

  /** Moves a cartridge (from a slot, or a drive without an open session) into a free mail slot. */
  exportCartridge(library: string, barcode: string): Promise<void> {
    return this.locked(async () => {
      const lib = await this.getLibrary(library);
      const rec = await this.cartridge(barcode);
      if (rec.library !== lib.name || rec.address === null) throw new LibraryError('SOURCE_EMPTY', `cartridge ${barcode} is not in library ${lib.name}`);
      const src = elementAt(lib, rec.address);
      if (src.type === 'mailslot') return;
      await this.moveIn(lib, src, await this.freeElement(lib, 'mailslot'));
    });
  }

  /** The operator takes a cartridge out of a mail slot: it goes to the vault. */
  toVault(barcode: string): Promise<void> {
    return this.locked(async () => {
      const rec = await this.cartridge(barcode);
      if (rec.library === null) return;
      const lib = await this.getLibrary(rec.library);
      if (elementAt(lib, rec.address!).type !== 'mailslot') {
        throw new LibraryError('INVALID', `cartridge ${barcode} must be exported to a mail slot before it leaves ${lib.name}`);
      }
      await this.place(rec, null, null);
    });
  }

  /** The operator puts a cartridge from the vault into a free mail slot of a library. */
  fromVault(library: string, barcode: string): Promise<void> {
    return this.locked(async () => {
      const lib = await this.getLibrary(library);
      const rec = await this.cartridge(barcode);
      if (rec.library !== null) throw new LibraryError('INVALID', `cartridge ${barcode} is in library ${rec.library}, not in the vault`);
      const mail = await this.freeElement(lib, 'mailslot');
      await this.place(rec, lib.name, mail.address);
    });
  }

  // ---- drives ------------------------------------------------------------------------------------

  /** A drive's session: the client side of rmt and HTTP tape streams. */
  async drive(library: string, index: number): Promise<Drive> {
    const lib = await this.getLibrary(library);
    const e = elementOf(lib, 'drive', index);
    return new Drive(this, lib.name, index, e.address);
  }

  /** @internal */
  async driveState(library: string, address: number): Promise<DriveState> {
    const key = `${library}/${address}`;
    let s = this.drives.get(key);
    if (!s) {
      s = { barcode: (await this.elems.get(elemKey(library, address))) ?? null, medium: null, blockSize: 0, open: false };
      this.drives.set(key, s);
    }
    return s;
  }

  /** @internal Opens a session on a loaded drive, mounting its medium if needed. */
  openSession(library: string, address: number, index: number): Promise<Medium> {
    return this.locked(async () => {
      const s = await this.driveState(library, address);
      if (!s.barcode) throw new LibraryError('DRIVE_EMPTY', `drive ${index} of ${library} is empty`);
      if (s.open) throw new LibraryError('IN_USE', `drive ${index} of ${library} already has an open session`);
      s.medium ??= await this.tapes.mount(s.barcode);
      s.medium.setBlockSize(s.blockSize);
      s.open = true;
      return s.medium;
    });
  }

  /** @internal Closes a session: a sync point. */
  closeSession(library: string, address: number, rewind: boolean): Promise<void> {
    return this.locked(async () => {
      const s = await this.driveState(library, address);
      if (!s.open) return;
      s.open = false;
      if (s.medium) {
        const r = rewind ? await s.medium.rewind() : await s.medium.writeFilemarks(0);
        if (!r.ok && r.sense?.key !== 'NOT READY') throw new Error(`closing drive session: ${r.sense?.message}`);
      }
    });
  }

  /**
   * Unloads every medium (sync points); for shutdown. A drive whose session is still open here
   * was not finished by its client (an upload the end of the grace period cut off): what it
   * wrote after the last sync point is dropped first, as a crash would, not synced by the unload.
   */
  close(): Promise<void> {
    return this.locked(async () => {
      for (const s of this.drives.values()) {
        if (s.medium && s.open) await s.medium.discardUnsynced();
        if (s.medium) await s.medium.unload();
        s.medium = null;
        s.open = false;
      }
    });
  }

  // ---- internals ---------------------------------------------------------------------------------

  private locked<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async cartridge(barcode: string): Promise<CartridgeRecord> {
    checkBarcode(barcode);
    const rec = await this.carts.get(barcode);
    if (!rec) throw new LibraryError('NOT_FOUND', `no cartridge ${barcode}`);
    return rec;
  }

  private driveAt(library: string, address: number): DriveState | undefined {
    return this.drives.get(`${library}/${address}`);
  }

  /** Where a barcode in use is, in words (a medium may exist without a cartridge record: a replica). */
  private async whereIs(barcode: string): Promise<string> {
    const rec = await this.carts.get(barcode);
    if (!rec) return 'by a medium of this installation, not in any library';
    const l = await this.locationOf(rec);
    return l.kind === 'vault' ? 'in the vault' : `in ${l.kind === 'mailslot' ? 'mail slot' : l.kind} ${l.index} of ${l.library}`;
  }

  private async locationOf(rec: CartridgeRecord): Promise<Location> {
    if (rec.library === null || rec.address === null) return { kind: 'vault' };
    const lib = await this.getLibrary(rec.library);
    const e = elementAt(lib, rec.address);
    return { kind: e.type, library: rec.library, address: e.address, index: e.index };
  }

  /**
   * Empty storage slots that new, imported and homeless cartridges may take: not the home slot
   * of a cartridge in a drive, which it goes back to at unload (taking it would leave that
   * cartridge nowhere to go). `reserved` counts those. An explicit move may still use them.
   */
  private async freeSlots(name: string): Promise<{ free: ElementStatus[]; reserved: number }> {
    const elems = await this.elements(name);
    const homes = new Set<number>();
    for (const e of elems) {
      if (e.type !== 'drive' || e.barcode === null) continue;
      const home = (await this.carts.get(e.barcode))?.home;
      if (home !== null && home !== undefined) homes.add(home);
    }
    const empty = elems.filter((e) => e.type === 'slot' && e.barcode === null);
    const free = empty.filter((e) => !homes.has(e.address));
    return { free, reserved: empty.length - free.length };
  }

  private async freeElement(lib: LibraryRecord, type: 'slot' | 'mailslot'): Promise<ElementRef> {
    if (type === 'mailslot') {
      const mail = (await this.elements(lib.name)).find((e) => e.type === type && e.barcode === null);
      if (!mail) throw new LibraryError('NO_FREE_ELEMENT', `library ${lib.name} has no free mail slot: take the cartridges in its mail slots to the vault first (vtl library export ${lib.name} BARCODE --to-vault)`);
      return mail;
    }
    const { free, reserved } = await this.freeSlots(lib.name);
    if (free.length === 0) throw new LibraryError('NO_FREE_ELEMENT', `library ${lib.name} has no free storage slot${roomHint(lib.name, reserved)}`);
    return free[0];
  }

  /** The changer's move, with its checks; unloads or mounts media on drive elements. */
  private async moveIn(lib: LibraryRecord, src: ElementRef, dst: ElementRef): Promise<void> {
    const code = await this.elems.get(elemKey(lib.name, src.address));
    if (!code) throw new LibraryError('SOURCE_EMPTY', `element ${src.address} (${src.type} ${src.index}) of ${lib.name} is empty`);
    if (src.address === dst.address) return;
    const there = await this.elems.get(elemKey(lib.name, dst.address));
    if (there) throw new LibraryError('DESTINATION_FULL', `element ${dst.address} (${dst.type} ${dst.index}) of ${lib.name} holds ${there}${dst.type === 'drive' ? ': unload it first' : ': move it elsewhere first, or choose an empty element'}`);
    const rec = await this.cartridge(code);
    if (src.type === 'drive') {
      const s = await this.driveState(lib.name, src.address);
      if (s.open) throw new LibraryError('REMOVAL_PREVENTED', `cartridge ${code} is in drive ${src.index} of ${lib.name} with an open session`);
      if (s.medium) await s.medium.unload(); // a sync point
      s.medium = null;
      s.barcode = null;
    }
    if (dst.type === 'drive') {
      const s = await this.driveState(lib.name, dst.address);
      s.medium = await this.tapes.mount(code).catch((err: unknown) => {
        if (err instanceof MediumInUseError) throw new LibraryError('IN_USE', `cartridge ${code} is in use (an image transfer or another drive holds it)`);
        throw err;
      });
      s.medium.setBlockSize(s.blockSize);
      s.barcode = code;
      if (src.type === 'slot') rec.home = src.address;
    }
    await this.place(rec, lib.name, dst.address);
    if (src.type === 'drive') this.emit({ kind: 'unloaded', barcode: code, library: lib.name });
    if (dst.type === 'mailslot') this.emit({ kind: 'exported', barcode: code, library: lib.name });
  }

  /** Records a cartridge's new place (null: the vault) and the element index in one batch. */
  private async place(rec: CartridgeRecord, library: string | null, address: number | null): Promise<void> {
    const b = this.deps.db.batch();
    if (rec.library !== null && rec.address !== null) b.del(elemKey(rec.library, rec.address), { sublevel: this.elems });
    if (library !== null && address !== null) b.put(elemKey(library, address), rec.barcode, { sublevel: this.elems });
    const next: CartridgeRecord = { ...rec, library, address, home: library === null ? null : rec.home };
    b.put(rec.barcode, next, { sublevel: this.carts });
    await b.write();
  }

  private barcodesOf(spec: CartridgeSpec): string[] {
    if (spec.barcodes !== undefined) {
      if (!Array.isArray(spec.barcodes) || spec.barcodes.length === 0) throw new LibraryError('INVALID', 'barcodes must be a non-empty list');
      return spec.barcodes.map(checkBarcode);
    }
    if (spec.first !== undefined) return barcodeRangeFrom(spec.first, spec.count ?? 1);
    if (spec.prefix !== undefined) {
      if (spec.mediaType === undefined) throw new LibraryError('INVALID', 'a barcode range by prefix needs a mediaType');
      return barcodeRange(spec.prefix, spec.start ?? 1, spec.count ?? 1, mediaSuffix(spec.mediaType, spec.worm ?? false));
    }
    throw new LibraryError('INVALID', 'give barcodes, a prefix with start and count, or a first barcode with count');
  }

  /** Media type and WORM from the barcode suffix and/or the request; they must agree. */
  private mediumSpec(barcode: string, spec: CartridgeSpec): MediumSpec {
    const fromSuffix = suffixMedia(barcode);
    const mediaType = spec.mediaType ?? fromSuffix?.mediaType;
    if (!mediaType) throw new LibraryError('INVALID', `cannot tell the media type of ${barcode} (no LTO suffix such as L7): give the media type (--media, or mediaType in the API)`);
    if (fromSuffix && spec.mediaType && fromSuffix.mediaType !== spec.mediaType) {
      throw new LibraryError('INVALID', `barcode ${barcode} says ${fromSuffix.mediaType} but mediaType is ${spec.mediaType}`);
    }
    if (fromSuffix && spec.worm !== undefined && fromSuffix.worm !== spec.worm) {
      const kind = (worm: boolean) => `${worm ? 'a WORM' : 'a non-WORM'} ${fromSuffix.mediaType}`;
      throw new LibraryError('INVALID', `barcode ${barcode} ends in ${barcode.slice(-2)}, ${kind(fromSuffix.worm)} suffix, but worm is ${spec.worm}: ${kind(spec.worm)} barcode ends in ${mediaSuffix(fromSuffix.mediaType, spec.worm)}`);
    }
    const out: MediumSpec = {
      mediaType,
      capacity: spec.capacity,
      worm: spec.worm ?? fromSuffix?.worm ?? false,
      writeProtected: spec.writeProtected,
      retentionUntil: spec.retentionUntil,
    };
    try {
      TapeStore.configure(out);
    } catch (err) {
      throw new LibraryError('INVALID', (err as Error).message);
    }
    return out;
  }
}

function stateOf(info: MediumInfo): CartridgeState {
  if (info.logicalBytes === 0 && info.objects === 0) return 'scratch';
  if (info.retentionUntil !== null && Date.now() >= Date.parse(info.retentionUntil)) return 'expired';
  return info.beyondEarlyWarning ? 'full' : 'in use';
}

export interface DriveStatus {
  library: string;
  index: number;
  address: number;
  barcode: string | null;
  open: boolean;
  blockSize: number;
  position: TapePosition | null;
}

/** A drive of a library: the loaded cartridge, its session and block-size mode. */
export class Drive {
  constructor(
    private readonly libs: Libraries,
    readonly library: string,
    readonly index: number,
    readonly address: number,
  ) {}

  /** Opens the session (one at a time): the medium, positioned where the last session left it. */
  open(): Promise<Medium> {
    return this.libs.openSession(this.library, this.address, this.index);
  }

  /** Ends the session: a sync point; `rewind` for rewind-on-close devices. */
  close(opts: { rewind?: boolean } = {}): Promise<void> {
    return this.libs.closeSession(this.library, this.address, opts.rewind ?? false);
  }

  /** Block-size mode: 0 = variable, else fixed blocks of this size. */
  async setBlockSize(size: number): Promise<TapeResult> {
    const s = await this.libs.driveState(this.library, this.address);
    if (s.medium) {
      const r = s.medium.setBlockSize(size);
      if (!r.ok) return r;
    } else if (!Number.isSafeInteger(size) || size < 0 || size > 2 * 1024 * 1024) {
      throw new LibraryError('INVALID', `block size must be 0 (variable) or 1..${2 * 1024 * 1024}, got ${size}`);
    }
    s.blockSize = size;
    return tapeResult();
  }

  async status(): Promise<DriveStatus> {
    const s = await this.libs.driveState(this.library, this.address);
    return {
      library: this.library,
      index: this.index,
      address: this.address,
      barcode: s.barcode,
      open: s.open,
      blockSize: s.blockSize,
      position: s.medium?.isLoaded ? await s.medium.readPosition() : null,
    };
  }
}

/** What to do about a full library, naming the slots kept for cartridges in drives. */
function roomHint(library: string, reserved: number): string {
  const kept = reserved > 0 ? ` (${reserved} more ${reserved === 1 ? 'is the home slot' : 'are the home slots'} of cartridges in drives)` : '';
  return `${kept}: export cartridges to make room (vtl library export ${library} BARCODE)`;
}
