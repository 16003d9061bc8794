/**
 * Child of the GC kill test: opens the store, says READY, runs GC, says DONE (unless killed
 * first). With a barcode, a backup is in the middle of a tape file on that cartridge all the
 * while (READY once it has written some): GC runs beside it, and nothing of it is ever synced.
 */
import { bytesOf, openEnv } from './gc-util.js';

const [dir, busy] = process.argv.slice(2);
const env = await openEnv(dir);
let stop = false;
let writing: Promise<void> = Promise.resolve();
if (busy) {
  const m = await env.libs.tapes.mount(busy);
  if (!(await m.space('eod', 0)).ok) throw new Error(`space to EOD on ${busy}`);
  const write = async (i: number): Promise<void> => {
    const r = await m.write(bytesOf(7000 + i, 1 << 20));
    if (!r.ok) throw new Error(`write: ${r.sense?.message}`);
  };
  for (let i = 0; i < 5; i++) await write(i);
  writing = (async () => {
    for (let i = 5; i < 64 && !stop; i++) await write(i);
  })();
}
process.stdout.write('READY\n');
// Each container swept is announced, so the parent can tell where its kill landed.
const report = await env.gc.run({
  progress: (done, _total, message) => void (message?.startsWith('container') && process.stdout.write(`SWEPT ${done}\n`)),
  checkCancelled: () => undefined,
});
stop = true;
await writing;
process.stdout.write(`DONE ${JSON.stringify({ deleted: report.deleted, compacted: report.compacted })}\n`);
// The busy tape file never reaches a filemark: leave as a crash would (closing would sync it).
if (busy) process.exit(0);
await env.close();
