/**
 * The `vtl rmt` bridge's write-behind and read-ahead (bridge.ts) and the server's side of them
 * (the `B`, `w` and `U` commands):
 * - random command scripts give a client behind the bridge exactly the replies (data, errors,
 *   st read state, positions in S) a direct client gets, on twin cartridges;
 * - reads ahead are taken back exactly before BSR, FSF, S, L, C, a write or another length;
 * - near the end of a small cartridge, every acknowledged record is on the tape;
 * - an error for a write the bridge acknowledged comes back for the client's next command,
 *   which does not run (a scripted server fails a chosen write);
 * - the C bridge writes over the server's local socket and reads over TCP;
 * - the extension's commands on their own: hello, credit, refusal after a failure, undo.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { beforeAll, describe, expect, test } from 'vitest';
import { MTGET_SIZE } from '../../../src/protocols/rmt/index.js';
import { randomBytes, seededRng } from '../../helpers/data.js';
import { RawClient, describeEachBridge, err, ok, useHarness, type BridgeKind, type Harness, type Reply } from './harness.js';

let h: Harness;
const clients: RawClient[] = [];

useHarness(3, clients, (started) => (h = started));

function bridgedVia(kind: BridgeKind, port = h.port): RawClient {
  const { client, bridge } = RawClient.bridged(port, kind);
  bridge.catch(() => undefined);
  clients.push(client);
  return client;
}

/** The small cartridge the write-behind test left in drive 2. */
let smallInDrive2: string | undefined;

async function direct(): Promise<RawClient> {
  const c = await RawClient.connect(h.port);
  clients.push(c);
  return c;
}


/** mt_fileno and mt_blkno of an S reply. */
async function where(c: RawClient): Promise<[number, number]> {
  const r = ok(await c.status(), MTGET_SIZE);
  return [r.data!.readInt32LE(40), r.data!.readInt32LE(44)];
}

const rng = seededRng;
type Rng = ReturnType<typeof rng>;

/** One command of a script, for drive `d`: what to send and whether the reply has data. */
type Step = { send: (d: number) => string | Buffer; data: boolean; label: string };

const LINUX = { weof: 5, fsf: 1, bsf: 2, fsr: 3, bsr: 4, rewind: 6, eom: 12, setblk: 20 };

function step(r: Rng, seq: number): Step[] {
  const k = r.int(20);
  if (k < 6) {
    // a run of reads of one length: the bridge reads ahead of it
    const n = r.pick([512, 10240, 65536, 131072]);
    return Array.from({ length: 1 + r.int(12) }, () => ({ send: () => `R${n}\n`, data: true, label: `R${n}` }));
  }
  if (k < 10) {
    const runs = 1 + r.int(6);
    return Array.from({ length: runs }, (_, i) => {
      const n = r.pick([512, 1024, 10240, 65536, 1 + r.int(70000)]);
      const body = randomBytes(n, seq * 100 + i);
      return { send: () => Buffer.concat([Buffer.from(`W${n}\n`), body]), data: false, label: `W${n}` };
    });
  }
  if (k < 16) {
    const [name, op] = r.pick(Object.entries(LINUX));
    const count = name === 'setblk' ? r.pick([0, 0, 512]) : name === 'weof' ? r.pick([0, 1, 1, 2]) : r.pick([1, 1, 2, 3]);
    return [{ send: () => `I${op}\n${count}\n`, data: false, label: `${name} ${count}` }];
  }
  if (k < 18) return [{ send: () => 'S', data: true, label: 'S' }];
  if (k < 19) return [{ send: () => 'L0\n1\n', data: false, label: 'L' }];
  return [
    { send: () => 'C\n', data: false, label: 'C' },
    { send: (d) => `O/lib1/nst${d}\n2 O_RDWR\n`, data: false, label: 'O' },
  ];
}

/** A reply in comparable form: data by content. */
function show(r: Reply): string {
  if (!r.ok) return `E${r.errno} ${r.message}`;
  return r.data ? `A${r.value} ${r.data.toString('base64')}` : `A${r.value}`;
}

// The conformance suite of both bridges: the TypeScript one, and the C one where it is built.
describeEachBridge((kind) => {
  const bridged = (port = h.port) => bridgedVia(kind, port);

  describe('the same replies as a direct client', () => {
    test('random scripts of reads, writes, filemarks, spacing, status and reopening, on twin cartridges', async () => {
      const r = rng(Number(process.env.FUZZ_SEED ?? 7));
      const a = await direct();
      const b = bridged();
      ok(await a.open('/lib1/nst0'));
      ok(await b.open('/lib1/nst1'));
      let steps = 0;
      let bridgedReads = 0;
      for (let seq = 0; seq < 60; seq++) {
        for (const s of step(r, seq)) {
          a.send(s.send(0));
          b.send(s.send(1));
          const [x, y] = [show(await a.reply(s.data)), show(await b.reply(s.data))];
          expect(y, `step ${steps} (${s.label}) of script seed ${process.env.FUZZ_SEED ?? 7}`).toBe(x);
          if (s.label.startsWith('R')) bridgedReads++;
          steps++;
        }
      }
      // Where each client left its tape, then the two tapes object by object from BOT.
      expect(await where(b)).toEqual(await where(a));
      ok(await a.close());
      ok(await b.close());
      expect(steps).toBeGreaterThan(150);
      expect(bridgedReads).toBeGreaterThan(50);
      const tapes: string[][] = [];
      for (const d of [0, 1]) {
        const c = await direct();
        ok(await c.open(`/lib1/nst${d}`, '0 O_RDONLY'));
        ok(await c.ioctl(LINUX.setblk, 0));
        ok(await c.ioctl(LINUX.rewind, 1));
        const seen: string[] = [];
        for (let i = 0; i < 5000; i++) {
          const x = await c.read(2 * 2 ** 20);
          if (!x.ok) break;
          seen.push(show(x));
        }
        ok(await c.close());
        tapes.push(seen);
      }
      expect(tapes[1]).toEqual(tapes[0]);
    }, 60_000);
  });

  describe('read-ahead is taken back exactly', () => {
    /** Drive 2: file 0 holds records r0..r9, then a filemark, file 1 holds s0..s4, filemark. */
    beforeAll(async () => {
      const c = await RawClient.connect(h.port);
      try {
        ok(await c.open('/lib1/st2'));
        for (let i = 0; i < 10; i++) ok(await c.write(Buffer.from(`r${i}`.padEnd(1000, '.'))));
        ok(await c.ioctl(LINUX.weof, 1));
        for (let i = 0; i < 5; i++) ok(await c.write(Buffer.from(`s${i}`.padEnd(1000, '.'))));
        ok(await c.close());
      } finally {
        c.destroy();
      }
    });

    const text = (r: Reply) => ok(r).data!.subarray(0, 2).toString();

    async function readingClient(): Promise<RawClient> {
      const c = bridged();
      ok(await c.open('/lib1/nst2', '0 O_RDONLY'));
      ok(await c.ioctl(LINUX.rewind, 1));
      expect(text(await c.read(1000))).toBe('r0');
      expect(text(await c.read(1000))).toBe('r1'); // the bridge now reads ahead
      return c;
    }

    test('status and lseek', async () => {
      const c = await readingClient();
      expect(await where(c)).toEqual([0, 2]);
      expect(text(await c.read(1000))).toBe('r2');
      c.send('L0\n1\n');
      ok(await c.reply(), 0);
      expect(text(await c.read(1000))).toBe('r3');
      expect(await where(c)).toEqual([0, 4]);
      ok(await c.close());
    });

    test('BSR and FSF', async () => {
      const c = await readingClient();
      ok(await c.ioctl(LINUX.bsr, 1));
      expect(text(await c.read(1000))).toBe('r1');
      expect(text(await c.read(1000))).toBe('r2');
      ok(await c.ioctl(LINUX.fsf, 1));
      expect(text(await c.read(1000))).toBe('s0');
      expect(await where(c)).toEqual([1, 1]);
      ok(await c.close());
    });

    test('another length, a filemark read as 0 and the end of data', async () => {
      const c = await readingClient();
      expect(text(await c.read(4000))).toBe('r2');
      for (let i = 3; i < 10; i++) expect(text(await c.read(4000))).toBe(`r${i}`);
      ok(await c.read(4000), 0); // the filemark
      expect(await where(c)).toEqual([1, 0]);
      for (let i = 0; i < 5; i++) expect(text(await c.read(4000))).toBe(`s${i}`);
      ok(await c.read(4000), 0); // the second filemark
      ok(await c.read(4000), 0); // end of data: 0 once...
      err(await c.read(4000), 5); // ...then EIO
      ok(await c.ioctl(LINUX.bsf, 2));
      ok(await c.ioctl(LINUX.fsf, 1));
      expect(text(await c.read(1000))).toBe('s0');
      ok(await c.close());
    });

    test('close: the next open of the no-rewind device starts where the client stopped', async () => {
      const c = await readingClient();
      ok(await c.close());
      const d = await direct();
      ok(await d.open('/lib1/nst2', '0 O_RDONLY'));
      expect(await where(d)).toEqual([0, 2]);
      expect(text(await d.read(1000))).toBe('r2');
      ok(await d.close());
    });

    test('the client hangs up while the bridge reads ahead', async () => {
      const { client: c, bridge } = RawClient.bridged(h.port, kind);
      clients.push(c);
      ok(await c.open('/lib1/nst2', '0 O_RDONLY'));
      ok(await c.ioctl(LINUX.rewind, 1));
      expect(text(await c.read(1000))).toBe('r0');
      expect(text(await c.read(1000))).toBe('r1');
      c.end();
      await bridge; // the bridge returns once the server has closed the session
      const d = await direct();
      ok(await d.open('/lib1/nst2', '0 O_RDONLY'));
      expect(await where(d)).toEqual([0, 2]);
      ok(await d.close());
    });

    test('a write after reading: it lands right after the last record the client read', async () => {
      const c = bridged();
      ok(await c.open('/lib1/nst2'));
      ok(await c.ioctl(LINUX.rewind, 1));
      ok(await c.ioctl(LINUX.fsf, 1));
      expect(text(await c.read(1000))).toBe('s0');
      expect(text(await c.read(1000))).toBe('s1');
      ok(await c.write(Buffer.from('t2'.padEnd(1000, '.'))), 1000);
      ok(await c.ioctl(LINUX.weof, 1));
      ok(await c.ioctl(LINUX.bsf, 1));
      ok(await c.ioctl(LINUX.bsr, 1));
      expect(text(await c.read(1000))).toBe('t2');
      ok(await c.read(1000), 0);
      ok(await c.read(1000), 0); // end of data: s3 and s4 were overwritten
      ok(await c.close());
    });
  });

  describe('write-behind', () => {
    test('near the end of a small cartridge every acknowledged record is on the tape, as directly', async () => {
      const counts: number[] = [];
      for (const [i, via] of [
        [0, 'direct'],
        [1, 'bridge'],
      ] as const) {
        const barcode = `SMALL${kind === 'c' ? 'C' : 'B'}${i}`; // one set per bridge
        // The library keeps the home slots of loaded cartridges free: delete the small one this
        // test loaded before (its records were checked) so that a slot is left for the next.
        await h.libs.unload('lib1', 2);
        if (smallInDrive2) await h.libs.deleteCartridge(smallInDrive2);
        await h.libs.createCartridges({ library: 'lib1', barcodes: [barcode], mediaType: 'custom', capacity: 24 * 2 ** 20 });
        await h.libs.load('lib1', 2, barcode);
        smallInDrive2 = barcode;
        const c = via === 'direct' ? await direct() : bridged();
        ok(await c.open('/lib1/nst2'));
        let acked = 0;
        for (;;) {
          const r = await c.write(randomBytes(65536, acked));
          if (!r.ok) {
            err(r, 28, /No space left on device/);
            break;
          }
          expect(r.value).toBe(65536);
          acked++;
        }
        ok(await c.close());
        const d = await direct();
        ok(await d.open('/lib1/st2', '0 O_RDONLY'));
        ok(await d.ioctl(LINUX.rewind, 1));
        for (let k = 0; k < acked; k++) expect(ok(await d.read(65536)).data!.equals(randomBytes(65536, k))).toBe(true);
        ok(await d.read(65536), 0);
        ok(await d.close());
        counts.push(acked);
      }
      expect(counts[1]).toBe(counts[0]);
      // 24 MiB with a 6 MiB zone: 288 records reach the early-warning point, the 289th enters
      // the zone and is acknowledged, the next gets ENOSPC (Linux st); the credit stops short
      // of the zone, so the last records before it were waited for.
      expect(counts[0]).toBe(289);
    });
  });

  /**
   * A scripted vtl rmt server: speaks the extension, grants credit, answers `w` number `failAt`
   * with EIO, and records every command it received. With `late`, that failure is sent only
   * when the next command arrives, so the bridge has acknowledged that one too.
   */
  async function scriptedServer(failAt: number, late = false): Promise<{ server: Server; port: number; seen: string[] }> {
    const seen: string[] = [];
    const server = createServer({ allowHalfOpen: true }, (s: Socket) => {
      let buf = Buffer.alloc(0);
      let writes = 0;
      let failure = '';
      s.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        for (;;) {
          const m = /^([A-Za-z])([^\n]*)\n(?:([^\n]*)\n)?/.exec(buf.toString('latin1'));
          if (!m) return;
          const letter = m[1];
          const twoLines = 'OIL'.includes(letter);
          if (twoLines && m[3] === undefined) return;
          const head = twoLines ? m[0].length : m[1].length + m[2].length + 1;
          const n = 'wW'.includes(letter) ? Number(m[2]) : 0;
          if (buf.length < head + n) return;
          buf = buf.subarray(head + n);
          seen.push(`${letter}${m[2]}`);
          s.write(failure); // replies stay in order
          failure = '';
          if (letter === 'B') s.write('A1\n');
          else if (letter === 'w' && ++writes === failAt) {
            if (late) failure = 'E5\ninjected failure\n';
            else s.write('E5\ninjected failure\n');
          }
          else if (letter === 'w') s.write(`A${n} 1000000\n`);
          else if (letter === 'W') s.write(`A${n}\n`);
          else if (letter === 'I') s.write(`A${m[3]}\n`);
          else s.write('A0\n');
        }
      });
      s.on('end', () => s.end());
    });
    await new Promise<void>((res) => server.listen(0, '127.0.0.1', () => res()));
    return { server, port: (server.address() as { port: number }).port, seen };
  }

  /** The C bridge speaks the extension's version 2 (it asks for the local socket's name). */
  const hello = kind === 'c' ? 'B2' : 'B1';

  describe('a failed write the bridge acknowledged', () => {
    test('its error is the reply to the next command, which does not reach the server', async () => {
      // Late: however fast the bridge runs, the fourth write is acknowledged before the failure.
      const { server, port, seen } = await scriptedServer(3, true);
      try {
        const c = bridged(port);
        ok(await c.open('/x/nst0'));
        for (let i = 0; i < 4; i++) ok(await c.write(Buffer.alloc(1000, i)), 1000); // w 3 fails
        err(await c.ioctl(LINUX.weof, 1), 5, /injected failure/);
        expect(seen).not.toContain('I5');
        ok(await c.ioctl(LINUX.weof, 1), 1); // the error was reported once; this one runs
        ok(await c.close());
        expect(seen).toEqual([hello, 'O/x/nst0', 'w1000', 'w1000', 'w1000', 'w1000', 'I5', 'C']);
      } finally {
        server.close();
      }
    });

    test('or to the next write, which is not sent', async () => {
      const { server, port, seen } = await scriptedServer(2);
      try {
        const c = bridged(port);
        ok(await c.open('/x/nst0'));
        ok(await c.write(Buffer.alloc(1000)), 1000); // waits for its reply: credit comes with it
        ok(await c.write(Buffer.alloc(1000)), 1000); // acknowledged ahead; fails at the server
        // The failure arrives before the bridge has anything else to do: wait for it.
        for (let t = 0; seen.length < 4 && t < 100; t++) await new Promise((res) => setTimeout(res, 10));
        await new Promise((res) => setTimeout(res, 50));
        err(await c.write(Buffer.alloc(1000)), 5, /injected failure/);
        ok(await c.close());
        expect(seen).toEqual([hello, 'O/x/nst0', 'w1000', 'w1000', 'C']);
      } finally {
        server.close();
      }
    });
  });

  describe('a server that is not there', () => {
    test('a clear error naming the address, and a failed bridge', async () => {
      const srv = createServer();
      await new Promise<void>((res) => srv.listen(0, '127.0.0.1', () => res()));
      const port = (srv.address() as { port: number }).port;
      await new Promise<void>((res) => srv.close(() => res()));
      const { client, bridge } = RawClient.bridged(port, kind);
      clients.push(client);
      client.send('O/lib1/nst0\n2 O_RDWR\n'); // the C bridge connects at the first command
      await expect(bridge).rejects.toThrow(/cannot reach the vtl rmt server at 127\.0\.0\.1:\d+/);
    });
  });

  describe('the transport to a server on this host', () => {
    // The C bridge writes over the server's abstract Unix socket (less CPU per byte on both
    // sides) and reads over TCP (the server's Unix send buffer is small); the TypeScript
    // bridge always uses TCP. A server without the local socket is reached over TCP.
    const local = kind === 'c' && process.platform === 'linux';
    const only = (where: 'tcp' | 'local') => (where === 'tcp' ? { tcp: 1, local: 0 } : { tcp: 0, local: 1 });
    /** The connections while the device is open, once the TCP one that only said hello has gone. */
    const settled = async (expected: { tcp: number; local: number }) => {
      let seen = h.server.connectionsByTransport();
      for (let t = 0; JSON.stringify(seen) !== JSON.stringify(expected) && t < 100; t++) {
        await new Promise((res) => setTimeout(res, 20));
        seen = h.server.connectionsByTransport();
      }
      return seen;
    };
    const transport = async (flags: string, expected: { tcp: number; local: number }) => {
      const c = bridgedVia(kind);
      ok(await c.open('/lib1/nst0', flags));
      const seen = await settled(expected);
      ok(await c.close());
      c.end();
      for (let t = 0; h.server.connections > 0 && t < 200; t++) await new Promise((res) => setTimeout(res, 25));
      return seen;
    };

    test('an open for writing goes local, one for reading over TCP', async () => {
      const writing = only(local ? 'local' : 'tcp');
      expect(await transport('2 O_RDWR', writing)).toEqual(writing);
      expect(await transport('1 O_WRONLY|O_CREAT', writing)).toEqual(writing);
      expect(await transport('O_WRONLY', writing)).toEqual(writing);
      expect(await transport('0 O_RDONLY', only('tcp'))).toEqual(only('tcp'));
    });

    test('the local socket is the one the server names: a process holding a guessable name gets nothing', async () => {
      const squatter = createServer((s: Socket) => s.destroy());
      const connected = new Promise((res) => squatter.on('connection', res));
      await new Promise<void>((res, rej) => {
        squatter.once('error', rej);
        squatter.listen(`\0vtl-rmt-${h.port}`, () => res());
      });
      try {
        const c = bridgedVia(kind);
        ok(await c.open('/lib1/nst0', '2 O_RDWR'));
        const writing = only(local ? 'local' : 'tcp');
        expect(await settled(writing)).toEqual(writing);
        ok(await c.write(Buffer.alloc(1000, 7)), 1000);
        ok(await c.close());
        expect(await Promise.race([connected.then(() => 'connected'), new Promise((res) => setTimeout(() => res('not'), 100))])).toBe('not');
      } finally {
        squatter.close();
      }
    });

    test('a server without the local socket is reached over TCP', async () => {
      const families: (string | undefined)[] = [];
      const srv = createServer({ allowHalfOpen: true }, (s: Socket) => {
        families.push(s.remoteFamily);
        s.on('data', (d: Buffer) => {
          for (const line of d.toString('latin1').split('\n')) if (/^[BOC]/.test(line)) s.write(line[0] === 'B' ? 'A1\n' : 'A0\n');
        });
      });
      await new Promise<void>((res) => srv.listen(0, '127.0.0.1', () => res()));
      try {
        const c = bridgedVia(kind, (srv.address() as { port: number }).port);
        ok(await c.open('/x/nst0', '2 O_RDWR'));
        ok(await c.close());
        expect(families).toEqual(['IPv4']);
      } finally {
        srv.close();
      }
    });
  });

  describe('input the bridge cannot parse', () => {
    test('is relayed as it is, so the server answers it (and hangs up)', async () => {
      for (const [input, message] of [
        ['X', /unknown command "X"/],
        ['W-5\n', /bad write length/],
        [`W${3 * 2 ** 20}\n`, /a record holds at most/],
        [`O${'n'.repeat(5000)}\n0\n`, /argument longer than 4096 bytes/],
      ] as const) {
        const { client: c, bridge } = RawClient.bridged(h.port, kind);
        clients.push(c);
        ok(await c.open('/lib1/nst0', '0 O_RDONLY'));
        c.send(input);
        err(await c.reply(), 22, message);
        await bridge; // the server hung up: the bridge is done
      }
    });
  });
});

describe('the extension on its own', () => {
  test('without the hello, w and U are unknown commands', async () => {
    for (const cmd of ['w1\nx', 'U0\n']) {
      const c = await direct();
      c.send(cmd);
      err(await c.reply(), 22, /unknown command/);
      expect(await c.waitClosed()).toBe(true);
    }
  });

  test('hello; a w answers the credit, none for the first write after a move', async () => {
    const c = await direct();
    c.send('B7\n');
    // The version both speak; from 2 on, with the name of the server's local socket (Linux).
    const named = ok(await c.reply(), 2).text;
    if (process.platform === 'linux') expect(named).toMatch(new RegExp(`^2 vtl-rmt-${h.port}-[0-9a-f]{24}$`));
    c.send('B1\n');
    expect(ok(await c.reply(), 1).text).toBe('1'); // version 1 has no name
    c.send('B0\n');
    err(await c.reply(), 22, /bad bridge extension version/);
    ok(await c.open('/lib1/nst0'));
    ok(await c.ioctl(LINUX.eom, 1));
    const w = (n: number) => Buffer.concat([Buffer.from(`w${n}\n`), Buffer.alloc(n, 1)]);
    c.send(w(100));
    c.send(w(100));
    expect(ok(await c.reply(), 100).text).toMatch(/^100 [1-9]\d*$/); // <k> <credit>
    expect(ok(await c.reply(), 100).text).toMatch(/^100 [1-9]\d*$/);
    // Any other command ends the streaming: fixed-block mode gives no credit.
    ok(await c.ioctl(LINUX.setblk, 512));
    c.send(w(512));
    expect(ok(await c.reply(), 512).text).toBe('512 0');
    ok(await c.ioctl(LINUX.setblk, 0));
    ok(await c.close());
    // A w that fails without credit is an ordinary failure: the next one runs (and fails too).
    ok(await c.open('/lib1/nst0', '0 O_RDONLY'));
    c.send(w(100));
    err(await c.reply(), 9, /reading only/);
    c.send(w(100));
    err(await c.reply(), 9, /reading only/);
    ok(await c.close());
  });

  test('U takes back at most what was read', async () => {
    const c = await direct();
    c.send('B1\n');
    ok(await c.reply(), 1);
    ok(await c.open('/lib1/st0'));
    ok(await c.ioctl(LINUX.rewind, 1));
    for (let i = 0; i < 4; i++) ok(await c.write(Buffer.alloc(1000, i)));
    ok(await c.ioctl(LINUX.rewind, 1));
    ok(await c.read(1000));
    ok(await c.read(1000));
    c.send('U3\n');
    err(await c.reply(), 22, /cannot take back 3 reads/);
    ok(await c.read(1000));
    ok(await c.read(1000));
    c.send('U2\n');
    ok(await c.reply(), 2);
    expect(await where(c)).toEqual([0, 2]); // S forgets the reads: nothing more to take back
    c.send('U1\n');
    err(await c.reply(), 22);
    ok(await c.close());
  });
});
