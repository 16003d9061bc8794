import { execFile } from 'node:child_process';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { backupLikeBytes, withTempDir } from '../helpers/data.js';

const run = promisify(execFile);
const CLI = ['--import', 'tsx', 'src/cli/main.ts'];

describe('vtl bench dedup', () => {
  it('ingests, restores and verifies generations, printing the stable JSON shape', async () => {
    await withTempDir(async (dir) => {
      const gen1 = backupLikeBytes(12 * 1024 * 1024, 42);
      const gen2 = Buffer.concat([gen1.subarray(0, 5_000_000), Buffer.from('a small change in the middle'), gen1.subarray(5_000_000)]);
      await writeFile(join(dir, 'gen1'), gen1);
      await writeFile(join(dir, 'gen2'), gen2);
      const { stdout } = await run(process.execPath, [...CLI, 'bench', 'dedup', '--json', join(dir, 'gen1'), join(dir, 'gen2')]);
      const r = JSON.parse(stdout);
      expect(Object.keys(r.generations[0]).sort()).toEqual(['file', 'ingestMBps', 'logicalBytes', 'restoreMBps', 'storedBytes', 'verified']);
      expect(Object.keys(r.totals).sort()).toEqual(['compressionRatio', 'dedupRatio', 'logicalBytes', 'reductionPct', 'storedBytes']);
      expect(Object.keys(r.chunking).sort()).toEqual(['avg', 'max', 'min', 'native']);
      expect(['native', 'typescript']).toContain(r.frameCodec);
      expect(r.generations.map((g: { verified: boolean }) => g.verified)).toEqual([true, true]);
      expect(r.generations[0].logicalBytes).toBe(gen1.length);
      expect(r.generations[1].logicalBytes).toBe(gen2.length);
      // Generation 2 differs by one insert: it stores a few chunks, not megabytes.
      expect(r.generations[1].storedBytes).toBeLessThan(200_000);
      expect(r.totals.dedupRatio).toBeGreaterThan(1.9);
      expect(r.totals.compressionRatio).toBeGreaterThan(1);
      expect(r.totals.storedBytes).toBe(r.generations[0].storedBytes + r.generations[1].storedBytes);
    });
  });

  it('names an unreadable file and exits non-zero', async () => {
    await withTempDir(async (dir) => {
      const missing = join(dir, 'no-such-file');
      await expect(run(process.execPath, [...CLI, 'bench', 'dedup', missing])).rejects.toMatchObject({
        stderr: expect.stringContaining(missing),
      });
      const locked = join(dir, 'locked');
      await writeFile(locked, 'x');
      await chmod(locked, 0o000);
      if (process.getuid?.() !== 0) {
        await expect(run(process.execPath, [...CLI, 'bench', 'dedup', locked])).rejects.toMatchObject({
          stderr: expect.stringMatching(/cannot read .*locked/),
        });
      }
    });
  });

  it('generates a sample and benchmarks it', async () => {
    const { stdout } = await run(process.execPath, [
      ...CLI, 'bench', 'dedup', '--json', '--sample', 'system', '--sample-root', 'src', '--generations', '3',
    ]);
    const r = JSON.parse(stdout);
    expect(r.generations).toHaveLength(3);
    expect(r.generations.every((g: { verified: boolean }) => g.verified)).toBe(true);
    expect(r.totals.dedupRatio).toBeGreaterThan(2);
  });
});
