/**
 * One rmt connection: reads commands one at a time, runs them on the open tape device and
 * answers `A<n>\n` (plus data for R and S) or `E<errno>\n<message>\n`.
 *
 * Protocol errors the session cannot resynchronize from (an unknown command byte, an argument
 * line past its limit, a W whose length is not a valid record size) are answered with an E
 * reply and the connection is closed: nothing announced is ever allocated or read before its
 * length is checked. The end of input is an implicit close of the device.
 *
 * The vtl bridge extension (bridge.ts), spoken only after the client's hello `B1\n`:
 * - `w<n>\n<data>`: a write the client may already have acknowledged to its own client.
 *   Answered `A<k> <credit>\n`: k bytes written, and how many bytes of further records may be
 *   acknowledged ahead of the tape from now on (TapeDevice.writeCredit). Once such a write
 *   fails, later `w` are refused until the client sends another command, so nothing lands on
 *   the tape after a hole.
 * - `U<k>\n`: takes back the last k reads (TapeDevice.undoReads); answered `A<k>\n`.
 * - Version 2: the hello's answer `A2 <name>\n` names the server's local socket (RmtServer), an
 *   abstract Unix socket a client on the same host may use instead; `A2\n` when it has none.
 */
import type { Socket } from 'node:net';
import type { Libraries } from '../../library/index.js';
import { recycleBuffer, takeBuffer } from '../../tape/index.js';
import { MAX_TRANSFER, TapeDevice, WriteProtectedOpen, type ChangeKind, type RolledBack } from './device.js';
import { Input, ProtocolError } from './input.js';
import { RmtError, parseDevice, parseOpenFlags } from './names.js';

/** Longest device name (PATH_MAX) and longest numeric or flags argument. */
const MAX_NAME = 4096;
const MAX_ARG = 256;
/**
 * Reply bytes a session queues before it waits for its client to read them: a bridge reads
 * ahead, so its replies may gather; a plain client gets the socket's usual high-water mark.
 */
const BRIDGE_BACKLOG = 2 ** 20;
const NUMBER = /^\s*([+-]?\d{1,19})\s*$/;
/** The version of the bridge extension this server speaks. */
export const BRIDGE_EXTENSION = 2;

/** End the connection after replying. */
class Fatal extends Error {
  constructor(readonly reply: RmtError) {
    super(reply.message);
  }
}

/** A device session about to change a cartridge, once per open (the audit log notes it). */
export interface RmtBegin {
  /** The action of the change the note stands for: the close reports one with this action. */
  action: 'rmt write' | 'rmt erase';
  barcode: string;
  /** The client's address (host:port), or `local` for the local socket. */
  peer: string;
  /** What a server stop before the close leaves on the cartridge, naming it. */
  ifInterrupted: string;
}

/** A change a session made to a cartridge, or tried to and was refused, reported when it closes the device (audit log). */
export interface RmtChange {
  /** `rmt write` (records and filemarks) or `rmt erase`. */
  action: 'rmt write' | 'rmt erase';
  barcode: string;
  /** The client's address (host:port), or `local` for the local socket. */
  peer: string;
  /** The device name the client opened and what was done, and the close's error when it failed. */
  detail: string;
  /** False for a failed close, and for writes or erases the cartridge refused (`detail` says which). */
  ok: boolean;
  /** The note `onBegin` made for this open: this change settles it (one change per note). */
  started?: string;
}

/** An open device's audit note: its id and the kind of the first change it stands for. */
interface Note {
  id: string;
  kind: ChangeKind;
}

export interface SessionOptions {
  libraries: Libraries;
  trace?: (line: string) => void;
  /**
   * Receives what each device session changed, at its close; the close is answered once the
   * returned promise settles (the entry is in the log, as the API's are before its answers).
   */
  onChange?: (change: RmtChange) => void | Promise<void>;
  /**
   * Awaited before a device session's first change (once per open): notes it and resolves to
   * the note's id, which that session's change at close carries. Reports its own failures and
   * resolves to undefined then: a failed note never fails the tape session.
   */
  onBegin?: (begin: RmtBegin) => Promise<string | undefined>;
  /** The abstract name of the server's local socket, told to clients that speak version 2. */
  localName?: string;
}

export class RmtSession {
  private readonly input: Input;
  private device: TapeDevice | undefined;
  /** The device name the open device was opened by. */
  private deviceName = '';
  /** The audit note of the open device's first change, settled by its report at close. */
  private note: Note | undefined;
  /** The client's address, taken while the socket is open (it is gone once it closes). */
  private readonly peer: string;
  private stopping = false;
  /** The client said hello: the bridge extension's commands are accepted. */
  private bridged = false;
  /** Credit the last `w` reply granted: the writes that follow may have been acknowledged. */
  private credit = 0;
  /** A `w` failed while it may have been acknowledged: refuse `w` until another command. */
  private bufferedFailed = false;
  /** Replies are being gathered until the event loop turns. */
  private corked = false;
  readonly done: Promise<void>;

  /** This connection has opened a device at some point (it is a real client, not a stray one). */
  get hasOpened(): boolean {
    return this.opened;
  }
  private opened = false;

  constructor(
    private readonly socket: Socket,
    private readonly opts: SessionOptions,
  ) {
    // Records are lent views of the pooled segments the socket reads into (a record that spans
    // two is joined in a pooled buffer), given back once stored.
    this.peer = peerOf(socket);
    this.input = new Input(socket, MAX_TRANSFER + 256 * 1024, takeBuffer, true);
    socket.on('error', () => this.input.stop());
    this.done = this.run();
  }

  /**
   * Stops reading; the command in progress finishes, then the device is ended as a crash would
   * end it, not as the client's close: a device open for writing rolls back what was written
   * after the cartridge's last sync point (the client never closed its file, and was never
   * told those records were durable) and writes no filemark; one open for reading is closed.
   * The change reported says what was rolled back. A client that does not read its replies is
   * cut off after `graceMs` so this can run.
   */
  async stop(graceMs = 5000): Promise<void> {
    this.stopping = true;
    this.input.stop();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
    await Promise.race([this.done, late]);
    clearTimeout(timer);
    this.socket.destroy();
    await this.done;
  }

  private async run(): Promise<void> {
    try {
      while (!this.stopping) {
        const c = await this.input.byte();
        if (c === null) break;
        if (c === 0x0a) continue; // newer clients end S with a newline; tolerate strays
        if (!(await this.command(c))) break;
      }
    } catch (err) {
      // An internal failure outside any command: answer what we can, then hang up.
      this.send(`E5\n${clean((err as Error).message)}\n`);
    } finally {
      // A client's end of input is its close; a server stop is not (see stop).
      await this.closeDevice(this.stopping).catch(() => undefined);
      if (!this.socket.destroyed) this.socket.end();
    }
  }

  /** Runs one command; false when the connection must close. */
  private async command(c: number): Promise<boolean> {
    const letter = String.fromCharCode(c);
    try {
      const ok = await this.dispatch(letter);
      if (!ok) return false;
    } catch (err) {
      if (err instanceof Fatal) {
        this.trace(`${letter} -> E${err.reply.errno} (closing)`);
        await this.reply(`E${err.reply.errno}\n${clean(err.reply.message)}\n`);
        return false;
      }
      if (err instanceof ProtocolError) {
        await this.reply(`E22\n${clean(`Invalid argument: ${err.message}`)}\n`);
        return false;
      }
      const e = err instanceof RmtError ? err : new RmtError('EIO', (err as Error).message);
      this.trace(`${letter} -> E${e.errno} ${e.message}`);
      await this.reply(`E${e.errno}\n${clean(e.message)}\n`);
    }
    return true;
  }

  /** Returns false at end of input inside a command. */
  private async dispatch(letter: string): Promise<boolean> {
    if (letter !== 'w') {
      this.credit = 0;
      this.bufferedFailed = false;
    }
    switch (letter) {
      case 'O':
        return this.open();
      case 'C':
        return this.close();
      case 'W':
        return this.write();
      case 'R':
        return this.read();
      case 'I':
        return this.ioctl();
      case 'S':
        return this.status();
      case 'L':
        return this.seek();
      case 'i': // Schily RMT V1 extended ioctl: i<op>\n<count>\n
        if ((await this.arg()) === null || (await this.arg()) === null) return false;
        throw new RmtError('EINVAL', 'the extended ioctl command i is not supported; use I');
      case 's': // Schily extended status: one subcommand byte
        if ((await this.input.byte()) === null) return false;
        throw new RmtError('EINVAL', 'the extended status command s is not supported; use S');
      case 'v': // Schily version query: v<arg>\n
        if ((await this.arg()) === null) return false;
        throw new RmtError('EINVAL', 'the version command v is not supported');
      case 'B':
        return this.hello();
      case 'w':
        if (!this.bridged) throw unknown(letter);
        return this.bufferedWrite();
      case 'U':
        if (!this.bridged) throw unknown(letter);
        return this.undo();
      default:
        throw unknown(letter);
    }
  }

  /** `B<version>\n`: the bridge's hello; answers the extension version both sides speak. */
  private async hello(): Promise<boolean> {
    const line = await this.arg();
    if (line === null) return false;
    const v = number(line);
    if (v === undefined || v < 1) throw new RmtError('EINVAL', `bad bridge extension version ${JSON.stringify(line)}`);
    this.bridged = true;
    const version = Math.min(v, BRIDGE_EXTENSION);
    const local = version >= 2 && this.opts.localName ? ` ${this.opts.localName}` : '';
    await this.reply(`A${version}${local}\n`);
    return true;
  }

  /** `w<n>\n<data>`: a write that may be acknowledged already; answers `A<k> <credit>`. */
  private async bufferedWrite(): Promise<boolean> {
    const data = await this.record();
    if (data === null) return false;
    const ahead = this.credit > 0;
    this.credit = 0;
    try {
      if (this.bufferedFailed) throw new RmtError('EIO', 'an earlier buffered write failed: nothing more is written until another command');
      const dev = this.openDevice();
      const k = data.length === 0 ? 0 : await dev.write(data, () => recycleBuffer(data));
      this.credit = dev.writeCredit();
      await this.reply(`A${k} ${this.credit}\n`);
      return true;
    } catch (err) {
      // The client may have acknowledged this record: no later one may land after the hole.
      if (ahead) this.bufferedFailed = true;
      throw err;
    }
  }

  /** `U<k>\n`: takes back the last k reads. */
  private async undo(): Promise<boolean> {
    const line = await this.arg();
    if (line === null) return false;
    const k = number(line);
    if (k === undefined) throw new RmtError('EINVAL', `bad read count ${JSON.stringify(line)}`);
    await this.openDevice().undoReads(k);
    await this.reply(`A${k}\n`);
    return true;
  }

  private async open(): Promise<boolean> {
    const name = await this.input.line(MAX_NAME);
    if (name === null) return false;
    const flagsLine = await this.arg();
    if (flagsLine === null) return false;
    this.trace(`O ${name} ${flagsLine}`);
    await this.closeDevice(); // opening again closes the device first, as rmt does
    const dev = parseDevice(name);
    if (!dev) throw new RmtError('ENOENT', `${name} is not a vtl device: use /LIBRARY/stN, /LIBRARY/nstN, /LIBRARY/rmtN or /LIBRARY/rmtN.1`);
    const flags = parseOpenFlags(flagsLine);
    if (!flags) throw new RmtError('EINVAL', `bad open flags ${JSON.stringify(flagsLine)}`);
    try {
      this.device = await TapeDevice.open(this.opts.libraries, dev, flags, (kind) => this.noteChange(name, kind));
      this.opened = true;
    } catch (err) {
      // A refused attempt to write is worth an audit entry; other failed opens change nothing.
      if (err instanceof WriteProtectedOpen) {
        await this.tell([{ action: 'rmt write', barcode: err.barcode, peer: this.peer, ok: false, detail: `${name}: refused at open: ${err.reason}` }]);
      }
      throw err;
    }
    this.deviceName = name;
    await this.reply('A0\n');
    return true;
  }

  private async close(): Promise<boolean> {
    if ((await this.arg()) === null) return false;
    this.trace('C');
    if (!this.device) throw new RmtError('EBADF', 'no device is open');
    await this.closeDevice();
    await this.reply('A0\n');
    return true;
  }

  private async write(): Promise<boolean> {
    const data = await this.record();
    if (data === null) return false;
    const dev = this.openDevice();
    const k = data.length === 0 ? 0 : await dev.write(data, () => recycleBuffer(data));
    await this.reply(`A${k}\n`);
    return true;
  }

  /** The length line and payload of a write; null at end of input. */
  private async record(): Promise<Buffer | null> {
    const line = await this.arg();
    if (line === null) return null;
    const n = number(line);
    // Checked before a single payload byte is read: a bad length cannot be skipped safely.
    if (n === undefined || n < 0) throw new Fatal(new RmtError('EINVAL', `bad write length ${JSON.stringify(line)}`));
    if (n > MAX_TRANSFER) throw new Fatal(new RmtError('EINVAL', `a record holds at most ${MAX_TRANSFER} bytes, ${n} announced`));
    return this.input.exact(n);
  }

  private async read(): Promise<boolean> {
    const line = await this.arg();
    if (line === null) return false;
    const n = number(line);
    if (n === undefined || n < 0) throw new RmtError('EINVAL', `bad read length ${JSON.stringify(line)}`);
    // Every R reaches the device, also R0: a bridge counts them when it takes reads back.
    const data = await this.openDevice().read(n);
    await this.reply(`A${data.length}\n`, data);
    return true;
  }

  private async ioctl(): Promise<boolean> {
    const opLine = await this.arg();
    if (opLine === null) return false;
    const countLine = await this.arg();
    if (countLine === null) return false;
    this.trace(`I ${opLine} ${countLine}`);
    const op = number(opLine);
    const count = number(countLine);
    if (op === undefined || count === undefined) throw new RmtError('EINVAL', `bad ioctl arguments ${JSON.stringify(opLine)} ${JSON.stringify(countLine)}`);
    const value = await this.openDevice().ioctl(op, count);
    await this.reply(`A${value}\n`);
    return true;
  }

  private async status(): Promise<boolean> {
    this.trace('S');
    const st = await this.openDevice().status();
    await this.reply(`A${st.length}\n`, st);
    return true;
  }

  /** `L<offset>\n<whence>\n` (tar 1.34) or `L<whence>\n<offset>\n` (newer paxutils). */
  private async seek(): Promise<boolean> {
    const a = await this.arg();
    if (a === null) return false;
    const b = await this.arg();
    if (b === null) return false;
    this.trace(`L ${a} ${b}`);
    const [offset, whence] = seekArgs(a.trim(), b.trim());
    if (offset === undefined || whence === undefined) throw new RmtError('EINVAL', `bad lseek arguments ${JSON.stringify(a)} ${JSON.stringify(b)}`);
    await this.reply(`A${this.openDevice().seek(offset, whence)}\n`);
    return true;
  }

  private arg(): Promise<string | null> {
    return this.input.line(MAX_ARG);
  }

  private openDevice(): TapeDevice {
    if (!this.device) throw new RmtError('EBADF', 'no device is open: send O first');
    return this.device;
  }

  /**
   * The device's first change is about to reach the cartridge: `onBegin` notes it, so a crash
   * before the close still leaves an entry. Commands run one at a time, so the note belongs to
   * the device open now; its close takes it.
   */
  private async noteChange(name: string, kind: ChangeKind): Promise<void> {
    const { onBegin, onChange } = this.opts;
    const dev = this.device;
    // Without onChange nothing would ever settle the note.
    if (!onBegin || !onChange || !dev) return;
    const action = `rmt ${kind}` as const;
    // onBegin reports its own failures; a rejection here only means the session has no note.
    const id = await onBegin({ action, barcode: dev.barcode, peer: this.peer, ifInterrupted: ifInterrupted(name, dev.barcode, kind) }).catch(() => undefined);
    if (id !== undefined) this.note = { id, kind };
  }

  /**
   * Closes the open device and reports its change. `stopped`: the server stops, the client did
   * not close it; a device open for writing is abandoned (rolled back to its last sync point).
   */
  private async closeDevice(stopped = false): Promise<void> {
    const dev = this.device;
    const note = this.note;
    // Records the last `w` reply let the bridge acknowledge ahead may never have arrived.
    const ahead = this.credit > 0;
    this.device = this.note = undefined;
    if (!dev) return;
    let rolledBack: RolledBack | undefined;
    try {
      if (stopped && dev.writable) rolledBack = await dev.abandon();
      else await dev.close();
    } catch (err) {
      await this.tell(this.report(dev, note, err as Error));
      throw err;
    }
    await this.tell(this.report(dev, note, undefined, rolledBack && { ...rolledBack, ahead }));
  }

  /** Hands changes to `onChange` and waits for them (its failures are its own to report). */
  private async tell(changes: RmtChange[]): Promise<void> {
    const onChange = this.opts.onChange;
    if (!onChange || changes.length === 0) return;
    await Promise.allSettled(changes.map(async (c) => onChange(c)));
  }

  /**
   * What the device session wrote or erased, and what it was refused (nothing when neither).
   * The first change of the note's action settles the note; if the noted change reached
   * nothing (it failed), a failed change of that action is reported so the note is settled.
   * A stop that rolled records back fails the write change and says what is gone, as the
   * interrupted entry of a crash would.
   */
  private report(dev: TapeDevice, note: Note | undefined, failure?: Error, stopped?: RolledBack & { ahead: boolean }): RmtChange[] {
    const c = dev.changes;
    const base = { barcode: dev.barcode, peer: this.peer, ok: true };
    const done: RmtChange[] = [];
    if (c.erased) done.push({ ...base, action: 'rmt erase', detail: `${this.deviceName}: erased from the position on` });
    if (c.records > 0 || c.filemarks > 0) {
      done.push({ ...base, action: 'rmt write', detail: `${this.deviceName}: ${count(c.records, 'record')} (${c.bytes} bytes), ${count(c.filemarks, 'filemark')}` });
    }
    // A failed close (its filemarks) is told with the last change, the one it ended.
    const last = done[done.length - 1];
    if (failure && last) Object.assign(last, { ok: false, detail: `${last.detail}; close failed: ${failure.message}` });
    const write = done.find((d) => d.action === 'rmt write');
    if (stopped && stopped.records > 0 && write) Object.assign(write, { ok: false, detail: `${write.detail}; ${rolledBackDetail(stopped)}` });
    const f = dev.failures;
    const failedWrites = f.times > 0 ? `${count(f.times, 'write')} failed (${f.reason}): what was written after the cartridge's last sync point was rolled back` : '';
    if (failedWrites && write) Object.assign(write, { ok: false, detail: `${write.detail}; ${failedWrites}` });
    for (const [kind, r] of dev.refusals) {
      done.push({ ...base, action: `rmt ${kind}`, ok: false, detail: `${this.deviceName}: refused ${count(r.times, 'time')}: ${r.reason}` });
    }
    if (note) {
      const settles = done.find((d) => d.action === `rmt ${note.kind}`);
      if (settles) settles.started = note.id;
      else done.push({ ...base, action: `rmt ${note.kind}`, ok: false, started: note.id, detail: `${this.deviceName}: nothing reached the cartridge (the ${note.kind} failed${f.times > 0 ? `: ${f.reason}` : ''})` });
    }
    return done;
  }

  private trace(line: string): void {
    this.opts.trace?.(line);
  }

  /**
   * Queues a reply. The replies of commands that arrived together (a bridge's pipelined
   * writes and reads) leave in one writev when the event loop turns, not one syscall each.
   */
  private send(text: string, data?: Buffer): void {
    if (this.socket.destroyed || !this.socket.writable) return;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      setImmediate(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(text);
    // Once the socket has taken a read's bytes, its buffer serves the next read.
    if (data && data.length > 0) this.socket.write(data, () => recycleBuffer(data));
  }

  /** Sends a reply; waits while the client is slow to read (bounded output). */
  private async reply(text: string, data?: Buffer): Promise<void> {
    this.send(text, data);
    if (this.socket.writableLength < (this.bridged ? BRIDGE_BACKLOG : this.socket.writableHighWaterMark)) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }
}

/**
 * What a graceful server stop rolled back, in the words of the interrupted entry a crash leaves
 * (ifInterrupted): the client never closed its file, so the records after the cartridge's last
 * sync point were never acknowledged as durable.
 */
function rolledBackDetail(r: RolledBack & { ahead: boolean }): string {
  const after = r.endsAt === 'unterminated' ? 'the last sync point' : r.endsAt === 'beginning' ? 'the beginning of the cartridge' : 'the last filemark';
  const ends =
    r.endsAt === 'unterminated' ? 'the cartridge ends at its last sync point, its last tape file without a filemark' : r.endsAt === 'beginning' ? 'the cartridge is blank again' : 'the cartridge ends at its last filemark';
  const bridge = r.ahead ? ', as were any records its vtl rmt bridge had acknowledged ahead of the tape that had not arrived' : '';
  return `the server stopped before the client closed the file: ${count(r.records, 'record')} (${r.bytes} bytes) after ${after} ${r.records === 1 ? 'was' : 'were'} rolled back (not acknowledged as durable)${bridge}; ${ends}`;
}

/** What a server stop mid-session leaves on the cartridge (the audit log's interrupted entry). */
function ifInterrupted(name: string, barcode: string, kind: ChangeKind): string {
  const kept = kind === 'erase' ? 'its erase, and what it wrote up to its last filemark (a sync point), are' : 'what it wrote up to its last filemark (a sync point) is';
  return `${name} was still open for writing on cartridge ${barcode}: ${kept} on the cartridge; records it wrote after that were not yet acknowledged as durable and were rolled back; look at ${barcode}`;
}

function peerOf(socket: Socket): string {
  if (socket.remoteAddress === undefined) return 'local';
  return socket.remoteFamily === 'IPv6' ? `[${socket.remoteAddress}]:${socket.remotePort}` : `${socket.remoteAddress}:${socket.remotePort}`;
}

function count(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function unknown(letter: string): Fatal {
  return new Fatal(new RmtError('EINVAL', `unknown command ${JSON.stringify(letter)}`));
}

function number(line: string): number | undefined {
  const m = NUMBER.exec(line);
  if (!m) return undefined;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) ? n : undefined;
}

const WHENCE: Record<string, number> = { SET: 0, CUR: 1, END: 2, SEEK_SET: 0, SEEK_CUR: 1, SEEK_END: 2 };

function whenceOf(s: string): number | undefined {
  if (s in WHENCE) return WHENCE[s];
  return /^[0-2]$/.test(s) ? Number(s) : undefined;
}

/** Tells the two argument orders apart: a symbolic whence decides; otherwise tar 1.34's order. */
function seekArgs(a: string, b: string): [number | undefined, number | undefined] {
  if (/^[A-Z_]+$/.test(a)) return [number(b), whenceOf(a)];
  if (/^[A-Z_]+$/.test(b)) return [number(a), whenceOf(b)];
  if (whenceOf(b) !== undefined) return [number(a), whenceOf(b)];
  return [number(b), whenceOf(a)];
}

/** One line of reply text: no newlines, bounded length. */
function clean(message: string): string {
  return message.replace(/[\r\n]+/g, ' ').slice(0, 512);
}
