/**
 * Tape images over HTTP against the real server (port 0, temporary data directory): PUT then
 * GET gives identical bytes for aws, simh and raw, formats convert through the tape, malformed
 * images get 422 with the byte offset and leave the cartridge as it was, refused requests get
 * their status codes, a client that goes away lets the cartridge go, and an import a crash cut
 * off is undone at the next start.
 */
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CODECS, ImportJournal } from '../../../src/protocols/images/index.js';
import { openDataStore } from '../../../src/stream/store.js';
import { randomBytes } from '../../helpers/data.js';
import { call, startTestServer, type TestServer } from '../../api/helpers.js';
import { encode, type Obj } from './util.js';

let t: TestServer;
let auditor: string;
let serial = 0;

beforeAll(async () => {
  t = await startTestServer();
  expect((await call(t, 'POST', '/api/v1/libraries', { name: 'L', drives: 2, slots: 40, mailslots: 2 })).status).toBe(201);
  auditor = (await call(t, 'POST', '/api/v1/tokens', { name: 'audit', role: 'auditor' })).body.token;
});
afterAll(async () => {
  await t?.stop();
});

/** A fresh cartridge in library L (or, with a spec, in the vault). */
async function cartridge(spec: Record<string, unknown> = {}): Promise<string> {
  const barcode = `HT${String(++serial).padStart(4, '0')}`;
  const r = await call(t, 'POST', '/api/v1/cartridges', { library: 'L', barcodes: [barcode], mediaType: 'LTO-7', ...spec });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return barcode;
}

const rec = (n: number, seed: number): Obj => ({ kind: 'record', data: randomBytes(n, seed) });
const TM: Obj = { kind: 'tapemark' };
/** Records around the aws chunk size and up to 2 MiB, files of several records, consecutive tapemarks. */
const TAPE: Obj[] = [rec(80, 1), rec(30_000, 2), TM, rec(65_535, 3), rec(65_536, 4), rec(200_001, 5), TM, TM, rec(2 * 1024 * 1024, 6), rec(1, 7), TM, TM, TM];

interface Answer {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

async function put(barcode: string, query: string, body: Buffer | AsyncIterable<Buffer>, token = t.admin): Promise<Answer> {
  const res = await fetch(`${t.url}/api/v1/cartridges/${barcode}/image?${query}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
    body: body as unknown as ReadableStream,
    duplex: 'half',
  } as RequestInit);
  return { status: res.status, body: await res.json() };
}

async function get(barcode: string, query: string, token = t.admin): Promise<{ status: number; data: Buffer; headers: Headers }> {
  const res = await fetch(`${t.url}/api/v1/cartridges/${barcode}/image?${query}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, data: Buffer.from(await res.arrayBuffer()), headers: res.headers };
}

/** Sends a buffer in pieces (chunked transfer encoding, no content-length). */
async function* pieces(b: Buffer, size = 100_000): AsyncGenerator<Buffer> {
  for (let at = 0; at < b.length; at += size) yield b.subarray(at, at + size);
}

/** Everything the API shows about a cartridge, and its whole content as an aws image. */
async function state(barcode: string): Promise<{ detail: unknown; image: Buffer }> {
  const detail = (await call(t, 'GET', `/api/v1/cartridges/${barcode}`)).body;
  const image = (await get(barcode, 'format=aws')).data;
  return { detail, image };
}

describe('round trips', () => {
  test('aws: PUT then GET gives the identical image; the summary and the cartridge agree', async () => {
    const code = await cartridge();
    const image = encode(CODECS.aws, TAPE);
    const r = await put(code, 'format=aws', image);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const records = TAPE.filter((o) => o.kind === 'record') as Array<{ data: Buffer }>;
    const logical = records.reduce((n, o) => n + o.data.length, 0);
    expect(r.body).toEqual({
      format: 'aws',
      medium: code,
      bytes: image.length,
      records: records.length,
      tapemarks: 6,
      logicalBytes: logical,
      badRecords: 0,
      badRecordOffsets: [],
      startLba: 0,
      endLba: TAPE.length,
    });
    const back = await get(code, 'format=aws');
    expect(back.status).toBe(200);
    expect(back.headers.get('content-type')).toBe('application/octet-stream');
    expect(back.headers.get('content-disposition')).toBe(`attachment; filename="${code}.aws"`);
    expect(back.data.equals(image)).toBe(true);
    const detail = (await call(t, 'GET', `/api/v1/cartridges/${code}`)).body;
    expect(detail).toMatchObject({ logicalBytes: logical, state: 'in use' });
    expect(detail.tapeFiles.map((f: { bytes: number }) => f.bytes)).toEqual([30_080, 65_535 + 65_536 + 200_001, 0, 2 * 1024 * 1024 + 1, 0, 0]);
  });

  test('simh: a chunked upload round-trips, and the tape converts to aws and back', async () => {
    const a = await cartridge();
    const simh = encode(CODECS.simh, TAPE);
    expect((await put(a, 'format=simh', pieces(simh))).status).toBe(200);
    expect((await get(a, 'format=simh')).data.equals(simh)).toBe(true);
    const aws = (await get(a, 'format=aws')).data;
    expect(aws.equals(encode(CODECS.aws, TAPE))).toBe(true);
    // aws -> vtl -> simh on a second cartridge keeps every record boundary and tapemark
    const b = await cartridge();
    expect((await put(b, 'format=aws', pieces(aws, 4093))).status).toBe(200);
    expect((await get(b, 'format=simh')).data.equals(simh)).toBe(true);
  });

  test('raw with blockSize: one tape file of blockSize records; GET raw gives the bytes back', async () => {
    const code = await cartridge();
    const data = randomBytes(1024 * 1024 + 123, 11);
    const r = await put(code, 'format=raw&blockSize=4096', data);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toMatchObject({ records: 257, tapemarks: 1, logicalBytes: data.length, bytes: data.length });
    expect((await get(code, 'format=raw')).data.equals(data)).toBe(true);
    const records: Obj[] = [];
    for (let at = 0; at < data.length; at += 4096) records.push({ kind: 'record', data: data.subarray(at, at + 4096) });
    expect((await get(code, 'format=aws')).data.equals(encode(CODECS.aws, [...records, TM]))).toBe(true);
  });

  test('append adds files after the data; raw exports one file of several with file=N', async () => {
    const code = await cartridge();
    const one = randomBytes(70_000, 21);
    const two = randomBytes(50_000, 22);
    expect((await put(code, 'format=raw', one)).status).toBe(200);
    const refused = await put(code, 'format=raw', two);
    expect(refused).toMatchObject({ status: 409, body: { error: 'NOT_BLANK' } });
    const appended = await put(code, 'format=raw&append=true&blockSize=1000', two);
    expect(appended).toMatchObject({ status: 200, body: { startLba: 3, records: 50 } });
    expect(await get(code, 'format=raw').then((r) => [r.status, JSON.parse(r.data.toString()).error])).toEqual([400, 'NOT_REPRESENTABLE']);
    expect((await get(code, 'format=raw&file=0')).data.equals(one)).toBe(true);
    expect((await get(code, 'format=raw&file=1')).data.equals(two)).toBe(true);
    expect((await get(code, 'format=raw&file=7')).status).toBe(400);
    expect((await get(code, 'format=aws&file=1')).status).toBe(400);
  });

  test('an auditor may export but not import; GET without format is aws', async () => {
    const code = await cartridge();
    const image = encode(CODECS.aws, [rec(1000, 31), TM]);
    expect((await put(code, 'format=aws', image, auditor)).status).toBe(403);
    expect((await put(code, 'format=aws', image)).status).toBe(200);
    const back = await get(code, '', auditor);
    expect(back.status).toBe(200);
    expect(back.data.equals(image)).toBe(true);
  });
});

test('the OpenAPI document has both routes with their roles, query schemas and the 422 body', async () => {
  const doc = (await call(t, 'GET', '/api/v1/openapi.json', undefined, null)).body;
  const ops = doc.paths['/api/v1/cartridges/{barcode}/image'];
  expect(ops.put['x-vtl-access']).toBe('operator');
  expect(ops.get['x-vtl-access']).toBe('auditor');
  expect(ops.put.requestBody.content).toHaveProperty('application/octet-stream');
  expect(ops.put.parameters.map((p: { name: string }) => p.name)).toEqual(['barcode', 'format', 'blockSize', 'append', 'acceptBadRecords']);
  expect(ops.put.parameters.find((p: { name: string }) => p.name === 'format')).toMatchObject({ required: true, schema: { enum: ['aws', 'simh', 'raw'] } });
  expect(ops.put.responses['422'].content['application/json'].schema.required).toEqual(['error', 'message', 'offset', 'reason']);
  expect(ops.get.responses['200'].content).toHaveProperty('application/octet-stream');
});

describe('malformed images and refused requests', () => {
  test('a malformed image gets 422 with the offset and reason; the cartridge is left as it was', async () => {
    // a cartridge with data, imported into with append: the old files must survive untouched
    const code = await cartridge();
    expect((await put(code, 'format=aws', encode(CODECS.aws, [rec(5000, 41), TM]))).status).toBe(200);
    const before = await state(code);
    const image = encode(CODECS.aws, [rec(30_000, 42), TM, rec(100_000, 43), TM]);
    // the second chunk of the 100 000-byte record: headers are 6 bytes, chunks 65535
    const at = 6 + 30_000 + 6 + 6 + 65_535;
    const bad = Buffer.from(image);
    bad[at + 5] = 1; // flags2 must be 0
    const r = await put(code, 'format=aws&append=true', pieces(bad, 8192));
    expect(r.status).toBe(422);
    expect(r.body).toEqual({ error: 'MALFORMED_IMAGE', message: expect.stringContaining(`malformed at byte ${at}`), offset: at, reason: 'unsupported flags2 byte 0x01' });
    expect(await state(code)).toEqual(before);
    // truncated: a blank cartridge stays blank
    const blank = await cartridge();
    const empty = await state(blank);
    const cut = await put(blank, 'format=aws', image.subarray(0, image.length - 3));
    expect(cut.status).toBe(422);
    expect(cut.body.offset).toBe(image.length - 6);
    expect(cut.body.reason).toMatch(/short of a 6-byte block header/);
    expect(await state(blank)).toEqual(empty);
  });

  test('a simh length mismatch is 422; trailing garbage after the end-of-medium marker too', async () => {
    const code = await cartridge();
    const empty = await state(code);
    const simh = encode(CODECS.simh, [rec(101, 51), TM]);
    const bad = Buffer.from(simh);
    bad.writeUInt32LE(100, 4 + 102); // trailing length word of the record
    const r = await put(code, 'format=simh', bad);
    expect(r).toMatchObject({ status: 422, body: { error: 'MALFORMED_IMAGE', offset: 4 + 102 } });
    expect(r.body.reason).toBe('trailing length word 0x00000064 differs from the leading word 0x00000065 at byte 0');
    const eom = encode(CODECS.simh, [rec(101, 51), TM], { endOfMedium: true });
    const g = await put(code, 'format=simh', Buffer.concat([eom, Buffer.from('junk')]));
    expect(g).toMatchObject({ status: 422, body: { offset: eom.length } });
    expect(await state(code)).toEqual(empty);
  });

  test('a large malformed upload is answered at once, and the server stays usable', async () => {
    const code = await cartridge();
    const r = await put(code, 'format=aws', pieces(Buffer.alloc(24 << 20, 0xff), 1 << 20));
    expect(r).toMatchObject({ status: 422, body: { offset: 0 } });
    expect((await call(t, 'GET', `/api/v1/cartridges/${code}`)).body.logicalBytes).toBe(0);
    expect((await put(code, 'format=aws', encode(CODECS.aws, [rec(10, 1)]))).status).toBe(200);
  });

  test('status codes: unknown barcode 404, bad format or option 400, WORM and write protect 409, full 507', async () => {
    const image = encode(CODECS.aws, [rec(1000, 61), TM]);
    expect((await put('NOSUCH1', 'format=aws', image)).body.error).toBe('NOT_FOUND');
    expect((await get('NOSUCH1', 'format=aws')).status).toBe(404);
    const code = await cartridge();
    const badFormat = await put(code, 'format=tar', image);
    expect(badFormat).toMatchObject({ status: 400, body: { error: 'INVALID' } });
    expect(badFormat.body.message).toContain('aws, simh, raw');
    expect((await put(code, 'format=raw&blockSize=0', image)).status).toBe(400);
    expect((await put(code, 'format=aws&bogus=1', image)).status).toBe(400);
    const worm = await cartridge({ worm: true });
    expect(await put(worm, 'format=aws', image)).toMatchObject({ status: 409, body: { error: 'WORM' } });
    const ro = await cartridge({ writeProtected: true });
    expect(await put(ro, 'format=aws', image)).toMatchObject({ status: 409, body: { error: 'WRITE_PROTECTED' } });
    const small = await cartridge({ mediaType: 'custom', capacity: 1024 * 1024 });
    const big = await put(small, 'format=raw', randomBytes(3 * 1024 * 1024, 62));
    expect(big).toMatchObject({ status: 507, body: { error: 'NO_ROOM' } });
    expect((await call(t, 'GET', `/api/v1/cartridges/${small}`)).body).toMatchObject({ logicalBytes: 0, files: 0 });
  });
});

describe('transfers and the drive', () => {
  test('a cartridge in a drive goes through its session; an export lets go before it ends', async () => {
    const code = await cartridge();
    expect((await call(t, 'POST', '/api/v1/libraries/L/drives/0/load', { barcode: code })).status).toBe(200);
    const image = encode(CODECS.aws, [rec(4000, 71), TM]);
    expect((await put(code, 'format=aws', image)).status).toBe(200);
    expect((await get(code, 'format=aws')).data.equals(image)).toBe(true);
    expect((await call(t, 'POST', '/api/v1/libraries/L/drives/0/unload')).status).toBe(200);
    // out of the drive: right after an export's last byte the cartridge can be loaded
    expect((await get(code, 'format=aws')).data.equals(image)).toBe(true);
    expect((await call(t, 'POST', '/api/v1/libraries/L/drives/1/load', { barcode: code })).status).toBe(200);
    expect((await call(t, 'POST', '/api/v1/libraries/L/drives/1/unload')).status).toBe(200);
  });

  test('a client that goes away mid-export stops it and the cartridge is let go', async () => {
    const code = await cartridge();
    const big: Obj[] = [];
    for (let i = 0; i < 12; i++) big.push(rec(2 * 1024 * 1024, 80 + i));
    expect((await put(code, 'format=aws', pieces(encode(CODECS.aws, big), 1 << 20))).status).toBe(200);
    const ac = new AbortController();
    const res = await fetch(`${t.url}/api/v1/cartridges/${code}/image?format=aws`, { headers: { authorization: `Bearer ${t.admin}` }, signal: ac.signal });
    const reader = res.body!.getReader();
    expect((await reader.read()).done).toBe(false);
    // while the export holds it, a second transfer is refused
    const second = await get(code, 'format=simh');
    expect([second.status, JSON.parse(second.data.toString()).error]).toEqual([409, 'IN_USE']);
    ac.abort();
    // the server stops reading the tape and lets the cartridge go
    for (let i = 0; i < 200 && t.server.libraries.tapes.isLoaded(code); i++) await new Promise((r) => setTimeout(r, 10));
    expect(t.server.libraries.tapes.isLoaded(code)).toBe(false);
    const load = await call(t, 'POST', '/api/v1/libraries/L/drives/0/load', { barcode: code });
    expect(load.status).toBe(200);
    expect((await call(t, 'POST', '/api/v1/libraries/L/drives/0/unload')).status).toBe(200);
  });

  test('an upload that breaks off is rolled back', async () => {
    const code = await cartridge();
    const before = await state(code);
    const image = encode(CODECS.aws, [rec(1_000_000, 91), TM, rec(1_000_000, 92), TM]);
    await new Promise<void>((resolve) => {
      const req = request(`${t.url}/api/v1/cartridges/${code}/image?format=aws`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${t.admin}`, 'content-type': 'application/octet-stream', 'content-length': String(image.length) },
      });
      req.on('error', () => resolve());
      req.write(image.subarray(0, 1_500_000), async () => {
        // cut the connection while the import holds the cartridge, past its first tape file
        for (let i = 0; i < 200 && !t.server.libraries.tapes.isLoaded(code); i++) await new Promise((r) => setTimeout(r, 5));
        await new Promise((r) => setTimeout(r, 100));
        req.destroy();
      });
    });
    expect(t.server.libraries.tapes.isLoaded(code)).toBe(true);
    // the server notices, undoes the first file and lets the cartridge go
    for (let i = 0; i < 200 && t.server.libraries.tapes.isLoaded(code); i++) await new Promise((r) => setTimeout(r, 10));
    expect(await state(code)).toEqual(before);
  });
});

test('an import a crash cut off is undone at the next start', async () => {
  const code = await cartridge();
  const keep = encode(CODECS.aws, [rec(3000, 95), TM]);
  expect((await put(code, 'format=aws', keep)).status).toBe(200);
  expect((await put(code, 'format=aws&append=true', encode(CODECS.aws, [rec(7000, 96), TM]))).status).toBe(200);
  // As if the process had died during the second import: its journal entry is still there.
  await t.server.close();
  const ds = await openDataStore(t.dir);
  await new ImportJournal(ds.db).begin({ medium: code, startLba: 2, format: 'aws', startedAt: new Date().toISOString() });
  await ds.close();
  await t.restart();
  expect(t.server.recoveredImports).toEqual([{ medium: code, startLba: 2, removed: 2 }]);
  expect((await get(code, 'format=aws')).data.equals(keep)).toBe(true);
});
