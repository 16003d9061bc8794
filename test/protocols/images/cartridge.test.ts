/**
 * Images of cartridges by barcode: a cartridge in a drive goes through the drive's session, a
 * cartridge being transferred cannot be loaded meanwhile, and a checksum mismatch on the tape
 * fails the export stream instead of producing a silently wrong image.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CODECS, exportCartridgeImage, importCartridgeImage } from '../../../src/protocols/images/index.js';
import { randomBytes } from '../../helpers/data.js';
import { collect, encode, openStore, source, type Obj, type StoreEnv } from './util.js';

const tape: Obj[] = [{ kind: 'record', data: randomBytes(30_000, 1) }, { kind: 'tapemark' }, { kind: 'record', data: randomBytes(20_000, 2) }, { kind: 'tapemark' }];
const image = encode(CODECS.aws, tape);

describe('cartridge images', () => {
  let env: StoreEnv;
  beforeAll(async () => {
    env = await openStore();
    await env.libraries.createLibrary({ name: 'L', drives: 1, slots: 4, mailslots: 1 });
  });
  afterAll(async () => {
    await env?.close();
  });

  test('a cartridge in a drive is imported and exported through the drive session', async () => {
    const [c] = await env.libraries.createCartridges({ library: 'L', barcodes: ['DRV001'], mediaType: 'LTO-7' });
    await env.libraries.load('L', 0, c.barcode);
    await importCartridgeImage(env, c.barcode, 'aws', source(image));
    expect((await collect(await exportCartridgeImage(env, c.barcode, 'aws'))).equals(image)).toBe(true);
    // The session was closed (rewound): a client can open it and read the first record.
    const drive = await env.libraries.drive('L', 0);
    const m = await drive.open();
    try {
      expect((await m.read(65536)).data.equals((tape[0] as { data: Buffer }).data)).toBe(true);
      // While a client holds the session, images are refused.
      await expect(exportCartridgeImage(env, c.barcode, 'aws')).rejects.toThrow(/already has an open session/);
    } finally {
      await drive.close({ rewind: true });
    }
    await env.libraries.unload('L', 0);
  });

  test('a cartridge held by an export cannot be loaded into a drive until the stream closes', async () => {
    const [c] = await env.libraries.createCartridges({ library: 'L', barcodes: ['HLD001'], mediaType: 'LTO-7' });
    await importCartridgeImage(env, c.barcode, 'aws', source(image));
    const out = await exportCartridgeImage(env, c.barcode, 'aws');
    await expect(env.libraries.load('L', 0, c.barcode)).rejects.toMatchObject({ code: 'IN_USE' });
    expect((await env.libraries.getCartridge(c.barcode)).location.kind).toBe('slot');
    expect((await collect(out)).equals(image)).toBe(true);
    // The stream lets the cartridge go when it closes (asynchronously, after the last byte).
    for (let i = 0; i < 100 && env.libraries.tapes.isLoaded(c.barcode); i++) await new Promise((r) => setTimeout(r, 10));
    await env.libraries.load('L', 0, c.barcode);
    await env.libraries.unload('L', 0);
  });

  test('a checksum mismatch on the tape fails the export stream', async () => {
    const code = await env.cartridge();
    await importCartridgeImage(env, code, 'aws', source(image));
    // Damage the stored checksum of tape file 1 (as a corrupted chunk would look).
    const map = env.libraries.tapes.map;
    const mark = (await map.markAt(code, 1))!;
    const b = env.ds.db.batch();
    map.putMark(b, code, { ...mark, sum: mark.sum.replace(/^./, (ch) => (ch === '0' ? '1' : '0')) });
    await b.write();
    await expect(collect(await exportCartridgeImage(env, code, 'aws'))).rejects.toThrow(/checksum mismatch in tape file 1/);
    await expect(collect(await exportCartridgeImage(env, code, 'raw', { file: 0 }))).resolves.toEqual((tape[0] as { data: Buffer }).data);
  });
});
