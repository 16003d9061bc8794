/**
 * `vtl rmt`: speaks rmt on stdin/stdout by relaying the bytes to a vtl rmt server, so that
 * `tar --rsh-command=WRAPPER` and ssh ForceCommand reach vtl's drives. The end of stdin ends
 * the client's side of the connection (the server closes the device: an implicit close);
 * the bridge returns when the server has sent everything and closed.
 */
import { connect } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { DEFAULT_RMT_HOST, DEFAULT_RMT_PORT } from './server.js';

/**
 * Replies are read into a reused buffer: no allocation per record while stdout keeps up. When
 * a write to stdout is queued (a full pipe), the queue holds a view of the buffer and a new one
 * is taken; the size keeps that cheap while holding a 64 KiB record with its reply line.
 */
const REPLY_BUFFER = 256 * 1024;

/** `HOST:PORT`, `[v6]:PORT`, `HOST` or `:PORT`. */
export function parseServerAddress(server: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*))(?::(\d{1,5}))?$/.exec(server.trim());
  const port = m?.[3] === undefined ? DEFAULT_RMT_PORT : Number(m[3]);
  if (!m || port < 1 || port > 65535) throw new Error(`bad rmt server address ${JSON.stringify(server)}: expected HOST:PORT`);
  return { host: m[1] ?? (m[2] || DEFAULT_RMT_HOST), port };
}

export function runRmtBridge(server: string, stdin: Readable, stdout: Writable): Promise<void> {
  const { host, port } = parseServerAddress(server);
  // process.stdout is a plain fd stream: a reply is written straight from the reused buffer.
  // Any other stream (which may pass the chunk on by reference) gets a copy.
  const direct = stdout === process.stdout;
  let buffer = Buffer.allocUnsafe(REPLY_BUFFER);
  return new Promise<void>((resolve, reject) => {
    const socket = connect({
      host,
      port,
      noDelay: true,
      allowHalfOpen: true,
      onread: {
        buffer: () => buffer,
        callback: (n: number, buf: Uint8Array): boolean => {
          const view = Buffer.from(buf.buffer, buf.byteOffset, n);
          const flushed = stdout.write(direct ? view : Buffer.from(view));
          // Queued instead of written: the queue holds the view, so stop reusing its buffer.
          if (direct && stdout.writableLength > 0) buffer = Buffer.allocUnsafe(REPLY_BUFFER);
          if (flushed) return true;
          stdout.once('drain', () => socket.resume());
          return false; // pauses the socket until stdout drains
        },
      },
    });
    let connected = false;
    socket.once('connect', () => {
      connected = true;
      stdin.pipe(socket);
    });
    socket.on('error', (err) => {
      stdin.unpipe(socket);
      reject(new Error(connected ? `rmt server ${host}:${port}: ${err.message}` : `cannot reach the vtl rmt server at ${host}:${port}: ${err.message}`));
    });
    socket.on('close', () => {
      stdin.unpipe(socket);
      stdin.destroy(); // nothing more can be relayed; let the process exit
      // Resolve once stdout has taken every byte the server sent.
      if (stdout.writableNeedDrain) stdout.once('drain', () => resolve());
      else resolve();
    });
  });
}
