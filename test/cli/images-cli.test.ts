/**
 * `vtl import` / `vtl export` of tape images against a running server: identical bytes back,
 * formats converted through a cartridge, raw files with a block size, JSON summaries, and the
 * errors a person sees (unknown barcode, malformed image with its offset, server not running,
 * a missing file). The mail-slot moves are `vtl library import/export` (service-cli.test.ts).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { runCli } from './run-cli.js';
import { CODECS } from '../../src/protocols/images/index.js';
import { startTestServer, type TestServer } from '../api/helpers.js';
import { randomBytes } from '../helpers/data.js';
import { encode, type Obj } from '../protocols/images/util.js';

let t: TestServer;
let work: string;

beforeAll(async () => {
  t = await startTestServer({ demo: true });
  work = await mkdtemp(join(tmpdir(), 'vtl-cli-img-'));
});
afterAll(async () => {
  await t?.stop();
  await rm(work, { recursive: true, force: true });
});

/** Runs one CLI command in this process; returns its stdout, or the error it failed with. */
async function vtl(args: string[], url = t.url): Promise<{ out: string; error?: string; stderr: string }> {
  return runCli([...args, '--url', url, '--token-file', t.server.adminTokenFile]);
}

const rec = (n: number, seed: number): Obj => ({ kind: 'record', data: randomBytes(n, seed) });
const TM: Obj = { kind: 'tapemark' };
const TAPE: Obj[] = [rec(1000, 1), rec(70_000, 2), TM, rec(300_000, 3), TM, TM, rec(5, 4), TM];

test('import an aws image, export it: identical bytes; JSON summary', async () => {
  const image = encode(CODECS.aws, TAPE);
  const file = join(work, 'in.aws');
  await writeFile(file, image);
  const r = await vtl(['import', file, '--barcode', 'VT0001L7', '--format', 'aws', '--json']);
  expect(r.error).toBeUndefined();
  expect(JSON.parse(r.out)).toMatchObject({ format: 'aws', medium: 'VT0001L7', bytes: image.length, records: 4, tapemarks: 4, startLba: 0, endLba: 8 });
  const outFile = join(work, 'out.aws');
  const e = await vtl(['export', 'VT0001L7', '--format', 'aws', '-o', outFile]);
  expect(e.error).toBeUndefined();
  expect(e.out).toBe(`exported VT0001L7 to ${outFile} (aws image, ${(image.length / 1024).toFixed(1)} KiB)\n`);
  expect((await readFile(outFile)).equals(image)).toBe(true);
});

test('convert: export simh, import it into a second cartridge, export aws again: the same image', async () => {
  const simhFile = join(work, 'conv.tap');
  expect((await vtl(['export', 'VT0001L7', '--format', 'simh', '--output', simhFile])).error).toBeUndefined();
  expect((await readFile(simhFile)).equals(encode(CODECS.simh, TAPE))).toBe(true);
  const imp = await vtl(['import', simhFile, '--barcode', 'VT0002L7', '--format', 'simh']);
  expect(imp.out).toMatch(/^imported .*conv\.tap into VT0002L7: 4 records, 4 tapemarks, .* of data \(simh image of .*; blocks 0\.\.8\)$/m);
  const back = join(work, 'conv.aws');
  expect((await vtl(['export', 'VT0002L7', '--format', 'aws', '-o', back, '--json'])).out).toContain('"bytes"');
  expect((await readFile(back)).equals(encode(CODECS.aws, TAPE))).toBe(true);
});

test('an empty image imports as a blank tape, with a warning (a failed copy is often empty)', async () => {
  const file = join(work, 'empty.aws');
  await writeFile(file, Buffer.alloc(0));
  const r = await vtl(['import', file, '--barcode', 'VT0004L7', '--format', 'aws']);
  expect(r.error).toBeUndefined();
  expect(r.out).toMatch(/0 records, 0 tapemarks/);
  expect(r.stderr).toBe(`vtl: warning: ${file} is empty: nothing was imported (check the copy if a blank tape was not meant)\n`);
});

test('raw with --block-size and --append; export one file with --file', async () => {
  const a = randomBytes(200_000, 11);
  const b = randomBytes(33_333, 12);
  await writeFile(join(work, 'a.img'), a);
  await writeFile(join(work, 'b.img'), b);
  const first = JSON.parse((await vtl(['import', join(work, 'a.img'), '--barcode', 'VT0003L7', '--format', 'raw', '--block-size', '10000', '--json'])).out);
  expect(first).toMatchObject({ records: 20, tapemarks: 1, logicalBytes: a.length });
  expect((await vtl(['import', join(work, 'b.img'), '--barcode', 'VT0003L7', '--format', 'raw'])).error).toMatch(/not blank/);
  expect((await vtl(['import', join(work, 'b.img'), '--barcode', 'VT0003L7', '--format', 'raw', '--append'])).error).toBeUndefined();
  const several = await vtl(['export', 'VT0003L7', '--format', 'raw', '-o', join(work, 'x.img')]);
  expect(several.error).toMatch(/holds 2 tape files with data .* choose it with --file N/);
  expect((await vtl(['export', 'VT0003L7', '--format', 'raw', '-o', join(work, 'b2.img'), '--file', '1'])).error).toBeUndefined();
  expect((await readFile(join(work, 'b2.img'))).equals(b)).toBe(true);
  // a refused export leaves no file behind
  expect((await readdir(work)).filter((f) => f.startsWith('x.img'))).toEqual([]);
});

test('clear errors: unknown barcode, malformed image with its offset, server not running, missing file', async () => {
  const file = join(work, 'ok.aws');
  await writeFile(file, encode(CODECS.aws, [rec(100, 21), TM]));
  expect((await vtl(['import', file, '--barcode', 'NOPE01', '--format', 'aws'])).error).toBe('no cartridge NOPE01');
  expect((await vtl(['export', 'NOPE01', '--format', 'aws', '-o', join(work, 'nope.aws')])).error).toBe('no cartridge NOPE01');
  const bad = Buffer.concat([encode(CODECS.aws, [rec(100, 21), TM]), Buffer.from([1, 2, 3])]);
  await writeFile(join(work, 'bad.aws'), bad);
  const m = await vtl(['import', join(work, 'bad.aws'), '--barcode', 'VT0004L7', '--format', 'aws']);
  expect(m.error).toBe(`${join(work, 'bad.aws')}: aws image is malformed at byte 112: image ends with 3 bytes, short of a 6-byte block header; nothing was imported into VT0004L7`);
  expect(JSON.parse((await vtl(['cartridge', 'show', 'VT0004L7', '--json'])).out)).toMatchObject({ logicalBytes: 0, files: 0 });
  expect((await vtl(['import', file, '--barcode', 'VT0004L7', '--format', 'aws'], 'http://127.0.0.1:1')).error).toMatch(/cannot reach the vtl server at http:\/\/127\.0\.0\.1:1 .*is `vtl serve` running/);
  expect((await vtl(['import', join(work, 'missing.aws'), '--barcode', 'VT0004L7', '--format', 'aws'])).error).toBe(`cannot read ${join(work, 'missing.aws')}: ENOENT`);
  expect((await vtl(['import', file, '--barcode', 'VT0004L7', '--format', 'tar'])).error).toMatch(/argument 'tar' is invalid. Allowed choices are aws, simh, raw/);
});

test('the real binary streams an export to stdout (-o -) and an import from stdin (-)', async () => {
  const image = encode(CODECS.simh, [rec(123_457, 31), TM, TM]);
  const run = (args: string[], input?: Buffer) =>
    new Promise<{ code: number | null; stdout: Buffer; stderr: string }>((resolve) => {
      const p = spawn(process.execPath, ['--import', 'tsx', join(__dirname, '../../src/cli/main.ts'), ...args, '--url', t.url, '--token-file', t.server.adminTokenFile], { stdio: ['pipe', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      let err = '';
      p.stdout.on('data', (d: Buffer) => out.push(d));
      p.stderr.on('data', (d: Buffer) => (err += d));
      p.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: err }));
      p.stdin.end(input);
    });
  const imp = await run(['import', '-', '--barcode', 'VT0005L7', '--format', 'simh', '--json'], image);
  expect(imp.code, imp.stderr).toBe(0);
  expect(JSON.parse(imp.stdout.toString())).toMatchObject({ records: 1, tapemarks: 2, bytes: image.length });
  const exp = await run(['export', 'VT0005L7', '--format', 'simh', '-o', '-']);
  expect(exp.code, exp.stderr).toBe(0);
  expect(exp.stdout.equals(image)).toBe(true);
});
