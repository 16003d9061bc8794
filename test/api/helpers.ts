/** A real vtl server on a random port with a temporary data directory. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, type StartOptions, type VtlServer } from '../../src/server.js';

export interface TestServer {
  server: VtlServer;
  dir: string;
  admin: string;
  url: string;
  /** Closes and starts again on the same data directory. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startTestServer(opts: StartOptions = {}): Promise<TestServer> {
  const dir = opts.data ?? (await mkdtemp(join(tmpdir(), 'vtl-api-')));
  const start = () => startServer({ demo: false, ...opts, data: dir, host: '127.0.0.1', port: 0, rmtPort: 0 });
  const t: TestServer = {
    server: await start(),
    dir,
    admin: '',
    url: '',
    async restart() {
      await t.server.close();
      t.server = await start();
      t.url = t.server.url;
    },
    async stop() {
      await t.server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
  t.url = t.server.url;
  t.admin = (await readFile(t.server.adminTokenFile, 'utf8')).trim();
  return t;
}

export interface Reply {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  headers: Headers;
}

/** A JSON request; `token` null sends none. */
export async function call(t: { url: string; admin: string }, method: string, path: string, body?: unknown, token: string | null = t.admin): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(t.url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON (metrics)
  }
  return { status: res.status, body: parsed, headers: res.headers };
}

/** `call` that fails with the method, path, status and body unless the answer is 2xx; its body. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function ok(t: { url: string; admin: string }, method: string, path: string, body?: unknown): Promise<any> {
  const r = await call(t, method, path, body);
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

export async function putFile(t: { url: string; admin: string }, lib: string, drive: number, data: Buffer, blockSize?: number, overwrite = false): Promise<Reply> {
  const params = new URLSearchParams();
  if (blockSize) params.set('blockSize', String(blockSize));
  if (overwrite) params.set('overwrite', 'true');
  const q = params.size > 0 ? `?${params}` : '';
  const res = await fetch(`${t.url}/api/v1/libraries/${lib}/drives/${drive}/file${q}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${t.admin}`, 'content-type': 'application/octet-stream' },
    body: data,
  });
  return { status: res.status, body: await res.json(), headers: res.headers };
}

export async function getFile(t: { url: string; admin: string }, lib: string, drive: number): Promise<{ status: number; data: Buffer; headers: Headers }> {
  const res = await fetch(`${t.url}/api/v1/libraries/${lib}/drives/${drive}/file`, { headers: { authorization: `Bearer ${t.admin}` } });
  return { status: res.status, data: Buffer.from(await res.arrayBuffer()), headers: res.headers };
}

export interface ChildServer {
  child: ChildProcess;
  url: string;
  pid: number;
  token: string;
  /** SIGTERM (a graceful stop), then removes the data directory. */
  stop(): Promise<void>;
}

/** A vtl server in its own process (so its memory can be measured), on a temp data dir. */
export async function startChildServer(): Promise<ChildServer> {
  const dir = await mkdtemp(join(tmpdir(), 'vtl-child-'));
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./server-child.ts', import.meta.url)), join(dir, 'data')], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const info = await new Promise<{ url: string; tokenFile: string; pid: number }>((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.includes('\n')) resolve(JSON.parse(buf.split('\n')[0]));
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  const token = (await readFile(info.tokenFile, 'utf8')).trim();
  return {
    child,
    url: info.url,
    pid: info.pid,
    token,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The peak resident memory of a process so far (VmHWM). */
export async function peakRss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) * 1024;
}
