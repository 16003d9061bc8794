/**
 * The admin token file across restarts: a token an admin revoked stays revoked (it used to be
 * made again at every start, undoing the revocation without a word); deleting the file is how
 * someone with access to the data directory asks for a new one, and that is logged and audited.
 * A real server, restarted on its data directory.
 */
import { readFile, rm } from 'node:fs/promises';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { call, startTestServer, type TestServer } from './helpers.js';

let t: TestServer;

beforeAll(async () => {
  t = await startTestServer();
}, 60_000);
afterAll(async () => {
  vi.restoreAllMocks();
  await t?.stop();
});

interface Token {
  id: string;
  name: string;
  role: string;
}

it('a revoked admin token file stays revoked across a restart; deleting the file makes a new one, logged and audited', async () => {
  const first = t.admin;
  const second = (await call(t, 'POST', '/api/v1/tokens', { name: 'admin2', role: 'admin' })).body.token as string;
  const tokens = async (): Promise<Token[]> => (await call(t, 'GET', '/api/v1/tokens', undefined, second)).body.items;
  const bootstrap = (await tokens()).find((x) => x.name === 'admin')!;
  expect((await call(t, 'DELETE', `/api/v1/tokens/${bootstrap.id}`, undefined, second)).status).toBe(200);

  const stderr = vi.spyOn(console, 'error');
  await t.restart();
  expect((await call(t, 'GET', '/api/v1/stats', undefined, first)).status).toBe(401);
  expect((await tokens()).map((x) => x.name)).toEqual(['admin2']);
  expect((await readFile(t.server.adminTokenFile, 'utf8')).trim()).toBe(first);
  expect(stderr.mock.calls.flat().join('\n')).toMatch(/was revoked; it stays revoked/);

  await rm(t.server.adminTokenFile);
  stderr.mockClear();
  await t.restart();
  const made = (await readFile(t.server.adminTokenFile, 'utf8')).trim();
  expect(made).not.toBe(first);
  expect((await call(t, 'GET', '/api/v1/stats', undefined, made)).status).toBe(200);
  expect((await tokens()).map((x) => x.name).sort()).toEqual(['admin', 'admin2']);
  expect(stderr.mock.calls.flat().join('\n')).toMatch(/made a new admin token in .*admin\.token was missing/);
  const audit = (await call(t, 'GET', '/api/v1/audit?action=token%20create', undefined, made)).body.items as Array<{ actor: string; detail: string }>;
  expect(audit).toContainEqual(expect.objectContaining({ actor: 'system', detail: 'a new admin token at start: admin.token was missing' }));
  t.admin = made;
}, 60_000);
