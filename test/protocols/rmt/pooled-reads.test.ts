import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Input } from '../../../src/protocols/rmt/input.js';
import { SEGMENT_BYTES, SMALL_SEGMENT_BYTES } from '../../../src/protocols/rmt/pooled-reads.js';
import { recycleBuffer, takeBuffer } from '../../../src/tape/index.js';

const HIGH_WATER = 4 * 1024 * 1024;
const closers: Array<() => void> = [];
afterEach(() => {
  for (const close of closers.splice(0)) close();
});

/** The server's end of a loopback TCP connection, accepted as the rmt server accepts them. */
async function accepted(pauseOnConnect: boolean): Promise<{ server: Socket; client: Socket }> {
  const listener = createServer({ pauseOnConnect, allowHalfOpen: true });
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  const { port } = listener.address() as { port: number };
  const client = connect({ host: '127.0.0.1', port });
  const [server] = (await once(listener, 'connection')) as [Socket];
  closers.push(() => {
    client.destroy();
    server.destroy();
    listener.close();
  });
  return { server, client };
}

/** Record k's payload: its length varies, and every byte says which record and where. */
function payload(k: number): Buffer {
  const sizes = [65_536, 10_240, 1, 70_001, 512, 131_072, 4_097];
  const b = Buffer.allocUnsafe(sizes[k % sizes.length]);
  for (let i = 0; i < b.length; i++) b[i] = (k * 7 + i * 13 + (i >> 9)) & 0xff;
  return b;
}

/** Sends records as `W<n>\n` + payload, in writes that do not line up with them, then ends. */
async function sendRecords(client: Socket, count: number): Promise<void> {
  let pending: Buffer[] = [];
  let size = 0;
  for (let k = 0; k < count; k++) {
    const p = payload(k);
    pending.push(Buffer.from(`W${p.length}\n`), p);
    size += p.length + 12;
    if (size > 300_001) {
      const all = Buffer.concat(pending);
      client.write(all.subarray(0, 150_000));
      if (!client.write(all.subarray(150_000))) await once(client, 'drain');
      pending = [];
      size = 0;
    }
  }
  client.end(Buffer.concat(pending));
}

describe('pooled socket reads', () => {
  it('reads records into pooled segments, and a lent record keeps its bytes until given back', async () => {
    const { server, client } = await accepted(true);
    const input = new Input(server, HIGH_WATER, takeBuffer, true);
    expect(input.pooled).toBe(true);
    const count = 600; // about 24 MB
    const sent = sendRecords(client, count);
    const kept: Array<[number, Buffer]> = [];
    const late: Buffer[] = [];
    const segments = new Set<ArrayBufferLike>();
    let fromSegments = 0;
    for (let k = 0; k < count; k++) {
      expect(await input.byte()).toBe(0x57); // W
      const n = Number(await input.line(32));
      const record = (await input.exact(n))!;
      expect(record.length).toBe(payload(k).length);
      if (record.buffer.byteLength === SEGMENT_BYTES) {
        fromSegments++;
        segments.add(record.buffer);
      }
      // Some are kept for good; the rest go back three records late, as a medium gives them back.
      if (k % 97 === 5) kept.push([k, record]);
      else late.push(record);
      if (late.length > 3) recycleBuffer(late.shift()!);
    }
    await sent;
    expect(await input.byte()).toBeNull();
    for (const [k, record] of kept) expect(record.equals(payload(k)), `record ${k}`).toBe(true);
    // Most records are views of the segments the socket read into, and segments went round:
    // 24 MB passed through far fewer than 23 of them.
    expect(fromSegments).toBeGreaterThan(count / 2);
    expect(segments.size).toBeLessThan(15); // 9 here; 23 when none goes back to the pool
  });

  it('a connection that only sends commands holds a small segment; records streaming in move it to large ones', async () => {
    const { server, client } = await accepted(true);
    const input = new Input(server, HIGH_WATER, takeBuffer, true);
    // Commands only, as a client that opens a device and then idles.
    client.write('O/lib1/nst0\n0\n');
    expect(await input.byte()).toBe(0x4f); // O
    const rest = (await input.some())!; // the rest of what was read: all of it, or part
    expect(rest.length).toBeGreaterThan(0);
    expect(rest.buffer.byteLength).toBe(SMALL_SEGMENT_BYTES);
    const left = 13 - rest.length; // "/lib1/nst0\n0\n"
    recycleBuffer(rest);
    if (left > 0) recycleBuffer((await input.exact(left))!);
    // Then records: after the first large read, reads go into 1 MiB segments.
    const sent = sendRecords(client, 60);
    const sizes = new Set<number>();
    for (let k = 0; k < 60; k++) {
      await input.byte();
      const record = (await input.exact(Number(await input.line(32))))!;
      expect(record.equals(payload(k))).toBe(true);
      sizes.add(record.buffer.byteLength);
      recycleBuffer(record);
    }
    await sent;
    expect(sizes.has(SEGMENT_BYTES)).toBe(true);
  });

  it('falls back to data events on a socket that already reads', async () => {
    const { server, client } = await accepted(false);
    const input = new Input(server, HIGH_WATER, takeBuffer, true);
    expect(input.pooled).toBe(false);
    const sent = sendRecords(client, 40);
    for (let k = 0; k < 40; k++) {
      expect(await input.byte()).toBe(0x57);
      const n = Number(await input.line(32));
      expect((await input.exact(n))!.equals(payload(k))).toBe(true);
    }
    await sent;
    expect(await input.byte()).toBeNull();
  });

  it('stops reading at the high-water mark and goes on when the bytes are consumed', async () => {
    const { server, client } = await accepted(true);
    const input = new Input(server, 256 * 1024, takeBuffer, true);
    const sent = sendRecords(client, 120);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(input.buffered).toBeLessThan(256 * 1024 + SEGMENT_BYTES);
    for (let k = 0; k < 120; k++) {
      await input.byte();
      const record = (await input.exact(Number(await input.line(32))))!;
      expect(record.equals(payload(k))).toBe(true);
      recycleBuffer(record);
    }
    await sent;
    expect(await input.byte()).toBeNull();
    expect(server.bytesRead).toBeGreaterThan(120 * 40_000);
  });
});
