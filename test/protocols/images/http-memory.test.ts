/**
 * A large tape image passes through the image routes with bounded memory both ways: a 1 GiB
 * aws image, generated on the fly, is PUT into a server in its own process and read back with
 * GET; the two streams hash the same and the server's peak RSS (VmHWM) stays far below the
 * size of the image.
 */
import { createHash, randomFillSync } from 'node:crypto';
import { request } from 'node:http';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { peakRss, startChildServer, type ChildServer } from '../../api/helpers.js';
import { CODECS } from '../../../src/protocols/images/index.js';

const RECORD = 256 * 1024;
const RECORDS = 4096; // 1 GiB of data
const PER_FILE = 64;
let server: ChildServer;
let info: { url: string; pid: number };
let token: string;
const pattern = randomFillSync(Buffer.alloc(16 << 20));

beforeAll(async () => {
  server = await startChildServer();
  info = server;
  token = server.token;
});
afterAll(() => server?.stop());

/** The image: files of PER_FILE records, each record stamped with its number, a tapemark after each file. */
function* image(): Generator<Buffer> {
  const enc = CODECS.aws.encoder();
  for (let i = 0; i < RECORDS; i++) {
    const at = (i * RECORD) % pattern.length;
    const rec = Buffer.from(pattern.subarray(at, at + RECORD));
    rec.writeUInt32BE(i, 0);
    yield* enc.record(rec);
    if ((i + 1) % PER_FILE === 0) yield* enc.tapemark();
  }
  yield* enc.end();
}

test('a 1 GiB aws image goes in and out with bounded server memory', async () => {
  const auth = { authorization: `Bearer ${token}` };
  const url = `${info.url}/api/v1/cartridges/VT0001L7/image?format=aws`;
  const sent = createHash('sha256');
  let size = 0;
  const before = await peakRss(info.pid);
  const t0 = Date.now();
  const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request(url, { method: 'PUT', headers: { ...auth, 'content-type': 'application/octet-stream' } }, (r) => {
      let body = '';
      r.on('data', (d) => (body += d));
      r.on('end', () => resolve({ status: r.statusCode!, body }));
    });
    req.on('error', reject);
    const src = Readable.from(image(), { objectMode: false, highWaterMark: 1 << 20 });
    src.on('data', (c: Buffer) => {
      sent.update(c);
      size += c.length;
    });
    src.pipe(req);
  });
  const putSeconds = (Date.now() - t0) / 1000;
  const afterPut = await peakRss(info.pid);
  expect(res.status, res.body).toBe(200);
  expect(JSON.parse(res.body)).toMatchObject({ bytes: size, records: RECORDS, tapemarks: RECORDS / PER_FILE, logicalBytes: RECORDS * RECORD });

  const t1 = Date.now();
  const got = await fetch(url, { headers: auth });
  expect(got.status).toBe(200);
  const back = createHash('sha256');
  let backSize = 0;
  for await (const c of got.body as unknown as AsyncIterable<Uint8Array>) {
    back.update(c);
    backSize += c.length;
  }
  const getSeconds = (Date.now() - t1) / 1000;
  const peak = await peakRss(info.pid);
  const mib = (n: number) => (n / 2 ** 20).toFixed(0);
  console.log(
    `image of ${mib(size)} MiB: PUT ${putSeconds.toFixed(1)} s (${mib(size / putSeconds)} MiB/s), GET ${getSeconds.toFixed(1)} s (${mib(size / getSeconds)} MiB/s); ` +
      `server peak RSS ${mib(before)} -> ${mib(afterPut)} (after PUT) -> ${mib(peak)} MiB (after GET)`,
  );
  expect(backSize).toBe(size);
  expect(back.digest('hex')).toBe(sent.digest('hex'));
  expect(peak - before).toBeLessThan(400 * 2 ** 20);
  expect(peak).toBeLessThan(size / 2);
}, 90_000);
