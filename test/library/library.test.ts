/**
 * Libraries, cartridges and the changer: element addressing, barcodes, moves and their errors,
 * import/export through mail slots to the vault, drive sessions, persistence across reopen.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Libraries, LibraryError, barcodeRange, barcodeRangeFrom, suffixMedia } from '../../src/library/index.js';
import { openMemoryDataStore } from '../helpers/memory-streams.js';

type Store = Awaited<ReturnType<typeof openMemoryDataStore>>;
let ds: Store;
let libs: Libraries;
let n = 0;
const name = () => `lib${++n}`;

beforeAll(async () => {
  ds = await openMemoryDataStore();
  libs = new Libraries({ db: ds.db, streams: ds.streams });
});
afterAll(async () => {
  await libs.close();
  await ds.destroy();
});

async function rejectsWith(p: Promise<unknown>, code: string, message?: RegExp) {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${code}`).toBeInstanceOf(LibraryError);
  expect((err as LibraryError).code).toBe(code);
  if (message) expect((err as LibraryError).message).toMatch(message);
  return err as LibraryError;
}

describe('libraries and elements', () => {
  test('IBM default: model, drive identity and mtx-style element numbering', async () => {
    const lib = await libs.createLibrary({ name: name(), drives: 2, slots: 4, mailslots: 2 });
    expect(lib).toMatchObject({ vendor: 'IBM', product: '03584L32', driveVendor: 'IBM', driveProduct: 'ULT3580-TD7' });
    const els = await libs.elements(lib.name);
    expect(els.map((e) => [e.type, e.address, e.mtx])).toEqual([
      ['drive', 257, 0],
      ['drive', 258, 1],
      ['slot', 1025, 1],
      ['slot', 1026, 2],
      ['slot', 1027, 3],
      ['slot', 1028, 4],
      ['mailslot', 769, 5],
      ['mailslot', 770, 6],
    ]);
  });

  test('STK L700 addressing', async () => {
    const lib = await libs.createLibrary({ name: name(), drives: 1, slots: 2, mailslots: 1, model: 'STK L700' });
    expect(lib).toMatchObject({ vendor: 'STK', product: 'L700' });
    expect((await libs.elements(lib.name)).map((e) => e.address)).toEqual([500, 1000, 1001, 10]);
  });

  test.each([
    [{ name: 'bad name!', drives: 1, slots: 1, mailslots: 0 }, /invalid library name/],
    [{ name: 'x', drives: 0, slots: 1, mailslots: 0 }, /drives must be/],
    [{ name: 'x', drives: 1, slots: 1.5, mailslots: 0 }, /slots must be/],
    [{ name: 'x', drives: 1, slots: 1, mailslots: 999 }, /mailslots must be/],
    [{ name: 'x', drives: 1, slots: 1, mailslots: 0, model: 'ACME 1' }, /unknown library model/],
  ])('invalid library %# is rejected', async (spec, msg) => {
    await rejectsWith(libs.createLibrary(spec), 'INVALID', msg);
  });

  test('duplicate library names are rejected', async () => {
    const lib = await libs.createLibrary({ name: name(), drives: 1, slots: 1, mailslots: 0 });
    await rejectsWith(libs.createLibrary({ name: lib.name, drives: 1, slots: 1, mailslots: 0 }), 'EXISTS');
  });
});

describe('barcodes', () => {
  test('media type and WORM from the suffix', () => {
    expect(suffixMedia('VT0001L7')).toEqual({ mediaType: 'LTO-7', worm: false });
    expect(suffixMedia('VT0001LZ')).toEqual({ mediaType: 'LTO-9', worm: true });
    expect(suffixMedia('TAPE01')).toBeUndefined();
  });

  test('ranges', () => {
    expect(barcodeRange('VT', 1, 3, 'L7')).toEqual(['VT0001L7', 'VT0002L7', 'VT0003L7']);
    expect(barcodeRangeFrom('VT0009L8', 2)).toEqual(['VT0009L8', 'VT0010L8']);
    expect(() => barcodeRange('VT', 9999, 2, 'L7')).toThrow(/does not fit/);
    expect(() => barcodeRangeFrom('VT9999L8', 2)).toThrow(/overflows/);
  });

  test.each([
    [{ barcodes: ['vt0001l7'] }, 'INVALID', /invalid barcode/],
    [{ barcodes: ['ABCDEFGHIJKLMNOPQ'] }, 'INVALID', /invalid barcode/],
    [{ barcodes: ['TAPE01'] }, 'INVALID', /cannot tell the media type/],
    [{ barcodes: ['VT0001L7'], mediaType: 'LTO-8' as const }, 'INVALID', /says LTO-7/],
    [{ barcodes: ['VT0001L7', 'VT0001L7'] }, 'INVALID', /listed twice/],
    [{ barcodes: ['C00001'], mediaType: 'custom' as const }, 'INVALID', /custom media type needs a capacity/],
    [{ barcodes: ['R00001L7'], retentionUntil: 'soon' }, 'INVALID', /invalid retention date/],
    [{ prefix: 'VT', start: 1, count: 2 }, 'INVALID', /needs a mediaType/],
  ])('invalid cartridge request %# is rejected', async (spec, code, msg) => {
    await rejectsWith(libs.createCartridges(spec), code, msg);
  });

  test('barcodes are unique across libraries and the vault', async () => {
    const a = await libs.createLibrary({ name: name(), drives: 1, slots: 2, mailslots: 0 });
    const b = await libs.createLibrary({ name: name(), drives: 1, slots: 2, mailslots: 0 });
    await libs.createCartridges({ library: a.name, barcodes: ['UNQ001L7'] });
    await rejectsWith(libs.createCartridges({ library: b.name, barcodes: ['UNQ001L7'] }), 'EXISTS', new RegExp(`barcode UNQ001L7 is already in use \\(in slot 0 of ${a.name}\\): choose another barcode`));
    await rejectsWith(libs.createCartridges({ barcodes: ['UNQ001L7'] }), 'EXISTS');
    // All or nothing: one taken barcode in a batch creates none of it.
    await rejectsWith(libs.createCartridges({ library: b.name, barcodes: ['UNQ002L7', 'UNQ001L7'] }), 'EXISTS');
    await rejectsWith(libs.getCartridge('UNQ002L7'), 'NOT_FOUND');
  });
});

describe('cartridges and the changer', () => {
  test('a range lands in free slots with derived state; WORM from the flag', async () => {
    const lib = await libs.createLibrary({ name: name(), drives: 1, slots: 4, mailslots: 1 });
    const made = await libs.createCartridges({ library: lib.name, prefix: 'RG', start: 1, count: 3, mediaType: 'LTO-8', worm: true });
    expect(made.map((c) => c.barcode)).toEqual(['RG0001LY', 'RG0002LY', 'RG0003LY']);
    expect(made[0]).toMatchObject({ mediaType: 'LTO-8', capacity: 12e12, worm: true, state: 'scratch', location: { kind: 'slot', address: 1025, index: 0 } });
    await rejectsWith(libs.createCartridges({ library: lib.name, prefix: 'RH', start: 1, count: 2, mediaType: 'LTO-8' }), 'NO_FREE_ELEMENT');
    const vaulted = await libs.createCartridges({ barcodes: ['VAULT1L6'] });
    expect(vaulted[0].location).toEqual({ kind: 'vault' });
  });

  test('move errors: source empty, destination full, invalid element, open session', async () => {
    const lib = await libs.createLibrary({ name: name(), drives: 1, slots: 3, mailslots: 1 });
    await libs.createCartridges({ library: lib.name, barcodes: ['MV0001L7', 'MV0002L7'] });
    const cases: Array<[number, number, string]> = [
      [1027, 1026, 'SOURCE_EMPTY'],
      [1025, 1026, 'DESTINATION_FULL'],
      [1025, 9999, 'INVALID_ELEMENT'],
      [257, 1027, 'SOURCE_EMPTY'],
    ];
    for (const [from, to, code] of cases) {
      const err = await rejectsWith(libs.move(lib.name, from, to), code);
      if (code === 'DESTINATION_FULL') expect(err.sense).toEqual({ key: 'ILLEGAL REQUEST', asc: 0x3b, ascq: 0x0d });
    }
    await rejectsWith(libs.move(lib.name, 1025, 9999), 'INVALID_ELEMENT', /^no element at address 9999 in this library \(element addresses: drives 257, storage slots 1025\.\.1027, mail slots \d+\)$/);
    await libs.move(lib.name, 1025, 257); // into the drive
    const drive = await libs.drive(lib.name, 0);
    const m = await drive.open();
    await rejectsWith(libs.move(lib.name, 257, 1027), 'REMOVAL_PREVENTED');
    await rejectsWith(libs.unload(lib.name, 0), 'REMOVAL_PREVENTED');
    await rejectsWith(libs.move(lib.name, 1026, 257), 'DESTINATION_FULL', /holds .*: unload it first/);
    await rejectsWith(drive.open(), 'IN_USE');
    expect((await m.write(Buffer.alloc(1000, 1))).ok).toBe(true);
    await drive.close();
    await libs.unload(lib.name, 0); // back home to slot 1025
    const c = await libs.getCartridge('MV0001L7');
    expect(c).toMatchObject({ state: 'in use', logicalBytes: 1000, files: 1, location: { kind: 'slot', address: 1025 } });
    await rejectsWith((await libs.drive(lib.name, 0)).open(), 'DRIVE_EMPTY');
  });

  test('load and unload by barcode; the drive session keeps position and block size', async () => {
    const lib = await libs.createLibrary({ name: name(), drives: 2, slots: 2, mailslots: 0 });
    await libs.createCartridges({ library: lib.name, barcodes: ['LD0001L7'] });
    await libs.load(lib.name, 1, 'LD0001L7');
    const drive = await libs.drive(lib.name, 1);
    await drive.setBlockSize(512);
    let m = await drive.open();
    expect((await m.write(Buffer.alloc(2048, 7))).ok).toBe(true);
    await drive.close();
    m = await drive.open();
    expect(await drive.status()).toMatchObject({ barcode: 'LD0001L7', open: true, blockSize: 512, position: { lba: 4, eod: true } });
    await drive.close({ rewind: true });
    expect((await drive.status()).position).toMatchObject({ lba: 0 });
    // Drive to drive: refused while a session is open, a plain move otherwise.
    await drive.open();
    await rejectsWith(libs.load(lib.name, 0, 'LD0001L7'), 'REMOVAL_PREVENTED');
    await drive.close();
    await libs.load(lib.name, 0, 'LD0001L7');
    expect((await drive.status()).barcode).toBeNull();
    await libs.unload(lib.name, 0);
    expect((await libs.elements(lib.name)).find((e) => e.barcode === 'LD0001L7')).toMatchObject({ type: 'slot', address: 1025 });
  });

  test('the home slot of a loaded cartridge is kept for it: new cartridges go elsewhere, unload goes home', async () => {
    const lib = await libs.createLibrary({ name: name(), drives: 2, slots: 4, mailslots: 0 });
    await libs.createCartridges({ library: lib.name, barcodes: ['HM0001L7', 'HM0002L7'] });
    await libs.load(lib.name, 0, 'HM0001L7'); // its home is slot 0 (1025), empty now
    const made = await libs.createCartridges({ library: lib.name, barcodes: ['HM0003L7', 'HM0004L7'] });
    expect(made.map((c) => c.location)).toMatchObject([{ kind: 'slot', address: 1027 }, { kind: 'slot', address: 1028 }]);
    await libs.unload(lib.name, 0);
    expect((await libs.elements(lib.name)).find((e) => e.barcode === 'HM0001L7')).toMatchObject({ type: 'slot', address: 1025 });
    // a library full but for the home slots of loaded cartridges takes no more, saying why
    await libs.load(lib.name, 0, 'HM0001L7');
    await libs.load(lib.name, 1, 'HM0002L7');
    await rejectsWith(
      libs.createCartridges({ library: lib.name, barcodes: ['HM0005L7'] }),
      'NO_FREE_ELEMENT',
      /has 0 free slots for 1 cartridge \(2 more are the home slots of cartridges in drives\): export cartridges to make room \(vtl library export .* BARCODE\)/,
    );
    // an explicit move may fill a home slot; its cartridge then unloads to a free one
    await libs.unload(lib.name, 1);
    await libs.move(lib.name, 1026, 1025);
    await libs.unload(lib.name, 0);
    expect((await libs.elements(lib.name)).find((e) => e.barcode === 'HM0001L7')).toMatchObject({ type: 'slot', address: 1026 });
  });

  test('export to a mail slot, out to the vault, back in and import', async () => {
    const lib = await libs.createLibrary({ name: name(), drives: 1, slots: 2, mailslots: 1 });
    await libs.createCartridges({ library: lib.name, barcodes: ['EX0001L7', 'EX0002L7'] });
    await rejectsWith(libs.toVault('EX0001L7'), 'INVALID', /exported to a mail slot/);
    await libs.exportCartridge(lib.name, 'EX0001L7');
    expect((await libs.getCartridge('EX0001L7')).location).toMatchObject({ kind: 'mailslot', address: 769 });
    await rejectsWith(libs.exportCartridge(lib.name, 'EX0002L7'), 'NO_FREE_ELEMENT', /no free mail slot/);
    await libs.toVault('EX0001L7');
    expect((await libs.getCartridge('EX0001L7')).location).toEqual({ kind: 'vault' });
    await libs.fromVault(lib.name, 'EX0001L7');
    expect(await libs.importCartridges(lib.name)).toEqual(['EX0001L7']);
    expect((await libs.getCartridge('EX0001L7')).location).toMatchObject({ kind: 'slot', address: 1025 });
    await rejectsWith(libs.deleteLibrary(lib.name), 'IN_USE');
  });

  test('write protect, retention, WORM erase and delete through the library', async () => {
    const lib = await libs.createLibrary({ name: name(), drives: 1, slots: 3, mailslots: 0 });
    await libs.createCartridges({ library: lib.name, barcodes: ['WP0001L7', 'WM0001LX'] });
    await libs.updateCartridge('WP0001L7', { writeProtected: true });
    await libs.load(lib.name, 0, 'WP0001L7');
    const drive = await libs.drive(lib.name, 0);
    let m = await drive.open();
    expect((await m.write(Buffer.alloc(10))).sense).toMatchObject({ key: 'DATA PROTECT', asc: 0x27 });
    // neither write protect nor retention changes while a session has the cartridge open
    await rejectsWith(libs.updateCartridge('WP0001L7', { writeProtected: false }), 'IN_USE', /open session: change its write protect or retention once the session ends/);
    await rejectsWith(libs.updateCartridge('WP0001L7', { retentionUntil: new Date(Date.now() + 3_600_000).toISOString() }), 'IN_USE');
    await drive.close();
    await libs.unload(lib.name, 0);

    const past = '2001-01-01T00:00:00.000Z';
    await libs.load(lib.name, 0, 'WM0001LX');
    m = await drive.open();
    await m.write(Buffer.alloc(10, 1));
    await drive.close({ rewind: true });
    await libs.unload(lib.name, 0);
    expect((await libs.getCartridge('WM0001LX')).worm).toBe(true);
    await rejectsWith(libs.eraseCartridge('WM0001LX'), 'DATA_PROTECT', /WORM/);
    await rejectsWith(libs.deleteCartridge('WM0001LX'), 'DATA_PROTECT', /WORM and holds data with no retention date/);
    // a WORM cartridge never written holds nothing: one made by mistake can go
    await libs.createCartridges({ library: lib.name, barcodes: ['WM0002LX'] });
    await libs.deleteCartridge('WM0002LX');
    await rejectsWith(libs.getCartridge('WM0002LX'), 'NOT_FOUND');
    await rejectsWith(libs.createCartridges({ library: lib.name, barcodes: ['WM0003L7'], worm: true }), 'INVALID', /ends in L7, a non-WORM LTO-7 suffix, but worm is true: a WORM LTO-7 barcode ends in LX/);
    // no date on WORM data is forever: any date (past or ahead) would shorten it
    const ahead = new Date(Date.now() + 86_400_000).toISOString();
    for (const d of [past, ahead]) await rejectsWith(libs.updateCartridge('WM0001LX', { retentionUntil: d }), 'INVALID', /kept forever, and a retention date would shorten that/);
    expect((await libs.getCartridge('WM0001LX')).retentionUntil).toBeNull();
    // a WORM cartridge with a date may go back to forever, not to an earlier date
    await libs.createCartridges({ library: lib.name, barcodes: ['WM0004LX'], retentionUntil: ahead });
    await rejectsWith(libs.updateCartridge('WM0004LX', { retentionUntil: past }), 'INVALID', /extended but not shortened/);
    expect((await libs.updateCartridge('WM0004LX', { retentionUntil: null })).retentionUntil).toBeNull();
    // write protect keeps a cartridge holding data from being deleted, until it is cleared
    await libs.updateCartridge('WM0004LX', { writeProtected: true });
    await libs.deleteCartridge('WM0004LX'); // blank: nothing to protect
    await libs.createCartridges({ library: lib.name, barcodes: ['WP0002L7'] });
    await libs.load(lib.name, 0, 'WP0002L7');
    m = await drive.open();
    await m.write(Buffer.alloc(10, 2));
    await drive.close({ rewind: true });
    await libs.unload(lib.name, 0);
    await libs.updateCartridge('WP0002L7', { writeProtected: true });
    await rejectsWith(libs.deleteCartridge('WP0002L7'), 'DATA_PROTECT', /write protected and holds data: clear write protect first \(vtl cartridge protect WP0002L7 --off\)/);
    await libs.updateCartridge('WP0002L7', { writeProtected: false });
    await libs.deleteCartridge('WP0002L7');
    // a WORM cartridge whose date has passed (created so here) may be erased, and then go
    await libs.createCartridges({ library: lib.name, barcodes: ['WM0005LX'], retentionUntil: past });
    await libs.load(lib.name, 0, 'WM0005LX');
    m = await drive.open();
    await m.write(Buffer.alloc(10, 1));
    await drive.close({ rewind: true });
    await libs.unload(lib.name, 0);
    expect((await libs.getCartridge('WM0005LX')).state).toBe('expired');
    const erased = await libs.eraseCartridge('WM0005LX');
    expect(erased).toMatchObject({ state: 'scratch', logicalBytes: 0 });
    await libs.deleteCartridge('WM0005LX');
    await rejectsWith(libs.getCartridge('WM0005LX'), 'NOT_FOUND');
    expect((await libs.elements(lib.name)).filter((e) => e.barcode).map((e) => e.barcode)).toEqual(['WP0001L7', 'WM0001LX']);
  });

  test('a full cartridge reports state full', async () => {
    const lib = await libs.createLibrary({ name: name(), drives: 1, slots: 1, mailslots: 0 });
    await libs.createCartridges({ library: lib.name, barcodes: ['SMALL1'], mediaType: 'custom', capacity: 4000 });
    await libs.load(lib.name, 0, 'SMALL1');
    const drive = await libs.drive(lib.name, 0);
    const m = await drive.open();
    expect((await m.write(Buffer.alloc(3500))).earlyWarning).toBe(true);
    await drive.close();
    expect((await libs.getCartridge('SMALL1')).state).toBe('full');
  });
});

test('libraries, locations and tape contents survive a reopen of the store', async () => {
  const store = await openMemoryDataStore();
  let l = new Libraries({ db: store.db, streams: store.streams });
  await l.createLibrary({ name: 'persist', drives: 1, slots: 2, mailslots: 1 });
  await l.createCartridges({ library: 'persist', first: 'PS0001L9', count: 2 });
  await l.load('persist', 0, 'PS0002L9');
  const d = await l.drive('persist', 0);
  const m = await d.open();
  await m.write(Buffer.from('hello tape'));
  await m.writeFilemarks(1);
  await d.close();
  await l.close();
  await store.close();

  const again = await openMemoryDataStore(store.dir);
  l = new Libraries({ db: again.db, streams: again.streams });
  expect((await l.listLibraries()).map((x) => x.name)).toEqual(['persist']);
  expect(await l.getCartridge('PS0002L9')).toMatchObject({ location: { kind: 'drive', address: 257 }, files: 1, logicalBytes: 10 });
  const d2 = await l.drive('persist', 0);
  expect((await d2.status()).barcode).toBe('PS0002L9');
  const m2 = await d2.open();
  expect((await m2.read(100)).data.toString()).toBe('hello tape');
  await d2.close();
  await rejectsWith(l.deleteCartridge('PS0002L9'), 'IN_USE');
  await l.unload('persist', 0);
  await l.close();
  await again.destroy();
});
