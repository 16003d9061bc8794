/**
 * `vtl ... | head`: when the reader of stdout goes away, vtl exits quietly (no EPIPE stack trace,
 * no error message) with status 141, as a Unix tool killed by SIGPIPE does (so `set -o pipefail`
 * sees an export that was cut off). The real CLI in its own process, against a real server.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../api/helpers.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
let t: TestServer;

beforeAll(async () => {
  t = await startTestServer({ demo: true });
}, 60_000);
afterAll(async () => {
  await t?.stop();
});

/** Runs vtl with a stdout pipe whose reading end is closed before vtl writes anything. */
function closedStdout(args: string[]): Promise<{ code: number | null; signal: string | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args, '--url', t.url, '--token-file', t.server.adminTokenFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.destroy(); // like `head` that has read enough and exited
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stderr }));
  });
}

for (const args of [['cartridge', 'show', 'VT0001L7'], ['cartridge', 'list']]) {
  it(`vtl ${args.join(' ')} | head: exits quietly with 141`, async () => {
    const r = await closedStdout(args);
    expect(r.stderr).not.toMatch(/EPIPE|Error|at /);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(141);
  }, 60_000);
}
