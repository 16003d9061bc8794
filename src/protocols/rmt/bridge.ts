/**
 * `vtl rmt`: speaks rmt on stdin/stdout by relaying to a vtl rmt server, so that
 * `tar --rsh-command=WRAPPER` and ssh ForceCommand reach vtl's drives. The end of stdin ends
 * the client's side of the connection (the server closes the device: an implicit close);
 * the bridge returns when the server has sent everything and closed.
 *
 * rmt clients wait for each reply before the next command, so a plain relay pays a round trip
 * through three processes per record. The bridge takes that wait off the record path with the
 * server's bridge extension (session.ts), as a drive's buffered mode does:
 * - Write-behind: a W is answered at once and sent on as `w` while the server's credit (bytes
 *   that cannot reach the early-warning zone) allows; otherwise it waits for the real reply.
 *   An error reply for such a write is held and returned for the client's next command instead
 *   of that command's reply (the command is not run), as st reports a deferred write error.
 * - Read-ahead: after a read that returned data, the next reads of the same size are sent
 *   before the client asks. Any other command first takes the unanswered ones back (`U<k>`),
 *   so the client sees exactly the position and read state it would without them.
 * - Every command but W and R first waits for all outstanding replies: filemarks, close and
 *   status are answered only after everything before them is done (durable, for sync points).
 * Input the bridge cannot parse (an unknown command, a line too long, a bad write length) is
 * relayed as it is from there on, after the outstanding replies, so the server answers it.
 */
import { connect, type Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { MAX_RECORD } from '../../tape/media.js';
import { Input, ProtocolError } from './input.js';
import { DEFAULT_RMT_HOST, DEFAULT_RMT_PORT } from './names.js';

/** The server's limits on argument lines (session.ts): longer ones are relayed raw. */
const MAX_NAME = 4096;
const MAX_ARG = 256;
/** Longest reply line the bridge accepts from the server. */
const MAX_REPLY_LINE = 4096;
/** Bytes of reads sent ahead of the client, and at most this many reads. */
const READ_WINDOW = 4 * 2 ** 20;
const MAX_READ_AHEAD = 64;
const NUMBER = /^\s*(\d{1,19})\s*$/;

/** `HOST:PORT`, `[v6]:PORT`, `HOST` or `:PORT`. */
export function parseServerAddress(server: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*))(?::(\d{1,5}))?$/.exec(server.trim());
  const port = m?.[3] === undefined ? DEFAULT_RMT_PORT : Number(m[3]);
  if (!m || port < 1 || port > 65535) throw new Error(`bad rmt server address ${JSON.stringify(server)}: expected HOST:PORT`);
  return { host: m[1] ?? (m[2] || DEFAULT_RMT_HOST), port };
}

/**
 * A reply as the server sent it: `A<line>` (+ data for R and S, as the views it arrived in) or
 * `E<line>\n<message>`.
 */
type Reply = { ok: true; line: string; value: number; data?: Buffer[] } | { ok: false; line: string; message: string };

/** A reply the server owes, in command order. */
interface Owed {
  /** The reply carries data (R, S). */
  data: boolean;
  settle(r: Reply): void;
  fail(err: Error): void;
}

/** A reply to wait for. */
interface Call extends Owed {
  reply: Promise<Reply>;
}

function pending(data: boolean): Call {
  let settle!: (r: Reply) => void;
  let fail!: (e: Error) => void;
  const reply = new Promise<Reply>((res, rej) => ((settle = res), (fail = rej)));
  reply.catch(() => undefined); // a closed connection is reported where the reply is awaited
  return { data, reply, settle, fail };
}

const failure = (errno: number, message: string): Reply => ({ ok: false, line: String(errno), message });

class Bridge {
  private readonly fromTar: Input;
  private readonly fromServer: Input;
  private readonly owed: Owed[] = [];
  /** The server accepted the hello: `w` and `U` may be sent. */
  private extended = false;
  /** Bytes the server's last `w` reply allows to be acknowledged ahead. */
  private credit = 0;
  /** Acknowledged writes whose replies are outstanding: their bytes and replies. */
  private aheadBytes = 0;
  private aheadWrites: Call[] = [];
  /** An error reply for an acknowledged write, returned for the client's next command. */
  private held: Reply | undefined;
  /** Reads sent ahead of the client, all `R<readLine>`; more are sent while `reading`. */
  private aheadReads: Call[] = [];
  private readLine = '';
  private reading = false;
  /** Relaying raw bytes both ways: the input could not be parsed. */
  private raw = false;
  /** The client's bytes of the command being parsed (relayed as they are if it cannot be). */
  private text = '';
  /** The server has closed the connection. */
  closed = false;

  constructor(
    private readonly socket: Socket,
    stdin: Readable,
    private readonly stdout: Writable,
  ) {
    this.fromTar = new Input(stdin, MAX_RECORD + 256 * 1024);
    this.fromServer = new Input(socket, MAX_RECORD + 256 * 1024);
  }

  /** Reads replies in order and hands each to the command that owes it. */
  async replies(): Promise<void> {
    try {
      for (;;) {
        const c = await this.fromServer.byte();
        if (c === null) break;
        const owed = this.owed.shift();
        if (!owed) {
          if (!this.raw) throw new Error(`the rmt server sent a reply nobody asked for (${JSON.stringify(String.fromCharCode(c))})`);
          this.stdout.write(Buffer.of(c));
          await this.relay(this.fromServer, this.stdout);
          break;
        }
        try {
          owed.settle(await this.reply(c, owed.data));
        } catch (err) {
          owed.fail(err as Error);
          throw err;
        }
      }
    } finally {
      this.closed = true;
      const lost = new Error('the rmt server closed the connection');
      for (const o of this.owed.splice(0)) o.fail(lost);
      this.fromTar.stop(); // nothing more can be relayed
    }
  }

  private async reply(c: number, data: boolean): Promise<Reply> {
    const line = await this.fromServer.line(MAX_REPLY_LINE);
    if (line === null) throw new Error('the rmt server closed the connection inside a reply');
    if (c === 0x45) {
      const message = await this.fromServer.line(MAX_REPLY_LINE);
      if (message === null) throw new Error('the rmt server closed the connection inside a reply');
      return { ok: false, line, message };
    }
    if (c !== 0x41) throw new Error(`the rmt server sent a bad reply ${JSON.stringify(String.fromCharCode(c) + line)}`);
    const value = Number(/^\s*(-?\d+)/.exec(line)?.[1]);
    if (!Number.isSafeInteger(value)) throw new Error(`the rmt server sent a bad reply ${JSON.stringify('A' + line)}`);
    if (!data || value <= 0) return { ok: true, line, value };
    if (value > MAX_RECORD) throw new Error(`the rmt server announced ${value} bytes of reply data`);
    const parts = await this.fromServer.exactParts(value);
    if (parts === null) throw new Error('the rmt server closed the connection inside a reply');
    return { ok: true, line, value, data: parts };
  }

  /** Sends the hello; the extension is used only if the server answers it. */
  async hello(): Promise<void> {
    const r = await this.call('B1\n', false);
    this.extended = r.ok && r.value >= 1;
  }

  /** Serves the client's commands until its input ends. */
  async commands(): Promise<void> {
    for (;;) {
      const c = await this.fromTar.byte();
      if (c === null) break;
      this.text = String.fromCharCode(c);
      try {
        if (!(await this.command(this.text))) break;
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        await this.relayRaw(this.text); // a line past its limit
        return;
      }
    }
    // The client is gone: what it wrote is stored and the position is where it left it (a
    // no-rewind device keeps it for the next open).
    if (!this.closed) await this.settle();
  }

  /** The next argument line of the client's command (added to `text`); null at its end. */
  private async arg(max: number): Promise<string | null> {
    const line = await this.fromTar.line(max);
    if (line !== null) this.text += `${line}\n`;
    return line;
  }

  /** Runs one command; false when the input ended inside it. */
  private async command(letter: string): Promise<boolean> {
    switch (letter) {
      case '\n': // a stray newline (newer clients end S with one): the server skips it
        this.send('\n');
        return true;
      case 'W':
        return this.write();
      case 'R':
        return this.read();
      case 'S':
        return this.forward([], true);
      case 'C':
      case 'v':
        return this.forward([MAX_ARG], false);
      case 'O':
        return this.forward([MAX_NAME, MAX_ARG], false);
      case 'I':
      case 'L':
      case 'i':
        return this.forward([MAX_ARG, MAX_ARG], false);
      case 's': {
        const sub = await this.fromTar.exact(1);
        if (sub === null) return false;
        this.text += sub.toString('latin1');
        return this.forward([], false);
      }
      default:
        await this.relayRaw(this.text);
        return false;
    }
  }

  /** A command whose reply the client waits for, after every outstanding reply. */
  private async forward(lines: number[], data: boolean): Promise<boolean> {
    for (const max of lines) if ((await this.arg(max)) === null) return false;
    const held = await this.settle();
    this.answer(held ?? (await this.call(this.text, data)));
    return true;
  }

  private async write(): Promise<boolean> {
    const line = await this.arg(MAX_ARG);
    if (line === null) return false;
    const n = NUMBER.test(line) ? Number(line) : NaN;
    // A length the server will refuse and hang up on: let it, with the bytes as they are.
    if (!(n <= MAX_RECORD)) {
      await this.relayRaw(this.text);
      return false;
    }
    const data = await this.fromTar.exactParts(n); // relayed as received: no copy
    if (data === null) return false; // a partial record is never written
    if (this.aheadReads.length > 0) await this.undoReads();
    if (this.held) {
      this.answer(this.takeHeld()!);
      return true;
    }
    if (!this.extended || n === 0) {
      this.answer(await this.call(`W${line}\n`, false, data));
      return true;
    }
    // Wait until the window has room, or nothing is outstanding.
    while (this.aheadWrites.length > 0 && this.aheadBytes + n > this.credit) await this.aheadWrites[0].reply;
    if (this.held) {
      this.answer(this.takeHeld()!);
    } else if (this.aheadBytes + n <= this.credit) {
      this.writeAhead(n, data);
    } else {
      const r = await this.call(`w${n}\n`, false, data);
      this.credit = r.ok ? creditOf(r) : 0;
      this.answer(r.ok ? { ok: true, line: String(r.value), value: r.value } : r);
    }
    return true;
  }

  /** Answers the client now; the server's reply is checked when it comes. */
  private writeAhead(n: number, data: Buffer[]): void {
    if (this.closed) throw new Error('the rmt server closed the connection');
    const c = pending(false);
    const settle = c.settle;
    c.settle = (r) => {
      this.aheadBytes -= n;
      this.aheadWrites.shift();
      if (!r.ok) {
        this.held ??= r;
        this.credit = 0;
      } else if (r.value !== n) {
        this.held ??= failure(5, `Input/output error: the tape took ${r.value} of ${n} bytes of a buffered record`);
        this.credit = 0;
      } else {
        this.credit = creditOf(r);
      }
      settle(r);
    };
    this.aheadBytes += n;
    this.aheadWrites.push(c);
    this.owed.push(c);
    this.send(`w${n}\n`, data);
    this.answer({ ok: true, line: String(n), value: n });
  }

  private async read(): Promise<boolean> {
    const line = await this.arg(MAX_ARG);
    if (line === null) return false;
    if (this.aheadReads.length > 0 && line === this.readLine) {
      const r = await this.aheadReads.shift()!.reply;
      this.answer(r);
      // Past a filemark, end of data or an error the client will most likely stop reading.
      if (!(r.ok && r.value > 0)) this.reading = false;
      this.readAhead();
      return true;
    }
    const held = await this.settle();
    if (held) {
      this.answer(held);
      return true;
    }
    const r = await this.call(`R${line}\n`, true);
    this.answer(r);
    if (this.extended && r.ok && r.value > 0 && NUMBER.test(line)) {
      this.readLine = line;
      this.reading = true;
      this.readAhead();
    }
    return true;
  }

  /** Keeps the read window full while reading. */
  private readAhead(): void {
    const size = Math.max(1, Number(this.readLine));
    const window = Math.max(1, Math.min(MAX_READ_AHEAD, Math.floor(READ_WINDOW / size)));
    // Refilled by halves: one write carries many requests, and the server reads them at once.
    if (!this.reading || this.aheadReads.length > window / 2 || this.closed) return;
    this.socket.cork();
    while (this.aheadReads.length < window) {
      const c = pending(true);
      this.owed.push(c);
      this.aheadReads.push(c);
      this.send(`R${this.readLine}\n`);
    }
    this.socket.uncork();
  }

  /** Takes back the reads the client did not get; a failure is held for its command. */
  private async undoReads(): Promise<void> {
    const k = this.aheadReads.length;
    this.aheadReads = [];
    this.reading = false;
    const r = await this.call(`U${k}\n`, false);
    if (!r.ok) this.held ??= r;
  }

  /**
   * Before any command but W and R: takes back reads ahead, waits for every outstanding
   * write; returns the error the command must answer instead of running, if any.
   */
  private async settle(): Promise<Reply | undefined> {
    if (this.aheadReads.length > 0) await this.undoReads();
    while (this.aheadWrites.length > 0) await this.aheadWrites[this.aheadWrites.length - 1].reply;
    this.credit = 0;
    return this.takeHeld();
  }

  private takeHeld(): Reply | undefined {
    const h = this.held;
    this.held = undefined;
    return h;
  }

  /** Sends a command and waits for its reply. */
  private call(text: string, data: boolean, payload?: Buffer[]): Promise<Reply> {
    if (this.closed) return Promise.reject(new Error('the rmt server closed the connection'));
    const c = pending(data);
    this.owed.push(c);
    this.send(text, payload);
    return c.reply;
  }

  private send(text: string, payload?: Buffer[]): void {
    if (this.closed || this.socket.destroyed) return;
    if (!payload || payload.length === 0) {
      this.socket.write(text, 'latin1');
      return;
    }
    this.socket.cork();
    this.socket.write(text, 'latin1');
    for (const part of payload) this.socket.write(part);
    this.socket.uncork();
  }

  /** Writes a reply to the client. */
  private answer(r: Reply): void {
    if (!r.ok) {
      this.stdout.write(`E${r.line}\n${r.message}\n`, 'latin1');
      return;
    }
    if (!r.data) {
      this.stdout.write(`A${r.line}\n`, 'latin1');
      return;
    }
    cork(this.stdout);
    this.stdout.write(`A${r.line}\n`, 'latin1');
    for (const part of r.data) this.stdout.write(part);
    uncork(this.stdout);
  }

  /** From `head` on, relays the client's bytes as they are (after the outstanding replies). */
  private async relayRaw(head: string): Promise<void> {
    const held = await this.settle();
    if (held) {
      // The client is told of the failed write; what it sent after cannot be understood.
      this.answer(held);
      return;
    }
    this.raw = true;
    this.send(head);
    await this.relay(this.fromTar, this.socket);
  }

  private async relay(from: Input, to: Writable): Promise<void> {
    for (;;) {
      const chunk = await from.some();
      if (chunk === null) return;
      if (to.destroyed) return;
      if (!to.write(chunk)) await new Promise<void>((resolve) => to.once('drain', resolve).once('close', resolve));
    }
  }
}

/** The credit of a `w` reply `A<k> <credit>` (0 if absent). */
function creditOf(r: Extract<Reply, { ok: true }>): number {
  const c = Number(/^\s*-?\d+\s+(\d{1,19})\s*$/.exec(r.line)?.[1] ?? 0);
  return Number.isSafeInteger(c) ? c : 0;
}

function cork(w: Writable): void {
  if (typeof w.cork === 'function') w.cork();
}
function uncork(w: Writable): void {
  if (typeof w.uncork === 'function') w.uncork();
}

export function runRmtBridge(server: string, stdin: Readable, stdout: Writable): Promise<void> {
  const { host, port } = parseServerAddress(server);
  return new Promise<void>((resolve, reject) => {
    const socket = connect({ host, port, noDelay: true, allowHalfOpen: true });
    let connected = false;
    let failed = false;
    const fail = (err: Error) => {
      if (failed) return;
      failed = true;
      socket.destroy();
      stdin.destroy();
      reject(err);
    };
    // The client going away (EPIPE on its pipe) ends the relay; the server closes the device.
    stdout.on('error', () => socket.end());
    socket.on('error', (err) => fail(new Error(connected ? `rmt server ${host}:${port}: ${err.message}` : `cannot reach the vtl rmt server at ${host}:${port}: ${err.message}`)));
    socket.once('connect', () => {
      connected = true;
      const bridge = new Bridge(socket, stdin, stdout);
      const replies = bridge.replies();
      const commands = bridge
        .hello()
        .then(() => bridge.commands())
        .finally(() => {
          if (!socket.destroyed) socket.end();
        });
      // Commands cut short because the server hung up end the bridge normally, as a relay does.
      Promise.all([replies, commands.catch((err: Error) => (bridge.closed ? undefined : Promise.reject(err)))]).then(
        () => {
          stdin.destroy(); // nothing more can be relayed; let the process exit
          // Resolve once stdout has taken every byte the server sent.
          if (stdout.writableNeedDrain) stdout.once('drain', () => resolve());
          else resolve();
        },
        (err: Error) => fail(err),
      );
    });
  });
}
