/**
 * Starts the local stand-ins for the cloud stores as child processes on 127.0.0.1: s3rver
 * (S3) in a temp directory and Azurite (Blob) in memory. Each listens on a port the OS picks and
 * prints it; start* resolves once that line appears, or rejects with the reason (used to mark
 * a suite SKIPPED, never passed).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface LocalServer {
  endpoint: string;
  stop(): Promise<void>;
}

const BIN = fileURLToPath(new URL('../../node_modules/.bin/', import.meta.url));

/** Azurite's documented development account (public, works only against the emulator). */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface RestartableServer extends LocalServer {
  /** Kills the server (SIGKILL), keeping its data. */
  kill(): Promise<void>;
  /** Starts it again on the same port and data. */
  restart(): Promise<void>;
}

export async function startS3rver(bucket: string): Promise<RestartableServer> {
  const dir = await mkdtemp(join(tmpdir(), 'vtl-s3rver-'));
  // s3rver encrypts list continuation tokens with DES, which OpenSSL 3 keeps in its legacy provider.
  const env = { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --openssl-legacy-provider`.trim() };
  const args = (port: number) => ['-d', dir, '-a', '127.0.0.1', '-p', String(port), '--silent', '--configure-bucket', bucket];
  let server: { port: number; stop: () => Promise<void> } | undefined = await startProcess('s3rver', args(0), dir, /listening on 127\.0\.0\.1:(\d+)/, env);
  const port = server.port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    kill: async () => {
      await server?.stop();
      server = undefined;
    },
    restart: async () => {
      server = await startProcess('s3rver', args(port), dir, /listening on 127\.0\.0\.1:(\d+)/, env);
    },
    stop: async () => {
      await server?.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export async function startAzurite(): Promise<LocalServer> {
  const dir = await mkdtemp(join(tmpdir(), 'vtl-azurite-'));
  const args = ['--blobHost', '127.0.0.1', '--blobPort', '0', '--inMemoryPersistence', '--extentMemoryLimit', '512', '--disableTelemetry', '--skipApiVersionCheck', '--silent'];
  const server = await startProcess('azurite-blob', args, dir, /listens on http:\/\/127\.0\.0\.1:(\d+)/);
  return {
    endpoint: `http://127.0.0.1:${server.port}/${AZURITE_ACCOUNT}`,
    stop: async () => {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function startProcess(bin: string, args: string[], cwd: string, ready: RegExp, env = process.env): Promise<{ port: number; stop: () => Promise<void> }> {
  const path = join(BIN, bin);
  if (!existsSync(path)) throw new Error(`${bin} is not installed (npm install)`);
  const child = spawn(path, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const port = await waitForPort(child, bin, ready);
  return { port, stop: () => stopProcess(child) };
}

function waitForPort(child: ChildProcess, bin: string, ready: RegExp): Promise<number> {
  return new Promise((resolve, reject) => {
    let output = '';
    let started = false;
    const timer = setTimeout(() => fail(new Error(`${bin} did not start within 30 s: ${output.slice(-500)}`)), 30_000);
    const fail = (err: Error): void => {
      if (started) return;
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(err);
    };
    // Output keeps being read after start (a full pipe would stall the server) but not kept.
    const onData = (data: Buffer): void => {
      if (started) return;
      output += data.toString();
      const match = ready.exec(output);
      if (match) {
        started = true;
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('error', (err) => fail(new Error(`${bin} could not run: ${err.message}`)));
    child.once('exit', (code) => fail(new Error(`${bin} exited with ${code}: ${output.slice(-500)}`)));
  });
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}
