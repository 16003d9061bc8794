/**
 * Loader of the C frame codec (native/src/frames.c: liblz4 + OpenSSL AES-256-GCM, a batch of
 * frames per call). Loading never throws: when the addon or liblz4 is missing, or
 * VTL_NATIVE_FRAMES=0 asks for it, callers use the TypeScript codec (lz4-napi + node:crypto),
 * which reads and writes the same frames. vtl says so once per process.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { isMainThread } from 'node:worker_threads';

export interface FramesAddon {
  /** Frame j goes to out[bounds[j] .. bounds[j+1]); returns the bytes used. */
  sealFrames(
    key: Uint8Array,
    containers: Uint32Array,
    seqs: Uint32Array,
    fingerprints: Uint8Array,
    data: Uint8Array,
    starts: Uint32Array,
    lengths: Uint32Array,
    out: Uint8Array,
    bounds: Uint32Array,
  ): number;
  /** Frame j is src[offsets[j]..][..lengths[j]], its chunk goes to out[outOffsets[j]..]. */
  openFrames(
    key: Uint8Array,
    container: number,
    fingerprints: Uint8Array,
    src: Uint8Array,
    offsets: Uint32Array,
    lengths: Uint32Array,
    rawLengths: Uint32Array,
    out: Uint8Array,
    outOffsets: Uint32Array,
  ): undefined | { index: number; reason: string };
}

// src/dedup and dist/dedup are both two levels below the repository root.
const ADDON_PATH = fileURLToPath(new URL('../../native/build/Release/vtl_frames.node', import.meta.url));

let loaded: { addon: FramesAddon } | { error: string } | undefined;
let warned = false;

/** The addon, or why it is not used (decided once per process). */
export function loadFramesAddon(): { addon: FramesAddon } | { error: string } {
  if (loaded) return loaded;
  if (process.env.VTL_NATIVE_FRAMES === '0') return (loaded = { error: 'VTL_NATIVE_FRAMES=0' });
  try {
    const addon = createRequire(import.meta.url)(ADDON_PATH) as FramesAddon & { unavailable: string | null };
    if (typeof addon?.sealFrames !== 'function') throw new Error('addon does not export sealFrames');
    loaded = addon.unavailable ? { error: addon.unavailable } : { addon };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    loaded = { error: message.split('\n')[0] };
  }
  return loaded;
}

/** The addon when it is used, else undefined after saying once why not (the main thread says it). */
export function framesAddon(): FramesAddon | undefined {
  const got = loadFramesAddon();
  if ('addon' in got) return got.addon;
  if (!warned && isMainThread && got.error !== 'VTL_NATIVE_FRAMES=0') {
    warned = true;
    process.stderr.write(`vtl: native frame codec unavailable (${got.error}); using lz4-napi and node:crypto\n`);
  }
  return undefined;
}
