/**
 * Opens a data directory: the LevelDB (`index/`), the chunk store (`containers/`, `keys/`) and
 * the streams over them, each recovered from a crash (containers sealed, recipe pages past a
 * stream's sync point dropped) before the store is handed out. Upper layers keep their own
 * sublevels in the same LevelDB so that their state commits atomically with stream sync points.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Level } from 'level';
import { ChunkStore, explainStorageError } from '../dedup/store.js';
import type { ChunkParams } from '../dedup/chunker.js';
import { RecipeStreams } from './recipes.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type DataDb = Level<any, any>;

export interface DataStore {
  dir: string;
  db: DataDb;
  chunks: ChunkStore;
  streams: RecipeStreams;
  close(): Promise<void>;
}

/** Creates a new data directory (keys, config) unless one exists. */
export async function initDataStore(dir: string, chunking?: ChunkParams): Promise<void> {
  await mkdir(dir, { recursive: true });
  await ChunkStore.init(dir, chunking);
}

export async function openDataStore(dir: string, opts: { native?: boolean } = {}): Promise<DataStore> {
  await ChunkStore.readConfig(dir);
  const db: DataDb = new Level(join(dir, 'index'), { keyEncoding: 'utf8', valueEncoding: 'json' });
  try {
    await db.open();
  } catch (err) {
    const cause = (err as { cause?: Error }).cause;
    if (cause?.message?.includes('lock')) {
      throw new Error(`${dir} is in use by another vtl process (the LevelDB lock is held)`, { cause: err });
    }
    throw explainStorageError(err as Error, dir);
  }
  let chunks: ChunkStore;
  try {
    chunks = await ChunkStore.open(dir, db, opts);
  } catch (err) {
    await db.close();
    throw err;
  }
  const streams = new RecipeStreams(db, chunks);
  try {
    // Crash recovery of the streams: recipe pages past a sync point are dropped before anything
    // can open a writer (or GC count them as references).
    await streams.recover();
  } catch (err) {
    await chunks.close().catch(() => undefined);
    await db.close();
    throw explainStorageError(err as Error, dir);
  }
  return {
    dir,
    db,
    chunks,
    streams,
    async close() {
      try {
        await chunks.close();
      } finally {
        await db.close(); // also after a failed flush (a full disk): the lock must go
      }
    },
  };
}
