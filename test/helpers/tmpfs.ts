/** A small real file system (tmpfs) to fill up, for disk-full tests; needs root's mount. */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Mounts a tmpfs of `mib` MiB on `dir`; returns why it could not (the test then skips, saying so). */
export function mountSmallFs(dir: string, mib: number): string | undefined {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m`, 'tmpfs', dir], { stdio: 'pipe' });
    return undefined;
  } catch (err) {
    return `cannot mount a tmpfs here (${(err as Error).message.split('\n')[0]}); needs root and util-linux 'mount'`;
  }
}

/**
 * Runs `fn` on a fresh tmpfs of `mib` MiB holding a `fillerMiB` file named `filler` (room the
 * test frees later, as an operator would); unmounts and removes it after. Where mount is not
 * allowed the test is skipped, saying why.
 */
export async function withSmallFs(ctx: { skip(note?: string): void }, mib: number, fillerMiB: number, fn: (mnt: string) => Promise<void>): Promise<void> {
  const tmp = await mkdtemp(join(tmpdir(), 'vtl-small-fs-'));
  const mnt = join(tmp, 'mnt');
  await mkdir(mnt);
  const why = mountSmallFs(mnt, mib);
  if (why) {
    await rm(tmp, { recursive: true, force: true });
    ctx.skip(why);
    return;
  }
  try {
    await writeFile(join(mnt, 'filler'), Buffer.alloc(fillerMiB * 1024 * 1024, 1));
    await fn(mnt);
  } finally {
    execFileSync('umount', ['-l', mnt]);
    await rm(tmp, { recursive: true, force: true });
  }
}
