/** A fresh data store in a temporary directory, closed (and deleted) after `fn`. */
import { initDataStore, openDataStore, type DataStore } from '../../src/stream/store.js';
import { withTempDir } from './data.js';

export async function withStore<T>(fn: (s: DataStore, dir: string) => Promise<T>): Promise<T> {
  return withTempDir(async (dir) => {
    await initDataStore(dir);
    const s = await openDataStore(dir);
    try {
      return await fn(s, dir);
    } finally {
      await s.close();
    }
  });
}
