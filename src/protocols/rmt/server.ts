/**
 * The rmt server: one session per TCP connection (127.0.0.1:7421 by default), and per
 * connection to its local socket (listenLocal). Closing the server stops every session after
 * its current command and ends its device as a crash would, not as a client's close: a device
 * open for writing keeps what reached a sync point and rolls back the records written after it
 * (no filemark makes the unfinished file look complete); every device is left free with its
 * cartridge loaded, and each session's change (with its note's id, saying what was rolled
 * back) is reported before `close` resolves.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import type { Libraries } from '../../library/index.js';
import { DEFAULT_RMT_HOST, DEFAULT_RMT_PORT } from './names.js';
import { RmtSession, type RmtBegin, type RmtChange } from './session.js';

export { DEFAULT_RMT_HOST, DEFAULT_RMT_PORT };
/** Each session buffers at most a few MiB; this bounds the server's memory. */
const MAX_CONNECTIONS = 256;
const IDLE_MS = 120_000;
/** A refusal at the connection limit is logged at most this often. */
const REFUSED_LOG_MS = 60_000;

export interface RmtServerOptions {
  libraries: Libraries;
  host?: string;
  port?: number;
  /** Receives one line per command (debugging). */
  trace?: (line: string) => void;
  /** On close, how long a client that does not read its replies may hold up its session. */
  closeGraceMs?: number;
  /**
   * A connection that has never opened a device and sends nothing for this long is closed
   * (default 120 s): stray connections must not fill the connection limit and lock backups out.
   */
  idleMs?: number;
  /**
   * Receives what each session wrote or erased, when it closes its device (the audit log); the
   * close is answered once its promise settles.
   */
  onChange?: (change: RmtChange) => void | Promise<void>;
  /**
   * Notes a device session's first change before it reaches the cartridge (once per open; the
   * audit log's note, settled by the change at close). Resolves to the note's id, or undefined
   * when noting failed (it reports that itself: the session goes on).
   */
  onBegin?: (begin: RmtBegin) => Promise<string | undefined>;
}

export class RmtServer {
  private server: Server | undefined;
  /** The same service on an abstract Unix socket (Linux), for `vtl rmt` on this host. */
  private local: Server | undefined;
  /** Its name: told to bridges in the hello's answer (session.ts), so never guessed. */
  private localName: string | undefined;
  private readonly sessions = new Set<RmtSession>();
  private readonly sockets = new Set<Socket>();
  /** Bytes of connections that have ended. */
  private ended = { in: 0, out: 0 };

  constructor(private readonly opts: RmtServerOptions) {}

  listen(): Promise<{ host: string; port: number }> {
    const server = createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (socket) => this.accept(socket));
    server.maxConnections = MAX_CONNECTIONS;
    server.on('drop', (d) => this.refused(d?.remoteAddress));
    this.server = server;
    const host = this.opts.host ?? DEFAULT_RMT_HOST;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port ?? DEFAULT_RMT_PORT, host, () => {
        server.off('error', reject);
        const addr = server.address();
        const port = typeof addr === 'object' && addr ? addr.port : (this.opts.port ?? DEFAULT_RMT_PORT);
        this.listenLocal(port).then(() => resolve({ host, port }));
      });
    });
  }

  /**
   * Abstract socket names have no permissions and anyone may bind a free one. This one is
   * random and bound before any client hears of it, so a client that learned it from this
   * server over TCP reaches this server, not a process that took a guessable name first.
   * Best effort: without it (a system without abstract sockets) local clients use TCP.
   */
  private listenLocal(port: number): Promise<void> {
    if (process.platform !== 'linux') return Promise.resolve();
    const local = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => this.accept(socket));
    local.maxConnections = MAX_CONNECTIONS;
    local.on('drop', () => this.refused('a local client'));
    const name = `vtl-rmt-${port}-${randomBytes(12).toString('hex')}`;
    return new Promise((resolve) => {
      local.once('error', () => resolve());
      local.listen(`\0${name}`, () => {
        this.local = local;
        this.localName = name;
        resolve();
      });
    });
  }

  /** Bytes received and sent on every connection since the server started (protocol included). */
  bytes(): { in: number; out: number } {
    let { in: i, out: o } = this.ended;
    for (const s of this.sockets) {
      i += s.bytesRead;
      o += s.bytesWritten;
    }
    return { in: i, out: o };
  }

  /** Connections being served. */
  get connections(): number {
    return this.sessions.size;
  }

  /** Connections being served, by transport: TCP, or the local (abstract Unix) socket. */
  connectionsByTransport(): { tcp: number; local: number } {
    let local = 0;
    for (const s of this.sockets) if (isLocal(s)) local++;
    return { tcp: this.sockets.size - local, local };
  }

  async close(): Promise<void> {
    const server = this.server;
    const local = this.local;
    this.server = this.local = this.localName = undefined;
    if (!server) return;
    const closed = Promise.all([server, local].map((s) => s && new Promise<void>((resolve) => s.close(() => resolve()))));
    await Promise.all([...this.sessions].map((s) => s.stop(this.opts.closeGraceMs)));
    await closed;
  }

  private lastRefusedLog = 0;

  /** A connection refused at the limit: said in the log (at most once a minute), with what to do. */
  private refused(from: string | undefined): void {
    const now = Date.now();
    if (now - this.lastRefusedLog < REFUSED_LOG_MS) return;
    this.lastRefusedLog = now;
    console.error(
      `vtl: rmt refused a connection from ${from ?? 'a client'}: ${MAX_CONNECTIONS} connections are open, the limit. Connections with no device open are closed after ${Math.round((this.opts.idleMs ?? IDLE_MS) / 1000)} s idle; see vtl_rmt_connections in /metrics`,
    );
  }

  private accept(socket: Socket): void {
    if (!isLocal(socket)) socket.setKeepAlive(true, 60_000);
    this.sockets.add(socket);
    socket.once('close', () => {
      this.sockets.delete(socket);
      this.ended = { in: this.ended.in + socket.bytesRead, out: this.ended.out + socket.bytesWritten };
    });
    const session = new RmtSession(socket, { libraries: this.opts.libraries, trace: this.opts.trace, localName: this.localName, onChange: this.opts.onChange, onBegin: this.opts.onBegin });
    this.sessions.add(session);
    // Quiet before it ever opened a device: a stray connection, nothing to lose by closing it.
    // Once a client has opened one it keeps its connection however long it waits: between
    // records (reading its own disks), or between volumes (tar -M asks the operator).
    socket.setTimeout(this.opts.idleMs ?? IDLE_MS);
    socket.on('timeout', () => {
      if (session.hasOpened) socket.setTimeout(0);
      else socket.destroy();
    });
    void session.done.finally(() => {
      this.sessions.delete(session);
      // The session has ended its side; do not wait for a client that never closes its own.
      socket.destroySoon();
    });
  }
}

/** A Unix socket has no remote address family (keep-alive means nothing there). */
function isLocal(socket: Socket): boolean {
  return socket.remoteFamily === undefined;
}
