/**
 * Fuzzing both `vtl rmt` bridges (under an ssh ForceCommand they parse what remote users send):
 * random, well-formed and mutated command streams (fuzz-streams.ts) go through a bridge to a
 * real server. Every stream must end with the bridge done (never a hang), the C bridge must
 * exit with 0 or 1 (never a signal: no crash), whatever the client gets must start as an A or
 * E reply, and every session must end and release its drive.
 */
import { spawn } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { nativeBridgePath } from '../../../src/protocols/rmt/bridge-native.js';
import { runRmtBridge } from '../../../src/protocols/rmt/index.js';
import { rng, stream } from './fuzz-streams.js';
import { describeEachBridge, startHarness, type Harness } from './harness.js';

const STREAMS = Number(process.env.VTL_RMT_BRIDGE_FUZZ_STREAMS ?? 1500);
const PARALLEL = 8;
const STREAM_TIMEOUT_MS = 15_000;

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ drives: 2 });
});
afterAll(async () => {
  await h?.close();
});

interface Outcome {
  output: Buffer;
  /** How the bridge ended: 'ok', an error message, or the C bridge's exit signal. */
  end: string;
}

/** Feeds one stream through the TypeScript bridge in this process. */
async function viaTypeScript(input: Buffer): Promise<Outcome> {
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  const out: Buffer[] = [];
  stdout.on('data', (d: Buffer) => out.push(d));
  const done = runRmtBridge(`127.0.0.1:${h.port}`, stdin, stdout).then(
    () => 'ok',
    (err: Error) => `error: ${err.message}`,
  );
  stdin.end(input);
  return { end: await done, output: Buffer.concat(out) };
}

/** Feeds one stream through the C bridge, a child on pipes. */
function viaC(input: Buffer): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(nativeBridgePath()!, [`127.0.0.1:${h.port}`], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.resume();
    child.stdin.on('error', () => undefined); // the bridge may stop reading first
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ output: Buffer.concat(out), end: signal ? `signal ${signal}` : code === 0 ? 'ok' : `exit ${code}` }));
    child.stdin.end(input);
  });
}

function withTimeout<T>(p: Promise<T>, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the bridge did not finish a stream in ${STREAM_TIMEOUT_MS} ms: ${what()}`)), STREAM_TIMEOUT_MS);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

describeEachBridge((kind) => {
  test(`${STREAMS} random and mutated command streams`, async () => {
    const r = rng(Number(process.env.FUZZ_SEED ?? 20261122) + (kind === 'c' ? 1 : 0));
    const ends = new Map<string, number>();
    let answered = 0;
    let next = 0;
    const feed = (input: Buffer) => (kind === 'c' ? viaC(input) : viaTypeScript(input));
    await Promise.all(
      Array.from({ length: PARALLEL }, async () => {
        while (next < STREAMS) {
          const i = next++;
          const { input } = stream(r);
          const show = () => `stream ${i}: ${JSON.stringify(input.toString('latin1').slice(0, 160))}`;
          const o = await withTimeout(feed(input), show);
          expect(o.end, show()).not.toMatch(/^signal/);
          if (kind === 'c') expect(['ok', 'exit 1'], show()).toContain(o.end);
          const end = o.end.replace(/\d+/g, 'N');
          ends.set(end, (ends.get(end) ?? 0) + 1);
          if (o.output.length === 0) continue;
          answered++;
          expect([0x41, 0x45], `${show()} got ${JSON.stringify(o.output.subarray(0, 40).toString('latin1'))}`).toContain(o.output[0]);
        }
      }),
    );
    console.log(`bridge fuzz (${kind}): ${STREAMS} streams, ${answered} answered; endings ${JSON.stringify(Object.fromEntries(ends))}`);
    expect(answered).toBeGreaterThan(STREAMS / 2);
    // Every session has ended and released its drive.
    for (let t = 0; h.server.connections > 0 && t < 200; t++) await new Promise((res) => setTimeout(res, 25));
    expect(h.server.connections).toBe(0);
    for (const d of [0, 1]) expect((await (await h.libs.drive('lib1', d)).status()).open).toBe(false);
  }, 180_000);
});
