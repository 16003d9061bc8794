/**
 * The REST client: the only way the dashboard gets data. The token lives in sessionStorage
 * (gone when the tab closes) and goes out in the Authorization header only, never in a URL.
 */
export type Role = 'auditor' | 'operator' | 'admin';
export interface Me {
  id: string;
  name: string;
  role: Role;
}

const KEY = 'vtl.token';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export const session = {
  token: (): string | null => sessionStorage.getItem(KEY),
  set: (t: string) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

/** Called when the server refuses the token (revoked, or the data directory changed). */
let onUnauthorized: () => void = () => undefined;
export function whenUnauthorized(fn: () => void): void {
  onUnauthorized = fn;
}

export async function api<T>(method: string, path: string, body?: unknown, token: string | null = session.token()): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  if (!res.ok) {
    const e = (parsed ?? {}) as { error?: string; message?: string };
    if (res.status === 401 && token === session.token()) onUnauthorized();
    throw new ApiError(res.status, e.error ?? `HTTP_${res.status}`, e.message ?? `${method} ${path}: HTTP ${res.status}`);
  }
  return parsed as T;
}

export const get = <T>(path: string) => api<T>('GET', path);
export const post = <T>(path: string, body: unknown = {}) => api<T>('POST', path, body);

export function whoami(token: string): Promise<Me> {
  return api<Me>('GET', '/api/v1/auth/whoami', undefined, token);
}

export const canOperate = (me: Me) => me.role === 'operator' || me.role === 'admin';

let paths: Promise<Record<string, Record<string, unknown>>> | undefined;
/**
 * Whether this server has a route (OpenAPI path form, `{barcode}`), read from its OpenAPI
 * document: pages for features that land later (jobs, audit, replication) light up by
 * themselves, and nothing is faked.
 */
export async function hasRoute(path: string, method: 'get' | 'post' = 'get'): Promise<boolean> {
  paths ??= api<{ paths?: Record<string, Record<string, unknown>> }>('GET', '/api/v1/openapi.json', undefined, null)
    .then((d) => d.paths ?? {})
    .catch(() => {
      paths = undefined;
      return {};
    });
  return method in ((await paths)[path] ?? {});
}

export const enc = encodeURIComponent;
