/**
 * rmt sessions in the audit log across a crash. A session writing to a cartridge when the
 * server is killed (-9) is in the log at the next start, as `interrupted`, with the rmt actor
 * and the cartridge; sessions that closed, or that a graceful stop ended (rolling back what
 * they wrote after their last filemark, see stop-rollback.test.ts), have exactly one entry each
 * and leave no note behind (a leftover note would turn up as `interrupted` at the next start).
 * The hash chain stays intact throughout. A real server child, a raw rmt client.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { startChildServer, type ChildServer } from '../../api/child-server.js';
import { RmtServer, type RmtBegin, type RmtChange } from '../../../src/protocols/rmt/index.js';
import { call, ok as okCall } from '../../api/helpers.js';
import { randomBytes } from '../../helpers/data.js';
import { RawClient, err, ok, startHarness, type Harness } from './harness.js';

const CLEAN = 'VT0001L7';
const CUT = 'VT0002L7';
const REC = 65536;
const MTWEOF = 5;
const MTEOM = 12;
const EACCES = 13;

type Server = ChildServer;
interface Entry {
  action: string;
  actor: string;
  target: string;
  status: number;
  result: string;
  detail: string | null;
}

const dirs: string[] = [];
const children: ChildProcess[] = [];
const clients: RawClient[] = [];
const closers: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of clients) c.destroy();
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const close of closers) await close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** A vtl server in its own process on `data` (test/api/server-child.ts). */
const start = (data: string): Promise<Server> => startChildServer(data, children);

async function stop(s: Server, signal: 'SIGKILL' | 'SIGTERM'): Promise<void> {
  const exited = new Promise((r) => s.child.once('exit', r));
  s.child.kill(signal);
  await exited;
}

async function client(s: Server): Promise<RawClient> {
  const c = await RawClient.connect(s.rmtPort);
  clients.push(c);
  return c;
}

/** The actor of a client's entries: rmt and the address the server saw it from. */
const actorOf = (c: RawClient) => `rmt 127.0.0.1:${c.socket.localPort}`;

async function auditLog(s: Server): Promise<Entry[]> {
  return (await okCall(s, 'GET', '/api/v1/audit?limit=1000')).items as Entry[];
}

async function expectIntact(s: Server): Promise<void> {
  expect((await call(s, 'GET', '/api/v1/audit/verify')).body).toMatchObject({ intact: true });
}

/** Writes `count` records seeded from `seed` on; each must be acknowledged whole. */
async function writeRecords(c: RawClient, seed: number, count: number): Promise<void> {
  for (let i = 0; i < count; i++) ok(await c.write(randomBytes(REC, seed + i)), REC);
}

it('an rmt session writing when the server is killed is logged as interrupted at the next start; closed sessions have one entry each', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vtl-rmt-audit-crash-'));
  dirs.push(dir);
  const data = join(dir, 'data');
  let s = await start(data);
  await okCall(s, 'POST', '/api/v1/libraries/lib1/drives/0/load', { barcode: CLEAN });
  await okCall(s, 'POST', '/api/v1/libraries/lib1/drives/1/load', { barcode: CUT });

  // Two write sessions on one connection (open, write, close, twice): two notes, two entries.
  // A read-only session changes nothing: no note, no entry.
  const a = await client(s);
  for (const seed of [1, 10]) {
    ok(await a.open('/lib1/nst0'));
    await writeRecords(a, seed, 2);
    ok(await a.close()); // answered once its entry is in the log
  }
  ok(await a.open('/lib1/nst0', '0 O_RDONLY'));
  ok(await a.ioctl(6, 1)); // MTREW
  ok(await a.read(REC), REC);
  ok(await a.close());

  // The session the kill cuts: a record and a filemark (a sync point), then records after it.
  const b = await client(s);
  ok(await b.open('/lib1/nst1'));
  await writeRecords(b, 100, 1);
  ok(await b.ioctl(MTWEOF, 1));
  await writeRecords(b, 200, 3);
  await stop(s, 'SIGKILL');

  s = await start(data);
  const log = await auditLog(s);
  expect(log.filter((e) => e.result === 'interrupted')).toEqual([
    expect.objectContaining({ action: 'rmt write', target: CUT, actor: actorOf(b), status: 0, detail: expect.stringMatching(/^the server stopped during this change \(begun at [^)]+\): \/lib1\/nst1 was still open for writing on cartridge VT0002L7: .*last filemark.*rolled back; look at VT0002L7$/) }),
  ]);
  // What the detail says: the cartridge holds what came before the filemark, nothing after it.
  expect((await okCall(s, 'GET', `/api/v1/cartridges/${CUT}`)).logicalBytes).toBe(REC);
  const clean = log.filter((e) => e.target === CLEAN);
  expect(clean).toEqual([1, 2].map(() => expect.objectContaining({ action: 'rmt write', actor: actorOf(a), result: 'ok', detail: '/lib1/nst0: 2 records (131072 bytes), 1 filemark' })));
  await expectIntact(s);

  // A graceful stop ends a session that was still writing as the crash did (its record after
  // the last filemark is rolled back, no filemark is written), but says so itself: its note is
  // settled by its entry (not left to become interrupted), an error naming what was rolled
  // back, and the earlier interrupted entry is not logged again.
  const c = await client(s);
  ok(await c.open('/lib1/nst0'));
  ok(await c.ioctl(MTEOM, 1)); // append (after a start the drive is at BOT: a write there would cut everything off)
  await writeRecords(c, 300, 1);
  await stop(s, 'SIGTERM');
  s = await start(data);
  const after = await auditLog(s);
  expect(after.filter((e) => e.result === 'interrupted')).toHaveLength(1);
  expect(after.filter((e) => e.target === CLEAN).slice(2)).toEqual([
    expect.objectContaining({
      action: 'rmt write',
      actor: actorOf(c),
      result: 'error',
      detail:
        '/lib1/nst0: 1 record (65536 bytes), 0 filemarks; the server stopped before the client closed the file: 1 record (65536 bytes) after the last filemark was rolled back (not acknowledged as durable); the cartridge ends at its last filemark',
    }),
  ]);
  expect((await okCall(s, 'GET', `/api/v1/cartridges/${CLEAN}`)).logicalBytes).toBe(4 * REC);
  expect(after).toHaveLength(log.length + 1);
  await expectIntact(s);
  await stop(s, 'SIGTERM');
}, 90_000);

/** An in-process rmt server on a harness's libraries with these audit hooks; changes are collected. */
async function hooked(onBegin: (b: RmtBegin) => Promise<string | undefined>, changes: RmtChange[]): Promise<{ h: Harness; port: number }> {
  const h = await startHarness({ drives: 1 });
  const server = new RmtServer({ libraries: h.libs, port: 0, onBegin, onChange: (c) => void changes.push(c) });
  const { port } = await server.listen();
  closers.push(async () => {
    await server.close(); // before the harness closes the libraries under it
    await h.close();
  });
  return { h, port };
}

it('a note that cannot be made does not break the session: the write goes on and its entry comes at close, without a note', async () => {
  const changes: RmtChange[] = [];
  const { port } = await hooked(() => Promise.reject(new Error('the audit log is unavailable')), changes);
  const c = await RawClient.connect(port);
  clients.push(c);
  ok(await c.open('/lib1/nst0'));
  await writeRecords(c, 1, 3);
  ok(await c.close());
  expect(changes).toEqual([expect.objectContaining({ action: 'rmt write', barcode: 'VT0001L7', ok: true, detail: '/lib1/nst0: 3 records (196608 bytes), 1 filemark' })]);
  expect(changes[0].started).toBeUndefined();
});

it('the note of a first write the cartridge refuses is settled by the refusal entry', async () => {
  const changes: RmtChange[] = [];
  const begun: string[] = [];
  const { h, port } = await hooked(async (b) => {
    begun.push(b.action);
    return `note-${begun.length}`;
  }, changes);
  const c = await RawClient.connect(port);
  clients.push(c);
  ok(await c.open('/lib1/nst0'));
  await h.libs.tapes.setFlags('VT0001L7', { writeProtected: true });
  err(await c.write(randomBytes(REC, 1)), EACCES, /write protected/);
  err(await c.write(randomBytes(REC, 2)), EACCES, /write protected/); // noted once per open
  ok(await c.close());
  expect(begun).toEqual(['rmt write']);
  expect(changes).toEqual([expect.objectContaining({ action: 'rmt write', ok: false, started: 'note-1', detail: expect.stringMatching(/^\/lib1\/nst0: refused 2 times: /) })]);
});
