import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { withSmallFs } from '../helpers/tmpfs.js';
import { initDataStore, openDataStore, type DataStore } from '../../src/stream/store.js';
import { randomBytes, withTempDir } from '../helpers/data.js';

async function readAll(s: DataStore, id: string): Promise<Buffer> {
  const r = await s.streams.openReader(id);
  return r.read(await s.streams.length(id));
}

describe('bad conditions', () => {
  it('a full disk gives a clear error and leaves synced data readable', async (ctx) => {
    // 6 MiB of it a filler: room the operator can free later.
    await withSmallFs(ctx, 24, 6, async (mnt) => {
      const dir = join(mnt, 'store');
      await initDataStore(dir);
      let s = await openDataStore(dir);
      const kept = randomBytes(3 * 1024 * 1024, 1);
      const id = await s.streams.create();
      const w = await s.streams.openWriter(id);
      await w.write(kept);
      await w.sync();
      // Fill the disk with incompressible data until the store runs out of space.
      const id2 = await s.streams.create();
      const w2 = await s.streams.openWriter(id2);
      let error: Error | undefined;
      try {
        for (let i = 0; i < 64; i++) {
          await w2.write(randomBytes(1024 * 1024, 100 + i));
          if (i % 4 === 3) await w2.sync();
        }
      } catch (err) {
        error = err as Error;
      }
      expect(error, 'the store should have run out of space').toBeDefined();
      expect(error!.message).toMatch(/disk full.*vtl store/);
      expect(error!.message).toContain(dir);
      await w2.abort();
      await w.abort();
      await s.close().catch(() => undefined);
      await s.db.close().catch(() => undefined);
      // Free space, reopen: the synced stream reads back bit for bit.
      await rm(join(mnt, 'filler'));
      s = await openDataStore(dir);
      try {
        expect((await readAll(s, id)).equals(kept)).toBe(true);
        const len2 = await s.streams.length(id2);
        expect(len2 % (4 * 1024 * 1024)).toBe(0);
        const got = await readAll(s, id2);
        for (let i = 0; i < len2 / (1024 * 1024); i++) {
          expect(got.subarray(i * 1024 * 1024, (i + 1) * 1024 * 1024).equals(randomBytes(1024 * 1024, 100 + i))).toBe(true);
        }
      } finally {
        await s.close();
      }
    });
  });

  it('says which store is missing', async () => {
    await withTempDir(async (tmp) => {
      await expect(openDataStore(join(tmp, 'nothing'))).rejects.toThrow(/no vtl store in .*vtl init/);
    });
  });

  it('refuses to open a store twice at once', async () => {
    await withTempDir(async (dir) => {
      await initDataStore(dir);
      const s = await openDataStore(dir);
      try {
        await expect(openDataStore(dir)).rejects.toThrow(/in use by another vtl process/);
      } finally {
        await s.close();
      }
    });
  });

  it('refuses to initialize over an existing store', async () => {
    await withTempDir(async (dir) => {
      await initDataStore(dir);
      await expect(initDataStore(dir)).rejects.toThrow(/already holds a vtl store/);
    });
  });
});
