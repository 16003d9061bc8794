/** A small real file system (tmpfs) to fill up, for disk-full tests; needs root's mount. */
import { execFileSync } from 'node:child_process';

/** Mounts a tmpfs of `mib` MiB on `dir`; returns why it could not (the test then skips, saying so). */
export function mountSmallFs(dir: string, mib: number): string | undefined {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m`, 'tmpfs', dir], { stdio: 'pipe' });
    return undefined;
  } catch (err) {
    return `cannot mount a tmpfs here (${(err as Error).message.split('\n')[0]}); needs root and util-linux 'mount'`;
  }
}
