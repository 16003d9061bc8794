/**
 * End of medium over rmt, as Linux st reports it (Documentation/scsi/st.rst): the write that
 * enters the early-warning zone returns its count, the next fails with ENOSPC and is not
 * stored, the one after is written (a trailer), and ENOSPC and counts alternate until the
 * physical end, which gets ENOSPC. Filemarks are written in the zone and end the alternation;
 * S reports GMT_EOT past the early-warning point. The same through both bridges, and GNU tar -M
 * across two small cartridges (it changes volume at the ENOSPC, not at the physical end).
 */
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { GMT, MTGET_SIZE } from '../../../src/protocols/rmt/index.js';
import { randomBytes } from '../../helpers/data.js';
import { RawClient, describeEachBridge, err, missingTools, ok, runOk, useHarness, type Harness, type Reply } from './harness.js';

let h: Harness;
const clients: RawClient[] = [];

useHarness(2, clients, (started) => (h = started));

const KiB = 1024;
const MiB = 1024 * KiB;
const REC = 64 * KiB;
const LINUX = { weof: 5, rewind: 6, setblk: 20 };
const ENOSPC = 28;

async function direct(): Promise<RawClient> {
  const c = await RawClient.connect(h.port);
  clients.push(c);
  return c;
}

/** Opens a device, retrying while a session that just ended is still closing. */
async function openWhenFree(device: string, flags = '2 O_RDWR'): Promise<RawClient> {
  for (let i = 0; ; i++) {
    const c = await direct();
    const r = await c.open(device, flags);
    if (r.ok) return c;
    c.destroy();
    if (r.errno !== 16 || i > 100) throw new Error(`open ${device}: ${JSON.stringify(r)}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

/** The small cartridge each drive holds now (deleted when the next one is loaded). */
const small = new Map<number, string>();
let serial = 0;

/**
 * Loads a fresh custom cartridge of `capacity` bytes into `drive`; its early-warning zone is
 * the default for small media, a quarter of the capacity.
 */
async function smallCartridge(drive: number, capacity: number): Promise<string> {
  const barcode = `EW${String(++serial).padStart(4, '0')}`;
  await h.libs.unload('lib1', drive);
  const before = small.get(drive);
  if (before) await h.libs.deleteCartridge(before); // the library has few slots
  await h.libs.createCartridges({ library: 'lib1', barcodes: [barcode], mediaType: 'custom', capacity });
  await h.libs.load('lib1', drive, barcode);
  small.set(drive, barcode);
  return barcode;
}

async function gstat(c: RawClient): Promise<number> {
  return Number(ok(await c.status(), MTGET_SIZE).data!.readBigInt64LE(24));
}

/** A write reply, short: the count or `ENOSPC`. */
function shortly(r: Reply): number | 'ENOSPC' {
  if (r.ok) return r.value;
  expect(r.errno, r.message).toBe(ENOSPC);
  return 'ENOSPC';
}

describe('variable-size records on a 1 MiB cartridge (early-warning point at 768 KiB)', () => {
  test('st sequence: count into the zone, then ENOSPC and counts alternately, ENOSPC at the physical end; refused records are not on the tape', async () => {
    await smallCartridge(0, MiB);
    const c = await direct();
    ok(await c.open('/lib1/nst0'));
    const replies: (number | 'ENOSPC')[] = [];
    for (let i = 1; i <= 12; i++) replies.push(shortly(await c.write(randomBytes(REC, i))));
    // 12 records end exactly at the early-warning point: not past it yet.
    expect(replies).toEqual(Array(12).fill(REC));
    expect((await gstat(c)) & GMT.EOT).toBe(0);
    const zone: (number | 'ENOSPC')[] = [];
    for (let i = 13; i <= 23; i++) {
      zone.push(shortly(await c.write(randomBytes(REC, i))));
      if (i === 13) expect((await gstat(c)) & GMT.EOT).toBeTruthy(); // S does not end the alternation
    }
    expect(zone).toEqual([
      REC, // 13: enters the zone, finished and counted
      'ENOSPC', // 14: refused, not written
      REC, // 15: a trailer may be written
      'ENOSPC',
      REC, // 17
      'ENOSPC',
      REC, // 19: ends exactly at the physical end (1 MiB)
      'ENOSPC', // 20: refused
      'ENOSPC', // 21: tried, and the tape is full
      'ENOSPC', // 22: refused
      'ENOSPC', // 23: tried, full
    ]);
    ok(await c.close()); // the filemark after writing, at the physical end
    ok(await c.open('/lib1/nst0', '0 O_RDONLY'));
    ok(await c.ioctl(LINUX.rewind, 1));
    const kept = [...Array.from({ length: 13 }, (_, i) => i + 1), 15, 17, 19];
    for (const seed of kept) expect(ok(await c.read(REC), REC).data!.equals(randomBytes(REC, seed)), `record ${seed}`).toBe(true);
    ok(await c.read(REC), 0); // the close's filemark
    ok(await c.read(REC), 0); // end of data
    err(await c.read(REC), 5);
    ok(await c.close());
  });

  test('a filemark is written in the zone and ends the alternation; the next write is tried and counted', async () => {
    await smallCartridge(0, MiB);
    const c = await direct();
    ok(await c.open('/lib1/nst0'));
    for (let i = 1; i <= 13; i++) ok(await c.write(randomBytes(REC, i)), REC);
    ok(await c.ioctl(LINUX.weof, 1), 1); // in the zone: allowed
    ok(await c.write(randomBytes(REC, 14)), REC); // meets early warning again: counted
    err(await c.write(randomBytes(REC, 15)), ENOSPC, /early-warning/);
    ok(await c.ioctl(LINUX.weof, 2), 2);
    expect((await gstat(c)) & (GMT.EOT | GMT.EOD)).toBe(GMT.EOT | GMT.EOD);
    ok(await c.close()); // no filemark: the last operation was not a write
    ok(await c.open('/lib1/nst0', '0 O_RDONLY'));
    ok(await c.ioctl(LINUX.rewind, 1));
    for (let i = 1; i <= 13; i++) expect(ok(await c.read(REC), REC).data!.equals(randomBytes(REC, i))).toBe(true);
    ok(await c.read(REC), 0);
    expect(ok(await c.read(REC), REC).data!.equals(randomBytes(REC, 14))).toBe(true);
    ok(await c.read(REC), 0);
    ok(await c.read(REC), 0); // the second of the two filemarks
    ok(await c.read(REC), 0); // end of data: record 15 is not there
    err(await c.read(REC), 5);
    ok(await c.close());
  });
});

test('fixed-block mode: the same alternation; at the physical end a write returns the blocks that fit', async () => {
  await smallCartridge(0, MiB);
  const c = await direct();
  ok(await c.open('/lib1/nst0'));
  ok(await c.ioctl(LINUX.setblk, 512));
  const replies: (number | 'ENOSPC')[] = [];
  for (let i = 1; i <= 18; i++) replies.push(shortly(await c.write(randomBytes(REC, i))));
  expect(replies).toEqual([...Array(13).fill(REC), 'ENOSPC', REC, 'ENOSPC', REC, 'ENOSPC']);
  // 960 KiB written: 64 KiB of 128 fit.
  expect(shortly(await c.write(randomBytes(2 * REC, 19)))).toBe(REC);
  expect(shortly(await c.write(randomBytes(REC, 20)))).toBe('ENOSPC'); // refused
  expect(shortly(await c.write(randomBytes(REC, 21)))).toBe('ENOSPC'); // full
  ok(await c.close());
  ok(await c.open('/lib1/nst0', '0 O_RDONLY'));
  ok(await c.ioctl(LINUX.rewind, 1));
  const got = Buffer.concat(await readAll(c, REC));
  const want = Buffer.concat([...[...Array(13).keys(), 14, 16].map((i) => randomBytes(REC, i + 1)), randomBytes(2 * REC, 19).subarray(0, REC)]);
  expect(got.length).toBe(want.length);
  expect(got.equals(want)).toBe(true);
  ok(await c.ioctl(LINUX.setblk, 0)); // the drive keeps its block size: back to variable
  ok(await c.close());
});

/** Reads until a read returns 0 bytes (a filemark or end of data). */
async function readAll(c: RawClient, n: number): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (;;) {
    const r = ok(await c.read(n));
    if (r.value === 0) return out;
    out.push(Buffer.from(r.data!));
  }
}

describeEachBridge((kind) => {
  test('through the bridge: write-behind stops before the zone, and the client sees exactly the st sequence', async () => {
    // 24 MiB, zone 6 MiB: 288 records reach the early-warning point, 96 more fit after it.
    await smallCartridge(1, 24 * MiB);
    const { client, bridge } = RawClient.bridged(h.port, kind);
    bridge.catch(() => undefined);
    clients.push(client);
    ok(await client.open('/lib1/nst1'));
    const replies: (number | 'ENOSPC')[] = [];
    for (let i = 1; i <= 482; i++) replies.push(shortly(await client.write(randomBytes(REC, i))));
    const alternation = Array.from({ length: 95 }, () => ['ENOSPC', REC] as const).flat();
    expect(replies).toEqual([...Array(289).fill(REC), ...alternation, 'ENOSPC', 'ENOSPC', 'ENOSPC']);
    ok(await client.close());
    const d = await openWhenFree('/lib1/nst1', '0 O_RDONLY');
    ok(await d.ioctl(LINUX.rewind, 1));
    const kept = replies.flatMap((r, i) => (r === REC ? [i + 1] : []));
    expect(kept.length).toBe(384); // exactly the capacity
    for (const seed of kept) expect(ok(await d.read(REC), REC).data!.equals(randomBytes(REC, seed)), `record ${seed}`).toBe(true);
    ok(await d.read(REC), 0);
    ok(await d.read(REC), 0);
    ok(await d.close());
  });
});

const noTar = missingTools(['tar']);
describe.skipIf(noTar.length > 0)(`GNU tar -M over rmt${noTar.length ? ` (skipped: missing ${noTar.join(', ')})` : ''}`, () => {
  test('tar -b 128 -M across two 20 MiB cartridges changes volume at early warning; the tree extracts whole', async () => {
    await smallCartridge(0, 20 * MiB);
    await smallCartridge(1, 20 * MiB);
    const src = join(h.dir, 'ew-src');
    await mkdir(join(src, 'd'), { recursive: true });
    // About 24 MB: more than the 15 MiB before the first cartridge's early-warning point, less
    // than two of them.
    for (let i = 0; i < 6; i++) await writeFile(join(src, 'd', `f${i}`), randomBytes(4 * 1000 * 1000 + i * 4099, 900 + i));
    await writeFile(join(src, 'small'), 'small\n');
    const tar = (args: string[]) => runOk('tar', [`--rsh-command=${h.rsh}`, '-b', '128', '-M', '-f', 'localhost:/lib1/st0', '-f', 'localhost:/lib1/st1', ...args], { timeoutMs: 110_000 });
    await tar(['-c', '-C', src, '.']);

    // The first volume: 240 records to the early-warning point, the one that entered the zone,
    // and the filemark of tar's close; the refused record went to the second volume.
    const c = await openWhenFree('/lib1/st0', '0 O_RDONLY');
    let records = 0;
    for (;;) {
      const r = ok(await c.read(REC));
      if (r.value === 0) break;
      expect(r.value).toBe(REC);
      records++;
    }
    expect(records).toBe(241);
    ok(await c.close());

    const out = join(h.dir, 'ew-out');
    await mkdir(out);
    await tar(['-x', '-C', out]);
    for (const name of await readdir(join(src, 'd'))) expect((await readFile(join(out, 'd', name))).equals(await readFile(join(src, 'd', name))), name).toBe(true);
    expect(await readFile(join(out, 'small'), 'utf8')).toBe('small\n');
  });
});
