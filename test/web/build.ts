/**
 * Builds the dashboard from this source as `npm run build:web` does, safely while another test
 * file does the same: vite writes into a private directory, then each file goes into dist/web
 * by copy and rename (atomic), index.html last. vite's own emptyOutDir would delete files that
 * another test file's browser is loading at that moment. Stale hashed assets are left in place;
 * `npm run build:web` empties the directory.
 */
import { copyFile, mkdir, mkdtemp, readdir, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'vite';

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

export async function buildDashboard(): Promise<void> {
  const out = await mkdtemp(join(tmpdir(), 'vtl-web-build-'));
  const dest = join(repoRoot, 'dist', 'web');
  try {
    await build({ configFile: join(repoRoot, 'web', 'vite.config.ts'), logLevel: 'warn', build: { outDir: out, emptyOutDir: true } });
    const files = (await readdir(out, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => relative(out, join(e.parentPath, e.name)));
    files.sort((a, b) => Number(a === 'index.html') - Number(b === 'index.html'));
    for (const f of files) {
      const to = join(dest, f);
      await mkdir(dirname(to), { recursive: true });
      const tmp = `${to}.${process.pid}.tmp`;
      await copyFile(join(out, f), tmp);
      await rename(tmp, to);
    }
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}
