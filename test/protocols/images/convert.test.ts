/** Conversion through cartridges: aws -> vtl -> simh -> vtl -> aws keeps every record and tapemark. */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CODECS, exportCartridgeImage, importCartridgeImage } from '../../../src/protocols/images/index.js';
import { collect, describeTape, encode, genTape, rng, source, type StoreEnv, openStore } from './util.js';

describe('format conversion through cartridges', () => {
  let env: StoreEnv;
  beforeAll(async () => {
    env = await openStore();
  });
  afterAll(async () => {
    await env?.close();
  });

  test('aws -> vtl -> simh -> vtl -> aws gives back the same bytes and the same tape', async () => {
    const r = rng(0xc0);
    for (let i = 0; i < 6; i++) {
      const tape = genTape(r, CODECS.aws, { maxObjects: 10 });
      const aws = encode(CODECS.aws, tape);
      const a = await env.cartridge();
      await importCartridgeImage(env, a, 'aws', source(aws, 100_000));
      const simh = await collect(await exportCartridgeImage(env, a, 'simh'));
      expect(simh.equals(encode(CODECS.simh, tape)), describeTape(tape).join(' ')).toBe(true);
      const b = await env.cartridge();
      await importCartridgeImage(env, b, 'simh', source(simh, 33_333));
      const back = await collect(await exportCartridgeImage(env, b, 'aws'));
      expect(back.equals(aws)).toBe(true);
      const filesOf = async (code: string) => (await env.snapshot(code)) as { files: unknown[]; verify: unknown };
      const [fa, fb] = [await filesOf(a), await filesOf(b)];
      expect(fb.files).toEqual(fa.files);
      expect(fb.verify).toEqual(fa.verify);
    }
  });
});
