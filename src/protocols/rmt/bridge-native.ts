/**
 * The C build of the bridge (native/src/rmt-bridge.c): the same protocol as bridge.ts, with
 * less CPU per record. `vtl rmt` runs it when it was built (VTL_NATIVE_BRIDGE=0 keeps the
 * TypeScript bridge); both run one conformance suite. Nothing is read from stdin before it
 * starts, so a build that cannot start leaves the TypeScript bridge a clean conversation.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { fileURLToPath } from 'node:url';

const BINARY = fileURLToPath(new URL('../../../native/build/Release/vtl-rmt-bridge', import.meta.url));

/** Path of the C bridge, if it was built and may run here. */
export function nativeBridgePath(): string | undefined {
  if (process.env.VTL_NATIVE_BRIDGE === '0') return undefined;
  try {
    accessSync(BINARY, constants.X_OK);
    return BINARY;
  } catch {
    return undefined;
  }
}

/**
 * Runs the C bridge on this process's stdin and stdout until it ends; its exit status, or
 * undefined if it could not start.
 */
export function runNativeBridge(binary: string, server: string): number | undefined {
  const r = spawnSync(binary, [server], { stdio: 'inherit' });
  if (r.error) return undefined;
  return r.status ?? 1;
}
