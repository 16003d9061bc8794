/**
 * The rmt server's bytes reach /metrics and the capacity history's throughput, and what its
 * sessions write or erase reaches the audit log (a real vtl server, a raw rmt client).
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { call, startTestServer, type TestServer } from '../../api/helpers.js';
import { RawClient } from './harness.js';

let t: TestServer;
beforeAll(async () => {
  process.env.VTL_HISTORY_INTERVAL_MS = '200';
  t = await startTestServer({ demo: true });
});
afterAll(async () => {
  delete process.env.VTL_HISTORY_INTERVAL_MS;
  await t?.stop();
});

test('rmt bytes in and out are counted in /metrics and in the history', async () => {
  expect((await call(t, 'POST', '/api/v1/libraries/lib1/drives/0/load', { barcode: 'VT0001L7' })).status).toBe(200);
  const port = Number(t.server.rmtAddress.split(':').pop());
  const c = await RawClient.connect(port);
  expect((await c.open('/lib1/nst0')).ok).toBe(true);
  const record = Buffer.alloc(65536, 7);
  for (let i = 0; i < 16; i++) expect((await c.write(record)).ok).toBe(true);
  expect((await c.close()).ok).toBe(true);
  c.destroy();
  const text = String((await call(t, 'GET', '/metrics')).body);
  const bytesIn = Number(/vtl_rmt_bytes_total\{direction="in"\} (\d+)/.exec(text)?.[1]);
  const bytesOut = Number(/vtl_rmt_bytes_total\{direction="out"\} (\d+)/.exec(text)?.[1]);
  expect(bytesIn).toBeGreaterThanOrEqual(16 * 65536);
  expect(bytesOut).toBeGreaterThan(0);
  // The history's points carry the rmt traffic of their interval.
  let total = 0;
  for (let i = 0; i < 50 && total < 16 * 65536; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const h = (await call(t, 'GET', '/api/v1/stats/history?resolution=fine')).body;
    total = h.points.reduce((n: number, p: { traffic: Record<string, { in: number }> }) => n + (p.traffic.rmt?.in ?? 0), 0);
  }
  expect(total).toBeGreaterThanOrEqual(16 * 65536);
});

test('what an rmt session writes or erases is in the audit log, with the client as actor; reads are not', async () => {
  expect((await call(t, 'POST', '/api/v1/libraries/lib1/drives/1/load', { barcode: 'VT0002L7' })).status).toBe(200);
  const port = Number(t.server.rmtAddress.split(':').pop());
  const c = await RawClient.connect(port);
  expect((await c.open('/lib1/nst1')).ok).toBe(true);
  for (let i = 0; i < 3; i++) expect((await c.write(Buffer.alloc(10_000, i))).ok).toBe(true);
  expect((await c.close()).ok).toBe(true); // one filemark on close
  expect((await c.open('/lib1/st1', '0 O_RDONLY')).ok).toBe(true); // rewinding, read only
  expect((await c.read(65536)).ok).toBe(true);
  expect((await c.close()).ok).toBe(true);
  expect((await c.open('/lib1/nst1')).ok).toBe(true);
  expect((await c.ioctl(13, 1)).ok).toBe(true); // MTERASE from BOT
  expect((await c.close()).ok).toBe(true);
  c.destroy();
  let items: Array<{ actor: string; action: string; target: string; result: string; detail: string }> = [];
  for (let i = 0; i < 50 && items.length < 2; i++) {
    items = (await call(t, 'GET', '/api/v1/audit?action=rmt')).body.items.filter((e: { target: string }) => e.target === 'VT0002L7');
    if (items.length < 2) await new Promise((r) => setTimeout(r, 50));
  }
  expect(items).toHaveLength(2);
  expect(items[0]).toMatchObject({ action: 'rmt write', target: 'VT0002L7', result: 'ok', detail: '/lib1/nst1: 3 records (30000 bytes), 1 filemark' });
  expect(items[0].actor).toMatch(/^rmt 127\.0\.0\.1:\d+$/);
  expect(items[1]).toMatchObject({ action: 'rmt erase', target: 'VT0002L7', result: 'ok', detail: '/lib1/nst1: erased from the position on' });
  expect((await call(t, 'GET', '/api/v1/audit/verify')).body.intact).toBe(true);
});

test('writes and erases a cartridge refuses over rmt are in the audit log as errors, with the reason', async () => {
  const port = Number(t.server.rmtAddress.split(':').pop());
  // write protected: open for writing fails (EROFS)
  expect((await call(t, 'PATCH', '/api/v1/cartridges/VT0003L7', { writeProtected: true })).status).toBe(200);
  expect((await call(t, 'POST', '/api/v1/libraries/lib1/drives/2/load', { barcode: 'VT0003L7' })).status).toBe(200);
  const c = await RawClient.connect(port);
  expect(await c.open('/lib1/nst2')).toMatchObject({ ok: false, errno: 30 });
  // WORM: the first file is written; overwriting it (twice) and erasing it are refused
  expect((await call(t, 'DELETE', '/api/v1/cartridges/VT0004L7')).status).toBe(200);
  expect((await call(t, 'POST', '/api/v1/cartridges', { library: 'lib1', barcodes: ['WM0001LX'], worm: true })).status).toBe(201);
  expect((await call(t, 'POST', '/api/v1/libraries/lib1/drives/3/load', { barcode: 'WM0001LX' })).status).toBe(200);
  expect((await c.open('/lib1/nst3')).ok).toBe(true);
  expect((await c.write(Buffer.alloc(4096, 1))).ok).toBe(true);
  expect((await c.close()).ok).toBe(true);
  expect((await c.open('/lib1/st3')).ok).toBe(true); // rewinding: at BOT again
  expect((await c.ioctl(6, 1)).ok).toBe(true); // MTREW
  for (let i = 0; i < 2; i++) expect((await c.write(Buffer.alloc(4096, 2))).ok).toBe(false);
  expect((await c.ioctl(13, 1)).ok).toBe(false); // MTERASE
  expect((await c.close()).ok).toBe(true);
  c.destroy();
  let items: Array<{ action: string; target: string; result: string; detail: string }> = [];
  for (let i = 0; i < 50 && items.length < 4; i++) {
    items = (await call(t, 'GET', '/api/v1/audit?action=rmt')).body.items.filter((e: { target: string }) => ['VT0003L7', 'WM0001LX'].includes(e.target));
    if (items.length < 4) await new Promise((r) => setTimeout(r, 50));
  }
  expect(items).toHaveLength(4);
  expect(items[0]).toMatchObject({ action: 'rmt write', target: 'VT0003L7', result: 'error', detail: '/lib1/nst2: refused at open: cartridge VT0003L7 is write protected' });
  expect(items[1]).toMatchObject({ action: 'rmt write', target: 'WM0001LX', result: 'ok' });
  expect(items[2]).toMatchObject({ action: 'rmt write', target: 'WM0001LX', result: 'error' });
  expect(items[2].detail).toMatch(/^\/lib1\/st3: refused 2 times: .*WORM/);
  expect(items[3]).toMatchObject({ action: 'rmt erase', target: 'WM0001LX', result: 'error' });
  expect(items[3].detail).toMatch(/^\/lib1\/st3: refused 1 time: .*WORM/);
  expect((await call(t, 'GET', '/api/v1/audit/verify')).body.intact).toBe(true);
});
