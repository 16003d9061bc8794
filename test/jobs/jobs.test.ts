/** The job runner on a real LevelDB: records, progress, cancel, failure, recovery after a stop. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { JobCancelled, JobNotFound, Jobs, Schedule } from '../../src/jobs/index.js';

let dir: string;
let db: Level<string, unknown>;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vtl-jobs-'));
  db = new Level(join(dir, 'index'), { valueEncoding: 'json' });
  await db.open();
});
afterEach(async () => {
  await db.close();
  await rm(dir, { recursive: true, force: true });
});

const tick = () => new Promise((r) => setTimeout(r, 5));
const HOUR = 3_600_000;

test('a job runs in the background, reports progress and keeps its result', async () => {
  const jobs = new Jobs(db);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const started = await jobs.start({
    kind: 'count',
    target: 'VT0001L7',
    requestedBy: 'ops',
    unit: 'files',
    run: async (ctx) => {
      ctx.progress(1, 3, 'first');
      await gate;
      ctx.progress(3, 3, 'done');
      return { counted: 3 };
    },
  });
  expect(started).toMatchObject({ kind: 'count', target: 'VT0001L7', state: 'running', requestedBy: 'ops', finishedAt: null });
  await tick();
  expect((await jobs.get(started.id)).progress).toEqual({ done: 1, total: 3, unit: 'files', message: 'first' });
  expect((await jobs.list({ state: 'running' })).items.map((j) => j.id)).toEqual([started.id]);
  release();
  const end = await jobs.wait(started.id);
  expect(end).toMatchObject({ state: 'succeeded', result: { counted: 3 }, error: null, progress: { done: 3, total: 3 } });
  expect(end.finishedAt).not.toBeNull();
  // the record is durable: a new runner over the same LevelDB sees it
  expect(await new Jobs(db).get(started.id)).toEqual(end);
});

test('cancel stops a job at its next check; a failure keeps its message; ids sort by start', async () => {
  const jobs = new Jobs(db);
  let steps = 0;
  const long = await jobs.start({
    kind: 'loop',
    run: async (ctx) => {
      for (;;) {
        ctx.checkCancelled();
        steps++;
        await tick();
      }
    },
  });
  const bad = await jobs.start({ kind: 'broken', run: async () => Promise.reject(new Error('disk on fire')) });
  expect(bad.id > long.id).toBe(true);
  await tick();
  expect((await jobs.cancel(long.id)).state).toBe('running'); // asked, not yet stopped
  const end = await jobs.wait(long.id);
  expect(end.state).toBe('cancelled');
  const after = steps;
  await tick();
  expect(steps).toBe(after);
  expect(await jobs.wait(bad.id)).toMatchObject({ state: 'failed', error: 'disk on fire' });
  // cancelling an ended job changes nothing
  expect((await jobs.cancel(bad.id)).state).toBe('failed');
  expect((await jobs.list()).items.map((j) => j.id)).toEqual([bad.id, long.id]);
  expect((await jobs.list({ kind: 'loop' })).total).toBe(1);
  expect((await jobs.list({ limit: 1, offset: 1 })).items.map((j) => j.id)).toEqual([long.id]);
  await expect(jobs.get('nosuchjob')).rejects.toBeInstanceOf(JobNotFound);
  await expect(jobs.get('../../etc')).rejects.toBeInstanceOf(JobNotFound);
});

test('a cancelled job keeps the partial result it hands over', async () => {
  const jobs = new Jobs(db);
  const j = await jobs.start({
    kind: 'partial',
    run: async (ctx) => {
      await tick();
      await tick();
      if (ctx.signal.aborted) throw new JobCancelled({ done: 'half' });
      return { done: 'all' };
    },
  });
  await jobs.cancel(j.id);
  expect(await jobs.wait(j.id)).toMatchObject({ state: 'cancelled', result: { done: 'half' } });
});

test('a job the server stops on its way down ends interrupted, not cancelled, keeping its partial result', async () => {
  const jobs = new Jobs(db);
  const j = await jobs.start({
    kind: 'scrub',
    run: async (ctx) => {
      while (!ctx.signal.aborted) await tick();
      throw new JobCancelled({ checked: 'some' });
    },
  });
  await tick();
  await jobs.close();
  expect(await jobs.get(j.id)).toMatchObject({ state: 'interrupted', error: expect.stringContaining('stopped'), result: { checked: 'some' } });
  // and the next start's schedule takes it up again soon
  const schedule = new Schedule(new Jobs(db), { catchUpMs: 50 });
  expect((await schedule.firstRun(7 * 24 * HOUR, 'scrub')).reason).toBe('last run interrupted');
  schedule.close();
});

test('a run left running by a stopped process is marked interrupted at the next start', async () => {
  const first = new Jobs(db);
  const j = await first.start({ kind: 'forever', run: () => new Promise(() => undefined) });
  // the process "dies": a new runner opens the same store
  const second = new Jobs(db);
  const recovered = await second.recover();
  expect(recovered.map((r) => r.id)).toEqual([j.id]);
  expect(await second.get(j.id)).toMatchObject({ state: 'interrupted', error: expect.stringContaining('stopped') });
  expect(await second.recover()).toEqual([]);
});

test('a schedule starts its job periodically, never a second copy while one runs', async () => {
  const jobs = new Jobs(db);
  const schedule = new Schedule(jobs);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let started = 0;
  schedule.every(10, 'tick', () => {
    started++;
    return jobs.start({ kind: 'tick', run: () => gate });
  });
  await new Promise((r) => setTimeout(r, 120));
  expect(started).toBe(1); // the first run still holds
  release();
  await new Promise((r) => setTimeout(r, 120));
  schedule.close();
  const n = started;
  expect(n).toBeGreaterThan(2);
  await new Promise((r) => setTimeout(r, 60));
  expect(started).toBe(n); // closed: no more
  await expect(schedule.every(0, 'x', async () => undefined)).rejects.toThrow(RangeError);
});


/** A finished run of `kind` as an earlier process left it, started `agoMs` before now. */
async function pastRun(kind: string, agoMs: number, state: 'succeeded' | 'interrupted', requestedBy = 'schedule'): Promise<void> {
  const at = new Date(Date.now() - agoMs).toISOString();
  const id = `${(Date.now() - agoMs).toString(36)}${Math.random().toString(36).slice(2, 8)}`;
  const runs = db.sublevel<string, unknown>('jobs', { valueEncoding: 'json' }).sublevel<string, object>('runs', { valueEncoding: 'json' });
  await runs.put(id, { id, kind, target: null, state, requestedBy, createdAt: at, finishedAt: at, progress: { done: 0, total: null, unit: 'items', message: null }, result: null, error: null });
}

test('a schedule keeps its period across restarts: the first run is due a period after the last one', async () => {
  const schedule = new Schedule(new Jobs(db), { catchUpMs: 50 });
  // never ran: a whole period from now, as a fresh install
  const fresh = await schedule.firstRun(24 * HOUR, 'gc');
  expect(fresh.reason).toBe('no earlier run');
  expect(fresh.atMs - Date.now()).toBeGreaterThan(23 * HOUR);
  // ran 3 h ago, daily: due in about 21 h, not 24 h after this start
  await pastRun('gc', 3 * HOUR, 'succeeded');
  const onTime = await schedule.firstRun(24 * HOUR, 'gc');
  expect(onTime.reason).toBe('on time');
  expect((onTime.atMs - Date.now()) / HOUR).toBeCloseTo(21, 1);
  // a weekly scrub whose last run was 8 days ago (restarts kept postponing it): soon after start
  await pastRun('scrub', 8 * 24 * HOUR, 'succeeded');
  const overdue = await schedule.firstRun(7 * 24 * HOUR, 'scrub');
  expect(overdue.reason).toBe('overdue');
  expect(overdue.atMs - Date.now()).toBeLessThanOrEqual(50);
  schedule.close();
});

test('a run cut off by a crash starts again soon after the next start, but not after two in a row', async () => {
  const first = new Jobs(db);
  await first.start({ kind: 'scrub', requestedBy: 'schedule', run: () => new Promise(() => undefined) });
  // the process dies; the next one marks the run interrupted and sets its schedule
  const jobs = new Jobs(db);
  await jobs.recover();
  const schedule = new Schedule(jobs, { catchUpMs: 30 });
  let started = 0;
  const first1 = await schedule.every(7 * 24 * HOUR, 'scrub', () => {
    started++;
    return jobs.start({ kind: 'scrub', requestedBy: 'schedule', run: () => new Promise(() => undefined) });
  });
  expect(first1.reason).toBe('last run interrupted');
  await new Promise((r) => setTimeout(r, 200));
  expect(started).toBe(1);
  schedule.close();
  // that run dies too: two in a row, so the third start waits a whole period
  const third = new Jobs(db);
  await third.recover();
  const again = new Schedule(third, { catchUpMs: 30 });
  const next = await again.firstRun(7 * 24 * HOUR, 'scrub');
  expect(next.reason).toBe('interrupted twice');
  expect(next.atMs - Date.now()).toBeGreaterThan(6 * 24 * HOUR);
  again.close();
});

test('only the runs a schedule counts as its own postpone it', async () => {
  await pastRun('verify', 1 * HOUR, 'succeeded', 'admin'); // an operator's restore test of one cartridge
  await pastRun('verify', 30 * HOUR, 'succeeded', 'schedule');
  const schedule = new Schedule(new Jobs(db), { catchUpMs: 50 });
  expect((await schedule.firstRun(24 * HOUR, 'verify')).reason).toBe('on time');
  expect((await schedule.firstRun(24 * HOUR, 'verify', (r) => r.requestedBy === 'schedule')).reason).toBe('overdue');
  schedule.close();
});

test('a job that has ended is not running any more, even while its record is still being saved', async () => {
  const jobs = new Jobs(db);
  for (let round = 0; round < 20; round++) {
    const { id } = await jobs.start({ kind: 'verify', target: 'VT0002L7', run: async () => ({ ok: true }) });
    // Look at every turn of the event loop: the first that shows the job ended must not also
    // count it as running (a client that saw it end could not start the next one).
    for (;;) {
      const seen = await jobs.get(id);
      if (seen.state !== 'running') {
        expect(jobs.running('verify', 'VT0002L7'), `round ${round}`).toEqual([]);
        break;
      }
      await new Promise((r) => setImmediate(r));
    }
    await jobs.wait(id);
  }
});
