import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { afterEach, describe, expect, it } from 'vitest';
import { CommitBatch } from '../../src/dedup/commit-batch.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/** A root database laid out like the store's: sublevels of several encodings, one nested. */
async function openDb(): Promise<{ db: Level<string, unknown>; location: string; subs: ReturnType<typeof sublevels> }> {
  const location = await mkdtemp(join(tmpdir(), 'vtl-batch-'));
  dirs.push(location);
  const db = new Level<string, unknown>(location, { valueEncoding: 'json' });
  await db.open();
  return { db, location, subs: sublevels(db) };
}

function sublevels(db: Level<string, unknown>) {
  const gc = db.sublevel('gc');
  return {
    meta: db.sublevel<string, unknown>('meta', { valueEncoding: 'json' }),
    pages: db.sublevel<Buffer, Buffer>('pages', { keyEncoding: 'buffer', valueEncoding: 'buffer' }),
    views: db.sublevel<Uint8Array, Uint8Array>('views', { keyEncoding: 'view', valueEncoding: 'view' }),
    refs: gc.sublevel<Buffer, Buffer>('refs', { keyEncoding: 'buffer', valueEncoding: 'buffer' }),
    names: db.sublevel<string, string>('names', { valueEncoding: 'utf8' }),
  };
}

type Subs = ReturnType<typeof sublevels>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Batch = { put(k: any, v: any, o?: any): unknown; del(k: any, o?: any): unknown };

/** The same operations, for either kind of batch. */
function stage(b: Batch, s: Subs, round: number): void {
  b.put('next', { round, list: [1, 2, 3] }, { sublevel: s.meta });
  b.put(Buffer.from([0, 255, round, 0x80]), Buffer.from([round, 0, 1, 2]), { sublevel: s.pages });
  b.put(new Uint8Array([9, round]), new Uint8Array([7, 7, round]), { sublevel: s.views });
  b.put(Buffer.from([1, 2, round]), Buffer.alloc(0), { sublevel: s.refs });
  b.put(`n${round}`, `é ${round} ☃`, { sublevel: s.names });
  b.put(`root${round}`, { at: 'root' });
  b.put(Buffer.from([0xc3, round]), Buffer.from([0xff, 0xfe]), { keyEncoding: 'buffer', valueEncoding: 'buffer' });
  if (round > 0) {
    b.del(`n${round - 1}`, { sublevel: s.names });
    b.del(Buffer.from([1, 2, round - 1]), { sublevel: s.refs });
    b.del(`root${round - 1}`);
  }
}

/** Every raw key and value of the database, as hex. */
async function dump(location: string): Promise<Array<[string, string]>> {
  const raw = new Level<Buffer, Buffer>(location, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
  const out: Array<[string, string]> = [];
  for await (const [k, v] of raw.iterator()) out.push([k.toString('hex'), v.toString('hex')]);
  await raw.close();
  return out;
}

describe('commit batch', () => {
  it('writes the same bytes as abstract-level chained batches, for every encoding and a nested sublevel', async () => {
    const ours = await openDb();
    const theirs = await openDb();
    for (let round = 0; round < 3; round++) {
      const a = new CommitBatch(ours.db);
      stage(a, ours.subs, round);
      expect(a.length).toBe(round > 0 ? 10 : 7);
      await a.write({ sync: round === 1 });
      const b = theirs.db.batch();
      stage(b as unknown as Batch, theirs.subs, round);
      await b.write();
    }
    expect(await ours.subs.meta.get('next')).toEqual({ round: 2, list: [1, 2, 3] });
    expect(await ours.subs.names.get('n2')).toBe('é 2 ☃');
    expect(await ours.subs.names.get('n1')).toBeUndefined();
    expect(Buffer.from((await ours.subs.views.get(new Uint8Array([9, 1])))!)).toEqual(Buffer.from([7, 7, 1]));
    await ours.db.close();
    await theirs.db.close();
    const got = await dump(ours.location);
    expect(got.length).toBe(13); // meta 1, pages 3, views 3, refs 1, names 1, root 1 + 3
    expect(got).toEqual(await dump(theirs.location));
  });

  it('puts raw keys that carry their sublevel prefix, readable through the sublevel', async () => {
    const { db, subs } = await openDb();
    const b = new CommitBatch(db);
    const key = Buffer.concat([Buffer.from(subs.refs.prefix), Buffer.from([5, 6, 7])]);
    b.putRaw(key, Buffer.from('value'));
    await b.write({ sync: true });
    expect((await subs.refs.get(Buffer.from([5, 6, 7])))?.toString()).toBe('value');
    await db.close();
  });

  it('applies all or nothing: an operation that cannot be encoded fails before anything is written', async () => {
    const { db, subs } = await openDb();
    const b = new CommitBatch(db);
    b.put('kept', 1, { sublevel: subs.meta });
    expect(() => b.put(undefined, 1, { sublevel: subs.meta })).toThrow(/key/);
    expect(() => b.put('x', undefined, { sublevel: subs.meta })).toThrow(/value/);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => b.put('cyclic', cyclic, { sublevel: subs.meta })).toThrow();
    expect(b.length).toBe(1);
    await b.write();
    expect(await subs.meta.get('kept')).toBe(1);
    expect(await subs.meta.get('cyclic')).toBeUndefined();
    await db.close();
  });

  it('writes nothing when empty, and fails clearly on a closed database', async () => {
    const { db, location, subs } = await openDb();
    await new CommitBatch(db).write({ sync: true });
    const b = new CommitBatch(db).put('late', 1, { sublevel: subs.meta });
    await db.close();
    await expect(b.write()).rejects.toMatchObject({ code: 'LEVEL_DATABASE_NOT_OPEN' });
    expect(await dump(location)).toEqual([]);
  });
});
