/**
 * The audit log through the service: every authenticated mutation is recorded (who, token id,
 * what, when, result), listed filtered and paged, and the hash chain finds an edited entry, a
 * deleted one and a cut-off tail.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { entryHash, type AuditEntry } from '../../src/jobs/index.js';
import { call, startTestServer, type TestServer } from '../api/helpers.js';

let t: TestServer;
let ops: { token: string; id: string };
let auditor: string;

beforeAll(async () => {
  t = await startTestServer();
  ops = (await call(t, 'POST', '/api/v1/tokens', { name: 'ops', role: 'operator' })).body;
  auditor = (await call(t, 'POST', '/api/v1/tokens', { name: 'aud', role: 'auditor' })).body.token;
});
afterAll(async () => {
  await t?.stop();
});

const log = () => t.server.store.db.sublevel<string, unknown>('audit', { valueEncoding: 'json' }).sublevel<string, AuditEntry>('log', { valueEncoding: 'json' });
const verify = async () => (await call(t, 'GET', '/api/v1/audit/verify', undefined, auditor)).body;

test('mutations are recorded with actor, token id, action, target and result; reads are not', async () => {
  const t0 = new Date().toISOString();
  expect((await call(t, 'POST', '/api/v1/libraries', { name: 'al', drives: 1, slots: 2, mailslots: 1 }, ops.token)).status).toBe(201);
  expect((await call(t, 'POST', '/api/v1/libraries', { name: 'al', drives: 1, slots: 2, mailslots: 1 }, ops.token)).status).toBe(409);
  expect((await call(t, 'POST', '/api/v1/tokens', { name: 'x', role: 'admin' }, ops.token)).status).toBe(403);
  expect((await call(t, 'POST', '/api/v1/libraries', { name: 'nobody', drives: 1, slots: 2, mailslots: 1 }, null)).status).toBe(401);
  await call(t, 'GET', '/api/v1/libraries', undefined, ops.token);

  const all = (await call(t, 'GET', '/api/v1/audit', undefined, auditor)).body;
  // the two token creations by admin, then the three calls by ops (the 401 has no actor)
  expect(all.total).toBe(5);
  const mine = all.items.filter((e: AuditEntry) => e.actor === 'ops');
  expect(mine.map((e: AuditEntry) => [e.action, e.status, e.result])).toEqual([
    ['POST /api/v1/libraries', 201, 'ok'],
    ['POST /api/v1/libraries', 409, 'error'],
    ['POST /api/v1/tokens', 403, 'error'],
  ]);
  expect(mine[0]).toMatchObject({ tokenId: ops.id, role: 'operator', target: '/api/v1/libraries', detail: null });
  expect(mine[1].detail).toMatch(/^EXISTS/);
  expect(mine[2].detail).toMatch(/^FORBIDDEN/);
  expect(mine[0].at >= t0).toBe(true);
  // the audit log never holds a token secret
  expect(JSON.stringify(all)).not.toContain(ops.token);
});

test('filters: actor (name or token id), action prefix, time window; paging', async () => {
  const q = async (s: string) => (await call(t, 'GET', `/api/v1/audit?${s}`, undefined, auditor)).body;
  expect((await q('actor=ops')).total).toBe(3);
  expect((await q(`actor=${ops.id}`)).total).toBe(3);
  expect((await q('actor=admin')).total).toBe(2);
  expect((await q(`action=${encodeURIComponent('POST /api/v1/tokens')}`)).total).toBe(3);
  const all = (await q('limit=1000')).items as AuditEntry[];
  const mid = all[2].at;
  expect((await q(`since=${encodeURIComponent(mid)}`)).items.every((e: AuditEntry) => e.at >= mid)).toBe(true);
  expect((await q(`until=${encodeURIComponent(mid)}`)).items.every((e: AuditEntry) => e.at < mid)).toBe(true);
  expect((await q('until=2000-01-01T00:00:00Z')).total).toBe(0);
  const p2 = await q('offset=2&limit=2');
  expect(p2.items.map((e: AuditEntry) => e.seq)).toEqual([3, 4]);
  expect(p2.total).toBe(5);
  expect((await call(t, 'GET', '/api/v1/audit?since=yesterday', undefined, auditor)).status).toBe(400);
});

test('the chain is intact, and an edited entry, a deleted entry or a cut tail are found', async () => {
  expect(await verify()).toEqual({ intact: true, entries: 5, problem: null });
  const l = log();
  const third = (await l.get('000000000003'))!;

  await l.put('000000000003', { ...third, status: 200, result: 'ok' });
  expect(await verify()).toMatchObject({ intact: false, problem: { seq: 3, reason: expect.stringMatching(/altered/) } });
  await l.put('000000000003', third);
  expect((await verify()).intact).toBe(true);

  await l.del('000000000003');
  expect(await verify()).toMatchObject({ intact: false, problem: { seq: 3, reason: expect.stringMatching(/missing/) } });
  await l.put('000000000003', third);

  // a forged replacement that relinks (recomputes its own hash) still breaks the next link
  const forged = { ...third, actor: 'someone else' };
  await l.put('000000000003', { ...forged, hash: entryHash(forged) });
  expect(await verify()).toMatchObject({ intact: false, problem: { seq: 4, reason: expect.stringMatching(/does not link/) } });
  await l.put('000000000003', third);

  const fifth = (await l.get('000000000005'))!;
  await l.del('000000000005');
  expect(await verify()).toMatchObject({ intact: false, problem: { reason: expect.stringMatching(/removed from the end/) } });
  await l.put('000000000005', fifth);
  expect(await verify()).toEqual({ intact: true, entries: 5, problem: null });
});

test('appends from concurrent requests keep one chain, and the chain survives a restart', async () => {
  await Promise.all(Array.from({ length: 20 }, (_, i) => call(t, 'POST', '/api/v1/tokens', { name: `c${i}`, role: 'auditor' })));
  expect(await verify()).toEqual({ intact: true, entries: 25, problem: null });
  await t.restart();
  await call(t, 'POST', '/api/v1/tokens', { name: 'after', role: 'auditor' });
  expect((await call(t, 'GET', '/api/v1/audit/verify')).body).toEqual({ intact: true, entries: 26, problem: null });
});

test('cartridge changes, erases and deletes say in their entry what they changed or destroyed', async () => {
  expect((await call(t, 'POST', '/api/v1/cartridges', { library: 'al', barcodes: ['AU0001L7'] }, ops.token)).status).toBe(201);
  expect((await call(t, 'POST', '/api/v1/libraries/al/drives/0/load', { barcode: 'AU0001L7' }, ops.token)).status).toBe(200);
  const put = await fetch(`${t.url}/api/v1/libraries/al/drives/0/file`, { method: 'PUT', headers: { authorization: `Bearer ${ops.token}`, 'content-type': 'application/octet-stream' }, body: Buffer.alloc(5000, 1) });
  expect(put.status).toBe(200);
  expect((await call(t, 'POST', '/api/v1/libraries/al/drives/0/unload', undefined, ops.token)).status).toBe(200);
  const until = new Date(Date.now() + 3_600_000).toISOString();
  expect((await call(t, 'PATCH', '/api/v1/cartridges/AU0001L7', { writeProtected: true, retentionUntil: until }, ops.token)).status).toBe(200);
  expect((await call(t, 'PATCH', '/api/v1/cartridges/AU0001L7', { writeProtected: false }, ops.token)).status).toBe(200);
  expect((await call(t, 'PATCH', '/api/v1/cartridges/AU0001L7', { retentionUntil: null }, ops.token)).status).toBe(400);
  const entries = async (): Promise<AuditEntry[]> => (await call(t, 'GET', '/api/v1/audit?actor=ops&limit=1000', undefined, auditor)).body.items.filter((e: AuditEntry) => e.target.startsWith('/api/v1/cartridges/AU0001L7'));
  let e = await entries();
  expect(e.map((x) => [x.result, x.detail])).toEqual([
    ['ok', `writeProtected false -> true; retentionUntil none -> ${until}`],
    ['ok', 'writeProtected true -> false'],
    ['error', expect.stringMatching(/extended but not shortened/)],
  ]);
  // a cartridge without retention: erase and delete record what was there
  expect((await call(t, 'POST', '/api/v1/cartridges', { library: 'al', barcodes: ['AU0002L7'] }, ops.token)).status).toBe(201);
  expect((await call(t, 'POST', '/api/v1/libraries/al/drives/0/load', { barcode: 'AU0002L7' }, ops.token)).status).toBe(200);
  const put2 = await fetch(`${t.url}/api/v1/libraries/al/drives/0/file`, { method: 'PUT', headers: { authorization: `Bearer ${ops.token}`, 'content-type': 'application/octet-stream' }, body: Buffer.alloc(7000, 2) });
  expect(put2.status).toBe(200);
  expect((await call(t, 'POST', '/api/v1/libraries/al/drives/0/unload', undefined, ops.token)).status).toBe(200);
  expect((await call(t, 'POST', '/api/v1/cartridges/AU0002L7/erase', undefined, ops.token)).status).toBe(200);
  expect((await call(t, 'DELETE', '/api/v1/cartridges/AU0002L7', undefined, ops.token)).status).toBe(200);
  e = (await call(t, 'GET', '/api/v1/audit?actor=ops&limit=1000', undefined, auditor)).body.items.filter((x: AuditEntry) => x.target.startsWith('/api/v1/cartridges/AU0002L7'));
  expect(e.map((x) => x.detail)).toEqual(['erased 7000 bytes in 1 tape file', 'deleted 0 bytes in 0 tape files']);
  expect((await verify()).intact).toBe(true);
});
