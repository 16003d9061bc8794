/**
 * The `vtl` launcher (src/cli/vtl): `npm start` runs it; its node options are accepted by this
 * node; `vtl rmt` execs the C bridge itself where it is built (no node process in between,
 * whichever way the server is given), and everything else reaches the Node CLI.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { RawClient, cBridgeMissing, startHarness, type Harness } from '../protocols/rmt/harness.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const LAUNCHER = join(REPO, 'src', 'cli', 'vtl');
const BRIDGE = join(REPO, 'native', 'build', 'Release', 'vtl-rmt-bridge');

/** The launcher's node options (its `node_options='...'` line). */
function nodeOptions(): string[] {
  const m = /^node_options='([^']*)'$/m.exec(readFileSync(LAUNCHER, 'utf8'));
  if (!m) throw new Error('src/cli/vtl has no node_options line');
  return m[1].split(/\s+/).filter(Boolean);
}

test('npm start runs the launcher', () => {
  const start: string = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).scripts.start;
  expect(start).toBe('sh src/cli/vtl serve');
});

test('this node accepts the launcher node options', () => {
  const opts = nodeOptions();
  expect(opts).toContain('--initial-heap-size=128');
  expect(execFileSync(process.execPath, [...opts, '-e', 'process.stdout.write("started")'], { encoding: 'utf8' })).toBe('started');
});

test.skipIf(!existsSync(join(REPO, 'dist', 'cli', 'main.js')))('other commands reach the Node CLI (skipped where dist is not built: npm ci builds it)', () => {
  const out = execFileSync(LAUNCHER, ['rmt', '--help'], { encoding: 'utf8' });
  expect(out).toMatch(/speak rmt on stdin\/stdout/);
});

describe.skipIf(cBridgeMissing !== undefined)(`vtl rmt execs the C bridge${cBridgeMissing ? ` (skipped: ${cBridgeMissing})` : ''}`, () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ drives: 1 });
  });
  afterAll(async () => {
    await h?.close();
  });

  for (const [how, args, env] of [
    ['--server ADDRESS', (port: number) => ['rmt', '--server', `127.0.0.1:${port}`], {}],
    ['--server=ADDRESS', (port: number) => ['rmt', `--server=127.0.0.1:${port}`], {}],
    ['VTL_RMT', () => ['rmt'], { VTL_RMT: '' }],
  ] as const) {
    test(`given ${how}`, async () => {
      const child = spawn(LAUNCHER, args(h.port), {
        stdio: ['pipe', 'pipe', 'pipe'],
        env: { ...process.env, VTL_NATIVE_BRIDGE: '', ...('VTL_RMT' in env ? { VTL_RMT: `127.0.0.1:${h.port}` } : {}) },
      });
      const exited = new Promise<number | null>((res) => child.on('close', res));
      const c = RawClient.overStdio(child);
      expect((await c.open('/lib1/st0')).ok).toBe(true);
      // The process tar talks to is the bridge itself.
      expect(readlinkSync(`/proc/${child.pid}/exe`)).toBe(BRIDGE);
      const w = await c.write(Buffer.alloc(10240, 7));
      expect(w).toMatchObject({ ok: true, value: 10240 });
      expect((await c.close()).ok).toBe(true);
      child.stdin.end();
      expect(await exited).toBe(0);
    });
  }
});
