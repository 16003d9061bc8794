/**
 * Capacity history: the module over a real LevelDB with an injected clock (roll-up into hours,
 * pruning of fine and hourly points, bounded size, queries, reopening, the sampler's counter
 * deltas and failures), then a real server sampling every 200 ms while data is written through
 * the HTTP tape stream, across a restart.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { afterAll, afterEach, beforeAll, describe, expect, test, vi } from 'vitest';
import { CapacityHistory, HistorySampler, historyInterval, type HistoryPoint, type Traffic } from '../../src/api/history.js';
import type { StoreTotals } from '../../src/api/totals.js';
import { randomBytes } from '../helpers/data.js';
import { call, putFile, startTestServer, type TestServer } from './helpers.js';

const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
const T0 = Date.UTC(2024, 0, 1);

function totals(logical: number): StoreTotals {
  return { libraries: 1, cartridges: 2, logicalBytes: logical, uniqueBytes: logical / 2, storedBytes: logical / 4, dedupRatio: 2, compressionRatio: 2, reductionRatio: 4, containers: 1, chunks: 3 };
}
const http = (i: number, o = 0): Traffic => ({ http: { in: i, out: o } });
const sumIn = (ps: HistoryPoint[]) => ps.reduce((a, p) => a + (p.traffic.http?.in ?? 0), 0);

describe('CapacityHistory (injected clock, real LevelDB)', () => {
  let dir: string;
  let db: Level<string, unknown>;
  let now = T0;
  const clock = () => now;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vtl-history-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const open = async (name: string) => {
    db = new Level(join(dir, name), { valueEncoding: 'json' });
    await db.open();
    return new CapacityHistory(db, { now: clock });
  };
  afterEach(async () => {
    await db?.close();
  });

  test('fine points roll up into hourly points: last totals, summed traffic, time and samples', async () => {
    const h = await open('rollup');
    for (let i = 0; i < 180; i++) {
      now = T0 + i * MIN;
      await h.record(totals(i * 1000), http(10, 1), 60);
    }
    const fine = await h.query({ from: T0, to: now, resolution: 'fine' });
    expect(fine.points).toHaveLength(180);
    expect(fine.points.map((p) => p.logicalBytes)).toEqual(Array.from({ length: 180 }, (_, i) => i * 1000));
    const hourly = await h.query({ from: T0, to: now, resolution: 'hourly' });
    expect(hourly.resolution).toBe('hourly');
    expect(hourly.points).toHaveLength(3);
    hourly.points.forEach((p, k) => {
      expect(p.samples).toBe(60);
      expect(p.seconds).toBe(3600);
      expect(p.traffic).toEqual({ http: { in: 600, out: 60 } });
      expect(p.logicalBytes).toBe((k * 60 + 59) * 1000); // the hour's last sample
      expect(p.at).toBe(new Date(T0 + k * HOUR + 59 * MIN).toISOString());
    });
    expect(sumIn(hourly.points)).toBe(sumIn(fine.points));
    expect(hourly.latest?.logicalBytes).toBe(179_000);
  });

  test('auto resolution, merging down to maxPoints, and bad ranges', async () => {
    const h = await open('query');
    for (let i = 0; i < 180; i++) {
      now = T0 + i * MIN;
      await h.record(totals(i), http(5), 60);
    }
    expect((await h.query({ from: now - DAY, to: now })).resolution).toBe('fine');
    expect((await h.query({ from: now - 7 * DAY, to: now })).resolution).toBe('hourly');
    const day = await h.query({}); // defaults: the last day up to now
    expect(day.to).toBe(new Date(now).toISOString());
    expect(day.points).toHaveLength(180); // fewer than maxPoints: none merged
    const few = await h.query({ from: T0, to: now, resolution: 'fine', maxPoints: 10 });
    expect(few.points.length).toBeLessThanOrEqual(10);
    expect(few.points.length).toBeGreaterThanOrEqual(9);
    expect(sumIn(few.points)).toBe(180 * 5);
    expect(few.points.reduce((a, p) => a + p.samples, 0)).toBe(180);
    expect(few.points.at(-1)!.logicalBytes).toBe(179);
    const slice = await h.query({ from: T0 + 30 * MIN, to: T0 + 40 * MIN, resolution: 'fine' });
    expect(slice.points.map((p) => p.logicalBytes)).toEqual([30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40]);
    await expect(h.query({ from: now, to: now - 1 })).rejects.toThrow(RangeError);
    await expect(h.query({ from: Number.NaN })).rejects.toThrow(/between 1970 and 9999/);
    await expect(h.query({ maxPoints: 0 })).rejects.toThrow(/maxPoints/);
    await expect(h.record(totals(1), {}, -1)).rejects.toThrow(RangeError);
    expect((await h.query({ from: T0, to: now, resolution: 'fine' })).points).toHaveLength(180); // the bad record wrote nothing
  });

  test('fine points are deleted after 2 days, hourly points after 400 days, as new points arrive', async () => {
    const h = await open('prune');
    now = T0;
    await h.record(totals(1), {}, 60);
    now = T0 + DAY;
    await h.record(totals(2), {}, 60);
    now = T0 + 2 * DAY + MIN;
    await h.record(totals(3), {}, 60);
    const fine = await h.query({ from: T0, to: now, resolution: 'fine' });
    expect(fine.points.map((p) => p.logicalBytes)).toEqual([2, 3]);
    const hourly = await h.query({ from: T0, to: now, resolution: 'hourly' });
    expect(hourly.points.map((p) => p.logicalBytes)).toEqual([1, 2, 3]);
    now = T0 + 400 * DAY + 2 * HOUR;
    await h.record(totals(4), {}, 60);
    const later = await h.query({ from: T0, to: now, resolution: 'hourly' });
    expect(later.points.map((p) => p.logicalBytes)).toEqual([2, 3, 4]);
    expect((await h.query({ from: T0, to: now, resolution: 'fine' })).points.map((p) => p.logicalBytes)).toEqual([4]);
  });

  test('the size stays bounded: 500 days of a point every 6 hours keep 400 days of hours and 2 days of fine points', async () => {
    const h = await open('bounded');
    const start = T0;
    for (let i = 0; i < 500 * 4; i++) {
      now = start + i * 6 * HOUR;
      await h.record(totals(i), http(1), 6 * 3600);
    }
    const all = async (resolution: 'fine' | 'hourly') => (await h.query({ from: start, to: now, resolution, maxPoints: 10_000 })).points;
    const hourly = await all('hourly');
    expect(hourly.length).toBe(400 * 4 + 1);
    expect(Date.parse(hourly[0].at)).toBeGreaterThanOrEqual(now - 400 * DAY);
    const fine = await all('fine');
    expect(fine.length).toBe(2 * 4 + 1);
    expect(Date.parse(fine[0].at)).toBe(now - 2 * DAY);
    let keys = 0;
    for await (const _ of db.keys()) keys++;
    expect(keys).toBe(hourly.length + fine.length); // nothing else left behind
  });

  test('reopened, the history goes on: a new sample merges into the stored hour', async () => {
    let h = await open('reopen');
    now = T0 + 10 * MIN;
    await h.record(totals(100), http(7), 60);
    await db.close();
    db = new Level(join(dir, 'reopen'), { valueEncoding: 'json' });
    await db.open();
    h = new CapacityHistory(db, { now: clock });
    now = T0 + 11 * MIN;
    await h.record(totals(200), http(3), 60);
    const [hour] = (await h.query({ from: T0, to: now, resolution: 'hourly' })).points;
    expect(hour).toMatchObject({ samples: 2, seconds: 120, logicalBytes: 200, traffic: { http: { in: 10, out: 0 } } });
  });

  test('the sampler records counter deltas (a reset counter counts from zero) and survives a failing source', async () => {
    const h = await open('sampler');
    now = T0;
    const counters: Traffic[] = [http(100), http(250, 50), http(30)];
    let fail = false;
    let n = 0;
    let k = 0;
    const sampler = new HistorySampler(
      h,
      {
        totals: async () => {
          if (fail) throw new Error('disk on fire');
          return totals(++n * 1000);
        },
        traffic: async () => counters[Math.min(k++, counters.length - 1)],
      },
      MIN,
      clock,
    );
    const errors = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      for (let i = 1; i <= 3; i++) {
        now = T0 + i * MIN;
        await sampler.sample();
      }
      fail = true;
      now = T0 + 4 * MIN;
      await sampler.sample();
      now = T0 + 5 * MIN;
      await sampler.sample();
      expect(errors.mock.calls.filter((c) => String(c[0]).includes('capacity history sample failed'))).toHaveLength(1);
    } finally {
      errors.mockRestore();
    }
    fail = false;
    now = T0 + 6 * MIN;
    await sampler.sample();
    const ps = (await h.query({ from: T0, to: now, resolution: 'fine' })).points;
    expect(ps.map((p) => p.traffic.http)).toEqual([
      { in: 100, out: 0 },
      { in: 150, out: 50 },
      { in: 30, out: 0 }, // the counter went down: a restart, all of it is new
      { in: 0, out: 0 },
    ]);
    expect(ps.map((p) => p.seconds)).toEqual([60, 60, 60, 180]); // the failed samples' time is covered by the next one
    expect(ps.map((p) => p.logicalBytes)).toEqual([1000, 2000, 3000, 4000]);
    await sampler.close();
    now = T0 + 7 * MIN;
    await sampler.sample(); // closed: no more points
    expect((await h.query({ from: T0, to: now, resolution: 'fine' })).points).toHaveLength(4);
  });

  test('close waits for a sample in flight', async () => {
    const h = await open('close');
    now = T0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const sampler = new HistorySampler(h, { totals: async () => (await gate, totals(5)), traffic: async () => ({}) }, MIN, clock);
    void sampler.sample();
    const closed = sampler.close();
    release();
    await closed;
    expect((await h.latest())?.logicalBytes).toBe(5);
  });

  test('VTL_HISTORY_INTERVAL_MS: default a minute, 0 is off, nonsense is refused', () => {
    expect(historyInterval(undefined)).toBe(60_000);
    expect(historyInterval('')).toBe(60_000);
    expect(historyInterval('0')).toBe(0);
    expect(historyInterval('200')).toBe(200);
    for (const bad of ['50', '-1', 'soon', '1.5']) expect(() => historyInterval(bad)).toThrow(/VTL_HISTORY_INTERVAL_MS/);
  });
});

describe('GET /api/v1/stats/history on a real server sampling every 200 ms', () => {
  let t: TestServer;
  const errors: string[] = [];
  const history = (q = '', token?: string) => call(t, 'GET', `/api/v1/stats/history${q}`, undefined, token ?? t.admin);
  const since = new Date().toISOString();
  // From the test's start: a short range, so no points are merged.
  const fine = async () => (await history(`?resolution=fine&from=${since}`)).body.points as HistoryPoint[];
  async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
    const end = Date.now() + ms;
    for (;;) {
      const v = await fn();
      if (v !== undefined) return v;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  beforeAll(async () => {
    process.env.VTL_HISTORY_INTERVAL_MS = '200';
    const orig = console.error.bind(console);
    vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => {
      errors.push(a.map(String).join(' '));
      orig(...a);
    });
    t = await startTestServer();
    expect((await call(t, 'POST', '/api/v1/libraries', { name: 'lib1', drives: 1, slots: 4, mailslots: 1 })).status).toBe(201);
    expect((await call(t, 'POST', '/api/v1/cartridges', { library: 'lib1', barcodes: ['HIST01L7'] })).status).toBe(201);
    expect((await call(t, 'POST', '/api/v1/libraries/lib1/drives/0/load', { barcode: 'HIST01L7' })).status).toBe(200);
  });
  afterAll(async () => {
    await t?.stop();
    vi.restoreAllMocks();
    delete process.env.VTL_HISTORY_INTERVAL_MS;
  });

  test('points appear with growing logical bytes as tape files are written, with their traffic', async () => {
    const a = randomBytes(1024 * 1024, 1);
    const b = randomBytes(2 * 1024 * 1024, 2);
    await until('a first point', async () => ((await fine()).length ? true : undefined));
    expect((await putFile(t, 'lib1', 0, a, 65536)).status).toBe(200);
    await until('a point with the first file', async () => ((await fine()).some((p) => p.logicalBytes === a.length) ? true : undefined));
    expect((await putFile(t, 'lib1', 0, b, 65536)).status).toBe(200);
    const points = await until('a point with both files', async () => {
      const ps = await fine();
      // Stored bytes count a container as it is sealed, which may come a moment after the
      // file's sync point: wait for a point that has both (random data: unique = logical).
      const last = ps.at(-1);
      return last?.logicalBytes === a.length + b.length && last.uniqueBytes === a.length + b.length && sumIn(ps) === a.length + b.length ? ps : undefined;
    });
    const logical = points.map((p) => p.logicalBytes);
    expect(logical[0]).toBe(0);
    expect([...logical].sort((x, y) => x - y)).toEqual(logical); // never shrinks: nothing was erased
    expect(logical).toContain(a.length);
    expect(Math.max(...logical)).toBe(a.length + b.length);
    const last = points.at(-1)!;
    const stats = (await call(t, 'GET', '/api/v1/stats')).body;
    expect(last).toMatchObject({ logicalBytes: stats.logicalBytes, storedBytes: stats.storedBytes, uniqueBytes: stats.uniqueBytes, chunks: stats.chunks, cartridges: 1, libraries: 1 });
    expect(last.storedBytes).toBeGreaterThan(0);
    expect(last.dedupRatio).toBeCloseTo(stats.dedupRatio, 9);
    // Every byte of the HTTP tape stream shows up once, in some interval (the wait above needed it; none extra).
    expect(sumIn(await fine())).toBe(a.length + b.length);
    const busy = points.filter((p) => p.traffic.http.in > 0);
    expect(busy.length).toBeGreaterThanOrEqual(1);
    for (const p of busy) expect(p.seconds).toBeGreaterThan(0);
    const gaps = points.slice(1).map((p, i) => Date.parse(p.at) - Date.parse(points[i].at));
    console.log(`history: ${points.length} fine points, gaps ${Math.min(...gaps)}..${Math.max(...gaps)} ms, throughput of the busiest interval ${Math.max(...busy.map((p) => p.traffic.http.in / p.seconds / 1e6)).toFixed(1)} MB/s`);

    const r = (await history()).body;
    expect(r.resolution).toBe('fine');
    expect(r.intervalSeconds).toBe(0.2);
    expect(r.latest.at >= last.at).toBe(true);
    const hourly = (await history('?resolution=hourly')).body.points as HistoryPoint[];
    expect(hourly.length).toBeGreaterThanOrEqual(1);
    expect(hourly.length).toBeLessThanOrEqual(2);
    const fineNow = await fine();
    // The hours hold exactly the fine points (give or take one sample landing between the reads).
    expect(Math.abs(hourly.reduce((s, p) => s + p.samples, 0) - fineNow.length)).toBeLessThanOrEqual(1);
  });

  test('the history survives a restart and goes on, without negative traffic', async () => {
    const before = await fine();
    await t.restart();
    const after = await until('new points after the restart', async () => {
      const ps = await fine();
      return ps.length >= before.length + 2 ? ps : undefined;
    });
    expect(after.slice(0, before.length).map((p) => p.at)).toEqual(before.map((p) => p.at));
    for (const p of after) expect(p.traffic.http.in).toBeGreaterThanOrEqual(0);
    expect(after.at(-1)!.logicalBytes).toBe(3 * 1024 * 1024);
    expect(errors.filter((e) => e.includes('capacity history'))).toEqual([]);
  });

  test('auditors may read it; bad input is a 400; it is in the OpenAPI document', async () => {
    const auditor = (await call(t, 'POST', '/api/v1/tokens', { name: 'aud', role: 'auditor' })).body.token;
    expect((await history('', auditor)).status).toBe(200);
    expect((await call(t, 'GET', '/api/v1/stats/history', undefined, null)).status).toBe(401);
    const now = Date.now();
    const range = (from: number, to: number) => `?from=${new Date(from).toISOString()}&to=${new Date(to).toISOString()}`;
    const bad = await history(range(now, now - 1000));
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({ error: 'INVALID' });
    expect(bad.body.message).toContain('after');
    expect((await history('?from=yesterday')).status).toBe(400);
    expect((await history('?resolution=weekly')).status).toBe(400);
    expect((await history('?maxPoints=0')).status).toBe(400);
    expect((await history('?extra=1')).status).toBe(400);
    const week = await history(range(now - 7 * DAY, now));
    expect(week.body.resolution).toBe('hourly');
    expect(week.body.points.length).toBeGreaterThanOrEqual(1);
    const doc = (await call(t, 'GET', '/api/v1/openapi.json')).body;
    const op = doc.paths['/api/v1/stats/history'].get;
    expect(op['x-vtl-access']).toBe('auditor');
    expect(op.parameters.map((p: { name: string }) => p.name).sort()).toEqual(['from', 'maxPoints', 'resolution', 'to']);
    expect(op.responses['200'].content['application/json'].schema.properties.points.items.properties.traffic).toBeDefined();
  });
});
