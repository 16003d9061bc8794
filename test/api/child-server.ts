/**
 * A vtl server in its own process (server-child.ts on a data directory), for tests that kill it
 * (SIGKILL, SIGTERM) and start it again: its URL, admin token and rmt port (from /health).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { ok } from './helpers.js';

export interface ChildServer {
  child: ChildProcess;
  url: string;
  admin: string;
  rmtPort: number;
}

/** Starts the child on `data`; it is added to `children` (for the test's cleanup). */
export async function startChildServer(data: string, children: ChildProcess[]): Promise<ChildServer> {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./server-child.ts', import.meta.url)), data], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const info = await new Promise<{ url: string; tokenFile: string }>((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.includes('\n')) resolve(JSON.parse(buf.split('\n')[0]));
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}: ${stderr}`)));
  });
  const admin = (await readFile(info.tokenFile, 'utf8')).trim();
  const health = await ok({ url: info.url, admin }, 'GET', '/api/v1/health');
  return { child, url: info.url, admin, rmtPort: Number(String(health.rmt).split(':').pop()) };
}
