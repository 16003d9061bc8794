import { describe, expect, it } from 'vitest';
import { RecipeStreams, pageKey, type ChunkSource } from '../../src/stream/recipes.js';
import type { DataStore } from '../../src/stream/store.js';
import { backupLikeBytes } from '../helpers/data.js';
import { withStore } from '../helpers/store.js';

/** The chunk store seen through ChunkSource without `putCut`: writers fall back to `putHashed`. */
function withoutPutCut(s: DataStore): ChunkSource {
  const c = s.chunks;
  return {
    chunker: c.chunker,
    readChunks: (items, into) => c.readChunks(items, into),
    commit: (extra) => c.commit(extra),
    commitPages: (pages, change, extra, sync) => c.commitPages(pages, change, extra, sync),
    cutAndHash: (view, final) => c.cutAndHash(view, final),
    putHashed: (chunks, fps) => c.putHashed(chunks, fps),
  };
}

/** Writes `data` in 1 MiB records with a sync point and a reopened writer in the middle. */
async function write(streams: RecipeStreams<ChunkSource>, data: Buffer): Promise<string> {
  const id = await streams.create();
  const half = 5 * 1024 * 1024 + 777;
  let w = await streams.openWriter(id);
  for (let at = 0; at < half; at += 1 << 20) await w.write(data.subarray(at, Math.min(at + (1 << 20), half)));
  await w.close();
  w = await streams.openWriter(id); // appends to the last page, which is partly filled
  for (let at = half; at < data.length; at += 1 << 20) await w.write(data.subarray(at, Math.min(at + (1 << 20), data.length)));
  await w.close();
  return id;
}

async function pages(streams: RecipeStreams<ChunkSource>, id: string): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const [key, page] of streams.pages.iterator({ gte: pageKey(id, 0), lte: pageKey(id, Number.MAX_SAFE_INTEGER) })) out.push(key.subarray(8), page);
  return Buffer.concat(out);
}

async function readAll(streams: RecipeStreams<ChunkSource>, id: string): Promise<Buffer> {
  const r = await streams.openReader(id, 0);
  const parts: Buffer[] = [];
  for (let b = await r.read(1 << 20); b.length > 0; b = await r.read(1 << 20)) parts.push(b);
  return Buffer.concat(parts);
}

describe('stream writer store paths', () => {
  it('putCut and the putHashed fallback write identical recipes that read back bit for bit', async () => {
    await withStore(async (s) => {
      // Repeats inside the data, so batches hold duplicates of chunks of the same batch too.
      const part = backupLikeBytes(3 * 1024 * 1024 + 4321, 21);
      const data = Buffer.concat([part, backupLikeBytes(2 * 1024 * 1024, 22), part, part.subarray(1000)]);
      const fast = s.streams as unknown as RecipeStreams<ChunkSource>;
      const slow = new RecipeStreams<ChunkSource>(s.db, withoutPutCut(s));
      const viaFallback = await write(slow, data); // stores the chunks
      const stored = s.chunks.getStats().chunks;
      const viaPutCut = await write(fast, data); // finds every one of them
      expect(s.chunks.getStats().chunks).toBe(stored);
      const again = await write(slow, data);
      // Buffer.equals: toEqual walks 13 MB element by element for minutes.
      expect((await readAll(fast, viaPutCut)).equals(data)).toBe(true);
      expect((await readAll(fast, viaFallback)).equals(data)).toBe(true);
      const [a, b] = [await pages(fast, viaPutCut), await pages(fast, again)];
      expect(a.length).toBeGreaterThan(0);
      expect(a.equals(b)).toBe(true);
    });
  });
});
