/**
 * A graceful server stop (SIGTERM) while an rmt client is writing ends its device as a crash
 * would, not as the client's close: the cartridge keeps what reached its last sync point and
 * loses the records after it, no filemark makes the unfinished file look complete, and the
 * session's audit entry says what was rolled back. A session idle after a filemark loses
 * nothing; a device open for reading is simply closed. Also through the `vtl rmt` bridge,
 * whose pipelined writes were acknowledged to its client before they were stored; and an HTTP
 * upload the end of the grace period cuts off. A real server child (test/api/server-child.ts),
 * raw rmt clients, SIGTERM.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { startChildServer, type ChildServer } from '../../api/child-server.js';
import { RmtServer, type RmtChange } from '../../../src/protocols/rmt/index.js';
import { call, ok as okCall, putFile } from '../../api/helpers.js';
import { randomBytes } from '../../helpers/data.js';
import { RawClient, err, ok, startHarness, type Harness } from './harness.js';

const REC = 65536;
const MTWEOF = 5;
const MTREW = 6;
const MTNOP = 8; // a flush: a sync point without a filemark
const EIO = 5;

type Server = ChildServer;
interface Entry {
  action: string;
  actor: string;
  target: string;
  result: string;
  detail: string | null;
}
interface TapeFile {
  file: number;
  bytes: number;
  terminated: boolean;
}

const dirs: string[] = [];
const children: ChildProcess[] = [];
const clients: RawClient[] = [];
const harnesses: Harness[] = [];
afterAll(async () => {
  for (const c of clients) c.destroy();
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const h of harnesses) await h.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function dataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'vtl-rmt-stop-'));
  dirs.push(dir);
  return join(dir, 'data');
}

/** A vtl server in its own process on `data` (test/api/server-child.ts). */
const start = (data: string): Promise<Server> => startChildServer(data, children);

/** SIGTERM: the graceful stop; it must exit 0. */
async function terminate(s: Server): Promise<void> {
  const exited = new Promise<number | null>((r) => s.child.once('exit', (code) => r(code)));
  s.child.kill('SIGTERM');
  expect(await exited).toBe(0);
}

async function client(port: number): Promise<RawClient> {
  const c = await RawClient.connect(port);
  clients.push(c);
  return c;
}

async function auditLog(s: Server): Promise<Entry[]> {
  return (await okCall(s, 'GET', '/api/v1/audit?limit=1000')).items as Entry[];
}

async function cartridge(s: Server, barcode: string): Promise<{ logicalBytes: number; tapeFiles: TapeFile[] }> {
  return okCall(s, 'GET', `/api/v1/cartridges/${barcode}`);
}

/** Writes records seeded `seed`, `seed + 1`, ...; each must be acknowledged whole. */
async function writeRecords(c: RawClient, seed: number, count: number): Promise<void> {
  for (let i = 0; i < count; i++) ok(await c.write(randomBytes(REC, seed + i)), REC);
}

/** VT0001L7 holds one tape file of `records` records, ended by its filemark, and nothing after. */
async function expectFirstFileOnly(s: Server, records: number): Promise<void> {
  const c = await cartridge(s, 'VT0001L7');
  expect(c.logicalBytes).toBe(records * REC);
  expect(c.tapeFiles).toEqual([expect.objectContaining({ file: 0, bytes: records * REC, terminated: true })]);
}

/** From BOT, the tape holds exactly these records, then one filemark, then end of data. */
async function expectOneFile(port: number, device: string, seeds: number[]): Promise<void> {
  const c = await client(port);
  ok(await c.open(device, '0 O_RDONLY'));
  ok(await c.ioctl(MTREW, 1));
  for (const seed of seeds) expect(ok(await c.read(REC), REC).data!.equals(randomBytes(REC, seed))).toBe(true);
  ok(await c.read(REC), 0); // the filemark
  ok(await c.read(REC), 0); // end of data: st's first read there returns 0 bytes...
  err(await c.read(REC), EIO); // ...the next fails
  ok(await c.close());
}

it('a SIGTERM while an rmt client writes keeps the tape file before the last filemark, rolls back the records after it and says so; a read-only device is just closed', async () => {
  const data = await dataDir();
  let s = await start(data);
  await okCall(s, 'POST', '/api/v1/libraries/lib1/drives/0/load', { barcode: 'VT0001L7' });
  await okCall(s, 'POST', '/api/v1/libraries/lib1/drives/1/load', { barcode: 'VT0002L7' });
  // A finished file on the cartridge the reader will have open at the stop.
  const r = await client(s.rmtPort);
  ok(await r.open('/lib1/nst1'));
  await writeRecords(r, 50, 1);
  ok(await r.close());
  ok(await r.open('/lib1/nst1', '0 O_RDONLY'));
  ok(await r.ioctl(MTREW, 1));
  ok(await r.read(REC), REC);

  // tar's pattern cut short: a file and its filemark (a sync point), then records of the next.
  const w = await client(s.rmtPort);
  ok(await w.open('/lib1/nst0'));
  await writeRecords(w, 1, 2);
  ok(await w.ioctl(MTWEOF, 1));
  await writeRecords(w, 100, 3);
  const before = (await auditLog(s)).length;
  await terminate(s);

  s = await start(data);
  const log = await auditLog(s);
  expect(log.filter((e) => e.result === 'interrupted')).toEqual([]);
  expect(log.slice(before).filter((e) => e.target === 'VT0001L7')).toEqual([
    expect.objectContaining({
      action: 'rmt write',
      actor: `rmt 127.0.0.1:${w.socket.localPort}`,
      result: 'error',
      detail:
        '/lib1/nst0: 5 records (327680 bytes), 1 filemark; the server stopped before the client closed the file: 3 records (196608 bytes) after the last filemark were rolled back (not acknowledged as durable); the cartridge ends at its last filemark',
    }),
  ]);
  // The reader's session changed nothing: no entry for it at the stop.
  expect(log.slice(before).filter((e) => e.target === 'VT0002L7')).toEqual([]);
  expect((await call(s, 'GET', '/api/v1/audit/verify')).body).toMatchObject({ intact: true });

  // What the entry says: file 0 whole and terminated, nothing after its filemark.
  const cut = await cartridge(s, 'VT0001L7');
  expect(cut.logicalBytes).toBe(2 * REC);
  expect(cut.tapeFiles).toEqual([expect.objectContaining({ file: 0, bytes: 2 * REC, terminated: true })]);
  // The drives kept their cartridges and are free.
  for (const [n, barcode] of [[0, 'VT0001L7'], [1, 'VT0002L7']] as const) {
    expect(await okCall(s, 'GET', `/api/v1/libraries/lib1/drives/${n}`)).toMatchObject({ barcode, open: false });
  }
  await expectOneFile(s.rmtPort, '/lib1/nst0', [1, 2]);
  await expectOneFile(s.rmtPort, '/lib1/nst1', [50]);
  await terminate(s);
}, 90_000);

it('a session idle after its filemark loses nothing at a SIGTERM: its entry is ok and reports no rollback', async () => {
  const data = await dataDir();
  let s = await start(data);
  await okCall(s, 'POST', '/api/v1/libraries/lib1/drives/0/load', { barcode: 'VT0001L7' });
  const w = await client(s.rmtPort);
  ok(await w.open('/lib1/nst0'));
  await writeRecords(w, 1, 2);
  ok(await w.ioctl(MTWEOF, 1));
  const before = (await auditLog(s)).length;
  await terminate(s);

  s = await start(data);
  const log = await auditLog(s);
  expect(log.filter((e) => e.result === 'interrupted')).toEqual([]);
  expect(log.slice(before)).toEqual([expect.objectContaining({ action: 'rmt write', target: 'VT0001L7', result: 'ok', detail: '/lib1/nst0: 2 records (131072 bytes), 1 filemark' })]);
  await expectFirstFileOnly(s, 2);
  await expectOneFile(s.rmtPort, '/lib1/nst0', [1, 2]);
  await terminate(s);
}, 90_000);

it('through the vtl rmt bridge: records it acknowledged ahead of the tape are rolled back as well, and the entry says so', async () => {
  const data = await dataDir();
  let s = await start(data);
  await okCall(s, 'POST', '/api/v1/libraries/lib1/drives/0/load', { barcode: 'VT0001L7' });
  const { client: b, bridge } = RawClient.bridged(s.rmtPort);
  clients.push(b);
  bridge.catch(() => undefined); // the stop cuts the bridge's connection
  ok(await b.open('/lib1/nst0'));
  await writeRecords(b, 1, 2);
  ok(await b.ioctl(MTWEOF, 1));
  // Streaming: the bridge answers these within the server's write credit, before they are stored.
  const more = 40;
  await writeRecords(b, 100, more);
  // Every record reached the drive (its position counts records not yet synced), none is closed.
  for (let t = 0; ; t++) {
    const d = await okCall(s, 'GET', '/api/v1/libraries/lib1/drives/0');
    if (d.position?.lba === 3 + more) break;
    if (t > 200) throw new Error(`the records did not reach the drive: ${JSON.stringify(d)}`);
    await new Promise((res) => setTimeout(res, 25));
  }
  const before = (await auditLog(s)).length;
  await terminate(s);

  s = await start(data);
  const log = await auditLog(s);
  expect(log.filter((e) => e.result === 'interrupted')).toEqual([]);
  expect(log.slice(before)).toEqual([
    expect.objectContaining({
      action: 'rmt write',
      target: 'VT0001L7',
      result: 'error',
      detail: `/lib1/nst0: ${2 + more} records (${(2 + more) * REC} bytes), 1 filemark; the server stopped before the client closed the file: ${more} records (${more * REC} bytes) after the last filemark were rolled back (not acknowledged as durable), as were any records its vtl rmt bridge had acknowledged ahead of the tape that had not arrived; the cartridge ends at its last filemark`,
    }),
  ]);
  await expectFirstFileOnly(s, 2);
  await expectOneFile(s.rmtPort, '/lib1/nst0', [1, 2]);
  await terminate(s);
}, 90_000);

it('an rmt server closed in process leaves the drives free, loaded, at the end of data of the last sync point (a rewinding device at BOT)', async () => {
  const h = await startHarness({ drives: 3 });
  harnesses.push(h);
  const changes: RmtChange[] = [];
  // The harness's own server has no audit hooks; this one reports changes.
  const server = new RmtServer({ libraries: h.libs, port: 0, onChange: (c) => void changes.push(c) });
  const { port } = await server.listen();
  // The last sync point: a filemark on the first two, a flush (MTNOP: filemark count 0) on the third.
  for (const [device, syncOp] of [['/lib1/nst0', MTWEOF], ['/lib1/st1', MTWEOF], ['/lib1/nst2', MTNOP]] as const) {
    const c = await client(port);
    ok(await c.open(device));
    await writeRecords(c, 1, 2);
    ok(await c.ioctl(syncOp, 1));
    await writeRecords(c, 10, 5);
  }
  await server.close();
  const rolledBack = `the server stopped before the client closed the file: 5 records (${5 * REC} bytes)`;
  // The sessions stop together: their changes come in any order.
  expect(changes.map((c) => [c.barcode, c.ok, c.detail]).sort()).toEqual([
    ['VT0001L7', false, `/lib1/nst0: 7 records (${7 * REC} bytes), 1 filemark; ${rolledBack} after the last filemark were rolled back (not acknowledged as durable); the cartridge ends at its last filemark`],
    ['VT0002L7', false, `/lib1/st1: 7 records (${7 * REC} bytes), 1 filemark; ${rolledBack} after the last filemark were rolled back (not acknowledged as durable); the cartridge ends at its last filemark`],
    ['VT0003L7', false, `/lib1/nst2: 7 records (${7 * REC} bytes), 0 filemarks; ${rolledBack} after the last sync point were rolled back (not acknowledged as durable); the cartridge ends at its last sync point, its last tape file without a filemark`],
  ]);
  for (const [n, lba, eod] of [[0, 3, { eodLba: 3, filemarks: 1 }], [1, 0, { eodLba: 3, filemarks: 1 }], [2, 2, { eodLba: 2, filemarks: 0 }]] as const) {
    const drive = await h.libs.drive('lib1', n);
    expect(await drive.status()).toMatchObject({ barcode: `VT000${n + 1}L7`, open: false, position: expect.objectContaining({ lba }) });
    const m = await drive.open();
    expect(m.eod).toMatchObject({ ...eod, eodByte: 2 * REC });
    await drive.close();
  }
}, 60_000);

it('an HTTP upload the SIGTERM cuts off (after the grace period) is rolled back: the cartridge ends where it did before it', async () => {
  const data = await dataDir();
  let s = await start(data);
  await okCall(s, 'POST', '/api/v1/libraries/lib1/drives/0/load', { barcode: 'VT0001L7' });
  expect((await putFile(s, 'lib1', 0, randomBytes(3 * REC, 7))).status).toBe(200);
  const upload = request(new URL('/api/v1/libraries/lib1/drives/0/file', s.url), { method: 'PUT', headers: { authorization: `Bearer ${s.admin}`, 'content-type': 'application/octet-stream' } });
  upload.on('error', () => undefined);
  upload.write(randomBytes(5 * REC, 8));
  // The handler holds the drive and has written records of the second file when the stop comes.
  for (let t = 0; ; t++) {
    const d = await okCall(s, 'GET', '/api/v1/libraries/lib1/drives/0');
    if (d.open && d.position?.lba >= 4 + 5) break;
    if (t > 200) throw new Error(`the upload did not reach the drive: ${JSON.stringify(d)}`);
    await new Promise((res) => setTimeout(res, 25));
  }
  await terminate(s); // the server waits out its grace period (10 s) for the upload, then cuts it
  upload.destroy();

  s = await start(data);
  await expectFirstFileOnly(s, 3);
  await terminate(s);
}, 90_000);
