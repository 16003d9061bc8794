/**
 * The CLI's HTTP client: where the server is (`--url`, $VTL_URL), which token to send
 * (`--token-file`, $VTL_TOKEN, or the admin token file of the local data directory), and
 * errors a person can act on: server not running, token refused, the server's own message.
 */
import { existsSync, readFileSync } from 'node:fs';
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import type { Readable } from 'node:stream';

export const DEFAULT_URL = 'http://127.0.0.1:7420';

export class CliError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export interface ClientOptions {
  url?: string;
  tokenFile?: string;
}

interface TokenSource {
  token?: string;
  from: string;
}

/** Finds the token: --token-file, then $VTL_TOKEN (a token or a file), then ./vtl-data/admin.token. */
export function resolveToken(tokenFile: string | undefined, env: NodeJS.ProcessEnv = process.env): TokenSource {
  const read = (path: string, from: string, required: boolean): TokenSource | undefined => {
    try {
      return { token: readFileSync(path, 'utf8').trim(), from };
    } catch (err) {
      if (required) throw new CliError(`cannot read the token file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      return undefined;
    }
  };
  // A token given where a file belongs: say so without repeating the secret on the screen.
  if (tokenFile?.startsWith('vtl_') && !existsSync(tokenFile)) throw new CliError('--token-file takes the path of a file holding the token, and this looks like a token itself: put it in a file (mode 0600), or in $VTL_TOKEN');
  if (tokenFile) return read(tokenFile, `token file ${tokenFile}`, true)!;
  const v = env.VTL_TOKEN?.trim();
  if (v) return v.startsWith('vtl_') ? { token: v, from: '$VTL_TOKEN' } : read(v, `token file ${v} ($VTL_TOKEN)`, true)!;
  const local = join(env.VTL_DATA ?? './vtl-data', 'admin.token');
  return read(local, `token file ${local}`, false) ?? { from: 'no token (give --token-file or $VTL_TOKEN)' };
}

export class ApiClient {
  readonly url: string;
  private readonly auth: TokenSource;

  constructor(opts: ClientOptions = {}) {
    this.url = (opts.url ?? process.env.VTL_URL ?? DEFAULT_URL).replace(/\/+$/, '');
    try {
      new URL(this.url);
    } catch {
      throw new CliError(`invalid --url ${JSON.stringify(this.url)}: expected something like ${DEFAULT_URL}`);
    }
    this.auth = resolveToken(opts.tokenFile);
  }

  get<T>(path: string): Promise<T> {
    return this.json<T>('GET', path);
  }

  post<T>(path: string, body: unknown = {}): Promise<T> {
    return this.json<T>('POST', path, body);
  }

  patch<T>(path: string, body: unknown): Promise<T> {
    return this.json<T>('PATCH', path, body);
  }

  delete<T>(path: string): Promise<T> {
    return this.json<T>('DELETE', path);
  }

  async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const res = await this.send(method, path, payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}, payload);
    const text = await readAll(res);
    if (res.statusCode! >= 400) throw this.failure(res.statusCode!, text);
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /** Streams `body` as the request (backpressure from the socket); answers the parsed JSON. */
  async upload<T>(path: string, body: Readable, contentLength?: number): Promise<T> {
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    if (contentLength !== undefined) headers['content-length'] = String(contentLength);
    const res = await this.send('PUT', path, headers, body);
    const text = await readAll(res);
    if (res.statusCode! >= 400) throw this.failure(res.statusCode!, text);
    return JSON.parse(text) as T;
  }

  /** Opens a download; the caller consumes the response stream. */
  async download(path: string): Promise<IncomingMessage> {
    const res = await this.send('GET', path, {});
    if (res.statusCode! >= 400) throw this.failure(res.statusCode!, await readAll(res));
    return res;
  }

  private send(method: string, path: string, headers: Record<string, string>, body?: Buffer | Readable): Promise<IncomingMessage> {
    const u = new URL(this.url + path);
    const h: Record<string, string> = { accept: 'application/json', ...headers };
    if (this.auth.token) h.authorization = `Bearer ${this.auth.token}`;
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, { method, headers: h });
    return new Promise((resolve, reject) => {
      req.on('response', (res: IncomingMessage) => {
        if (body !== undefined && !Buffer.isBuffer(body) && !req.writableFinished) stopUpload(req, body, res);
        resolve(res);
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ECONNREFUSED' || err.code === 'ENOTFOUND' || err.code === 'EHOSTUNREACH') {
          reject(new CliError(`cannot reach the vtl server at ${this.url} (${err.code}): is \`vtl serve\` running? (--url or $VTL_URL)`));
        } else reject(new CliError(`talking to ${this.url}: ${err.message}`));
      });
      if (body === undefined || Buffer.isBuffer(body)) req.end(body);
      else {
        body.on('error', (err) => req.destroy(err));
        body.pipe(req);
      }
    });
  }

  private failure(status: number, text: string): CliError {
    let body: { error?: string; message?: string } = {};
    try {
      body = JSON.parse(text);
    } catch {
      body = { message: text.slice(0, 200) };
    }
    const msg = body.message ?? `HTTP ${status}`;
    if (status === 401) return new CliError(`the server refused the request: ${msg} (token from ${this.auth.from})`, status, body.error);
    if (status === 403) return new CliError(`not allowed: ${msg}`, status, body.error);
    return new CliError(msg, status, body.error);
  }
}

/**
 * The server answered an upload before it had all of the body: it refused it (vtl answers a
 * success only after the last byte). Sending the rest would not help and cannot work: once the
 * response is complete Node's client no longer passes the socket's 'drain' on to the request,
 * so the piped body stalls, and the still-open socket keeps the CLI alive until the server's
 * keep-alive timeout closes it (72 s). So stop reading the input at once, and close the
 * connection as soon as the answer has been read (not before: the message is what we show).
 * The server has already rolled back whatever it had written when it answered.
 */
function stopUpload(req: ClientRequest, body: Readable, res: IncomingMessage): void {
  body.unpipe(req);
  body.destroy();
  res.once('end', () => req.destroy());
}

async function readAll(res: IncomingMessage): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of res) parts.push(c as Buffer);
  return Buffer.concat(parts).toString('utf8');
}
