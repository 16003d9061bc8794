/**
 * Child process of the crash test: writes deterministic streams with random write sizes and
 * sync points, and reports each sync point on stdout before ("syncing") and after ("synced")
 * it completes, until it is killed.
 */
import { openDataStore } from '../../src/stream/store.js';
import { streamBytes } from './crash-data.js';

const [dir, seedArg] = process.argv.slice(2);
let rng = Number(seedArg) >>> 0 || 1;
const next = (n: number) => {
  rng ^= rng << 13;
  rng ^= rng >>> 17;
  rng ^= rng << 5;
  return (rng >>> 0) % n;
};

const store = await openDataStore(dir);
for (let round = 0; ; round++) {
  // Append to an existing stream (resuming at its synced length) or start a new one.
  const ids: string[] = [];
  for await (const id of store.streams.list()) ids.push(id);
  const id = ids.length > 0 && next(2) === 0 ? ids[next(ids.length)] : await store.streams.create();
  const w = await store.streams.openWriter(id);
  let pos = w.position;
  const stop = pos + 1 + next(6 * 1024 * 1024);
  const data = streamBytes(id, stop);
  while (pos < stop) {
    const n = Math.min(stop - pos, 1 + next(300_000));
    await w.write(data.subarray(pos, pos + n));
    pos += n;
    if (next(8) === 0 || pos === stop) {
      process.stdout.write(`syncing ${id} ${pos}\n`);
      await w.sync();
      process.stdout.write(`synced ${id} ${pos}\n`);
    }
  }
  await w.close();
}
