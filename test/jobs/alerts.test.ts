/**
 * Alerts: a failed job and scrub damage are POSTed as JSON to webhooks (a refused delivery is
 * retried), kept, written to the audit log and counted in /metrics; capacity over a threshold
 * alerts once per crossing.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { Alerts, AuditLog } from '../../src/jobs/index.js';
import { call, putFile, startTestServer, type TestServer } from '../api/helpers.js';

let t: TestServer;
let hook: Server;
let hookUrl = '';
const received: Array<{ attempt: number; body: Record<string, unknown> }> = [];
let attempts = 0;

beforeAll(async () => {
  process.env.VTL_ALERT_RETRY_MS = '20';
  // the receiver refuses every first attempt of an alert: deliveries must be retried
  const seen = new Set<string>();
  hook = createServer((req, res) => {
    let text = '';
    req.on('data', (d) => (text += d));
    req.on('end', () => {
      attempts++;
      const body = JSON.parse(text);
      if (!seen.has(body.id)) {
        seen.add(body.id);
        res.writeHead(503).end();
        return;
      }
      received.push({ attempt: attempts, body });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`;
  t = await startTestServer();
});
afterAll(async () => {
  await t?.stop();
  await new Promise((r) => hook.close(r));
  delete process.env.VTL_ALERT_RETRY_MS;
});

async function waitFor<T>(fn: () => T | undefined, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('webhooks: add, list, remove; only admin; bad URLs refused', async () => {
  expect((await call(t, 'POST', '/api/v1/alerts/webhooks', { url: 'ftp://example.com/x' })).status).toBe(400);
  const h = await call(t, 'POST', '/api/v1/alerts/webhooks', { url: hookUrl });
  expect(h.status).toBe(201);
  const extra = (await call(t, 'POST', '/api/v1/alerts/webhooks', { url: 'http://127.0.0.1:9/never' })).body;
  expect((await call(t, 'GET', '/api/v1/alerts/webhooks')).body.items.map((x: { url: string }) => x.url)).toEqual([hookUrl, 'http://127.0.0.1:9/never']);
  expect((await call(t, 'DELETE', `/api/v1/alerts/webhooks/${extra.id}`)).status).toBe(200);
  expect((await call(t, 'DELETE', `/api/v1/alerts/webhooks/${extra.id}`)).status).toBe(404);
  const op = (await call(t, 'POST', '/api/v1/tokens', { name: 'op', role: 'operator' })).body.token;
  expect((await call(t, 'GET', '/api/v1/alerts/webhooks', undefined, op)).status).toBe(403);
});

test('a failed job raises an alert: webhook (after a retry), alert list, audit log, metrics', async () => {
  await call(t, 'POST', '/api/v1/libraries', { name: 'al', drives: 1, slots: 2, mailslots: 1 });
  await call(t, 'POST', '/api/v1/cartridges', { library: 'al', prefix: 'AL', start: 1, count: 1, mediaType: 'LTO-7' });
  await call(t, 'POST', '/api/v1/libraries/al/drives/0/load', { barcode: 'AL0001L7' });
  await putFile(t, 'al', 0, randomBytes(100_000));
  const drive = await t.server.libraries.drive('al', 0);
  await drive.open(); // a client holds the session: the verify job fails
  const job = (await call(t, 'POST', '/api/v1/cartridges/AL0001L7/verify')).body;
  const got = await waitFor(() => received.find((r) => (r.body.details as { job?: string }).job === job.id));
  await drive.close();
  expect(got.body).toMatchObject({ source: 'vtl', kind: 'job_failed', message: expect.stringMatching(/verify job .* on AL0001L7 failed/) });
  expect(attempts).toBeGreaterThanOrEqual(2); // the first delivery was refused and retried
  const listed = (await call(t, 'GET', '/api/v1/alerts')).body.items;
  expect(listed[0]).toMatchObject({ id: got.body.id, kind: 'job_failed' });
  const audit = (await call(t, 'GET', '/api/v1/audit?actor=system')).body.items;
  expect(audit.map((e: { action: string }) => e.action)).toContain('alert job_failed');
  expect((await call(t, 'GET', '/api/v1/audit/verify')).body.intact).toBe(true);
  const metrics = (await call(t, 'GET', '/metrics', undefined, null)).body as string;
  expect(metrics).toMatch(/vtl_alerts_total\{kind="job_failed"\} 1/);
  expect(metrics).toMatch(/vtl_job_duration_seconds_count\{kind="verify",state="failed"\} 1/);
  expect(metrics).toMatch(/vtl_chunk_lookups_total\{level="bloom"\} [1-9]/);
  expect(metrics).toMatch(/vtl_store_dedup_ratio [0-9.]+/);
  expect(metrics).toMatch(/vtl_store_compression_ratio [0-9.]+/);
});

test('scrub damage and capacity raise alerts; capacity once per crossing', async () => {
  const db = t.server.store.db;
  const seen: string[] = [];
  const alerts = new Alerts(db, new AuditLog(db), { capacityThreshold: 0 }); // any use is "over"
  alerts.onAlert((a) => seen.push(a.kind));
  const used = await alerts.checkCapacity(t.dir);
  expect(used).toBeGreaterThan(0);
  await alerts.checkCapacity(t.dir);
  expect(seen).toEqual(['capacity']);
  await alerts.jobEnded({ id: 'x1', kind: 'scrub', target: null, state: 'succeeded', requestedBy: null, createdAt: '', finishedAt: '', progress: { done: 0, total: 0, unit: 'containers', message: null }, result: { damagedChunks: 2, damagedContainers: [], affectedCartridges: [{ barcode: 'AL0001L7', files: [0] }] }, error: null });
  await alerts.jobEnded({ id: 'x2', kind: 'scrub', target: null, state: 'succeeded', requestedBy: null, createdAt: '', finishedAt: '', progress: { done: 0, total: 0, unit: 'containers', message: null }, result: { damagedChunks: 0, damagedContainers: [] }, error: null });
  expect(seen).toEqual(['capacity', 'scrub_damage']);
  const last = (await alerts.list(1))[0];
  expect(last).toMatchObject({ kind: 'scrub_damage', details: { damagedChunks: 2, affectedCartridges: [{ barcode: 'AL0001L7', files: [0] }] } });
  await alerts.close();
});
