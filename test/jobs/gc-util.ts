/** Shared by the GC tests and the GC child process: a real data store with a library, written and read through media. */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { GarbageCollector, Jobs } from '../../src/jobs/index.js';
import { Libraries } from '../../src/library/index.js';
import { initDataStore, openDataStore, type DataStore } from '../../src/stream/store.js';

export interface Env {
  store: DataStore;
  libs: Libraries;
  gc: GarbageCollector;
  close(): Promise<void>;
}

export async function openEnv(dir: string, create = false): Promise<Env> {
  if (create) await initDataStore(dir);
  const store = await openDataStore(dir);
  const libs = new Libraries({ db: store.db, streams: store.streams });
  const gc = new GarbageCollector(new Jobs(store.db), store.chunks, store.streams);
  return {
    store,
    libs,
    gc,
    async close() {
      await libs.close();
      await store.close();
    },
  };
}

const RECORD = 1 << 20;

/** Appends tape files (records of 1 MiB, a filemark after each file) at the end of data. */
export async function writeFiles(libs: Libraries, barcode: string, files: Buffer[]): Promise<void> {
  const m = await libs.tapes.mount(barcode);
  try {
    const r0 = await m.space('eod', 0);
    if (!r0.ok) throw new Error(`space to EOD: ${r0.sense?.message}`);
    for (const f of files) {
      for (let at = 0; at < f.length; at += RECORD) {
        const r = await m.write(f.subarray(at, at + RECORD));
        if (!r.ok) throw new Error(`write: ${r.sense?.message}`);
      }
      const fm = await m.writeFilemarks(1);
      if (!fm.ok) throw new Error(`filemark: ${fm.sense?.message}`);
    }
  } finally {
    await m.unload();
  }
}

/** Reads every tape file back through the medium (checksums verified on the way). */
export async function readFiles(libs: Libraries, barcode: string): Promise<Buffer[]> {
  const m = await libs.tapes.mount(barcode);
  try {
    const files: Buffer[] = [];
    let cur: Buffer[] = [];
    for (;;) {
      const r = await m.read(2 * RECORD);
      if (r.eod) break;
      if (!r.ok && !r.filemark) throw new Error(`read ${barcode}: ${r.sense?.message}`);
      if (r.filemark) {
        files.push(Buffer.concat(cur));
        cur = [];
      } else cur.push(r.data);
    }
    return files;
  } finally {
    await m.unload();
  }
}

export async function containerBytes(dir: string): Promise<number> {
  let n = 0;
  for (const f of await readdir(join(dir, 'containers'))) n += (await stat(join(dir, 'containers', f))).size;
  return n;
}

/** Deterministic pseudo-random bytes (xorshift), so a child process can make the same data. */
export function bytesOf(seed: number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i + 4 <= n; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  for (let i = n - (n % 4); i < n; i++) b[i] = i & 0xff;
  return b;
}
