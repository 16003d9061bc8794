import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { BucketNotFoundError, TierConfigError, TierIOError, openTier } from '../../src/tier/index.js';
import { collect, describeConformance } from './conformance.js';

describeConformance('fs', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vtl-tier-fs-'));
  const tier = await openTier(pathToFileURL(dir).href);
  return { tier, secrets: [], teardown: () => rm(dir, { recursive: true, force: true }) };
});

describe('fs tier specifics', () => {
  const dirs: string[] = [];
  const fresh = async (): Promise<string> => {
    const dir = await mkdtemp(join(tmpdir(), 'vtl-tier-fs-'));
    dirs.push(dir);
    return dir;
  };
  afterEach(async () => {
    for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
  });

  it('refuses a missing root unless asked to create it, naming it', async () => {
    const root = join(await fresh(), 'sub', 'tier');
    const err = await openTier(pathToFileURL(root).href).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(BucketNotFoundError);
    expect(err).toMatchObject({ kind: 'directory', bucket: root, message: `fs tier directory "${root}" does not exist on this server` });
    await expect(stat(join(root, '..'))).rejects.toMatchObject({ code: 'ENOENT' }); // refusing created nothing
    const tier = await openTier(pathToFileURL(root).href, { create: true });
    await tier.put('x/y', Buffer.from('z'));
    expect(await readdir(join(root, 'x'))).toEqual(['y']);
  });

  it('a root gone after open (an unmounted volume) is missing: puts do not make it again, lists do not call it empty', async () => {
    const mount = await fresh();
    const root = join(mount, 'vtl');
    const tier = await openTier(pathToFileURL(root).href, { create: true });
    await tier.put('containers/00000001', Buffer.from('a'));
    await rm(root, { recursive: true });
    await expect(tier.put('containers/00000002', Buffer.from('b'))).rejects.toBeInstanceOf(BucketNotFoundError);
    await expect(collect(tier.list('containers/'))).rejects.toBeInstanceOf(BucketNotFoundError);
    await expect(collect(tier.list(''))).rejects.toBeInstanceOf(BucketNotFoundError);
    expect(await readdir(mount)).toEqual([]); // nothing made under the mount point
  });

  it('a file where the root should be is not a tier, created or not (and not "missing")', async () => {
    const root = join(await fresh(), 'tier');
    await writeFile(root, 'not a directory');
    for (const create of [false, true]) {
      const err = await openTier(pathToFileURL(root).href, { create }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(TierConfigError);
      expect(err).not.toBeInstanceOf(BucketNotFoundError);
      expect((err as Error).message).toMatch(/not a directory/);
    }
  });

  it('leaves no temp files after puts, and never lists leftovers of a crashed put', async () => {
    const root = await fresh();
    const tier = await openTier(pathToFileURL(root).href);
    await tier.put('containers/0001', Buffer.alloc(1000, 1));
    expect(await readdir(join(root, 'containers'))).toEqual(['0001']);
    // What a crash between write and rename leaves behind: a dot-named temp file.
    await writeFile(join(root, 'containers', '.0002.abcdef.tmp'), 'partial');
    expect((await collect(tier.list('containers/'))).map((e) => e.key)).toEqual(['containers/0001']);
    expect(await tier.head('containers/0002')).toBeUndefined();
  });

  it('a key cannot be both an object and a folder; the refused put changes nothing', async () => {
    const tier = await openTier(pathToFileURL(await fresh()).href);
    await tier.put('a', Buffer.from('object'));
    await expect(tier.put('a/b', Buffer.from('x'))).rejects.toBeInstanceOf(TierIOError);
    expect((await tier.get('a')).toString()).toBe('object');
    await tier.put('c/d', Buffer.from('x'));
    await expect(tier.put('c', Buffer.from('x'))).rejects.toThrow(/both an object and a folder/);
    expect(await tier.head('c')).toBeUndefined();
    await tier.delete('c');
    expect((await tier.get('c/d')).toString()).toBe('x');
  });

  it('retention sidecar survives reopening and stays hidden from list', async () => {
    const root = await fresh();
    const until = new Date(Date.now() + 60_000);
    const first = await openTier(pathToFileURL(root).href);
    await first.put('w/k', Buffer.from('keep'), { retainUntil: until });
    const second = await openTier(pathToFileURL(root).href);
    expect((await second.head('w/k'))?.retainUntil?.toISOString()).toBe(until.toISOString());
    await expect(second.delete('w/k')).rejects.toThrow(/retained until/);
    expect((await collect(second.list('w/'))).map((e) => e.key)).toEqual(['w/k']);
  });

  it('lets a key be overwritten and deleted once its retention has passed', async () => {
    const tier = await openTier(pathToFileURL(await fresh()).href);
    await tier.put('w/old', Buffer.from('x'), { retainUntil: new Date(Date.now() + 300) });
    await expect(tier.delete('w/old')).rejects.toThrow(/retained/);
    await new Promise((r) => setTimeout(r, 400));
    await tier.put('w/old', Buffer.from('new body, no retention'));
    expect((await tier.head('w/old'))?.retainUntil).toBeUndefined();
    await tier.delete('w/old');
    expect(await tier.head('w/old')).toBeUndefined();
  });
});
