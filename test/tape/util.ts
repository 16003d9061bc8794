/** Shared set-up for the tape tests: a medium on memory streams over a temp-dir LevelDB. */
import { TapeStore, type Medium, type MediumSpec } from '../../src/tape/index.js';
import { openMemoryDataStore } from '../helpers/memory-streams.js';

export type Env = Awaited<ReturnType<typeof openMemoryDataStore>> & { tapes: TapeStore };

export async function openEnv(dir?: string): Promise<Env> {
  const ds = await openMemoryDataStore(dir);
  return Object.assign(ds, { tapes: new TapeStore({ db: ds.db, streams: ds.streams }) });
}

let serial = 0;
export async function newMedium(env: Env, spec: Partial<MediumSpec> = {}): Promise<Medium> {
  const id = `T${++serial}`;
  await env.tapes.create(id, { mediaType: 'LTO-7', ...spec } as MediumSpec);
  return env.tapes.mount(id);
}

/** Deterministic record contents: `size` bytes derived from `tag`. */
export function rec(tag: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  let x = (tag * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}
