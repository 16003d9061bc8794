/**
 * Fuzzing one rmt server with at least 100,000 command streams: random bytes, well-formed
 * scripts (half of them with the bridge extension's hello, buffered writes and undone reads)
 * and mutations of them (flipped, inserted, deleted and duplicated bytes, cut streams,
 * numbers replaced by huge or negative ones, clients that reset the connection). The server
 * must answer each stream with A or E replies and close it when the input ends (never hang),
 * never crash, keep its memory bounded, release every drive, and keep the cartridges readable
 * with good checksums.
 */
import { connect } from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { seededRng } from '../../helpers/data.js';
import { RawClient, startHarness, type Harness } from './harness.js';

const STREAMS = Number(process.env.VTL_RMT_FUZZ_STREAMS ?? 100_000);
const PARALLEL = 24;
const STREAM_TIMEOUT_MS = 15_000;

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ drives: 2 });
});
afterAll(async () => {
  await h?.close();
});

const mib = (n: number) => (n / 2 ** 20).toFixed(0);

/** Seeded: the run is reproducible from FUZZ_SEED. */
const rng = seededRng;
type Rng = ReturnType<typeof rng>;

const DEVICES = ['/lib1/nst0', '/lib1/st0', '/lib1/nst1', '/lib1/st1', '/lib1/rmt0', '/lib1/rmt1.1', '/lib1/nst9', '/nolib/st0', '/lib1/xx', ''];
const FLAGS = ['0 O_RDONLY', '65 O_WRONLY|O_CREAT', '2 O_RDWR', '1', '2', '2048 O_RDONLY|O_NONBLOCK', 'O_BOGUS', '-1', '3'];
const NUMBERS = ['0', '1', '-1', '512', '65536', '2097152', '2097153', '3000000000', '99999999999999999999', '-3000000000', 'x', ''];

function command(r: Rng): string | Buffer {
  switch (r.int(17)) {
    case 0:
      return `O${r.pick(DEVICES)}\n${r.pick(FLAGS)}\n`;
    case 1:
    case 2: {
      const n = r.int(4) === 0 ? r.int(9000) : r.int(600);
      const data = Buffer.alloc(n, r.int(256));
      return Buffer.concat([Buffer.from(`W${n}\n`), data]);
    }
    case 3:
    case 4:
      return `R${r.pick(['1', '100', '512', '10240', '65536', '3000000000', '-5', 'zz'])}\n`;
    case 5:
    case 6:
      return `I${r.int(42) - 1}\n${r.pick(['0', '1', '1', '2', '3', '-2', '512', '100000'])}\n`;
    case 7:
      return r.pick(['S', 'S\n']);
    case 8:
      return `L${r.pick(NUMBERS)}\n${r.pick(['0', '1', '2', 'SET', 'CUR', 'END', '7'])}\n`;
    case 9:
      return r.pick(['C\n', 'C/lib1/nst0\n']);
    case 10:
      return r.pick(['i1\n1\n', 'sT', 'v1\n', '\n\n']);
    case 11:
      return `W${r.pick(NUMBERS)}\n`;
    case 14: // the bridge extension: hello, buffered write, undo of reads
      return r.pick(['B1\n', 'B0\n', 'B99\n', 'Bx\n']);
    case 15: {
      const n = r.int(4) === 0 ? r.int(9000) : r.int(600);
      return Buffer.concat([Buffer.from(`w${n}\n`), Buffer.alloc(n, r.int(256))]);
    }
    case 16:
      return `U${r.pick(['0', '1', '2', '5', '300', '-1', 'x'])}\n`;
    default:
      return `I${r.pick(['6', '5', '1', '2', '12', '13', '30'])}\n1\n`;
  }
}

function script(r: Rng): Buffer {
  const parts: (string | Buffer)[] = [`O${r.pick(DEVICES.slice(0, 6))}\n${r.pick(FLAGS.slice(0, 3))}\n`];
  if (r.int(2)) parts.unshift('B1\n'); // a bridge's session: w and U are commands
  const n = 1 + r.int(12);
  for (let i = 0; i < n; i++) parts.push(command(r));
  if (r.int(2)) parts.push('C\n');
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p)));
}

function randomBytes(r: Rng, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = r.int(256);
  return b;
}

function mutate(r: Rng, input: Buffer): Buffer {
  let b = input;
  const k = 1 + r.int(4);
  for (let i = 0; i < k && b.length > 0; i++) {
    const at = r.int(b.length);
    switch (r.int(6)) {
      case 0: // flip a byte
        b = Buffer.from(b);
        b[at] ^= 1 << r.int(8);
        break;
      case 1: // insert random bytes
        b = Buffer.concat([b.subarray(0, at), randomBytes(r, 1 + r.int(8)), b.subarray(at)]);
        break;
      case 2: // delete a span
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + r.int(16))]);
        break;
      case 3: // duplicate a span
        b = Buffer.concat([b.subarray(0, at), b.subarray(at, at + 1 + r.int(64)), b.subarray(at)]);
        break;
      case 4: // cut the stream
        b = b.subarray(0, at);
        break;
      default: {
        // a number becomes a huge, negative or malformed one
        const text = b.toString('latin1');
        const m = /\d+/g;
        const all = [...text.matchAll(m)];
        if (all.length === 0) break;
        const hit = r.pick(all);
        b = Buffer.from(text.slice(0, hit.index) + r.pick(NUMBERS) + text.slice(hit.index! + hit[0].length), 'latin1');
      }
    }
  }
  return b;
}

/** Random MTOFFL/MTUNLOAD take cartridges offline; some streams bring them back (MTLOAD). */
function reload(r: Rng): Buffer {
  return Buffer.from(`O/lib1/nst${r.int(2)}\n2048 O_RDONLY|O_NONBLOCK\nI30\n1\nC\n`);
}

function stream(r: Rng): { input: Buffer; reset: boolean } {
  const kind = r.int(20);
  const input = kind < 4 ? randomBytes(r, r.int(300)) : kind < 8 ? script(r) : kind < 10 ? reload(r) : mutate(r, script(r));
  return { input, reset: r.int(10) === 0 };
}

interface Outcome {
  replied: boolean;
  firstByte: number | undefined;
}

/** Sends one stream and ends (or resets) the connection; resolves when the server has closed. */
function feed(port: number, input: Buffer, reset: boolean): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    let first: number | undefined;
    let got = 0;
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`the server did not close a stream in ${STREAM_TIMEOUT_MS} ms: ${JSON.stringify(input.toString('latin1').slice(0, 200))}`));
    }, STREAM_TIMEOUT_MS);
    s.on('data', (d: Buffer) => {
      if (first === undefined) first = d[0];
      got += d.length;
    });
    const done = () => {
      clearTimeout(timer);
      s.destroy();
      resolve({ replied: got > 0, firstByte: first });
    };
    s.on('end', done);
    s.on('close', done);
    s.on('error', () => undefined);
    s.on('connect', () => {
      if (reset) {
        s.write(input.subarray(0, input.length >> 1), () => s.resetAndDestroy());
      } else {
        s.end(input);
      }
    });
  });
}

/** Puts offline cartridges back online (random MTOFFL/MTUNLOAD take them out). */
async function reloadDrives(port: number): Promise<void> {
  for (const dev of ['/lib1/nst0', '/lib1/nst1']) {
    const c = await RawClient.connect(port);
    try {
      for (let i = 0; i < 200; i++) {
        const r = await c.open(dev, '2048 O_RDONLY|O_NONBLOCK');
        if (r.ok) break;
        await new Promise((res) => setTimeout(res, 10));
      }
      await c.ioctl(30, 1);
      await c.ioctl(6, 1);
      await c.ioctl(13, 1); // keep the cartridges small: erase from BOT now and then
      await c.close();
    } finally {
      c.destroy();
    }
  }
}

test(`${STREAMS} random and mutated command streams against one server`, async () => {
  const r = rng(Number(process.env.FUZZ_SEED ?? 20260501));
  gc();
  const base = process.memoryUsage();
  let peakRss = base.rss;
  let peakBuffers = base.arrayBuffers;
  let retainedBuffers = base.arrayBuffers;
  let retainedHeap = base.heapUsed;
  let replied = 0;
  let next = 0;
  const one = async () => {
    const i = next++;
    const { input, reset } = stream(r);
    const o = await feed(h.port, input, reset);
    if (!o.replied) return;
    replied++;
    expect([0x41, 0x45], `stream ${i}: ${JSON.stringify(input.toString('latin1').slice(0, 120))}`).toContain(o.firstByte);
  };
  const started = Date.now();
  while (next < STREAMS) {
    // Rounds of 5,000 streams, PARALLEL at a time; between rounds offline cartridges come back.
    const until = Math.min(STREAMS, next + 5000);
    await Promise.all(
      Array.from({ length: PARALLEL }, async () => {
        while (next < until) await one();
      }),
    );
    const m = process.memoryUsage();
    peakRss = Math.max(peakRss, m.rss);
    peakBuffers = Math.max(peakBuffers, m.arrayBuffers);
    // What stays after a collection is what the server holds on to: it must not grow.
    gc();
    const kept = process.memoryUsage();
    retainedBuffers = Math.max(retainedBuffers, kept.arrayBuffers);
    retainedHeap = Math.max(retainedHeap, kept.heapUsed);
    await reloadDrives(h.port);
  }
  const seconds = (Date.now() - started) / 1000;

  // Every session has ended and released its drive.
  for (let t = 0; h.server.connections > 0 && t < 200; t++) await new Promise((res) => setTimeout(res, 25));
  expect(h.server.connections).toBe(0);
  for (const i of [0, 1]) expect((await (await h.libs.drive('lib1', i)).status()).open).toBe(false);

  // The cartridges are intact: every tape file verifies against its checksum.
  await reloadDrives(h.port);
  for (const i of [0, 1]) {
    const d = await h.libs.drive('lib1', i);
    const m = await d.open();
    try {
      expect((await m.verify()).bad).toEqual([]);
    } finally {
      await d.close();
    }
  }

  gc();
  const end = process.memoryUsage();
  console.log(
    `fuzz: ${STREAMS} streams in ${seconds.toFixed(1)} s, ${replied} answered; after collections: heap ${mib(base.heapUsed)} -> max ${mib(retainedHeap)} -> ${mib(end.heapUsed)} MiB, ` +
      `buffers ${mib(base.arrayBuffers)} -> max ${mib(retainedBuffers)} -> ${mib(end.arrayBuffers)} MiB; before collections: peak rss ${mib(peakRss)} MiB, peak buffers ${mib(peakBuffers)} MiB`,
  );
  expect(replied).toBeGreaterThan(STREAMS / 2);
  // The server's own state (sessions, parsers, queues) lives on the heap: it must not grow.
  expect(retainedHeap - base.heapUsed).toBeLessThan(64 * 2 ** 20);
  // Buffers: each stream writer the medium opens allocates 2 x (4 MiB + max chunk) of
  // SharedArrayBuffer, which the codec worker isolates keep alive until they collect; the
  // fuzz opens hundreds of writers. Measured: peaks of about 1.4 GiB that fall back, never a
  // steady climb. Loose ceiling here; the churn is reported to the stream layer's owner.
  expect(retainedBuffers - base.arrayBuffers).toBeLessThan(3 * 2 ** 30);
}, 180_000);
