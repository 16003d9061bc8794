/**
 * A refused upload ends the `vtl` process at once. The server answers 409 before it reads a
 * large body (cartridge not blank, write protected, under retention); the CLI used to keep the
 * connection (and so itself) alive until the server's keep-alive timeout, 72 s later, because
 * Node's client stops sending once a response is complete. The CLI runs as a real process here:
 * in-process the message came at once, the wait was in getting the process to exit.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { runCli } from './run-cli.js';
import { startTestServer, type TestServer } from '../api/helpers.js';
import { randomBytes } from '../helpers/data.js';

let t: TestServer;
let work: string;
let big: string;
const BIG = 64 * 1024 * 1024;
/** Node and tsx start in a second or two; without the fix the process lived 72 s more. */
const DEADLINE_MS = 20_000;

beforeAll(async () => {
  t = await startTestServer({ demo: true });
  work = await mkdtemp(join(tmpdir(), 'vtl-cli-refused-'));
  big = join(work, 'big.img');
  await writeFile(big, randomBytes(BIG, 7));
});
afterAll(async () => {
  await t?.stop();
  await rm(work, { recursive: true, force: true });
});

const vtl = (args: string[]) => runCli([...args, '--url', t.url, '--token-file', t.server.adminTokenFile]);

/** Runs the real `vtl` process; kills it (and says so) when it outlives the deadline. */
function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; ms: number; killed: boolean }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const p = spawn(process.execPath, ['--import', 'tsx', join(__dirname, '../../src/cli/main.ts'), ...args, '--url', t.url, '--token-file', t.server.adminTokenFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      p.kill('SIGKILL');
    }, DEADLINE_MS);
    p.stdout.on('data', (d: Buffer) => (stdout += d));
    p.stderr.on('data', (d: Buffer) => (stderr += d));
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - t0, killed });
    });
  });
}

async function show(barcode: string): Promise<unknown> {
  const r = await vtl(['cartridge', 'show', barcode, '--json']);
  expect(r.error).toBeUndefined();
  return JSON.parse(r.out);
}

async function expectPromptRefusal(args: string[], message: RegExp): Promise<void> {
  const r = await run(args);
  expect(r.killed, `vtl ${args.join(' ')} was still running after ${DEADLINE_MS} ms; stderr: ${r.stderr}`).toBe(false);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(message);
  expect(r.ms).toBeLessThan(DEADLINE_MS);
}

test('import of 64 MiB onto a cartridge with data: the 409 comes and the process ends at once; the data stays', async () => {
  await writeFile(join(work, 'small.img'), randomBytes(1000, 1));
  expect((await vtl(['import', join(work, 'small.img'), '--barcode', 'VT0001L7', '--format', 'raw'])).error).toBeUndefined();
  const before = await show('VT0001L7');
  await expectPromptRefusal(['import', big, '--barcode', 'VT0001L7', '--format', 'raw'], /^vtl: cartridge VT0001L7 is not blank .*erase it first, or import with append$/m);
  // under retention an append is refused up front too
  expect((await vtl(['cartridge', 'retain', 'VT0001L7', '2099-01-01'])).error).toBeUndefined();
  await expectPromptRefusal(['import', big, '--barcode', 'VT0001L7', '--format', 'raw', '--append'], /^vtl: cartridge VT0001L7 is under retention until 2099-01-01/m);
  expect(await show('VT0001L7')).toMatchObject({ logicalBytes: (before as { logicalBytes: number }).logicalBytes, files: (before as { files: number }).files });
});

test('drive write of 64 MiB onto a write-protected cartridge: the error comes and the process ends at once', async () => {
  expect((await vtl(['cartridge', 'protect', 'VT0002L7'])).error).toBeUndefined();
  expect((await vtl(['load', 'lib1', '0', 'VT0002L7'])).error).toBeUndefined();
  await expectPromptRefusal(['drive', 'write', 'lib1', '0', big], /^vtl: writing a record: the cartridge is write protected\b/m);
  expect(await show('VT0002L7')).toMatchObject({ logicalBytes: 0, files: 0 });
  expect((await vtl(['unload', 'lib1', '0'])).error).toBeUndefined();
});

test('a normal upload of the same 64 MiB still completes and exits', async () => {
  const load = await vtl(['load', 'lib1', '1', 'VT0003L7']);
  expect(load.error).toBeUndefined();
  const ok = await run(['drive', 'write', 'lib1', '1', big]);
  expect(ok.killed).toBe(false);
  expect(ok.code, ok.stderr).toBe(0);
  expect(ok.stdout).toBe(`wrote tape file 0: ${BIG} bytes in 1024 records of 65536\n`);
  expect(await show('VT0003L7')).toMatchObject({ logicalBytes: BIG, files: 1 });
});
