/** `vtl verify`, `vtl job` and `vtl audit` against a real server, run in this process. */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { buildProgram } from '../../src/cli/program.js';
import type { AuditEntry } from '../../src/jobs/index.js';
import { call, putFile, startTestServer, type TestServer } from '../api/helpers.js';

let t: TestServer;

beforeAll(async () => {
  t = await startTestServer();
  await call(t, 'POST', '/api/v1/libraries', { name: 'cl', drives: 1, slots: 2, mailslots: 1 });
  await call(t, 'POST', '/api/v1/cartridges', { library: 'cl', prefix: 'CL', start: 1, count: 1, mediaType: 'LTO-7' });
  await call(t, 'POST', '/api/v1/libraries/cl/drives/0/load', { barcode: 'CL0001L7' });
  await putFile(t, 'cl', 0, randomBytes(1 << 20));
  await putFile(t, 'cl', 0, randomBytes(1 << 19));
});
afterAll(async () => {
  await t?.stop();
});

/** Runs one command; returns stdout, the error it threw and the exit code it set. */
async function vtl(...args: string[]): Promise<{ out: string; error?: string; code: number }> {
  const program = buildProgram().exitOverride();
  let out = '';
  const write = process.stdout.write.bind(process.stdout);
  const errWrite = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((c: string | Uint8Array) => ((out += c.toString()), true)) as typeof process.stdout.write;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  process.exitCode = 0;
  try {
    await program.parseAsync(['node', 'vtl', ...args, '--url', t.url, '--token-file', t.server.adminTokenFile]);
    return { out, code: Number(process.exitCode ?? 0) };
  } catch (err) {
    return { out, error: (err as Error).message, code: Number(process.exitCode ?? 0) };
  } finally {
    process.stdout.write = write;
    process.stderr.write = errWrite;
    process.exitCode = 0;
  }
}

test('vtl verify --wait --json reports a passed restore test; --history lists it', async () => {
  const r = await vtl('verify', 'CL0001L7', '--wait', '--json');
  expect(r.code).toBe(0);
  const job = JSON.parse(r.out);
  expect(job).toMatchObject({ kind: 'verify', state: 'succeeded', result: { files: 2, bytes: (1 << 20) + (1 << 19), result: 'passed' } });
  const text = await vtl('verify', 'CL0001L7', '--wait');
  expect(text.out).toMatch(/^CL0001L7: passed: 2 tape files, .* MB\/s\)/);
  const hist = JSON.parse((await vtl('verify', 'CL0001L7', '--history', '--json')).out);
  expect(hist).toHaveLength(2);
  expect((await vtl('verify', 'CL0001L7', '--history')).out.split('\n')[0]).toMatch(/^when\s+result\s+files/);
  // without --wait it answers with the job at once; job show and list find it
  const started = JSON.parse((await vtl('verify', 'CL0001L7', '--json')).out);
  expect(started.kind).toBe('verify');
  const shown = JSON.parse((await vtl('job', 'show', started.id, '--json')).out);
  expect(shown.id).toBe(started.id);
  const list = JSON.parse((await vtl('job', 'list', '--kind', 'verify', '--json')).out);
  expect(list.items.map((j: { id: string }) => j.id)).toContain(started.id);
  expect((await vtl('job', 'cancel', started.id, '--wait')).out).toMatch(new RegExp(`^job ${started.id} \\(verify CL0001L7\\) (succeeded|cancelled)`));
  expect((await vtl('verify', 'NOPE01')).error).toMatch(/no cartridge|not found|NOPE01/i);
});

test('vtl audit lists mutations; vtl audit verify exits 0 only when the chain is intact', async () => {
  const list = JSON.parse((await vtl('audit', '--json', '--action', 'POST /api/v1/cartridges')).out);
  expect(list.items.map((e: AuditEntry) => e.action)).toContain('POST /api/v1/cartridges/:barcode/verify');
  expect((await vtl('audit', 'list')).out.split('\n')[0]).toMatch(/^seq\s+when\s+actor\s+token\s+action\s+target\s+result\s+status/);
  // --last: the newest entries, oldest first
  const all = JSON.parse((await vtl('audit', '--json', '--limit', '1000')).out);
  const last = JSON.parse((await vtl('audit', '--json', '--last', '2')).out);
  expect(last.items.map((e: AuditEntry) => e.seq)).toEqual(all.items.slice(-2).map((e: AuditEntry) => e.seq));
  const ok = await vtl('audit', 'verify');
  expect(ok).toMatchObject({ code: 0 });
  expect(ok.out).toMatch(/^audit log intact: \d+ entries/);
  const log = t.server.store.db.sublevel<string, unknown>('audit', { valueEncoding: 'json' }).sublevel<string, AuditEntry>('log', { valueEncoding: 'json' });
  const e = (await log.get('000000000002'))!;
  await log.put('000000000002', { ...e, actor: 'mallory' });
  const bad = await vtl('audit', 'verify', '--json');
  expect(bad.code).toBe(1);
  expect(JSON.parse(bad.out)).toMatchObject({ intact: false, problem: { seq: 2 } });
  await log.put('000000000002', e);
});

test('vtl retention set/show and expire --dry-run --wait', async () => {
  expect((await vtl('retention', 'set', 'cl', '--scratch-after-days', '7')).out).toBe('cl: scratch after 7 days\n');
  expect(JSON.parse((await vtl('retention', 'show', 'cl', '--json')).out)).toEqual({ scratchAfterDays: 7 });
  const dry = await vtl('retention', 'expire', '--dry-run', '--wait');
  expect(dry.out).toMatch(/^dry run: 1 cartridges examined, 0 returned to scratch, 1 dated by policy, 0 skipped\n {2}dated {3}CL0001L7 until /);
  // a dry run changes nothing
  expect((await call(t, 'GET', '/api/v1/cartridges/CL0001L7')).body.retentionUntil).toBeNull();
  expect((await vtl('retention', 'set', 'cl', '--scratch-after-days', 'none')).out).toBe('cl: no policy\n');
  expect((await vtl('retention', 'set', 'cl', '--scratch-after-days', '0')).error).toMatch(/scratchAfterDays/);
});

test('vtl gc --wait --json reclaims an erased cartridge; the text form says what it did', async () => {
  expect((await call(t, 'POST', '/api/v1/cartridges/CL0001L7/erase')).status).toBe(200);
  await t.restart(); // seals the open container: GC never touches the one being written
  const r = await vtl('gc', '--wait', '--json');
  expect(r.code).toBe(0);
  const job = JSON.parse(r.out);
  expect(job).toMatchObject({ kind: 'gc', state: 'succeeded', result: { deleted: 1, compacted: 0, skipped: [] } });
  expect(job.result.reclaimedBytes).toBeGreaterThan(1 << 20);
  expect(job.result.storedBytesAfter).toBeLessThan(job.result.storedBytesBefore);
  expect((await vtl('gc', '--wait')).out).toMatch(/^gc: 0 containers: 0 deleted, 0 compacted, 0 kept, 0 skipped/);
  expect((await vtl('gc', '--threshold', '2')).error).toMatch(/threshold/);
});

test('vtl scrub --wait --json reports the fields tools rely on', async () => {
  await putFile(t, 'cl', 0, randomBytes(1 << 20)); // CL0001L7 was erased: it holds one file again
  await t.restart();
  const r = await vtl('scrub', '--wait', '--json');
  expect(r.code).toBe(0);
  const rep = JSON.parse(r.out);
  expect(rep).toMatchObject({ state: 'succeeded', damagedChunks: 0, repairedChunks: 0, affectedCartridges: [] });
  expect(rep.chunksChecked).toBeGreaterThan(10);
  expect((await vtl('scrub', '--wait')).out).toMatch(/^scrub: 1 containers, \d+ chunks, .* 0 damaged chunks/);
});
