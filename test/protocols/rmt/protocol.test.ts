/**
 * The rmt protocol against a real server over a real data store, with a raw client: replies,
 * Linux st read semantics, struct mtget, both lseek orders, S with and without newline, the
 * AIX dialect, fixed-block mode, write protect, end of medium, EBUSY, disconnects, bad input.
 */
import { PassThrough } from 'node:stream';
import { describe, expect, test } from 'vitest';
import { GMT, MTGET_SIZE, RmtServer, runRmtBridge } from '../../../src/protocols/rmt/index.js';
import { randomBytes } from '../../helpers/data.js';
import { RawClient, err, ok, useHarness, type Harness } from './harness.js';

let h: Harness;
const clients: RawClient[] = [];

useHarness(3, clients, (started) => (h = started));

async function client(): Promise<RawClient> {
  const c = await RawClient.connect(h.port);
  clients.push(c);
  return c;
}


interface Mtget {
  type: number;
  resid: number;
  dsreg: number;
  gstat: number;
  fileno: number;
  blkno: number;
}

async function status(c: RawClient): Promise<Mtget> {
  const r = ok(await c.status(), MTGET_SIZE);
  const b = r.data!;
  return {
    type: Number(b.readBigInt64LE(0)),
    resid: Number(b.readBigInt64LE(8)),
    dsreg: Number(b.readBigInt64LE(16)),
    gstat: Number(b.readBigInt64LE(24)),
    fileno: b.readInt32LE(40),
    blkno: b.readInt32LE(44),
  };
}

/** Opens a device, retrying while a just-disconnected session is still closing. */
async function openWhenFree(device: string, flags = '2 O_RDWR'): Promise<RawClient> {
  for (let i = 0; ; i++) {
    const c = await client();
    const r = await c.open(device, flags);
    if (r.ok) return c;
    c.destroy();
    if (r.errno !== 16 || i > 100) throw new Error(`open ${device}: ${JSON.stringify(r)}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

async function rewindTape(drive: number): Promise<void> {
  const c = await openWhenFree(`/lib1/nst${drive}`);
  ok(await c.ioctl(6, 1));
  ok(await c.ioctl(13, 1)); // erase from BOT: each test starts on a blank tape
  ok(await c.close());
  c.destroy();
}

describe('records, filemarks and end of data', () => {
  test('write, filemark, close; read back as Linux st: 0 at a filemark, 0 then EIO at EOD', async () => {
    await rewindTape(0);
    const recs = [randomBytes(10240, 1), randomBytes(65536, 2), randomBytes(1, 3), randomBytes(2 * 1024 * 1024, 4)];
    const c = await client();
    ok(await c.open('/lib1/nst0', '65 O_WRONLY|O_CREAT'), 0);
    for (const r of recs.slice(0, 3)) ok(await c.write(r), r.length);
    ok(await c.ioctl(5, 1), 1); // MTWEOF: a sync point
    ok(await c.write(recs[3]), recs[3].length);
    ok(await c.close(), 0); // one filemark after writing
    ok(await c.open('/lib1/nst0', '0 O_RDONLY'));
    let st = await status(c);
    expect(st.gstat & GMT.EOD).toBeTruthy(); // no rewind on close: still at the end
    expect(st.fileno).toBe(2);
    ok(await c.ioctl(6, 1));
    for (const r of recs.slice(0, 3)) expect(ok(await c.read(2 * 1024 * 1024)).data).toEqual(r);
    ok(await c.read(65536), 0); // filemark
    expect(ok(await c.read(4 * 1024 * 1024)).data).toEqual(recs[3]);
    ok(await c.read(65536), 0); // the filemark written by close
    ok(await c.read(65536), 0); // end of data, first time
    err(await c.read(65536), 5, /Input\/output error/);
    err(await c.read(65536), 5);
    st = await status(c);
    expect(st.gstat & GMT.EOD).toBeTruthy();
    ok(await c.close());
  });

  test('a record longer than the request is ENOMEM, and the tape moves past it', async () => {
    await rewindTape(0);
    const c = await client();
    ok(await c.open('/lib1/nst0'));
    ok(await c.write(randomBytes(4096, 5)));
    ok(await c.write(Buffer.from('second')));
    ok(await c.ioctl(6, 1));
    err(await c.read(1024), 12, /Cannot allocate memory/);
    expect(ok(await c.read(1024)).data!.toString()).toBe('second');
    ok(await c.close());
  });

  test('struct mtget: type, density and block size, BOT/EOF/EOD, file and block numbers', async () => {
    await rewindTape(0);
    const c = await client();
    ok(await c.open('/lib1/nst0'));
    let st = await status(c);
    expect(st.type).toBe(0x72);
    expect(st.dsreg).toBe(0x5c << 24); // LTO-7, variable block size
    expect(st.gstat).toBe((GMT.ONLINE | GMT.BOT | GMT.EOD) >>> 0);
    for (let i = 0; i < 3; i++) ok(await c.write(Buffer.alloc(512, i)));
    ok(await c.ioctl(5, 2));
    ok(await c.write(Buffer.alloc(512)));
    ok(await c.ioctl(6, 1));
    ok(await c.ioctl(3, 2)); // FSR 2
    st = await status(c);
    expect([st.fileno, st.blkno, st.gstat]).toEqual([0, 2, GMT.ONLINE]);
    ok(await c.ioctl(1, 1)); // FSF 1
    st = await status(c);
    expect([st.fileno, st.blkno, st.gstat]).toEqual([1, 0, (GMT.ONLINE | GMT.EOF) >>> 0]);
    ok(await c.ioctl(12, 1)); // EOM
    st = await status(c);
    // Rewinding right after a write wrote a filemark first, as st does: 3 files before EOD.
    expect([st.fileno, st.blkno]).toEqual([3, 0]);
    expect(st.gstat & GMT.EOD).toBeTruthy();
    ok(await c.ioctl(23, 0), 7); // MTTELL: logical block address (3 records, 3 filemarks, 1 record)
    ok(await c.ioctl(22, 1)); // MTSEEK
    st = await status(c);
    expect([st.fileno, st.blkno]).toEqual([0, 1]);
    ok(await c.close());
  });

  test('Linux spacing: BSF stops before the filemark, BSFM/FSFM, spacing into BOT or EOD fails with EIO', async () => {
    await rewindTape(0);
    const c = await client();
    ok(await c.open('/lib1/nst0'));
    for (const s of ['a', 'b', 'c']) {
      ok(await c.write(Buffer.from(s)));
      ok(await c.ioctl(5, 1));
    }
    ok(await c.ioctl(2, 1)); // BSF 1 from EOD: on the BOM side of the last filemark
    ok(await c.read(100), 0);
    ok(await c.ioctl(10, 2)); // BSFM 2: back over the last two filemarks, then forward past one
    expect(ok(await c.read(100)).data!.toString()).toBe('c');
    ok(await c.ioctl(6, 1));
    ok(await c.ioctl(11, 2)); // FSFM 2: before the second filemark
    ok(await c.read(100), 0);
    expect(ok(await c.read(100)).data!.toString()).toBe('c');
    err(await c.ioctl(1, 5), 5); // FSF past EOD
    ok(await c.ioctl(6, 1));
    err(await c.ioctl(4, 1), 5); // BSR at BOT
    err(await c.ioctl(99, 1), 22, /unknown MTIOCTOP operation 99/);
    ok(await c.ioctl(8, 1)); // NOP
    ok(await c.close());
  });
});

describe('protocol details', () => {
  test('S arrives with or without a newline; stray newlines between commands are ignored', async () => {
    const c = await client();
    ok(await c.open('/lib1/nst0', '0 O_RDONLY'));
    c.send('SS\n\n\nS\nI8\n1\n');
    for (let i = 0; i < 3; i++) expect(ok(await c.reply(true)).data).toHaveLength(MTGET_SIZE);
    ok(await c.reply(), 0);
    ok(await c.close());
  });

  test('lseek in both argument orders (tar 1.34 and newer paxutils); it never moves the tape', async () => {
    const c = await client();
    ok(await c.open('/lib1/nst0', '0 O_RDONLY'));
    for (const args of ['0\n1\n', '1\n0\n', 'SET\n0\n', '100\nCUR\n', '2\n-5\n', '1\n512\n']) {
      c.send(`L${args}`);
      ok(await c.reply(), 0);
    }
    c.send('L7\n9\n');
    err(await c.reply(), 22, /lseek/);
    c.send('LXYZ\n1\n');
    err(await c.reply(), 22);
    ok(await c.close());
  });

  test('Sun/Schily extensions i, s and v get a clear error and the session goes on', async () => {
    const c = await client();
    ok(await c.open('/lib1/nst0', '0 O_RDONLY'));
    c.send('i1\n1\n');
    err(await c.reply(), 22, /extended ioctl command i is not supported/);
    c.send('sT');
    err(await c.reply(), 22, /extended status command s/);
    c.send('v1\n');
    err(await c.reply(), 22, /version command v/);
    c.send('I-1\n0\n'); // RMT V1 version probe: an unknown opcode
    err(await c.reply(), 22);
    expect((await status(c)).type).toBe(0x72);
    ok(await c.close());
  });

  test('commands without an open device: EBADF; bad device names: ENOENT, ENXIO; bad flags: EINVAL', async () => {
    const c = await client();
    err(await c.read(10), 9, /send O first/);
    err(await c.write(Buffer.from('abc')), 9);
    err(await c.ioctl(6, 1), 9);
    err(await c.status(), 9);
    err(await c.close(), 9);
    err(await c.open('/lib1/tape0'), 2, /not a vtl device/);
    err(await c.open('/nolib/nst0'), 2, /no library/);
    err(await c.open('/lib1/nst7'), 6, /no drive 7/);
    err(await c.open('/lib1/nst0', 'O_BOGUS|'), 22, /bad open flags/);
    ok(await c.open('/lib1/nst0', '0'));
    ok(await c.close());
  });

  test('an empty drive and an offline cartridge answer ENOMEDIUM; O_NONBLOCK and MTLOAD bring it back', async () => {
    await h.libs.unload('lib1', 2);
    const c = await client();
    err(await c.open('/lib1/nst2'), 123, /No medium found/);
    await h.libs.load('lib1', 2, 'VT0003L7');
    ok(await c.open('/lib1/nst2'));
    ok(await c.ioctl(7, 1)); // MTOFFL: rewind and unload
    err(await c.read(10), 123);
    ok(await c.close());
    err(await c.open('/lib1/nst2'), 123, /offline/);
    ok(await c.open('/lib1/nst2', '2048 O_RDONLY|O_NONBLOCK'));
    expect((await status(c)).gstat).toBe(GMT.DR_OPEN);
    ok(await c.ioctl(30, 1)); // MTLOAD
    expect((await status(c)).gstat & GMT.ONLINE).toBeTruthy();
    ok(await c.close());
  });

  test('input piped in one go, ending right after C: every command is answered before the close', async () => {
    await rewindTape(1);
    const c = await client();
    c.send(Buffer.concat([Buffer.from('O/lib1/nst1\n2 O_RDWR\nW5\nhelloI5\n1\nI6\n1\nR100\nC\n')]));
    c.end();
    ok(await c.reply(), 0);
    ok(await c.reply(), 5);
    ok(await c.reply(), 1);
    ok(await c.reply(), 0);
    expect(ok(await c.reply(true)).data!.toString()).toBe('hello');
    ok(await c.reply(), 0);
    expect(await c.waitClosed()).toBe(true);
  });
});

describe('the AIX dialect', () => {
  test('STIOCTOP opcodes; closing a rewinding AIX device writes two filemarks and rewinds', async () => {
    await rewindTape(1);
    const c = await client();
    ok(await c.open('/lib1/rmt1', '1 O_WRONLY'));
    ok(await c.write(Buffer.from('one')));
    ok(await c.write(Buffer.from('two')));
    ok(await c.ioctl(10, 1)); // STWEOF
    ok(await c.write(Buffer.from('three')));
    err(await c.ioctl(1, 1), 22, /unknown STIOCTOP operation 1/); // Linux FSF is not AIX
    ok(await c.close());
    ok(await c.open('/lib1/rmt1.1', '0 O_RDONLY'));
    let st = await status(c);
    expect([st.fileno, st.blkno, st.gstat & GMT.BOT]).toEqual([0, 0, GMT.BOT]); // rewound
    ok(await c.ioctl(11, 1)); // STFSF
    expect(ok(await c.read(100)).data!.toString()).toBe('three');
    ok(await c.read(100), 0); // first close filemark
    ok(await c.read(100), 0); // second one: an empty file
    ok(await c.read(100), 0); // end of data
    err(await c.read(100), 5);
    ok(await c.ioctl(12, 2)); // STRSF 2: back over two filemarks
    ok(await c.ioctl(14, 1)); // STRSR 1
    expect(ok(await c.read(100)).data!.toString()).toBe('three');
    ok(await c.ioctl(6, 1)); // STREW
    ok(await c.ioctl(13, 1)); // STFSR 1
    expect(ok(await c.read(100)).data!.toString()).toBe('two');
    ok(await c.close());
    ok(await c.open('/lib1/rmt1.1', '0 O_RDONLY'));
    st = await status(c);
    expect(st.blkno).toBe(2); // .1 does not rewind on close
    ok(await c.close());
  });
});

describe('modes and limits of the medium', () => {
  test('fixed-block mode (MTSETBLK): whole blocks only, reads stop at a filemark and return 0 next', async () => {
    await rewindTape(1);
    const c = await client();
    ok(await c.open('/lib1/nst1'));
    ok(await c.ioctl(20, 512));
    expect((await status(c)).dsreg & 0xffffff).toBe(512);
    ok(await c.write(randomBytes(2048, 6)), 2048);
    err(await c.write(Buffer.alloc(100)), 22, /not a whole number of 512-byte blocks/);
    ok(await c.ioctl(5, 1));
    ok(await c.ioctl(6, 1));
    expect(ok(await c.read(1024)).data).toEqual(randomBytes(2048, 6).subarray(0, 1024));
    expect(ok(await c.read(4096)).data).toHaveLength(1024); // short: the filemark follows
    ok(await c.read(4096), 0); // and now the filemark
    err(await c.read(1000), 22);
    ok(await c.ioctl(20, 0));
    ok(await c.close());
  });

  test('a write-protected cartridge: EROFS for writable opens, reads still work', async () => {
    await rewindTape(1);
    const w = await client();
    ok(await w.open('/lib1/nst1'));
    ok(await w.write(Buffer.from('kept')));
    ok(await w.ioctl(6, 1));
    ok(await w.close());
    await h.libs.updateCartridge('VT0002L7', { writeProtected: true });
    try {
      const c = await client();
      err(await c.open('/lib1/nst1', '65 O_WRONLY|O_CREAT'), 30, /write protected/);
      ok(await c.open('/lib1/nst1', '0 O_RDONLY'));
      expect((await status(c)).gstat & GMT.WR_PROT).toBeTruthy();
      err(await c.write(Buffer.from('x')), 9, /reading only/);
      err(await c.ioctl(5, 1), 13);
      expect(ok(await c.read(10)).data!.toString()).toBe('kept');
      ok(await c.close());
    } finally {
      await h.libs.updateCartridge('VT0002L7', { writeProtected: false });
    }
  });

  test('end of medium: the write that enters the early-warning zone succeeds, the next gets ENOSPC and is not stored', async () => {
    // 1 MiB with the default zone of a quarter: the early-warning point is at 768 KiB. The full
    // st sequence (alternating ENOSPC and trailer writes to the physical end) is in
    // early-warning.test.ts.
    await h.libs.createCartridges({ library: 'lib1', barcodes: ['SMALL1'], mediaType: 'custom', capacity: 1024 * 1024 });
    await h.libs.unload('lib1', 2);
    await h.libs.load('lib1', 2, 'SMALL1');
    const c = await client();
    ok(await c.open('/lib1/nst2'));
    const rec = randomBytes(65536, 7);
    for (let i = 0; i < 13; i++) ok(await c.write(rec), 65536); // the 13th ends past 768 KiB
    err(await c.write(rec), 28, /No space left on device/);
    ok(await c.close());
    ok(await c.open('/lib1/st2', '0 O_RDONLY'));
    ok(await c.ioctl(6, 1));
    let n = 0;
    while (ok(await c.read(65536)).value > 0 && n < 100) n++;
    expect(n).toBe(13); // then the filemark, read as 0 bytes
    ok(await c.close());
  });
});

describe('sessions', () => {
  test('two clients on two drives at once; a third client opening a drive in use gets EBUSY', async () => {
    await rewindTape(0);
    await rewindTape(1);
    const a = await client();
    const b = await client();
    const third = await client();
    ok(await a.open('/lib1/nst0'));
    ok(await b.open('/lib1/nst1'));
    err(await third.open('/lib1/nst0'), 16, /Device or resource busy/);
    err(await third.open('/lib1/st1'), 16);
    for (let i = 0; i < 20; i++) {
      await Promise.all([a.write(randomBytes(32768, 100 + i)), b.write(randomBytes(16384, 200 + i))]);
    }
    await Promise.all([a.close(), b.close()]);
    ok(await third.open('/lib1/st0', '0 O_RDONLY'));
    ok(await third.ioctl(6, 1));
    for (let i = 0; i < 20; i++) expect(ok(await third.read(65536)).data).toEqual(randomBytes(32768, 100 + i));
    ok(await third.read(65536), 0);
    ok(await third.open('/lib1/st1', '0 O_RDONLY')); // O closes the open device first
    ok(await third.ioctl(6, 1));
    for (let i = 0; i < 20; i++) expect(ok(await third.read(65536)).data).toEqual(randomBytes(16384, 200 + i));
    ok(await third.close());
  });

  test('a client that disconnects mid-write leaves the cartridge readable up to its last record', async () => {
    await rewindTape(0);
    const c = await client();
    ok(await c.open('/lib1/nst0'));
    for (let i = 0; i < 5; i++) ok(await c.write(randomBytes(65536, 300 + i)));
    c.send(Buffer.concat([Buffer.from('W65536\n'), randomBytes(1000, 9)])); // a partial record
    await new Promise((res) => setTimeout(res, 50));
    c.destroy();
    const r = await openWhenFree('/lib1/nst0', '0 O_RDONLY');
    ok(await r.ioctl(6, 1));
    for (let i = 0; i < 5; i++) expect(ok(await r.read(65536)).data).toEqual(randomBytes(65536, 300 + i));
    ok(await r.read(65536), 0); // the filemark of the implicit close
    ok(await r.read(65536), 0);
    err(await r.read(65536), 5);
    ok(await r.close());
    expect((await (await h.libs.drive('lib1', 0)).status()).open).toBe(false);
  });

  test('a client that reads ahead and then moves: the tape is where the client left it', async () => {
    await rewindTape(0);
    const c = await client();
    ok(await c.open('/lib1/nst0'));
    for (let i = 0; i < 4; i++) ok(await c.write(Buffer.from(`rec${i}`)));
    ok(await c.ioctl(6, 1));
    expect(ok(await c.read(100)).data!.toString()).toBe('rec0');
    expect((await status(c)).blkno).toBe(1); // not 2: the record read ahead is put back
    expect(ok(await c.read(100)).data!.toString()).toBe('rec1');
    expect(ok(await c.read(50)).data!.toString()).toBe('rec2'); // another length
    ok(await c.close());
    ok(await c.open('/lib1/nst0', '0 O_RDONLY'));
    expect((await status(c)).blkno).toBe(3);
    ok(await c.close());
  });
});

describe('server shutdown', () => {
  test('closing the server ends every session, even one whose client never reads its replies', async () => {
    let commands = 0;
    const server = new RmtServer({ libraries: h.libs, port: 0, closeGraceMs: 300, trace: () => commands++ });
    const { port } = await server.listen();
    const reader = await RawClient.connect(port);
    const writer = await RawClient.connect(port);
    clients.push(reader, writer);
    ok(await writer.open('/lib1/nst0'));
    ok(await writer.ioctl(12, 1));
    const eod = (await (await h.libs.drive('lib1', 0)).status()).position!.lba;
    ok(await writer.write(Buffer.from('before shutdown')));
    reader.socket.pause(); // never reads: the server's replies back up
    reader.send('O/lib1/nst1\n0 O_RDONLY\n' + 'S'.repeat(200_000));
    // Until the session is stuck: the replies fill the socket and it stops taking commands.
    for (let last = -1; commands !== last; ) {
      last = commands;
      await new Promise((res) => setTimeout(res, 200));
    }
    expect(commands).toBeLessThan(200_000);
    const t0 = Date.now();
    await server.close();
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(250); // it waited out the grace period for the reader...
    expect(took).toBeLessThan(5000); // ...and then cut it off
    expect(server.connections).toBe(0);
    for (const i of [0, 1]) expect((await (await h.libs.drive('lib1', i)).status()).open).toBe(false);
    // The writer never closed its device: the stop rolled its record back (it came after the
    // cartridge's last sync point) and wrote no filemark, as a crash would (stop-rollback.test.ts).
    expect((await (await h.libs.drive('lib1', 0)).status()).position).toMatchObject({ lba: eod, eod: true });
  });
});

describe('bad input', () => {
  test('an unknown command gets EINVAL and the connection is closed', async () => {
    const c = await client();
    c.send('X');
    err(await c.reply(), 22, /unknown command "X"/);
    expect(await c.waitClosed()).toBe(true);
  });

  test('a write of 3 GB announced: E reply and closed at once, nothing read or allocated', async () => {
    const c = await client();
    ok(await c.open('/lib1/nst1'));
    const before = process.memoryUsage().arrayBuffers;
    c.send('W3000000000\n');
    err(await c.reply(), 22, /at most 2097152 bytes/);
    expect(await c.waitClosed()).toBe(true);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * 1024 * 1024);
    expect((await (await h.libs.drive('lib1', 1)).status()).open).toBe(false);
  });

  test.each([
    ['a negative write length', 'W-5\n'],
    ['a write length that is no number', 'Wabc\n'],
    ['a write length past 2^53', 'W99999999999999999999999\n'],
    ['a device name longer than PATH_MAX', `O${'x'.repeat(5000)}`],
    ['an argument line longer than 256 bytes', `R${'9'.repeat(300)}`],
  ])('%s: E reply, then closed', async (_what, input) => {
    const c = await client();
    c.send(input);
    const r = await c.reply();
    expect(r.ok).toBe(false);
    expect(await c.waitClosed()).toBe(true);
  });

  test('a huge read request is clamped to the largest record; negative lengths are refused', async () => {
    const c = await client();
    ok(await c.open('/lib1/nst1', '0 O_RDONLY'));
    c.send('R3000000000\n');
    expect((await c.reply(true)).ok).toBe(true);
    err(await c.read(-1), 22);
    ok(await c.close());
  });
});

describe('vtl rmt bridge', () => {
  test('relays stdin to the server and the replies to stdout; returns when the server closes', async () => {
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const out: Buffer[] = [];
    stdout.on('data', (d: Buffer) => out.push(d));
    const done = runRmtBridge(`127.0.0.1:${h.port}`, stdin, stdout);
    stdin.end('O/lib1/nst1\n0 O_RDONLY\nSC\n');
    await done;
    const text = Buffer.concat(out);
    expect(text.subarray(0, 7).toString()).toBe(`A0\nA${MTGET_SIZE}\n`);
    expect(text.subarray(7 + MTGET_SIZE).toString()).toBe('A0\n');
  });

  test('a server that is not there: a clear error', async () => {
    const closed = await RawClient.connect(h.port); // find a free port by closing a listener
    closed.destroy();
    const { createServer } = await import('node:net');
    const srv = createServer();
    await new Promise<void>((res) => srv.listen(0, '127.0.0.1', () => res()));
    const port = (srv.address() as { port: number }).port;
    await new Promise<void>((res) => srv.close(() => res()));
    await expect(runRmtBridge(`127.0.0.1:${port}`, new PassThrough(), new PassThrough())).rejects.toThrow(/cannot reach the vtl rmt server at 127.0.0.1:\d+/);
  });
});
