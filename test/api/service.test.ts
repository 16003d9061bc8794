/**
 * The service end to end over HTTP: libraries, cartridges, the changer, HTTP tape streams
 * written and read back bit for bit (also after a restart), positioning, error shapes,
 * rollback of a broken-off upload, stats, metrics and the OpenAPI document.
 */
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { backupLikeBytes, randomBytes } from '../helpers/data.js';
import { call, getFile, putFile, startTestServer, type TestServer } from './helpers.js';

let t: TestServer;
const fileA = backupLikeBytes(12 * 1024 * 1024 + 777, 1); // not a multiple of the block size
const fileB = randomBytes(3 * 1024 * 1024, 2);

beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t?.stop();
});

describe('libraries, cartridges and the changer', () => {
  test('create a library and cartridges; list with filters and paging', async () => {
    const lib = await call(t, 'POST', '/api/v1/libraries', { name: 'lib1', drives: 2, slots: 10, mailslots: 2 });
    expect(lib.status).toBe(201);
    expect(lib.body).toMatchObject({ name: 'lib1', drives: 2, slots: 10, mailslots: 2, vendor: 'IBM' });
    const carts = await call(t, 'POST', '/api/v1/cartridges', { library: 'lib1', prefix: 'VT', start: 1, count: 6, mediaType: 'LTO-7' });
    expect(carts.status).toBe(201);
    expect(carts.body.items.map((c: { barcode: string }) => c.barcode)).toEqual(['VT0001L7', 'VT0002L7', 'VT0003L7', 'VT0004L7', 'VT0005L7', 'VT0006L7']);
    const w = await call(t, 'POST', '/api/v1/cartridges', { library: 'lib1', barcodes: ['WO0001LX'], worm: true });
    expect(w.body.items[0]).toMatchObject({ barcode: 'WO0001LX', worm: true, mediaType: 'LTO-7', state: 'scratch' });

    const page = await call(t, 'GET', '/api/v1/cartridges?library=lib1&limit=4&offset=2');
    expect(page.body).toMatchObject({ total: 7, offset: 2, limit: 4 });
    expect(page.body.items.map((c: { barcode: string }) => c.barcode)).toEqual(['VT0003L7', 'VT0004L7', 'VT0005L7', 'VT0006L7']);
    const prefixed = await call(t, 'GET', '/api/v1/cartridges?prefix=WO');
    expect(prefixed.body.items.map((c: { barcode: string }) => c.barcode)).toEqual(['WO0001LX']);

    const els = await call(t, 'GET', '/api/v1/libraries/lib1/elements');
    expect(els.body.items).toHaveLength(14);
    expect(els.body.items[2]).toEqual({ type: 'slot', address: 1025, index: 0, mtx: 1, barcode: 'VT0001L7' });
  });

  test('load, move, export to the vault and import back', async () => {
    const load = await call(t, 'POST', '/api/v1/libraries/lib1/drives/0/load', { barcode: 'VT0001L7' });
    expect(load.status).toBe(200);
    expect(load.body).toMatchObject({ index: 0, barcode: 'VT0001L7', open: false, position: { lba: 0, bop: true } });
    const inDrive = await call(t, 'GET', '/api/v1/cartridges?location=drive');
    expect(inDrive.body.items.map((c: { barcode: string }) => c.barcode)).toEqual(['VT0001L7']);

    expect((await call(t, 'POST', '/api/v1/libraries/lib1/move', { from: 1030, to: 1034 })).status).toBe(200);
    expect((await call(t, 'GET', '/api/v1/cartridges/VT0006L7')).body.location).toEqual({ kind: 'slot', library: 'lib1', address: 1034, index: 9 });
    expect((await call(t, 'POST', '/api/v1/libraries/lib1/export', { barcode: 'VT0006L7' })).status).toBe(200);
    expect((await call(t, 'POST', '/api/v1/libraries/lib1/remove', { barcode: 'VT0006L7' })).body.moved).toEqual(['VT0006L7']);
    expect((await call(t, 'GET', '/api/v1/cartridges/VT0006L7')).body.location).toEqual({ kind: 'vault' });
    expect((await call(t, 'POST', '/api/v1/libraries/lib1/insert', { barcode: 'VT0006L7' })).status).toBe(200);
    const imp = await call(t, 'POST', '/api/v1/libraries/lib1/import');
    expect(imp.body).toEqual({ ok: true, moved: ['VT0006L7'] });
    expect((await call(t, 'GET', '/api/v1/cartridges/VT0006L7')).body.location.kind).toBe('slot');
  });
});

describe('HTTP tape streams', () => {
  test('PUT two files, GET them back bit for bit, then end of data', async () => {
    const a = await putFile(t, 'lib1', 0, fileA, 32768);
    expect(a.status).toBe(200);
    expect(a.body).toMatchObject({ bytes: fileA.length, records: Math.ceil(fileA.length / 32768), blockSize: 32768, file: 0 });
    const b = await putFile(t, 'lib1', 0, fileB);
    expect(b.body).toMatchObject({ bytes: fileB.length, blockSize: 65536, file: 1, position: { file: 2, eod: true } });
    const dup = await putFile(t, 'lib1', 0, fileA, 32768); // the same bytes again: deduplicated
    expect(dup.body.file).toBe(2);

    expect((await call(t, 'POST', '/api/v1/libraries/lib1/drives/0/rewind')).body.position).toMatchObject({ lba: 0, file: 0 });
    const ga = await getFile(t, 'lib1', 0);
    expect(ga.status).toBe(200);
    expect(ga.headers.get('x-tape-file')).toBe('0');
    expect(ga.data.equals(fileA)).toBe(true);
    expect((await getFile(t, 'lib1', 0)).data.equals(fileB)).toBe(true);
    expect((await getFile(t, 'lib1', 0)).data.equals(fileA)).toBe(true);
    const end = await getFile(t, 'lib1', 0);
    expect(end.status).toBe(409);
    expect(JSON.parse(end.data.toString())).toMatchObject({ error: 'END_OF_DATA' });
  });

  test('cartridge detail: files, logical and stored bytes, dedup ratio', async () => {
    const c = (await call(t, 'GET', '/api/v1/cartridges/VT0001L7')).body;
    expect(c).toMatchObject({ barcode: 'VT0001L7', state: 'in use', files: 3, logicalBytes: 2 * fileA.length + fileB.length, location: { kind: 'drive', index: 0 } });
    expect(c.tapeFiles.map((f: { bytes: number }) => f.bytes)).toEqual([fileA.length, fileB.length, fileA.length]);
    expect(c.tapeFiles[0].checksum).toBe(c.tapeFiles[2].checksum);
    expect(c.dedupRatio).toBeGreaterThan(1.5);
    expect(c.storedBytes).toBeLessThan(c.logicalBytes / 1.5);
    const s = (await call(t, 'GET', '/api/v1/stats')).body;
    expect(s).toMatchObject({ libraries: 1, cartridges: 7, logicalBytes: c.logicalBytes });
    expect(s.dedupRatio).toBeCloseTo(s.logicalBytes / s.uniqueBytes, 6);
    expect(s.compressionRatio).toBeCloseTo(s.uniqueBytes / s.storedBytes, 6);
    expect(s.chunks).toBeGreaterThan(100);
    expect(s.containers).toBeGreaterThanOrEqual(1);
  });

  test('space, locate, weof and position', async () => {
    const sp = await call(t, 'POST', '/api/v1/libraries/lib1/drives/0/space', { kind: 'filemarks', count: -2 });
    expect(sp.status).toBe(200);
    const loc = await call(t, 'POST', '/api/v1/libraries/lib1/drives/0/locate', { lba: 0 });
    expect(loc.body).toMatchObject({ ok: true, position: { lba: 0 } });
    const fm = await call(t, 'POST', '/api/v1/libraries/lib1/drives/0/space', { kind: 'filemarks', count: 1 });
    expect(fm.body.position).toMatchObject({ file: 1, block: 0 });
    expect((await getFile(t, 'lib1', 0)).data.equals(fileB)).toBe(true);
    const far = await call(t, 'POST', '/api/v1/libraries/lib1/drives/0/space', { kind: 'filemarks', count: 5 });
    expect(far.body).toMatchObject({ ok: false, eod: true, sense: { key: 'BLANK CHECK' }, position: { eod: true } });
    const eod = await call(t, 'POST', '/api/v1/libraries/lib1/drives/0/space', { kind: 'eod' });
    expect(eod.body.position).toMatchObject({ eod: true, file: 3 });
    const weof = await call(t, 'POST', '/api/v1/libraries/lib1/drives/0/weof', { count: 1 });
    expect(weof.body.position.file).toBe(4); // an empty tape file
    const drive = await call(t, 'GET', '/api/v1/libraries/lib1/drives/0');
    expect(drive.body).toMatchObject({ barcode: 'VT0001L7', open: false, position: { file: 4, eod: true } });
  });

  test('after a restart the same files read back bit for bit', async () => {
    await t.restart();
    await call(t, 'POST', '/api/v1/libraries/lib1/drives/0/rewind');
    expect((await getFile(t, 'lib1', 0)).data.equals(fileA)).toBe(true);
    expect((await getFile(t, 'lib1', 0)).data.equals(fileB)).toBe(true);
    // unload, load elsewhere, read again
    expect((await call(t, 'POST', '/api/v1/libraries/lib1/drives/0/unload')).body.barcode).toBeNull();
    await call(t, 'POST', '/api/v1/libraries/lib1/drives/1/load', { barcode: 'VT0001L7' });
    expect((await getFile(t, 'lib1', 1)).data.equals(fileA)).toBe(true);
  });

  test('a broken-off upload is rolled back and frees the drive', async () => {
    const before = (await call(t, 'GET', '/api/v1/cartridges/VT0001L7')).body.logicalBytes;
    await call(t, 'POST', '/api/v1/libraries/lib1/drives/1/space', { kind: 'eod' });
    await new Promise<void>((resolve) => {
      const u = new URL(`${t.url}/api/v1/libraries/lib1/drives/1/file`);
      const req = request(u, { method: 'PUT', headers: { authorization: `Bearer ${t.admin}`, 'content-length': String(64 << 20) } });
      req.on('error', () => resolve());
      req.write(randomBytes(4 << 20, 9), () => setTimeout(() => req.destroy(), 300));
    });
    // the server notices the reset, rolls back and closes the session
    let status = { open: true };
    for (let i = 0; i < 50 && status.open; i++) {
      await new Promise((r) => setTimeout(r, 100));
      status = (await call(t, 'GET', '/api/v1/libraries/lib1/drives/1')).body;
    }
    expect(status.open).toBe(false);
    expect((await call(t, 'GET', '/api/v1/cartridges/VT0001L7')).body.logicalBytes).toBe(before);
    const ok = await putFile(t, 'lib1', 1, Buffer.from('after the broken upload'));
    expect(ok.status).toBe(200);
  });
});

describe('errors', () => {
  test('shapes and status codes', async () => {
    const cases: Array<[string, string, unknown, number, string]> = [
      ['GET', '/api/v1/libraries/nope', undefined, 404, 'NOT_FOUND'],
      ['GET', '/api/v1/cartridges/NOPE01L7', undefined, 404, 'NOT_FOUND'],
      ['GET', '/api/v1/cartridges/bad-code', undefined, 400, 'INVALID'],
      ['POST', '/api/v1/libraries', { name: 'lib1', drives: 1, slots: 1, mailslots: 0 }, 409, 'EXISTS'],
      ['POST', '/api/v1/libraries', { name: 'x', drives: 0, slots: 1, mailslots: 0 }, 400, 'INVALID'],
      ['POST', '/api/v1/libraries', { name: 'x', drives: 1, slots: 1, mailslots: 0, extra: 1 }, 400, 'INVALID'],
      ['POST', '/api/v1/cartridges', { library: 'lib1', barcodes: ['VT0002L7'] }, 409, 'EXISTS'],
      ['POST', '/api/v1/libraries/lib1/drives/1/load', { barcode: 'VT0002L7' }, 409, 'DESTINATION_FULL'],
      ['POST', '/api/v1/libraries/lib1/drives/7/load', { barcode: 'VT0002L7' }, 400, 'INVALID_ELEMENT'],
      ['POST', '/api/v1/libraries/lib1/drives/0/rewind', undefined, 409, 'DRIVE_EMPTY'],
      ['POST', '/api/v1/libraries/lib1/move', { from: 1026, to: 1027 }, 409, 'DESTINATION_FULL'],
      ['DELETE', '/api/v1/libraries/lib1', undefined, 409, 'IN_USE'],
      ['PATCH', '/api/v1/cartridges/VT0002L7', {}, 400, 'INVALID'],
      ['POST', '/api/v1/cartridges/WO0001LX/erase', undefined, 409, 'DATA_PROTECT'],
      ['GET', '/api/v1/nothing', undefined, 404, 'NOT_FOUND'],
    ];
    for (const [m, p, body, status, code] of cases) {
      const r = await call(t, m, p, body);
      expect({ m, p, status: r.status, error: r.body.error }).toEqual({ m, p, status, error: code });
      expect(typeof r.body.message).toBe('string');
    }
    // a pattern is told in words, not as a regular expression
    const lower = await call(t, 'POST', '/api/v1/cartridges', { library: 'lib1', barcodes: ['vt0099l7'] });
    expect(lower.body).toEqual({ error: 'INVALID', message: 'body/barcodes/0 must be a barcode: 1 to 16 capital letters A-Z and digits' });
    const bad = await fetch(`${t.url}/api/v1/libraries`, { method: 'POST', headers: { authorization: `Bearer ${t.admin}`, 'content-type': 'application/json' }, body: '{nope' });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: 'INVALID' });
  });

  test('a write-protected cartridge refuses PUT with DATA_PROTECT and keeps its data', async () => {
    await call(t, 'POST', '/api/v1/libraries/lib1/drives/0/load', { barcode: 'VT0002L7' });
    expect((await call(t, 'PATCH', '/api/v1/cartridges/VT0002L7', { writeProtected: true })).body.writeProtected).toBe(true);
    const r = await putFile(t, 'lib1', 0, Buffer.alloc(1000, 1));
    expect(r.status).toBe(409);
    expect(r.body.error).toBe('DATA_PROTECT');
    expect(r.body.message).toMatch(/write protected \(clear it with vtl cartridge protect BARCODE --off\)/);
    expect((await call(t, 'GET', '/api/v1/cartridges/VT0002L7')).body).toMatchObject({ logicalBytes: 0, state: 'scratch' });
    expect((await call(t, 'GET', '/api/v1/libraries/lib1/drives/0')).body.open).toBe(false);
    const big = await putFile(t, 'lib1', 0, Buffer.alloc(10), 3 * 1024 * 1024);
    expect(big.status).toBe(400);
  });

  test('a PUT where data follows the position is refused unless overwrite=true; the data stays', async () => {
    await call(t, 'POST', '/api/v1/libraries/lib1/drives/0/unload');
    expect((await call(t, 'POST', '/api/v1/libraries/lib1/drives/0/load', { barcode: 'VT0005L7' })).status).toBe(200);
    const first = randomBytes(70_000, 51);
    expect((await putFile(t, 'lib1', 0, first)).status).toBe(200);
    expect((await call(t, 'POST', '/api/v1/libraries/lib1/drives/0/rewind')).status).toBe(200);
    const refused = await putFile(t, 'lib1', 0, randomBytes(10, 52));
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({ error: 'WOULD_OVERWRITE', message: expect.stringMatching(/at tape file 0 of VT0005L7, with data after it .*--append.*overwrite=true/) });
    expect((await getFile(t, 'lib1', 0)).data.equals(first)).toBe(true);
    // at end of data it writes; at BOT with overwrite=true it replaces everything
    expect((await putFile(t, 'lib1', 0, randomBytes(100, 53))).body).toMatchObject({ file: 1 });
    expect((await call(t, 'POST', '/api/v1/libraries/lib1/drives/0/rewind')).status).toBe(200);
    const second = randomBytes(5000, 54);
    expect((await putFile(t, 'lib1', 0, second, undefined, true)).body).toMatchObject({ file: 0, bytes: 5000 });
    expect((await call(t, 'GET', '/api/v1/cartridges/VT0005L7')).body).toMatchObject({ logicalBytes: 5000, files: 1 });
    expect((await call(t, 'POST', '/api/v1/libraries/lib1/drives/0/unload')).status).toBe(200);
    // a file that does not fit: rolled back, and said so
    expect((await call(t, 'POST', '/api/v1/cartridges', { library: 'lib1', barcodes: ['SMALL1'], mediaType: 'custom', capacity: 100_000 })).status).toBe(201);
    expect((await call(t, 'POST', '/api/v1/libraries/lib1/drives/0/load', { barcode: 'SMALL1' })).status).toBe(200);
    const full = await putFile(t, 'lib1', 0, randomBytes(200_000, 55));
    expect(full.status).toBe(507);
    expect(full.body.message).toMatch(/^the tape file does not fit on SMALL1: it ran out of room after \d+ bytes, and the partial file was rolled back; write it to another cartridge/);
    expect((await call(t, 'GET', '/api/v1/cartridges/SMALL1')).body).toMatchObject({ logicalBytes: 0 });
    expect((await call(t, 'POST', '/api/v1/libraries/lib1/drives/0/unload')).status).toBe(200);
    expect((await call(t, 'DELETE', '/api/v1/cartridges/SMALL1')).status).toBe(200);
  });

  test('erase turns a cartridge back to scratch', async () => {
    await call(t, 'POST', '/api/v1/libraries/lib1/drives/0/unload');
    const e = await call(t, 'POST', '/api/v1/cartridges/VT0001L7/erase');
    expect(e.body).toMatchObject({ state: 'scratch', logicalBytes: 0, files: 0 });
  });
});

describe('metrics and OpenAPI', () => {
  test('/metrics is Prometheus text with request and tape stream counters', async () => {
    const m = await call(t, 'GET', '/metrics', undefined, null);
    expect(m.status).toBe(200);
    expect(m.headers.get('content-type')).toMatch(/text\/plain/);
    expect(m.body).toMatch(/^vtl_http_requests_total\{method="GET",route="\/api\/v1\/cartridges\/:barcode",status="200"\} \d+/m);
    expect(m.body).toMatch(/^vtl_tape_stream_bytes_total\{direction="write"\} \d+/m);
    expect(m.body).toMatch(/^vtl_store_chunks \d+/m);
    expect(m.body).toMatch(/^vtl_cartridges 7$/m);
  });

  test('OpenAPI 3 lists every route with its schemas and access', async () => {
    const doc = (await call(t, 'GET', '/api/v1/openapi.json', undefined, null)).body;
    expect(doc.openapi).toMatch(/^3\./);
    const ops = Object.entries(doc.paths as Record<string, Record<string, { 'x-vtl-access': string; responses: object; requestBody?: unknown }>>).flatMap(([p, ms]) =>
      Object.entries(ms).map(([m, op]) => ({ p, m, op })),
    );
    expect(ops.length).toBeGreaterThan(30);
    for (const path of ['/api/v1/libraries', '/api/v1/cartridges', '/api/v1/cartridges/{barcode}', '/api/v1/libraries/{lib}/drives/{n}/file', '/api/v1/stats', '/api/v1/health']) {
      expect(doc.paths[path], path).toBeDefined();
    }
    for (const { p, m, op } of ops) {
      expect(op.responses, `${m} ${p}`).toBeDefined();
      expect(['public', 'auditor', 'operator', 'admin']).toContain(op['x-vtl-access']);
    }
    expect(doc.paths['/api/v1/libraries'].post.requestBody.content['application/json'].schema.required).toEqual(['name', 'drives', 'slots', 'mailslots']);
    expect(doc.paths['/api/v1/libraries/{lib}/drives/{n}/file'].put.parameters.map((x: { name: string }) => x.name)).toEqual(['lib', 'n', 'blockSize', 'overwrite']);
  });
});
