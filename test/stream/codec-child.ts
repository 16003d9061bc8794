/**
 * Child process of the codec interoperability test: `write DIR SEED LENGTH` stores one stream
 * and prints its id; `read DIR ID` prints the SHA-256 of a stream's bytes. The parent chooses
 * the frame codec through VTL_NATIVE_FRAMES.
 */
import { createHash } from 'node:crypto';
import { openDataStore } from '../../src/stream/store.js';
import { backupLikeBytes } from '../helpers/data.js';

const [mode, dir, a, b] = process.argv.slice(2);
const store = await openDataStore(dir);
try {
  if (mode === 'write') {
    const id = await store.streams.create();
    const w = await store.streams.openWriter(id);
    await w.write(backupLikeBytes(Number(b), Number(a)));
    await w.close();
    process.stdout.write(`${id}\n`);
  } else {
    const hash = createHash('sha256');
    const r = await store.streams.openReader(a, 0);
    for (let buf = await r.read(1 << 20); buf.length > 0; buf = await r.read(1 << 20)) hash.update(buf);
    process.stdout.write(`${hash.digest('hex')}\n`);
  }
} finally {
  await store.close();
}
