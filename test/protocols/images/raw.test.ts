/** Raw images: the conformance suite at two block sizes, then choosing the tape file on export. */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CODECS, ImageRequestError, exportCartridgeImage, importCartridgeImage } from '../../../src/protocols/images/index.js';
import { randomBytes } from '../../helpers/data.js';
import { imageConformance } from './conformance.js';
import { collect, decode, openStore, source, type StoreEnv } from './util.js';

const raw = CODECS.raw;
imageConformance(raw, { seed: 0x7a1, decode: { blockSize: 10240 } });
imageConformance(raw, { seed: 0x7a2, tapes: 30 });

describe('raw images of tapes', () => {
  let env: StoreEnv;
  beforeAll(async () => {
    env = await openStore();
  });
  afterAll(async () => {
    await env?.close();
  });

  test('a file is cut into block-size records, the last one shorter, then a filemark', async () => {
    const file = randomBytes(10240 * 3 + 100, 5);
    expect(decode(raw, file, { blockSize: 10240 }).map((e) => (e.kind === 'record' ? e.data.length : e.kind))).toEqual([10240, 10240, 10240, 100, 'tapemark', 'end']);
    const code = await env.cartridge();
    const sum = await importCartridgeImage(env, code, 'raw', source(file, 777), { blockSize: 10240 });
    expect(sum).toMatchObject({ records: 4, tapemarks: 1, logicalBytes: file.length });
    expect((await collect(await exportCartridgeImage(env, code, 'raw'))).equals(file)).toBe(true);
  });

  test('a tape of several files: raw export names them and takes file=N; empty files are ignored', async () => {
    const code = await env.cartridge();
    const a = randomBytes(5000, 1);
    const b = randomBytes(7000, 2);
    await importCartridgeImage(env, code, 'raw', source(a), { blockSize: 512 });
    await importCartridgeImage(env, code, 'raw', source(b), { blockSize: 4096, append: true });
    const err = await exportCartridgeImage(env, code, 'raw').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageRequestError);
    expect((err as ImageRequestError).code).toBe('NOT_REPRESENTABLE');
    expect((err as Error).message).toMatch(/holds 2 tape files with data \(0, 1\).*file=N.*aws or simh/);
    expect((await collect(await exportCartridgeImage(env, code, 'raw', { file: 0 }))).equals(a)).toBe(true);
    expect((await collect(await exportCartridgeImage(env, code, 'raw', { file: 1 }))).equals(b)).toBe(true);
    await expect(exportCartridgeImage(env, code, 'raw', { file: 2 })).rejects.toThrow(/tape files 0..1; file 2 does not exist/);
    await expect(exportCartridgeImage(env, code, 'aws', { file: 1 })).rejects.toThrow(/raw images only/);
    // A tape of one file followed by extra filemarks (empty files) still exports as raw.
    const one = await env.cartridge();
    const aws = CODECS.aws.encoder();
    const image = Buffer.concat([...aws.record(a), ...aws.tapemark(), ...aws.tapemark(), ...aws.tapemark()]);
    await importCartridgeImage(env, one, 'aws', source(image));
    expect((await collect(await exportCartridgeImage(env, one, 'raw'))).equals(a)).toBe(true);
  });

  test('a bad block size is refused before anything is written', async () => {
    const code = await env.cartridge();
    await expect(importCartridgeImage(env, code, 'raw', source(Buffer.alloc(10)), { blockSize: 0 })).rejects.toMatchObject({ code: 'BAD_OPTION' });
    await expect(importCartridgeImage(env, code, 'tar', source(Buffer.alloc(10)))).rejects.toMatchObject({ code: 'BAD_FORMAT' });
    expect((await env.libraries.tapes.info(code)).objects).toBe(0);
  });
});
