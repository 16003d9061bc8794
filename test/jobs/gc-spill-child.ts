/**
 * Child of the spill crash test. `write MIB BARCODE...`: backups on those cartridges side by
 * side, each MIB MiB past its last sync point (long enough that the stream writers spill full
 * recipe pages to LevelDB), then READY, then more writes until the parent kills it: nothing it
 * writes ever reaches a filemark. `open K`: opens the store (its crash recovery runs), killing
 * itself (SIGKILL) right after the K-th batch of recipe pages that open commits, if there is one.
 */
import { ChunkStore } from '../../src/dedup/store.js';
import { bytesOf, openEnv } from './gc-util.js';

const [dir, mode, arg, ...barcodes] = process.argv.slice(2);
if (mode === 'open') {
  const real = ChunkStore.prototype.commitPages;
  let n = 0;
  ChunkStore.prototype.commitPages = function (this: ChunkStore, ...args: Parameters<ChunkStore['commitPages']>) {
    return real.apply(this, args).then(() => {
      if (++n === Number(arg)) process.kill(process.pid, 'SIGKILL');
    });
  };
  const env = await openEnv(dir);
  process.stdout.write(`OPENED ${n}\n`);
  await env.close();
  process.exit(0);
}
const env = await openEnv(dir);
const RECORD = 256 * 1024;
const media = await Promise.all(barcodes.map((b) => env.libs.tapes.mount(b)));
for (const m of media) if (!(await m.space('eod', 0)).ok) throw new Error(`space to EOD on ${m.id}`);
/** Writes `n` MiB on each medium side by side (as the tester's tar and upload did), from record `from` on. */
const writeSome = (from: number, n: number): Promise<void[]> =>
  Promise.all(
    media.map(async (m, k) => {
      for (let i = from; i < from + n * 4; i++) {
        const r = await m.write(bytesOf(90_000 + k * 100_000 + i, RECORD));
        if (!r.ok) throw new Error(`write on ${m.id}: ${r.sense?.message}`);
      }
    }),
  );
await writeSome(0, Number(arg));
process.stdout.write('READY\n');
for (let n = Number(arg) * 4; ; n += 4) await writeSome(n, 1);
