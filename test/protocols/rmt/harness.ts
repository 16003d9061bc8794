/**
 * A real rmt server over a temporary data store, a library `lib1` with cartridges, an rsh
 * wrapper that runs `vtl rmt` for tar/cpio/mt, and a small raw rmt client for protocol tests.
 */
import { afterAll, afterEach, beforeAll, describe, expect } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { Duplex, PassThrough, type Readable, type Writable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Libraries } from '../../../src/library/index.js';
import { RmtServer, runRmtBridge } from '../../../src/protocols/rmt/index.js';
import { nativeBridgePath } from '../../../src/protocols/rmt/bridge-native.js';
import { initDataStore, openDataStore, type DataStore } from '../../../src/stream/store.js';

/** The two builds of `vtl rmt`'s bridge, which run one conformance suite. */
export type BridgeKind = 'typescript' | 'c';
const BRIDGE_KINDS: BridgeKind[] = ['typescript', 'c'];

/** Why the C bridge cannot run here, or undefined when it can. */
export const cBridgeMissing = nativeBridgePath() ? undefined : 'native/build/Release/vtl-rmt-bridge is not built (npm ci builds it) or VTL_NATIVE_BRIDGE=0';

/** Declares `suite` once per bridge build; the C one is skipped, saying why, where it cannot run. */
export function describeEachBridge(suite: (kind: BridgeKind) => void): void {
  for (const kind of BRIDGE_KINDS) {
    const missing = kind === 'c' ? cBridgeMissing : undefined;
    describe.skipIf(missing !== undefined)(`${kind} bridge${missing ? ` (skipped: ${missing})` : ''}`, () => suite(kind));
  }
}

export const REPO = resolve(fileURLToPath(new URL('../../..', import.meta.url)));

export interface Harness {
  dir: string;
  store: DataStore;
  libs: Libraries;
  server: RmtServer;
  port: number;
  /** The rsh wrapper tar, cpio and mt run (`--rsh-command`). */
  rsh: string;
  close(): Promise<void>;
}

/** Starts a server; `lib1` has `drives` drives, each loaded with a fresh LTO-7 cartridge. */
export async function startHarness(opts: { drives?: number; trace?: (l: string) => void } = {}): Promise<Harness> {
  const drives = opts.drives ?? 2;
  const dir = await mkdtemp(join(tmpdir(), 'vtl-rmt-'));
  await initDataStore(join(dir, 'data'));
  const store = await openDataStore(join(dir, 'data'));
  const libs = new Libraries({ db: store.db, streams: store.streams });
  await libs.createLibrary({ name: 'lib1', drives, slots: drives + 4, mailslots: 1 });
  await libs.createCartridges({ library: 'lib1', prefix: 'VT', start: 1, count: drives + 2, mediaType: 'LTO-7' });
  for (let i = 0; i < drives; i++) await libs.load('lib1', i, `VT${String(i + 1).padStart(4, '0')}L7`);
  const server = new RmtServer({ libraries: libs, port: 0, trace: opts.trace });
  const { port } = await server.listen();
  const rsh = join(dir, 'rsh');
  await writeFile(rsh, rshWrapper(port));
  await chmod(rsh, 0o755);
  return {
    dir,
    store,
    libs,
    server,
    port,
    rsh,
    async close() {
      await server.close();
      await libs.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * `RSH HOST [-l USER] RMTCOMMAND`: the host, user and remote command are ignored; the wrapper
 * runs the bridge of this working tree against the test's server.
 */
export function rshWrapper(port: number): string {
  // --import resolves tsx from the working directory: run from the repository.
  return `#!/bin/sh\ncd "${REPO}" && exec "${process.execPath}" --import tsx src/cli/main.ts rmt --server 127.0.0.1:${port}\n`;
}

/** Which of the tools the tests need are missing, with the Debian package that has them. */
export function missingTools(tools: string[]): string[] {
  const pkg: Record<string, string> = { tar: 'tar', cpio: 'cpio', 'mt-gnu': 'cpio' };
  return tools.filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0).map((t) => `${t} (Debian package ${pkg[t] ?? t})`);
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a program without blocking the event loop (the server runs in this process). */
export function run(cmd: string, args: string[], opts: { cwd?: string; input?: Buffer; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')} did not finish in ${opts.timeoutMs ?? 60_000} ms`));
    }, opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
    child.stdin.end(opts.input);
  });
}

/** Runs a program and fails with its stderr unless it exits 0. */
export async function runOk(cmd: string, args: string[], opts: { cwd?: string; input?: Buffer; timeoutMs?: number } = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r;
}

/** `text`: the reply line after `A` (a bridge extension `w` reply carries two numbers). */
export type Reply = { ok: true; value: number; text: string; data?: Buffer } | { ok: false; errno: number; message: string };

/** A raw rmt client: sends commands, parses replies (A<n>, E<errno>\n<msg>, data for R and S). */
export class RawClient {
  private buf = Buffer.alloc(0);
  private ended = false;
  private waiter: (() => void) | undefined;

  private constructor(readonly socket: Socket) {
    socket.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      this.wake();
    });
    // The server ending its side is the end of the conversation (the client is half-open).
    const ended = () => {
      this.ended = true;
      this.wake();
    };
    socket.on('end', ended);
    socket.on('close', ended);
    socket.on('error', () => undefined);
  }

  /**
   * A client on the far side of a `vtl rmt` bridge to the server: the TypeScript one in this
   * process, or the C one (native/src/rmt-bridge.c) as a child on pipes.
   */
  static bridged(port: number, kind: BridgeKind = 'typescript'): { client: RawClient; bridge: Promise<void> } {
    if (kind === 'c') {
      const binary = nativeBridgePath();
      if (!binary) throw new Error('the C bridge is not built (npm ci builds native/build/Release/vtl-rmt-bridge)');
      const child = spawn(binary, [`127.0.0.1:${port}`], { stdio: ['pipe', 'pipe', 'pipe'] });
      const stderr: Buffer[] = [];
      child.stderr.on('data', (c: Buffer) => stderr.push(c));
      child.stdin.on('error', () => undefined); // the bridge may end first (EPIPE)
      const bridge = new Promise<void>((res, rej) => {
        child.on('error', rej);
        child.on('close', (code) => (code === 0 ? res() : rej(new Error(`vtl-rmt-bridge exited ${code}: ${Buffer.concat(stderr).toString().trim()}`))));
      });
      return { client: RawClient.overStdio(child), bridge };
    }
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const bridge = runRmtBridge(`127.0.0.1:${port}`, stdin, stdout);
    return { client: RawClient.overStdio({ stdin, stdout }), bridge };
  }

  /** A client speaking to a bridge (a child process, or one in this process) on its stdin and stdout. */
  static overStdio(child: { stdin: Writable; stdout: Readable }): RawClient {
    return new RawClient(Duplex.from({ readable: child.stdout, writable: child.stdin }) as unknown as Socket);
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((res, rej) => {
      const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
      s.once('connect', () => res(new RawClient(s)));
      s.once('error', rej);
    });
  }

  get closed(): boolean {
    return this.ended;
  }

  send(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Next reply; `withData` for R and S. */
  async reply(withData = false): Promise<Reply> {
    const line = await this.line();
    if (line.startsWith('A')) {
      const text = line.slice(1);
      const value = Number(text.split(' ')[0]);
      if (!withData) return { ok: true, value, text };
      return { ok: true, value, text, data: await this.bytes(value) };
    }
    if (line.startsWith('E')) return { ok: false, errno: Number(line.slice(1)), message: await this.line() };
    throw new Error(`unexpected reply line ${JSON.stringify(line)}`);
  }

  async open(device: string, flags = '2 O_RDWR'): Promise<Reply> {
    this.send(`O${device}\n${flags}\n`);
    return this.reply();
  }

  async write(data: Buffer): Promise<Reply> {
    this.send(Buffer.concat([Buffer.from(`W${data.length}\n`), data]));
    return this.reply();
  }

  async read(n: number): Promise<Reply> {
    this.send(`R${n}\n`);
    return this.reply(true);
  }

  async ioctl(op: number, count: number): Promise<Reply> {
    this.send(`I${op}\n${count}\n`);
    return this.reply();
  }

  async status(): Promise<Reply> {
    this.send('S');
    return this.reply(true);
  }

  async close(): Promise<Reply> {
    this.send('C\n');
    return this.reply();
  }

  /** Waits until the server closes the connection (or the timeout passes: false). */
  async waitClosed(ms = 5000): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.ended && Date.now() < deadline) await this.wait(deadline - Date.now());
    return this.ended;
  }

  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  private wait(ms: number): Promise<void> {
    return new Promise((res) => {
      const t = setTimeout(() => {
        this.waiter = undefined;
        res();
      }, ms);
      this.waiter = () => {
        clearTimeout(t);
        res();
      };
    });
  }

  private async line(): Promise<string> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const at = this.buf.indexOf(0x0a);
      if (at >= 0) {
        const s = this.buf.subarray(0, at).toString('latin1');
        this.buf = this.buf.subarray(at + 1);
        return s;
      }
      if (this.ended) throw new Error('connection closed while waiting for a reply');
      if (Date.now() > deadline) throw new Error('no reply within 30 s');
      await this.wait(deadline - Date.now());
    }
  }

  private async bytes(n: number): Promise<Buffer> {
    const deadline = Date.now() + 30_000;
    while (this.buf.length < n) {
      if (this.ended) throw new Error('connection closed while reading reply data');
      if (Date.now() > deadline) throw new Error('reply data did not arrive within 30 s');
      await this.wait(deadline - Date.now());
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }
}

/** The reply of a command that must succeed (and return `value`, when given). */
export function ok(r: Reply, value?: number): Extract<Reply, { ok: true }> {
  expect(r, JSON.stringify(r)).toMatchObject({ ok: true });
  if (value !== undefined) expect((r as { value: number }).value).toBe(value);
  return r as Extract<Reply, { ok: true }>;
}

/** The reply of a command that must fail with `errno` (and a message like `message`). */
export function err(r: Reply, errno: number, message?: RegExp): void {
  expect(r, JSON.stringify(r)).toMatchObject({ ok: false, errno });
  if (message) expect((r as { message: string }).message).toMatch(message);
}

/**
 * A test file's harness with `drives` drives: started before its tests (handed to `started`),
 * closed after them; after each test the `clients` it registered are ended and every drive is
 * free again, even when the test failed half-way.
 */
export function useHarness(drives: number, clients: RawClient[], started: (h: Harness) => void): void {
  let h: Harness | undefined;
  beforeAll(async () => {
    h = await startHarness({ drives });
    started(h);
  });
  afterAll(async () => {
    await h?.close();
  });
  afterEach(() => (h ? releaseDrives(h, clients, drives) : undefined));
}

/** Ends `clients` and waits until the first `drives` drives have no open session (10 s at most each). */
export async function releaseDrives(h: Harness, clients: RawClient[], drives: number): Promise<void> {
  for (const c of clients.splice(0)) c.destroy();
  for (let i = 0; i < drives; i++) {
    const d = await h.libs.drive('lib1', i);
    for (let t = 0; (await d.status()).open; t++) {
      if (t > 200) throw new Error(`drive ${i} is still open 10 s after its client left`);
      await new Promise((res) => setTimeout(res, 50));
    }
  }
}
