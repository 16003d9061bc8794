import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { createReadStream, existsSync, lstatSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSample, generateSampleDetailed, generationFileName } from '../../src/cli/sample.js';

interface TarEntry { type: string; size: number; mode: number; mtime: number; linkname: string | null; data: Buffer }

/** Reads a whole (small) tar with tar-stream: name -> header fields and content. */
async function readTar(path: string): Promise<Map<string, TarEntry>> {
  const out = new Map<string, TarEntry>();
  const extract = tar.extract();
  extract.on('entry', (h, stream, next) => {
    const parts: Buffer[] = [];
    stream.on('data', (b: unknown) => parts.push(b as Buffer));
    stream.on('end', () => {
      out.set(h.name, {
        type: h.type, size: h.size, mode: h.mode, mtime: h.mtime.getTime() / 1000,
        linkname: h.linkname ?? null, data: Buffer.concat(parts),
      });
      next();
    });
  });
  await pipeline(createReadStream(path), extract);
  return out;
}

function sha(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

const hasSystemTar = (() => {
  try {
    execFileSync('tar', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/** Names listed by `tar -tf` (GNU or bsdtar), or by tar-stream when there is no system tar. */
async function tarNames(path: string): Promise<string[]> {
  if (!hasSystemTar) return [...(await readTar(path)).keys()];
  return execFileSync('tar', ['-tf', path], { encoding: 'utf8', maxBuffer: 64 << 20 }).split('\n').filter(Boolean);
}

let work: string;
let root: string;
let socket: Server;
/** The tree's regular files and symlinks, relative and '/'-separated. */
const treeFiles: string[] = [];

/** A few hundred files of the sizes and kinds a real tree has, and the odd ones tar must handle. */
async function buildTree(): Promise<void> {
  const dirs = ['bin', 'lib/x86_64', 'lib/x86_64/deep/er', 'share/doc/pkg-a', 'share/doc/pkg-b', 'etc'];
  for (const d of dirs) await mkdir(join(root, d), { recursive: true });
  let n = 0;
  const add = async (rel: string, data: Buffer | string) => {
    await writeFile(join(root, rel), data);
    treeFiles.push(rel);
  };
  for (let i = 0; i < 320; i++) {
    const dir = dirs[i % dirs.length];
    const size = [0, 17, 700, 4096, 5000, 30_000, 120_000][i % 7];
    const data = i % 3 === 0 ? Buffer.from('config line value=42\n'.repeat(Math.ceil(size / 21)).slice(0, size)) : randomBytes(size);
    await add(`${dir}/file-${String(i).padStart(3, '0')}${i % 2 ? '.so' : '.txt'}`, data);
    n++;
  }
  // Larger than the whole-file read-ahead and the read size: streamed in several reads.
  await add('lib/x86_64/big.bin', randomBytes(3 * 1024 * 1024 + 123));
  // A path longer than 100 bytes (ustar prefix), a non-ASCII name (pax), a long link target.
  const longDir = `share/${'long-directory-name-'.repeat(4)}x`;
  await mkdir(join(root, longDir), { recursive: true });
  await add(`${longDir}/${'long-file-name-'.repeat(5)}.txt`, 'long\n');
  await add('share/doc/pkg-a/résumé-ünïcode.txt', 'unicode\n');
  await symlink('../lib/x86_64/file-001.so', join(root, 'bin/link-to-lib'));
  treeFiles.push('bin/link-to-lib');
  await symlink(`../${longDir}/${'long-file-name-'.repeat(5)}.txt`, join(root, 'etc/long-link'));
  treeFiles.push('etc/long-link');
  await symlink('does-not-exist', join(root, 'etc/dangling'));
  treeFiles.push('etc/dangling');
  expect(n).toBe(320);
  treeFiles.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'vtl-sample-'));
  root = join(work, 'tree');
  await mkdir(root);
  await buildTree();
  // Special files are left out: a unix socket...
  socket = createServer();
  await new Promise<void>((resolve) => socket.listen(join(root, 'etc/control.sock'), resolve));
  // ...and a name that is not UTF-8, which Node cannot address by a string path.
  await writeFile(Buffer.concat([Buffer.from(join(root, 'etc/bad-')), Buffer.from([0xff, 0xfe]), Buffer.from('.txt')]), 'x');
});

afterAll(async () => {
  await new Promise((resolve) => socket.close(resolve));
  await rm(work, { recursive: true, force: true });
});

describe('generateSample', () => {
  let run: Awaited<ReturnType<typeof generateSampleDetailed>>;
  let gens: Map<string, TarEntry>[];
  const progress: [number, number][] = [];

  beforeAll(async () => {
    run = await generateSampleDetailed({
      root, outDir: join(work, 'out-a'), generations: 3, seed: 7, deletedFraction: 0.01,
      onProgress: (done, total) => progress.push([done, total]),
    });
    gens = await Promise.all(run.files.map(readTar));
  });

  it('names the generations in order', () => {
    expect(run.files).toEqual([1, 2, 3].map((g) => join(work, 'out-a', generationFileName(g, 3))));
    expect(run.files.map((f) => f.slice(-10))).toEqual(['gen-01.tar', 'gen-02.tar', 'gen-03.tar']);
  });

  it('generation 1 lists exactly the tree, in sorted order', async () => {
    expect(await tarNames(run.files[0])).toEqual(treeFiles);
    expect(run.skippedSpecial).toBe(1);
    expect(run.skippedUnreadable).toBe(1);
    expect(run.generations[0]).toMatchObject({ entries: treeFiles.length, changed: 0, deleted: 0, added: 0 });
  });

  it('generation 1 holds the files byte for byte, with their headers', () => {
    for (const rel of treeFiles) {
      const e = gens[0].get(rel)!;
      const st = lstatSync(join(root, rel));
      expect(e.mode, rel).toBe(st.mode & 0o7777);
      expect(e.mtime, rel).toBe(Math.floor(st.mtimeMs / 1000));
      if (st.isSymbolicLink()) {
        expect(e.type).toBe('symlink');
        expect(e.linkname).toBe(readlinkSync(join(root, rel)));
      } else {
        expect(e.type).toBe('file');
        expect(e.data.equals(readFileSync(join(root, rel))), rel).toBe(true);
      }
    }
  });

  it('every generation is a tar the system tool reads', async () => {
    for (let g = 0; g < 3; g++) {
      expect(await tarNames(run.files[g])).toEqual([...gens[g].keys()]);
      expect([...gens[g].keys()]).toEqual([...gens[g].keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
    }
  });

  it('each later generation changes about 2% of files, deletes and adds as reported', () => {
    for (let g = 1; g < 3; g++) {
      const prev = gens[g - 1];
      const cur = gens[g];
      const stats = run.generations[g];
      const files = [...prev.values()].filter((e) => e.type === 'file').length;
      const deleted = [...prev.keys()].filter((k) => !cur.has(k));
      const added = [...cur.keys()].filter((k) => !prev.has(k));
      const changed = [...cur.keys()].filter((k) => prev.has(k) && !prev.get(k)!.data.equals(cur.get(k)!.data));
      expect(changed.length).toBe(stats.changed);
      expect(stats.changed).toBe(Math.round(files * 0.02));
      expect(deleted.length).toBe(stats.deleted);
      expect(stats.deleted).toBe(Math.round(prev.size * 0.01));
      expect(added.length).toBe(stats.added);
      expect(stats.added).toBe(1);
      expect(stats.entries).toBe(cur.size);
      for (const k of added) expect(k).toMatch(/vtl-sample-g\d+-\d+\.(txt|bin)$/);
      // A changed file gets a newer time; an unchanged one keeps its header.
      for (const k of changed) expect(cur.get(k)!.mtime).toBeGreaterThan(prev.get(k)!.mtime);
    }
  });

  it('edits are appends, inserts in the middle, or 4 KiB page overwrites', () => {
    const kinds = new Set<string>();
    for (let g = 1; g < 3; g++) {
      for (const [k, e] of gens[g]) {
        const before = gens[g - 1].get(k);
        if (!before || before.data.equals(e.data)) continue;
        const kind = classifyEdit(before.data, e.data);
        expect(kind, k).not.toBe('other');
        kinds.add(kind);
      }
    }
    expect(kinds.size).toBeGreaterThanOrEqual(2);
  });

  it('reports progress up to the total', () => {
    expect(progress.length).toBeGreaterThan(0);
    const [done, total] = progress[progress.length - 1];
    expect(done).toBe(total);
    expect(total).toBe(run.generations.reduce((n, g) => n + g.contentBytes, 0));
  });

  it('the same seed gives byte-identical tars, another seed other edits', async () => {
    const again = await generateSample({ root, outDir: join(work, 'out-b'), generations: 3, seed: 7, deletedFraction: 0.01 });
    expect(again.map(sha)).toEqual(run.files.map(sha));
    const other = await generateSample({ root, outDir: join(work, 'out-c'), generations: 2, seed: 8, deletedFraction: 0.01 });
    expect(sha(other[0])).toBe(sha(run.files[0]));
    expect(sha(other[1])).not.toBe(sha(run.files[1]));
  });
});

/** What turned `a` into `b`: an append, an insert, page overwrites, or something else. */
function classifyEdit(a: Buffer, b: Buffer): string {
  if (b.length > a.length && b.subarray(0, a.length).equals(a)) return 'append';
  if (b.length > a.length) {
    let head = 0;
    while (head < a.length && a[head] === b[head]) head++;
    const tail = a.length - head;
    if (b.subarray(b.length - tail).equals(a.subarray(head))) return 'insert';
    return 'other';
  }
  if (b.length !== a.length) return 'other';
  const pages = new Set<number>();
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) pages.add(Math.floor(i / 4096));
  return pages.size >= 1 && pages.size <= 4 ? 'pages' : 'other';
}

describe('generateSample options', () => {
  it('caps generation 1 at maxBytes with files from across the tree', async () => {
    const total = treeFiles.reduce((n, f) => n + lstatSync(join(root, f)).size * Number(!lstatSync(join(root, f)).isSymbolicLink()), 0);
    const maxBytes = Math.floor(total / 2);
    const r = await generateSampleDetailed({ root, outDir: join(work, 'out-cap'), generations: 1, maxBytes });
    const g1 = r.generations[0];
    expect(g1.contentBytes).toBeLessThanOrEqual(maxBytes);
    expect(g1.contentBytes).toBeGreaterThan(maxBytes * 0.9);
    expect(g1.entries + r.skippedByCap).toBe(treeFiles.length);
    const names = await tarNames(r.files[0]);
    const tops = new Set(names.map((n) => n.split('/')[0]));
    expect([...tops].sort()).toEqual(['bin', 'etc', 'lib', 'share']);
  });

  it('rejects bad input with a clear error and writes nothing', async () => {
    const outDir = join(work, 'out-bad');
    await expect(generateSample({ root, outDir, generations: 0 })).rejects.toThrow(/generations must be an integer >= 1/);
    await expect(generateSample({ root, outDir, generations: 2, changedFraction: 1.5 })).rejects.toThrow(/changedFraction/);
    await expect(generateSample({ root: join(work, 'missing'), outDir, generations: 1 })).rejects.toThrow(/not a readable directory/);
    expect(existsSync(outDir)).toBe(false);
  });

  it('an empty tree gives an empty generation 1 and an added file in generation 2', async () => {
    const empty = join(work, 'empty');
    await mkdir(empty);
    const r = await generateSampleDetailed({ root: empty, outDir: join(work, 'out-empty'), generations: 2 });
    expect(r.generations.map((g) => [g.entries, g.changed, g.deleted, g.added])).toEqual([[0, 0, 0, 0], [1, 0, 0, 1]]);
    expect(await tarNames(r.files[0])).toEqual([]);
    expect(await tarNames(r.files[1])).toEqual([expect.stringMatching(/^vtl-sample-g2-0\.(txt|bin)$/)]);
  });
});
