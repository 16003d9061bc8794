/**
 * SIGKILL during GC loses nothing live: a child process runs GC over a store full of garbage
 * and half-live containers; the parent kills it at random moments, reopens the store, and
 * every live cartridge reads back bit for bit. In odd rounds a backup is in the middle of a
 * tape file while GC runs (and is killed with it): its cartridge keeps just its synced files.
 * A final GC then reclaims what the killed ones left.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, test } from 'vitest';
import { bytesOf, containerBytes, openEnv, readFiles, writeFiles } from './gc-util.js';

const CHILD = fileURLToPath(new URL('./gc-child.ts', import.meta.url));
const MiB = 1 << 20;
const CARTS = ['KG0001L7', 'KG0002L7', 'KG0003L7', 'KG0004L7'];
/** Written in the middle of a tape file during odd rounds' GC, never synced there. */
const BUSY = 'KB0001L7';
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/**
 * Starts the child; kills it `ms` after it announced `after` swept containers (0: after READY,
 * in the mark phase). With `busy`, a backup writes to that cartridge, never reaching a
 * filemark, while GC runs. Resolves whether it finished first and how far it got.
 */
function runAndKill(dir: string, after: number, ms: number, busy?: string): Promise<{ finished: boolean; swept: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dir, ...(busy ? [busy] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let finished = false;
    let armed = false;
    child.stderr.on('data', (d) => (err += d));
    child.stdout.on('data', (d) => {
      out += d;
      const seen = after === 0 ? out.includes('READY\n') : (out.match(/SWEPT/g) ?? []).length >= after;
      if (seen && !armed) {
        armed = true;
        setTimeout(() => child.kill('SIGKILL'), ms);
      }
      if (out.includes('DONE')) finished = true;
    });
    child.on('exit', (code, signal) => {
      const swept = (out.match(/SWEPT/g) ?? []).length;
      if (signal === 'SIGKILL' || code === 0) resolve({ finished, swept });
      else reject(new Error(`GC child failed (${code}): ${err}`));
    });
  });
}

test('SIGKILL at random moments of GC loses nothing live', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vtl-gckill-'));
  dirs.push(dir);
  const expected = new Map<string, Buffer[]>();
  let seed = 1;
  const env = await openEnv(dir, true);
  try {
    await env.libs.createLibrary({ name: 'kg', drives: 1, slots: 8, mailslots: 0 });
    await env.libs.createCartridges({ library: 'kg', barcodes: [...CARTS, BUSY] });
    for (const bc of [...CARTS, BUSY]) {
      const files = [bytesOf(seed++, 3 * MiB), bytesOf(seed++, 2 * MiB)];
      await writeFiles(env.libs, bc, files);
      expected.set(bc, files);
    }
  } finally {
    await env.close();
  }

  let killedMidway = 0;
  for (let round = 0; round < 6; round++) {
    // make garbage: erase one cartridge and write a new backup that keeps part of the old one
    const e = await openEnv(dir);
    try {
      const bc = CARTS[round % CARTS.length];
      const old = expected.get(bc)!;
      await e.libs.eraseCartridge(bc);
      const files = [old[0].subarray(MiB), bytesOf(seed++, 2 * MiB + 777)];
      await writeFiles(e.libs, bc, files);
      expected.set(bc, files);
    } finally {
      await e.close();
    }
    const { finished, swept } = await runAndKill(dir, round % 3, Math.floor(Math.random() * 30), round % 2 === 1 ? BUSY : undefined);
    if (!finished && swept > 0) killedMidway++; // killed inside the sweep
    const check = await openEnv(dir);
    try {
      // the busy cartridge holds its synced files only: the unfinished one left no trace
      for (const bc of [...CARTS, BUSY]) {
        const got = await readFiles(check.libs, bc);
        const want = expected.get(bc)!;
        expect(got.length, `${bc} round ${round}`).toBe(want.length);
        got.forEach((f, k) => expect(f.equals(want[k]), `${bc} file ${k} round ${round}`).toBe(true));
      }
    } finally {
      await check.close();
    }
  }
  expect(killedMidway).toBeGreaterThan(0);

  // a full GC afterwards reclaims what the killed runs left behind
  const last = await openEnv(dir);
  try {
    await last.gc.run({ progress: () => undefined, checkCancelled: () => undefined });
    const live = [...expected.values()].flat().reduce((n, f) => n + f.length, 0);
    expect(await containerBytes(dir)).toBeLessThanOrEqual(2 * live + 16 * MiB);
    for (const bc of [...CARTS, BUSY]) {
      const got = await readFiles(last.libs, bc);
      got.forEach((f, k) => expect(f.equals(expected.get(bc)![k])).toBe(true));
    }
  } finally {
    await last.close();
  }
}, 120_000);
