import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { initDataStore, openDataStore } from '../../src/stream/store.js';
import { withTempDir } from '../helpers/data.js';
import { streamBytes } from './crash-data.js';

const CHILD = fileURLToPath(new URL('./crash-child.ts', import.meta.url));
const KILLS = 24;

interface Acks {
  synced: Map<string, number>;
  syncing: Map<string, number>;
}

/** Runs the child until `ms` after its first sync point, then SIGKILLs it. */
function runAndKill(dir: string, seed: number, ms: number): Promise<Acks> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dir, String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const acks: Acks = { synced: new Map(), syncing: new Map() };
    let buffered = '';
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    child.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        const [what, id, len] = line.split(' ');
        if (what === 'syncing') acks.syncing.set(id, Number(len));
        if (what === 'synced') acks.synced.set(id, Number(len));
        if (!timer) timer = setTimeout(() => child.kill('SIGKILL'), ms);
      }
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (signal === 'SIGKILL') resolve(acks);
      else reject(new Error(`child exited on its own (code ${code}): ${stderr}`));
    });
  });
}

describe('crash safety', () => {
  it(`keeps every synced byte and shows nothing half-written across ${KILLS} SIGKILLs`, async () => {
    await withTempDir(async (dir) => {
      await initDataStore(dir);
      const confirmed = new Map<string, number>();
      for (let round = 0; round < KILLS; round++) {
        const acks = await runAndKill(dir, 1000 + round, 50 + ((round * 137) % 700));
        for (const [id, len] of acks.synced) confirmed.set(id, len);
        const store = await openDataStore(dir);
        try {
          for await (const id of store.streams.list()) {
            const length = await store.streams.length(id);
            const acked = confirmed.get(id) ?? 0;
            // The length is a sync point: the last one acknowledged, or the one in flight.
            const allowed = new Set([acked, acks.syncing.get(id)]);
            if (!allowed.has(length)) expect.fail(`stream ${id}: length ${length}, acknowledged ${acked}, in flight ${acks.syncing.get(id)}`);
            confirmed.set(id, length);
            const r = await store.streams.openReader(id);
            const got = await r.read(length);
            expect(got.length).toBe(length);
            expect(got.equals(streamBytes(id, length))).toBe(true);
          }
        } finally {
          await store.close();
        }
      }
      expect(confirmed.size).toBeGreaterThan(0);
    });
  }, 300_000);
});
