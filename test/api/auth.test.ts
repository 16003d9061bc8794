/**
 * Auth: every route of the OpenAPI document is walked without a token, with a wrong token and
 * with each role; mutations never run without a valid token of a sufficient role. Tokens are
 * stored hashed and the admin token file is private.
 */
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { call, startTestServer, type TestServer } from './helpers.js';

let t: TestServer;
let operator: string;
let auditor: string;

interface Op {
  method: string;
  path: string;
  access: 'public' | 'auditor' | 'operator' | 'admin';
}

let ops: Op[] = [];
/** A job that exists, for /jobs/{id}; a replication job, for /replication/jobs/{id}. */
let jobId = '';
let replicationJobId = '';
let tierDir = '';

beforeAll(async () => {
  t = await startTestServer({ demo: true });
  operator = (await call(t, 'POST', '/api/v1/tokens', { name: 'ops', role: 'operator' })).body.token;
  auditor = (await call(t, 'POST', '/api/v1/tokens', { name: 'audit', role: 'auditor' })).body.token;
  jobId = (await call(t, 'POST', '/api/v1/cartridges/VT0002L7/verify')).body.id;
  while ((await call(t, 'GET', `/api/v1/jobs/${jobId}`)).body.state === 'running') await new Promise((r) => setTimeout(r, 10));
  tierDir = await mkdtemp(join(tmpdir(), 'vtl-auth-tier-'));
  await call(t, 'POST', '/api/v1/replication/targets', { name: 'tier', url: `file://${tierDir}` });
  replicationJobId = (await call(t, 'POST', '/api/v1/cartridges/VT0002L7/replicate', { target: 'tier', wait: true })).body.id;
  const doc = (await call(t, 'GET', '/api/v1/openapi.json', undefined, null)).body;
  ops = Object.entries(doc.paths as Record<string, Record<string, { 'x-vtl-access': Op['access'] }>>).flatMap(([p, ms]) =>
    Object.entries(ms).map(([m, op]) => ({ method: m.toUpperCase(), path: p, access: op['x-vtl-access'] })),
  );
});
afterAll(async () => {
  await t?.stop();
  if (tierDir) await rm(tierDir, { recursive: true, force: true });
});

/** A concrete URL for a templated path; values that exist, so only auth can refuse. */
const concrete = (p: string) => p.replace('/replication/jobs/{id}', `/replication/jobs/${replicationJobId}`).replace('/jobs/{id}', `/jobs/${jobId}`).replace('{name}', 'tier').replace('{lib}', 'lib1').replace('{n}', '0').replace('{barcode}', 'VT0001L7').replace('{id}', '000000000000');

const rank = { public: 0, auditor: 1, operator: 2, admin: 3 } as const;

test('the document lists the routes, and only reads are public', () => {
  expect(ops.length).toBeGreaterThan(30);
  for (const op of ops) {
    if (op.method !== 'GET') expect(op.access, `${op.method} ${op.path}`).not.toBe('public');
  }
  expect(ops.filter((o) => o.access === 'public').map((o) => o.path).sort()).toEqual(['/api/v1/health', '/api/v1/openapi.json', '/metrics']);
});

test('every route refuses a missing or wrong token with 401, and a too small role with 403', async () => {
  const before = (await call(t, 'GET', '/api/v1/cartridges/VT0001L7')).body;
  for (const op of ops) {
    if (op.access === 'public') continue;
    const url = concrete(op.path);
    const body = op.method === 'GET' || op.method === 'DELETE' ? undefined : {};
    for (const token of [null, 'vtl_wrong', 'not-even-a-token']) {
      const r = await call(t, op.method, url, body, token);
      expect({ op: `${op.method} ${url}`, status: r.status, error: r.body.error }).toEqual({ op: `${op.method} ${url}`, status: 401, error: 'UNAUTHORIZED' });
      expect(r.headers.get('www-authenticate')).toMatch(/^Bearer/);
    }
    for (const [role, token] of [['auditor', auditor], ['operator', operator]] as const) {
      if (rank[role] >= rank[op.access]) continue;
      const r = await call(t, op.method, url, body, token);
      expect({ op: `${op.method} ${url}`, role, status: r.status, error: r.body.error }).toEqual({ op: `${op.method} ${url}`, role, status: 403, error: 'FORBIDDEN' });
    }
  }
  // nothing changed on the way
  const after = (await call(t, 'GET', '/api/v1/cartridges/VT0001L7')).body;
  expect(after).toEqual(before);
  expect((await call(t, 'GET', '/api/v1/libraries')).body.items).toHaveLength(1);
  expect((await call(t, 'GET', '/api/v1/tokens')).body.items).toHaveLength(3);
});

test('each role gets through to the routes it may use', async () => {
  for (const op of ops.filter((o) => o.method === 'GET' && o.access !== 'public' && !o.path.endsWith('/file'))) {
    for (const [role, token] of [['auditor', auditor], ['operator', operator], ['admin', t.admin]] as const) {
      if (rank[role] < rank[op.access]) continue;
      const r = await call(t, 'GET', concrete(op.path), undefined, token);
      expect({ op: op.path, role, status: r.status }).toEqual({ op: op.path, role, status: 200 });
    }
  }
  const load = await call(t, 'POST', '/api/v1/libraries/lib1/drives/0/load', { barcode: 'VT0001L7' }, operator);
  expect(load.status).toBe(200);
  expect((await call(t, 'GET', '/api/v1/auth/whoami', undefined, auditor)).body).toMatchObject({ name: 'audit', role: 'auditor' });
});

test('tokens: create, list, revoke; a revoked token stops working; the last admin stays', async () => {
  const extra = (await call(t, 'POST', '/api/v1/tokens', { name: 'temp', role: 'operator' })).body;
  expect(extra.token).toMatch(/^vtl_[A-Za-z0-9_-]{43}$/);
  expect((await call(t, 'GET', '/api/v1/stats', undefined, extra.token)).status).toBe(200);
  const list = (await call(t, 'GET', '/api/v1/tokens')).body.items;
  expect(list.map((x: { name: string }) => x.name)).toEqual(['admin', 'ops', 'audit', 'temp']);
  expect(JSON.stringify(list)).not.toContain(extra.token);
  expect((await call(t, 'DELETE', `/api/v1/tokens/${extra.id}`)).status).toBe(200);
  expect((await call(t, 'GET', '/api/v1/stats', undefined, extra.token)).status).toBe(401);
  const adminId = list.find((x: { role: string }) => x.role === 'admin').id;
  const last = await call(t, 'DELETE', `/api/v1/tokens/${adminId}`);
  expect(last.status).toBe(409);
  expect((await call(t, 'POST', '/api/v1/tokens', { name: 'x', role: 'root' })).status).toBe(400);
});

test('the admin token file is mode 0600 and tokens are stored only as hashes', async () => {
  const st = await stat(t.server.adminTokenFile);
  expect(st.mode & 0o777).toBe(0o600);
  await t.restart(); // LevelDB writes its log out
  expect((await call(t, 'GET', '/api/v1/stats', undefined, operator)).status).toBe(200);
  const index = join(t.dir, 'index');
  for (const f of await readdir(index)) {
    const bytes = await readFile(join(index, f));
    for (const secret of [t.admin, operator, auditor]) expect(bytes.includes(Buffer.from(secret.slice(4))), f).toBe(false);
  }
});
