/**
 * Bearer tokens with roles. A token is `vtl_` + 32 random bytes (base64url); only its SHA-256
 * is stored (LevelDB sublevel `api` / `tokens`: hash -> record), so a copy of the data
 * directory's index does not hand out access. Roles are ordered: auditor (read-only) <
 * operator (tape and library operations) < admin (everything, including tokens).
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DataDb } from '../stream/store.js';
import { ApiError } from './errors.js';

export const ROLES = ['auditor', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];
/** What a route needs: a role, or nothing at all (health, OpenAPI, metrics). */
export type Access = Role | 'public';

export interface TokenRecord {
  id: string;
  name: string;
  role: Role;
  createdAt: string;
}

export const ADMIN_TOKEN_FILE = 'admin.token';
const NAME = /^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$/;

const hashOf = (token: string) => createHash('sha256').update(token, 'utf8').digest('hex');

export function roleAllows(have: Role, need: Role): boolean {
  return ROLES.indexOf(have) >= ROLES.indexOf(need);
}

export class TokenStore {
  private readonly tokens;
  /** hash -> record; the whole set is small and read on every request. */
  private cache: Map<string, TokenRecord> | undefined;

  constructor(db: DataDb) {
    this.tokens = db.sublevel<string, unknown>('api', { valueEncoding: 'json' }).sublevel<string, TokenRecord>('tokens', { valueEncoding: 'json' });
  }

  /** Creates a token; the secret is returned once and never stored. */
  async create(name: string, role: Role): Promise<{ token: string; record: TokenRecord }> {
    if (typeof name !== 'string' || !NAME.test(name)) throw new ApiError(400, 'INVALID', `invalid token name ${JSON.stringify(name)}: 1 to 64 of letters, digits, space . _ @ -`);
    if (!ROLES.includes(role)) throw new ApiError(400, 'INVALID', `invalid role ${JSON.stringify(role)}: one of ${ROLES.join(', ')}`);
    const token = `vtl_${randomBytes(32).toString('base64url')}`;
    const record: TokenRecord = { id: randomBytes(6).toString('hex'), name, role, createdAt: new Date().toISOString() };
    const hash = hashOf(token);
    await this.tokens.put(hash, record);
    (await this.all()).set(hash, record);
    return { token, record };
  }

  /** The token's record, or undefined when it is unknown or revoked. */
  async verify(token: string): Promise<TokenRecord | undefined> {
    if (typeof token !== 'string' || !token.startsWith('vtl_')) return undefined;
    // Looked up by hash: the time taken says nothing about the stored tokens.
    return (await this.all()).get(hashOf(token));
  }

  async list(): Promise<TokenRecord[]> {
    return [...(await this.all()).values()].sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  async revoke(id: string): Promise<TokenRecord> {
    const all = await this.all();
    for (const [hash, rec] of all) {
      if (rec.id !== id) continue;
      await this.tokens.del(hash);
      all.delete(hash);
      return rec;
    }
    throw new ApiError(404, 'NOT_FOUND', `no token with id ${JSON.stringify(id)}`);
  }

  private async all(): Promise<Map<string, TokenRecord>> {
    if (!this.cache) {
      const m = new Map<string, TokenRecord>();
      for await (const [k, v] of this.tokens.iterator()) m.set(k, v);
      this.cache = m;
    }
    return this.cache;
  }
}

/**
 * What became of the admin token file at start: kept (valid); made (a new data directory, the
 * file deleted, or no admin token left at all); or left revoked (`revoked`: its token was
 * revoked while other admin tokens exist).
 */
export interface AdminTokenFile {
  path: string;
  created: boolean;
  /** Why a token was made: null on a new data directory (the first token), else the reason to log and audit. */
  reason: string | null;
  revoked: boolean;
}

/**
 * Makes sure the data directory has a working admin token file (mode 0600), without undoing a
 * revocation: a valid one is kept; a file whose token was revoked stays revoked while another
 * admin token exists (an admin revoked it; remaking it at every start would hand it back).
 * A new one is made on a new data directory, when the file is gone (deleting it is how someone
 * with access to the data directory asks for a new one), and when no admin token is left.
 */
export async function ensureAdminToken(dataDir: string, tokens: TokenStore): Promise<AdminTokenFile> {
  const path = join(dataDir, ADMIN_TOKEN_FILE);
  const existing = await readFile(path, 'utf8').then(
    (t) => t.trim(),
    () => undefined,
  );
  if (existing && (await tokens.verify(existing))?.role === 'admin') return { path, created: false, reason: null, revoked: false };
  const all = await tokens.list();
  const admins = all.filter((t) => t.role === 'admin').length;
  if (existing !== undefined && admins > 0) return { path, created: false, reason: null, revoked: true };
  const reason = all.length === 0 ? null : existing === undefined ? `${ADMIN_TOKEN_FILE} was missing` : 'no admin token was left';
  const { token } = await tokens.create('admin', 'admin');
  await writeFile(path, token + '\n', { mode: 0o600 });
  await chmod(path, 0o600); // an existing file keeps its old mode on write
  return { path, created: true, reason, revoked: false };
}
