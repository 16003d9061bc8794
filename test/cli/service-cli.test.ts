/**
 * The `vtl` CLI against a running server: listings as JSON and tables, cartridges, the
 * changer, tape files written and read back through `vtl drive`, tokens, and the errors a
 * person sees (unknown barcode, bad token, server not running). `vtl serve` and `vtl init`
 * run as real child processes: startup lines, SIGTERM shutdown, restart on the same data.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runCli } from './run-cli.js';
import { backupLikeBytes } from '../helpers/data.js';
import { startTestServer, type TestServer } from '../api/helpers.js';

let t: TestServer;
let work: string;
let tokenFile: string;

beforeAll(async () => {
  t = await startTestServer({ demo: true });
  work = await mkdtemp(join(tmpdir(), 'vtl-cli-'));
  tokenFile = t.server.adminTokenFile;
});
afterAll(async () => {
  await t?.stop();
  await rm(work, { recursive: true, force: true });
});

/** Runs one CLI command in this process; returns its stdout, or the error it failed with. */
async function vtl(args: string[], opts: { token?: string | null; url?: string } = {}): Promise<{ out: string; error?: string }> {
  const conn = ['--url', opts.url ?? t.url];
  if (opts.token !== null) conn.push('--token-file', opts.token ?? tokenFile);
  return runCli([...args, ...conn]);
}

describe('vtl over the API', () => {
  test('library list and status, as table and JSON', async () => {
    const json = JSON.parse((await vtl(['library', 'list', '--json'])).out);
    expect(json).toEqual([expect.objectContaining({ name: 'lib1', drives: 4, slots: 32, mailslots: 4 })]);
    const tableOut = (await vtl(['library', 'list'])).out;
    expect(tableOut.split('\n')[0]).toMatch(/^name\s+model\s+drives\s+slots\s+mailslots$/);
    expect(tableOut).toMatch(/^lib1\s+IBM 03584L32\s+4\s+32\s+4$/m);
    const mtx = (await vtl(['library', 'status', 'lib1'])).out;
    expect(mtx).toContain('Data Transfer Element 0:Empty');
    expect(mtx).toContain('Storage Element 1:Full :VolumeTag=VT0001L7');
    expect(mtx).toContain('Storage Element 33 IMPORT/EXPORT:Empty');
  });

  test('library and cartridge create; list with filters and paging', async () => {
    expect((await vtl(['library', 'create', 'lib2', '--drives', '1', '--slots', '5', '--mailslots', '1'])).out).toMatch(/created library lib2/);
    expect((await vtl(['cartridge', 'create', '--library', 'lib2', '--prefix', 'AB', '--count', '3', '--media', 'LTO-8'])).out).toMatch(/created 3 cartridges: AB0001L8..AB0003L8 in lib2/);
    const page = JSON.parse((await vtl(['cartridge', 'list', '--library', 'lib2', '--limit', '2', '--offset', '1', '--json'])).out);
    expect(page).toMatchObject({ total: 3, offset: 1, limit: 2 });
    expect(page.items.map((c: { barcode: string }) => c.barcode)).toEqual(['AB0002L8', 'AB0003L8']);
    const human = (await vtl(['cartridge', 'list', '--library', 'lib2', '--limit', '1'])).out;
    expect(human).toMatch(/^AB0001L8\s+LTO-8\s+scratch\s+lib2 slot 0/m);
    expect(human).toContain('(1 of 3; --offset 1 for more)');
  });

  test('load, write a tape file from a file, rewind, read it back bit for bit, unload', async () => {
    const data = backupLikeBytes(5 * 1024 * 1024 + 11, 5);
    const inFile = join(work, 'in.bin');
    const outFile = join(work, 'out.bin');
    await writeFile(inFile, data);
    expect((await vtl(['load', 'lib1', '1', 'VT0003L7'])).out).toMatch(/loaded VT0003L7 into lib1 drive 1/);
    const w = JSON.parse((await vtl(['drive', 'write', 'lib1', '1', inFile, '--block-size', '131072', '--json'])).out);
    expect(w).toMatchObject({ bytes: data.length, records: Math.ceil(data.length / 131072), file: 0 });
    expect((await vtl(['drive', 'rewind', 'lib1', '1'])).out).toMatch(/rewind done; now at file 0 block 0/);
    expect((await vtl(['drive', 'read', 'lib1', '1', outFile])).out).toMatch(/read tape file 0/);
    expect((await readFile(outFile)).equals(data)).toBe(true);
    const show = (await vtl(['cartridge', 'show', 'VT0003L7'])).out;
    expect(show).toMatch(/^state\s+in use$/m);
    expect(show).toMatch(/^tape files\s+1$/m);
    const drives = JSON.parse((await vtl(['drive', 'list', 'lib1', '--json'])).out);
    expect(drives[1]).toMatchObject({ barcode: 'VT0003L7', position: { file: 1 } });
    expect((await vtl(['unload', 'lib1', '1'])).out).toMatch(/unloaded VT0003L7 from lib1 drive 1/);
    const stats = JSON.parse((await vtl(['stats', '--json'])).out);
    expect(stats).toMatchObject({ libraries: 2, cartridges: 35, logicalBytes: data.length });
    expect((await vtl(['stats'])).out).toMatch(/^dedup ratio\s+\d+\.\d\dx$/m);
    // after a load the drive is at BOT: a plain write would cut the data off and is refused;
    // --append adds the file after the others
    expect((await vtl(['load', 'lib1', '1', 'VT0003L7'])).out).toMatch(/loaded/);
    expect((await vtl(['drive', 'write', 'lib1', '1', inFile])).error).toMatch(/with data after it .* writing there would cut that off\. Write at end of data \(vtl drive write --append\)/);
    expect((await vtl(['drive', 'write', 'lib1', '1', inFile, '--append'])).out).toMatch(/^wrote tape file 1: /);
    expect((await vtl(['drive', 'write', 'lib1', '1', inFile, '--append', '--overwrite'])).error).toMatch(/exclude each other/);
    expect(JSON.parse((await vtl(['cartridge', 'show', 'VT0003L7', '--json'])).out)).toMatchObject({ files: 2, logicalBytes: 2 * data.length });
    expect((await vtl(['unload', 'lib1', '1'])).out).toMatch(/unloaded/);
  });

  test('export to the vault and import back; protect and erase', async () => {
    expect((await vtl(['library', 'export', 'lib1', 'VT0004L7', '--to-vault'])).out).toMatch(/exported VT0004L7 from lib1 to the vault/);
    expect(JSON.parse((await vtl(['cartridge', 'show', 'VT0004L7', '--json'])).out).location).toEqual({ kind: 'vault' });
    const imp = JSON.parse((await vtl(['library', 'import', 'lib1', 'VT0004L7', '--from-vault', '--json'])).out);
    expect(imp.moved).toEqual(['VT0004L7']);
    expect((await vtl(['cartridge', 'protect', 'VT0004L7'])).out).toMatch(/write protect on/);
    expect((await vtl(['cartridge', 'erase', 'VT0004L7'])).error).toMatch(/write protected/);
    expect((await vtl(['cartridge', 'protect', 'VT0004L7', '--off'])).out).toMatch(/write protect off/);
  });

  test('tokens: create, use, list, revoke', async () => {
    const created = JSON.parse((await vtl(['token', 'create', 'reader', '--role', 'auditor', '--json'])).out);
    const f = join(work, 'reader.token');
    await writeFile(f, created.token + '\n');
    expect(JSON.parse((await vtl(['library', 'list', '--json'], { token: f })).out)).toHaveLength(2);
    expect((await vtl(['library', 'create', 'lib3', '--drives', '1', '--slots', '1'], { token: f })).error).toMatch(/not allowed: this needs the operator role/);
    const list = JSON.parse((await vtl(['token', 'list', '--json'])).out);
    expect(list.map((x: { name: string }) => x.name)).toContain('reader');
    expect((await vtl(['token', 'revoke', created.id])).out).toMatch(/revoked token/);
    expect((await vtl(['library', 'list'], { token: f })).error).toMatch(/refused the request: the bearer token is not valid .* \(token from token file /);
  });

  test('clear errors: unknown barcode, no token, server not running, bad arguments', async () => {
    expect((await vtl(['cartridge', 'show', 'NOPE01L7'])).error).toBe('no cartridge NOPE01L7');
    expect((await vtl(['load', 'lib1', '0', 'NOPE01L7'])).error).toBe('no cartridge NOPE01L7');
    expect((await vtl(['library', 'list'], { token: join(work, 'missing.token') })).error).toMatch(/cannot read the token file .*missing\.token: ENOENT/);
    expect((await vtl(['stats'], { url: 'http://127.0.0.1:9' })).error).toMatch(/cannot reach the vtl server at http:\/\/127\.0\.0\.1:9 \(ECONNREFUSED\): is `vtl serve` running\?/);
    expect((await vtl(['load', 'lib1', 'x', 'VT0001L7'])).error).toMatch(/expected a whole number/);
  });

  test('positioning: negative counts go backward; stopping short fails with where the tape stands', async () => {
    const file = join(work, 'small.bin');
    await writeFile(file, backupLikeBytes(300_000, 9));
    expect((await vtl(['load', 'lib1', '2', 'VT0006L7'])).out).toMatch(/loaded VT0006L7/);
    for (let i = 0; i < 2; i++) expect((await vtl(['drive', 'write', 'lib1', '2', file])).out).toMatch(/wrote tape file/);
    // backward over the last filemark: at the end of file 1 (5 records), before its filemark, as st does
    expect((await vtl(['drive', 'space', 'lib1', '2', 'filemarks', '-1'])).out).toBe('lib1 drive 2: space done; now at file 1 block 5 (lba 11)\n');
    const past = await vtl(['drive', 'space', 'lib1', '2', 'filemarks', '5']);
    expect(past.error).toMatch(/^lib1 drive 2: space stopped short: .*\(residue 4\); now at file 2 block 0 \(lba \d+, end of data\)$/);
    expect((await vtl(['drive', 'locate', 'lib1', '2', '999999'])).error).toMatch(/locate stopped short: .*end of data/);
    expect((await vtl(['drive', 'space', 'lib1', '2', 'blocks', '1'])).error).toBe('space over records, filemarks or eod, not "blocks"');
    expect((await vtl(['drive', 'space', 'lib1', '2', 'filemarks', '--x'])).error).toMatch(/the count must be a whole number/);
    expect((await vtl(['unload', 'lib1', '2'])).out).toMatch(/unloaded VT0006L7/);
  });

  test('cartridges: --media for barcodes without a suffix; retention given as a date', async () => {
    expect((await vtl(['cartridge', 'create', '--library', 'lib2', '--barcodes', 'PLAIN1', '--media', 'LTO-7'])).out).toBe('created 1 cartridge: PLAIN1 in lib2\n');
    expect((await vtl(['cartridge', 'create', '--library', 'lib2', '--barcodes', 'PLAIN2'])).error).toMatch(/cannot tell the media type of PLAIN2 .*--media/);
    expect((await vtl(['cartridge', 'retain', 'PLAIN1', '2030-01-01'])).out).toBe('PLAIN1: retention until 2030-01-01T00:00:00.000Z\n');
  });
});

describe('vtl serve and vtl init as processes', () => {
  const cli = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    spawn(process.execPath, ['--import', 'tsx', join(__dirname, '../../src/cli/main.ts'), ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });

  async function serveUntilReady(data: string) {
    const child = cli(['serve', '--data', data, '--port', '0', '--rmt-port', '0']);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    await new Promise<void>((resolve, reject) => {
      const timer = setInterval(() => out.includes('admin token in') && (clearInterval(timer), resolve()), 50);
      child.once('exit', (code) => (clearInterval(timer), reject(new Error(`serve exited ${code}: ${out}`))));
    });
    return { child, out: () => out };
  }

  test('first start creates the data directory and the demo library; SIGTERM stops cleanly; a restart keeps the data', async () => {
    const data = join(work, 'served');
    const first = await serveUntilReady(data);
    expect(first.out()).toContain(`vtl: initialized data directory ${data}`);
    expect(first.out()).toContain('vtl: created demo library lib1');
    const url = /at (http:\/\/127\.0\.0\.1:\d+) /.exec(first.out())![1];
    expect(first.out()).toMatch(/vtl: rmt (on 127\.0\.0\.1:\d+|is not available in this build)/);
    expect(first.out()).toContain(`admin token in ${join(data, 'admin.token')}`);
    const token = (await readFile(join(data, 'admin.token'), 'utf8')).trim();
    const h = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    await fetch(`${url}/api/v1/libraries/lib1/drives/0/load`, { method: 'POST', headers: h, body: JSON.stringify({ barcode: 'VT0032L7' }) });
    const payload = backupLikeBytes(2 * 1024 * 1024, 8);
    const put = await fetch(`${url}/api/v1/libraries/lib1/drives/0/file`, { method: 'PUT', headers: { authorization: h.authorization }, body: payload });
    expect(put.status).toBe(200);
    first.child.kill('SIGTERM');
    const code = await new Promise((r) => first.child.once('exit', r));
    expect(code).toBe(0);
    expect(first.out()).toContain('vtl: SIGTERM: finishing requests, syncing drives');
    expect(first.out()).toContain('vtl: stopped');

    const second = await serveUntilReady(data);
    expect(second.out()).not.toContain('created demo library');
    const url2 = /at (http:\/\/127\.0\.0\.1:\d+) /.exec(second.out())![1];
    const libs = (await (await fetch(`${url2}/api/v1/libraries`, { headers: h })).json()) as { items: unknown[] };
    expect(libs.items).toHaveLength(1);
    await fetch(`${url2}/api/v1/libraries/lib1/drives/0/rewind`, { method: 'POST', headers: h, body: '{}' });
    const back = Buffer.from(await (await fetch(`${url2}/api/v1/libraries/lib1/drives/0/file`, { headers: h })).arrayBuffer());
    expect(back.equals(payload)).toBe(true);
    second.child.kill('SIGINT');
    expect(await new Promise((r) => second.child.once('exit', r))).toBe(0);
  }, 60_000);

  test('a port in use: serve says so and exits 1, with nothing else failing on the way out', async () => {
    const busy = new URL(t.url).port;
    const child = cli(['serve', '--data', join(work, 'busy'), '--port', busy, '--rmt-port', '0']);
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (err += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    expect(await new Promise((r) => child.once('exit', r))).toBe(1);
    expect(err).toMatch(/EADDRINUSE/);
    expect(err).not.toMatch(/capacity history sample failed|Database is not open/);
  }, 30_000);

  test('vtl init writes a private admin token; a client without a server fails with exit code 1', async () => {
    const data = join(work, 'inited');
    const init = cli(['init', '--data', data]);
    let out = '';
    init.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    expect(await new Promise((r) => init.once('exit', r))).toBe(0);
    expect(out).toContain(`admin token in ${join(data, 'admin.token')}`);
    expect((await stat(join(data, 'admin.token'))).mode & 0o777).toBe(0o600);
    // a client with no server gets a clear error and exit code 1
    const c = cli(['stats', '--url', 'http://127.0.0.1:9'], { VTL_DATA: data });
    let err = '';
    c.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    expect(await new Promise((r) => c.once('exit', r))).toBe(1);
    expect(err).toMatch(/^vtl: cannot reach the vtl server/);
  }, 30_000);
});
