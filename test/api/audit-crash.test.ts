/**
 * The audit log across a crash: a mutation the server was running when it was killed (-9) is
 * in the log at the next start, as `interrupted`, with who asked; the chain stays intact.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { startChildServer } from './child-server.js';
import { call } from './helpers.js';

const dirs: string[] = [];
const children: ChildProcess[] = [];
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** A vtl server in its own process on `data` (server-child.ts). */
const start = (data: string) => startChildServer(data, children);

it('a mutation running when the server is killed is logged as interrupted at the next start', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vtl-audit-crash-'));
  dirs.push(dir);
  const data = join(dir, 'data');
  let t = await start(data);
  expect((await call(t, 'POST', '/api/v1/libraries/lib1/drives/0/load', { barcode: 'VT0001L7' })).status).toBe(200);

  // an upload that is under way (its handler holds the drive) when the server dies
  const url = new URL('/api/v1/libraries/lib1/drives/0/file', t.url);
  const upload = request(url, { method: 'PUT', headers: { authorization: `Bearer ${t.admin}`, 'content-type': 'application/octet-stream' } });
  upload.on('error', () => undefined);
  upload.write(Buffer.alloc(256 * 1024, 7));
  for (let i = 0; i < 100; i++) {
    if ((await call(t, 'GET', '/api/v1/libraries/lib1/drives/0')).body.open === true) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  expect((await call(t, 'GET', '/api/v1/libraries/lib1/drives/0')).body.open).toBe(true);
  t.child.kill('SIGKILL');
  await new Promise((r) => t.child.once('exit', r));

  t = await start(data);
  const log = (await call(t, 'GET', '/api/v1/audit?limit=1000')).body.items as Array<{ action: string; result: string; actor: string; detail: string | null; target: string }>;
  const cut = log.filter((e) => e.result === 'interrupted');
  expect(cut).toEqual([
    expect.objectContaining({ action: 'PUT /api/v1/libraries/:lib/drives/:n/file', target: '/api/v1/libraries/lib1/drives/0/file', actor: 'admin', detail: expect.stringMatching(/^the server stopped before this had an answer/) }),
  ]);
  expect((await call(t, 'GET', '/api/v1/audit/verify')).body).toMatchObject({ intact: true });
  // once: a second start logs nothing more
  t.child.kill('SIGKILL');
  await new Promise((r) => t.child.once('exit', r));
  t = await start(data);
  const again = (await call(t, 'GET', '/api/v1/audit?limit=1000')).body.items as Array<{ result: string }>;
  expect(again.filter((e) => e.result === 'interrupted')).toHaveLength(1);
  t.child.kill('SIGTERM');
  await new Promise((r) => t.child.once('exit', r));
}, 60_000);
