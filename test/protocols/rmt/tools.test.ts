/**
 * End to end with the real programs from Debian's tar and cpio packages, through
 * `--rsh-command` and `vtl rmt`: GNU tar with default and 64 KiB records, an AIX mksysb-like
 * multi-file tape positioned with mt-gnu, cpio out and in, mt-gnu weof/eom/bsf/offline, two
 * clients at once and EBUSY for a third.
 */
import { lstat, mkdir, readFile, readdir, readlink, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { randomBytes } from '../../helpers/data.js';
import { RawClient, missingTools, run, runOk, startHarness, type Harness } from './harness.js';

const missing = missingTools(['tar', 'cpio', 'mt-gnu']);
const needs = missing.length ? ` (skipped: missing ${missing.join(', ')})` : '';

let h: Harness;
let src: string;

beforeAll(async () => {
  if (missing.length) return;
  h = await startHarness({ drives: 3 });
  src = join(h.dir, 'src');
  await makeTree(src, 1);
});
afterAll(async () => {
  await h?.close();
});

/** A tree with the shapes backups meet: empty and odd-sized files, nesting, a symlink, spaces. */
async function makeTree(root: string, seed: number): Promise<void> {
  await mkdir(join(root, 'etc', 'conf.d'), { recursive: true });
  await mkdir(join(root, 'var', 'empty dir'), { recursive: true });
  await mkdir(join(root, 'data'), { recursive: true });
  await writeFile(join(root, 'etc', 'hosts'), '127.0.0.1 localhost\n'.repeat(10));
  await writeFile(join(root, 'etc', 'conf.d', 'empty'), '');
  for (const [name, size] of [['one', 1], ['sector', 511], ['block', 512], ['record', 10240], ['odd', 100_003], ['big', 3 * 1024 * 1024 + 7]] as const) {
    await writeFile(join(root, 'data', name), randomBytes(size, seed * 1000 + size));
  }
  await writeFile(join(root, 'data', 'name with spaces.txt'), 'spaces\n');
  await symlink('../etc/hosts', join(root, 'data', 'hosts-link'));
}

/** Path -> kind, mode and content (or link target) of every entry under `root`. */
async function snapshot(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (dir: string, rel: string) => {
    for (const name of (await readdir(dir)).sort()) {
      const p = join(dir, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = await lstat(p);
      if (st.isSymbolicLink()) out.set(r, `link ${await readlink(p)}`);
      else if (st.isDirectory()) {
        out.set(r, `dir ${(st.mode & 0o7777).toString(8)}`);
        await walk(p, r);
      } else out.set(r, `file ${(st.mode & 0o7777).toString(8)} ${(await readFile(p)).toString('base64')}`);
    }
  };
  await walk(root, '');
  return out;
}

async function expectSameTree(actual: string, expected: string): Promise<void> {
  const [a, e] = await Promise.all([snapshot(actual), snapshot(expected)]);
  expect([...a.keys()]).toEqual([...e.keys()]);
  for (const [k, v] of e) expect(a.get(k), k).toBe(v);
}

const rshOpt = () => `--rsh-command=${h.rsh}`;
const tar = (args: string[], cwd?: string) => runOk('tar', [rshOpt(), ...args], { cwd, timeoutMs: 90_000 });
const mt = (drive: string, ...op: string[]) => runOk('mt-gnu', [rshOpt(), '-f', `localhost:${drive}`, ...op]);

/** The first record's length on the tape (a raw read from BOT on a rewinding device). */
async function firstRecordLength(device: string): Promise<number> {
  const c = await RawClient.connect(h.port);
  try {
    expect((await c.open(device, '0 O_RDONLY')).ok).toBe(true);
    await c.ioctl(6, 1);
    const r = await c.read(2 * 1024 * 1024);
    await c.close();
    if (!r.ok) throw new Error(`read: ${r.message}`);
    return r.value;
  } finally {
    c.destroy();
  }
}

async function fileNumber(device: string): Promise<number> {
  const c = await RawClient.connect(h.port);
  try {
    await c.open(device, '0 O_RDONLY');
    const r = await c.status();
    await c.close();
    if (!r.ok) throw new Error(`status: ${r.message}`);
    return r.data!.readInt32LE(40);
  } finally {
    c.destroy();
  }
}

describe.skipIf(missing.length > 0)(`GNU tar through rmt${needs}`, () => {
  test.each([
    ['default 10240-byte records', [] as string[], 10240],
    ['-b 128 (64 KiB records)', ['-b', '128'], 65536],
  ])('tar -c, -t and -x with %s: the extracted tree equals the source', async (_name, blocking, recordSize) => {
    const dev = 'localhost:/lib1/st0';
    await tar([...blocking, '-cf', dev, '-C', src, '.']);
    expect(await firstRecordLength('/lib1/st0')).toBe(recordSize);
    const list = await tar([...blocking, '-tf', dev]);
    expect(list.stdout.split('\n')).toEqual(expect.arrayContaining(['./data/big', './data/hosts-link', './var/empty dir/']));
    const out = join(h.dir, `x-${recordSize}`);
    await mkdir(out);
    await tar([...blocking, '-xf', dev, '-C', out]);
    await expectSameTree(out, src);
  });

  test('an AIX mksysb-like tape: four files through the no-rewind device, then mt rewind + fsf 3 and mt asf 3', async () => {
    const parts = ['boot', 'mkinsttape', 'dummy-toc'];
    for (const [i, p] of parts.entries()) {
      const dir = join(h.dir, p);
      await mkdir(dir);
      await writeFile(join(dir, `${p}.img`), randomBytes(3000 + i * 512, 50 + i));
      await tar(['-b', '1', '-cf', 'localhost:/lib1/rmt1.1', '-C', dir, '.']); // 512-byte records
    }
    await tar(['-b', '128', '-cf', 'localhost:/lib1/rmt1.1', '-C', src, '.']); // 64 KiB records
    expect(await fileNumber('/lib1/nst1')).toBe(4); // one filemark per close, no rewind

    await mt('/lib1/nst1', 'rewind');
    expect(await firstRecordLength('/lib1/nst1')).toBe(512);
    await mt('/lib1/nst1', 'rewind');
    await mt('/lib1/nst1', 'fsf', '3');
    const out1 = join(h.dir, 'mksysb-fsf');
    await mkdir(out1);
    await tar(['-b', '128', '-xf', 'localhost:/lib1/nst1', '-C', out1]);
    await expectSameTree(out1, src);

    await mt('/lib1/nst1', 'asf', '3');
    const out2 = join(h.dir, 'mksysb-asf');
    await mkdir(out2);
    await tar(['-b', '128', '-xf', 'localhost:/lib1/nst1', '-C', out2]);
    await expectSameTree(out2, src);

    await mt('/lib1/nst1', 'asf', '1');
    const toc = await tar(['-b', '1', '-tf', 'localhost:/lib1/nst1']);
    expect(toc.stdout).toContain('./mkinsttape.img');
  });

  test('two tar clients on two drives at once; a third client on a drive in use gets EBUSY', async () => {
    // st devices rewind on close, not on open: drive 1 is still where the last test left it.
    await Promise.all([mt('/lib1/nst0', 'rewind'), mt('/lib1/nst1', 'rewind')]);
    await Promise.all([tar(['-b', '128', '-cf', 'localhost:/lib1/st0', '-C', src, 'data']), tar(['-cf', 'localhost:/lib1/st1', '-C', src, 'etc'])]);
    const holder = await RawClient.connect(h.port);
    try {
      expect((await holder.open('/lib1/nst0', '0 O_RDONLY')).ok).toBe(true);
      const busy = await run('tar', [rshOpt(), '-tf', 'localhost:/lib1/nst0']);
      expect(busy.code).not.toBe(0);
      expect(busy.stderr).toMatch(/Device or resource busy/);
      await holder.close();
    } finally {
      holder.destroy();
    }
    const [a, b] = await Promise.all([tar(['-b', '128', '-tf', 'localhost:/lib1/st0']), tar(['-tf', 'localhost:/lib1/st1'])]);
    expect(a.stdout).toContain('data/big');
    expect(b.stdout).toContain('etc/hosts');
    expect(b.stdout).not.toContain('data/big');
  });
});

describe.skipIf(missing.length > 0)(`GNU cpio and mt-gnu through rmt${needs}`, () => {
  test('cpio -o / -i, mt weof, eom, bsf, fsf and offline', async () => {
    const dev = 'localhost:/lib1/nst2';
    const cpio = (args: string[], cwd: string, input?: Buffer) => runOk('cpio', [rshOpt(), ...args, '-F', dev], { cwd, input, timeoutMs: 90_000 });
    const listOf = async (root: string) => Buffer.from((await runOk('find', ['.', '-mindepth', '1'], { cwd: root })).stdout);
    const second = join(h.dir, 'second');
    await mkdir(second);
    await makeTree(second, 2);

    await cpio(['-o', '-H', 'newc'], src, await listOf(src)); // file 0
    await mt('/lib1/nst2', 'weof'); // file 1: empty
    await cpio(['-o', '-H', 'newc'], second, await listOf(second)); // file 2
    expect(await fileNumber('/lib1/nst2')).toBe(3);

    await mt('/lib1/nst2', 'rewind');
    const outA = join(h.dir, 'cpio-a');
    await mkdir(outA);
    await cpio(['-i', '-d', '-m'], outA);
    await expectSameTree(outA, src);

    await mt('/lib1/nst2', 'eom');
    expect(await fileNumber('/lib1/nst2')).toBe(3);
    await mt('/lib1/nst2', 'bsf', '2'); // before the filemark that ends the empty file
    await mt('/lib1/nst2', 'fsf', '1');
    expect(await fileNumber('/lib1/nst2')).toBe(2);
    const outB = join(h.dir, 'cpio-b');
    await mkdir(outB);
    await cpio(['-i', '-d', '-m'], outB);
    await expectSameTree(outB, second);

    await mt('/lib1/nst2', 'offline');
    const gone = await run('cpio', [rshOpt(), '-it', '-F', dev], { cwd: h.dir });
    expect(gone.code).not.toBe(0);
    expect(gone.stderr).toMatch(/No medium found/);
    await h.libs.unload('lib1', 2); // the operator's changer moves it out and back in
    await h.libs.load('lib1', 2, 'VT0003L7');
    const again = await cpio(['-it'], h.dir);
    expect(again.stdout).toContain('data/big');
  });
});
