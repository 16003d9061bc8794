/**
 * The audit entry of an rmt session counts what reached the cartridge. A streamed write is
 * answered (and counted) once its record is accepted, before it is stored; when storing it then
 * fails, the record is taken out of the count again (a real vtl server, a raw rmt client).
 * The close is answered once the entry is in the log, and the entry settles the session's
 * audit note: a restart finds none left to log as interrupted.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { call, startTestServer, type TestServer } from '../../api/helpers.js';
import { randomBytes } from '../../helpers/data.js';
import { RawClient, err, ok } from './harness.js';

const BARCODE = 'VT0001L7';
const REC = 65536;
const EACCES = 13;

let t: TestServer;
const clients: RawClient[] = [];
beforeAll(async () => {
  t = await startTestServer({ demo: true });
});
afterAll(async () => {
  for (const c of clients) c.destroy();
  await t?.stop();
});

async function client(): Promise<RawClient> {
  const c = await RawClient.connect(Number(t.server.rmtAddress.split(':').pop()));
  clients.push(c);
  return c;
}

test('a streamed record acknowledged and then refused by the cartridge is not in the audit entry: its counts are what the cartridge holds', async () => {
  expect((await call(t, 'POST', '/api/v1/libraries/lib1/drives/0/load', { barcode: BARCODE })).status).toBe(200);
  const c = await client();
  ok(await c.open('/lib1/nst0'));
  ok(await c.write(randomBytes(REC, 1)), REC); // the first write waits for its record
  // Write protect set on the loaded medium (the tape store applies it at once; the library's
  // PATCH waits for the session to end): the medium refuses the next record, after its answer.
  await t.server.libraries.tapes.setFlags(BARCODE, { writeProtected: true });
  ok(await c.write(randomBytes(REC, 2)), REC); // streamed: acknowledged before it is stored
  err(await c.write(randomBytes(REC, 3)), EACCES, /write protected/); // record 2's deferred error
  ok(await c.close()); // the last write failed: no filemark

  // What the cartridge holds: record 1 only.
  const info = await t.server.libraries.tapes.info(BARCODE);
  ok(await c.open('/lib1/nst0', '0 O_RDONLY'));
  ok(await c.ioctl(6, 1)); // MTREW
  let records = 0;
  let bytes = 0;
  for (;;) {
    const r = ok(await c.read(REC));
    if (r.value === 0) break;
    expect(r.data!.equals(randomBytes(REC, records + 1))).toBe(true);
    records++;
    bytes += r.value;
  }
  ok(await c.close());
  expect({ records, bytes }).toEqual({ records: 1, bytes: REC });
  expect({ objects: info.objects, logicalBytes: info.logicalBytes, filemarks: info.filemarks }).toEqual({ objects: records, logicalBytes: bytes, filemarks: 0 });

  // The session's audit entry counts exactly that; it is there already (the close waited for it).
  const rmtEntries = async () => (await call(t, 'GET', '/api/v1/audit?action=rmt')).body.items as Array<{ action: string; target: string; result: string; detail: string }>;
  const items = (await rmtEntries()).filter((e) => e.target === BARCODE);
  expect(items).toHaveLength(1);
  expect(items[0]).toMatchObject({ action: 'rmt write', target: BARCODE, result: 'ok' });
  const counted = /^\/lib1\/nst0: (\d+) records? \((\d+) bytes\), (\d+) filemarks?$/.exec(items[0].detail);
  expect(counted, items[0].detail).not.toBeNull();
  expect({ records: Number(counted![1]), bytes: Number(counted![2]), filemarks: Number(counted![3]) }).toEqual({ records, bytes, filemarks: 0 });
  expect((await call(t, 'GET', '/api/v1/audit/verify')).body.intact).toBe(true);

  // No note outlived the session: a restart logs nothing as interrupted.
  await t.restart();
  const all = (await call(t, 'GET', '/api/v1/audit?limit=1000')).body.items as Array<{ result: string }>;
  expect(all.filter((e) => e.result === 'interrupted')).toEqual([]);
  expect((await rmtEntries()).filter((e) => e.target === BARCODE)).toHaveLength(1);
  expect((await call(t, 'GET', '/api/v1/audit/verify')).body.intact).toBe(true);
});
