/**
 * Child of the kill test: appends the deterministic tape of kill-schedule.ts to a medium and
 * prints `ACK <eod>` after each sync point returns, until it is killed.
 * Usage: node --import tsx test/tape/kill-child.ts DIR MEDIUM memory|real
 */
import { TapeStore } from '../../src/tape/index.js';
import { openMemoryDataStore } from '../helpers/memory-streams.js';
import { isMark, isSync, objectData } from './kill-schedule.js';

const [dir, id, mode] = process.argv.slice(2);

async function open() {
  if (mode === 'real') {
    const { openDataStore } = await import('../../src/stream/store.js');
    return openDataStore(dir);
  }
  return openMemoryDataStore(dir);
}

const ds = await open();
const tapes = new TapeStore({ db: ds.db, streams: ds.streams });
if (!(await tapes.exists(id))) await tapes.create(id, { mediaType: 'LTO-7' });
const m = await tapes.mount(id);
await m.space('eod');
let k = (await m.readPosition()).lba;
process.stdout.write(`READY ${k}\n`);
for (;;) {
  const r = isMark(k) ? await m.writeFilemarks(1) : await m.write(objectData(k));
  if (!r.ok) throw new Error(`write of object ${k} failed: ${r.sense?.message}`);
  if (isSync(k)) {
    if (!isMark(k)) await m.writeFilemarks(0);
    process.stdout.write(`ACK ${k + 1}\n`);
  }
  k++;
}
