/**
 * Interoperability with the Hercules tape utilities (Debian package `hercules`): `hetmap -t`
 * and `hetget` read vtl's AWSTAPE exports, `hetinit` output imports as a valid empty tape, and
 * `hetupd -s` rewrites of an export (4096-byte chunks) import as the same tape.
 * Records stay at or under 65535 bytes here: hercules 3.13's hetmap fails on larger ones.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CODECS, exportCartridgeImage, importCartridgeImage } from '../../../src/protocols/images/index.js';
import { randomBytes } from '../../helpers/data.js';
import { collect, decode, describeTape, encode, int, objects, openStore, rng, source, type Obj, type StoreEnv } from './util.js';

const HAVE = !spawnSync('hetmap', ['-h']).error;
const title = HAVE ? 'hercules tools' : 'hercules tools (skipped: install the Debian package hercules for hetmap, hetget, hetinit)';

function run(cmd: string, args: string[]): string {
  const p = spawnSync(cmd, args, { encoding: 'utf8' });
  if (p.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${p.status}): ${p.stderr}${p.stdout}`);
  return p.stdout;
}

/** Tape files (the records between tapemarks); `hetmap -t` lists only files ended by a tapemark. */
function tapeFiles(tape: Obj[]): Buffer[][] {
  const files: Buffer[][] = [[]];
  for (const o of tape) {
    if (o.kind === 'tapemark') files.push([]);
    else files.at(-1)!.push(o.data);
  }
  return files.slice(0, -1);
}

describe.skipIf(!HAVE)(title, () => {
  let env: StoreEnv;
  let dir: string;
  beforeAll(async () => {
    env = await openStore();
    dir = await mkdtemp(join(tmpdir(), 'vtl-hercules-'));
  });
  afterAll(async () => {
    await env?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('hetmap -t lists the files and records of an AWSTAPE export; hetget extracts each file', async () => {
    const r = rng(0x4e7);
    const tape: Obj[] = [];
    for (let f = 0; f < 6; f++) {
      const n = f === 2 ? 0 : int(r, 1, 12); // file 2 is empty (two tapemarks in a row)
      for (let k = 0; k < n; k++) tape.push({ kind: 'record', data: randomBytes(k === 0 && f === 0 ? 65535 : int(r, 1, 65535), int(r, 1, 1e9)) });
      tape.push({ kind: 'tapemark' });
    }
    tape.push({ kind: 'tapemark' });
    // Into vtl through a simh image, out as aws: what hercules reads comes from the cartridge.
    const code = await env.cartridge();
    await importCartridgeImage(env, code, 'simh', source(encode(CODECS.simh, tape)));
    const file = join(dir, 'vtl.aws');
    await writeFile(file, await collect(await exportCartridgeImage(env, code, 'aws')));

    const files = tapeFiles(tape);
    const expected = files.map((recs, i) => {
      const sizes = recs.map((d) => d.length);
      return `File ${i + 1}: Blocks=${recs.length}, block size min=${recs.length ? Math.min(...sizes) : 0}, max=${recs.length ? Math.max(...sizes) : 0}`;
    });
    const listed = run('hetmap', ['-t', file]).split('\n').filter((l) => l.startsWith('File '));
    expect(listed).toEqual(expected);

    // Rewritten by hercules with 4096-byte chunks (its strict AWSTAPE), it imports as the same tape.
    const strict = join(dir, 'strict.aws');
    run('hetupd', ['-s', file, strict]);
    const again = await env.cartridge();
    await importCartridgeImage(env, again, 'aws', source(await readFile(strict)));
    expect(describeTape(objects(decode(CODECS.aws, await collect(await exportCartridgeImage(env, again, 'aws')))))).toEqual(describeTape(tape));
    for (let i = 0; i < files.length; i++) {
      const out = join(dir, `file${i + 1}.bin`);
      run('hetget', ['-n', file, out, String(i + 1), 'U', '0', '65535']);
      expect((await readFile(out)).equals(Buffer.concat(files[i])), `file ${i + 1}`).toBe(true);
    }
  });

  test('hetinit output imports as a valid empty tape (unlabeled, labeled, compressed)', async () => {
    const nl = join(dir, 'nl.aws');
    const sl = join(dir, 'sl.aws');
    const het = join(dir, 'sl.het');
    run('hetinit', ['-d', '-n', nl]);
    run('hetinit', ['-d', sl, 'VT0001', 'VTL']);
    run('hetinit', [het, 'VT0001', 'VTL']); // zlib-compressed label records

    const nlCode = await env.cartridge();
    expect(await importCartridgeImage(env, nlCode, 'aws', source(await readFile(nl)))).toMatchObject({ records: 0, tapemarks: 2 });
    expect(await env.libraries.tapes.info(nlCode)).toMatchObject({ logicalBytes: 0, filemarks: 2, objects: 2 });

    const slImage = await readFile(sl);
    for (const image of [slImage, await readFile(het)]) {
      const code = await env.cartridge();
      const sum = await importCartridgeImage(env, code, 'aws', source(image, 7));
      expect(sum).toMatchObject({ records: 2, tapemarks: 1, logicalBytes: 160 });
      const out = await collect(await exportCartridgeImage(env, code, 'aws'));
      // Uncompressed, vtl's export is byte for byte what hetinit -d writes.
      expect(out.equals(slImage)).toBe(true);
      const vol1 = objects(decode(CODECS.aws, out))[0] as { data: Buffer };
      expect(vol1.data.subarray(0, 10).equals(Buffer.from([0xe5, 0xd6, 0xd3, 0xf1, 0xe5, 0xe3, 0xf0, 0xf0, 0xf0, 0xf1]))).toBe(true); // EBCDIC "VOL1VT0001"
    }
    expect(describeTape(objects(decode(CODECS.aws, await readFile(het))))).toEqual(describeTape(objects(decode(CODECS.aws, slImage))));
  });
});
