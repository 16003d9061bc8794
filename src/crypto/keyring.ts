/**
 * Keyring: the store's master key, its per-container data keys and its secrets.
 *
 * Guarantees:
 * - `keys/` holds `master-<id>.key` (32 random bytes, mode 0600, fsynced; the id is derived
 *   one-way from the key, so a damaged key file is detected by its name) and `keyring.bin`
 *   (the fingerprint secret and gear seed, wrapped with AES-256-GCM by the master key).
 * - A data key is 32 random bytes wrapped by the master key with the container id and the
 *   wrapping master key id bound in as associated data: a wrapped key copied to another
 *   container, or changed in any bit, fails to unwrap with a KeyringError.
 * - The fingerprint secret is validated (>= 136 bytes) on load, because
 *   `xxh3.xxh128WithSecret` aborts the process on a shorter one; the gear seed is 32 bytes.
 * - Rotation writes a new master key, re-wraps every data key in the table and the keyring
 *   file, and only then deletes the old master key files. Every wrapped blob names the master
 *   key that wrapped it and every master key file present is loaded, so a crash at any point
 *   leaves every key unwrappable; `finishRotation` (or the next rotation) completes the job.
 * - Keys never appear in JSON.stringify, util.inspect or error messages of a Keyring.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { inspect } from 'node:util';
import { fsyncDir, writeFileDurable } from './fsutil.js';
import { MASTER_KEY_BYTES, WRAP_OVERHEAD, masterKeyIdOf, unwrap, wrap, wrappedKeyId } from './wrap.js';

/** Persistent map container id -> wrapped data key. The store backs it with a LevelDB sublevel. */
export interface DataKeyTable {
  get(containerId: number): Promise<Buffer | undefined>;
  /** Must resolve only once the entries are durable (LevelDB: `batch(ops, { sync: true })`). */
  putMany(entries: Array<[containerId: number, wrapped: Buffer]>): Promise<void>;
  entries(): AsyncIterable<[number, Buffer]>;
}

export class KeyringError extends Error {
  override readonly name = 'KeyringError';
  constructor(
    message: string,
    readonly keysDir: string,
  ) {
    super(message);
  }
}

/** xxh3.xxh128WithSecret aborts the whole process below this length. */
export const MIN_FINGERPRINT_SECRET_BYTES = 136;
export const FINGERPRINT_SECRET_BYTES = 192;
export const GEAR_SEED_BYTES = 32;
export const DATA_KEY_BYTES = 32;

const KEYRING_FILE = 'keyring.bin';
const KEYRING_MAGIC = Buffer.from('VTLKEYR1', 'latin1');
/** The replication key file: created on first use, wrapped by the master key like keyring.bin. */
const REPLICATION_FILE = 'replication.bin';
const REPLICATION_MAGIC = Buffer.from('VTLREPK1', 'latin1');
export const REPLICATION_KEY_BYTES = 32;
const MAX_SECRET_BYTES = 4096;
const MASTER_RE = /^master-([0-9a-f]{16})\.key$/;
const REWRAP_BATCH = 1024;

/** Throws a clear error unless `secret` is usable with xxh3.xxh128WithSecret. */
export function checkFingerprintSecret(secret: Buffer, where: string): void {
  if (secret.length < MIN_FINGERPRINT_SECRET_BYTES) {
    throw new KeyringError(
      `fingerprint secret in ${where} is ${secret.length} bytes; at least ` +
        `${MIN_FINGERPRINT_SECRET_BYTES} are required (the keyring is damaged or from an incompatible version)`,
      where,
    );
  }
}

function dataKeyContext(containerId: number): Buffer {
  if (!Number.isSafeInteger(containerId) || containerId < 0) {
    throw new RangeError(`container id must be a non-negative integer, got ${containerId}`);
  }
  const ctx = Buffer.alloc(16 + 8);
  ctx.write('vtl/datakey/v1\0\0', 0, 'latin1');
  ctx.writeBigUInt64LE(BigInt(containerId), 16);
  return ctx;
}

const masterFile = (id: string) => `master-${id}.key`;

export class Keyring {
  readonly #dir: string;
  readonly #masters: Map<string, Buffer>;
  #current: string;
  readonly #secret: Buffer;
  readonly #seed: Buffer;
  #replication: Buffer | undefined;
  #rotation: Promise<unknown> = Promise.resolve();

  private constructor(dir: string, masters: Map<string, Buffer>, current: string, secret: Buffer, seed: Buffer) {
    this.#dir = dir;
    this.#masters = masters;
    this.#current = current;
    this.#secret = secret;
    this.#seed = seed;
  }

  /** Creates a new keyring in `keysDir` (mode 0700). Refuses if one exists there. */
  static async create(keysDir: string): Promise<Keyring> {
    await mkdir(keysDir, { recursive: true, mode: 0o700 });
    const names = await readdir(keysDir);
    if (names.includes(KEYRING_FILE)) {
      throw new KeyringError(
        `a keyring already exists in ${keysDir}; refusing to overwrite it (its keys protect existing data)`,
        keysDir,
      );
    }
    if (names.some((n) => MASTER_RE.test(n))) {
      // Either an interrupted create or a lost keyring.bin: the master key may still be needed.
      throw new KeyringError(
        `${keysDir} holds a master key but no ${KEYRING_FILE}; refusing to replace it. If an earlier ` +
          'init was interrupted and no data was written, remove the directory and run init again',
        keysDir,
      );
    }
    await chmod(keysDir, 0o700); // mkdir's mode does not apply to an existing directory
    await fsyncDir(dirname(keysDir));
    const master = randomBytes(MASTER_KEY_BYTES);
    const id = masterKeyIdOf(master);
    await writeFileDurable(join(keysDir, masterFile(id)), master, 0o600);
    const ring = new Keyring(
      keysDir,
      new Map([[id, master]]),
      id,
      randomBytes(FINGERPRINT_SECRET_BYTES),
      randomBytes(GEAR_SEED_BYTES),
    );
    await ring.#writeKeyringFile();
    return ring;
  }

  /** Opens the keyring in `keysDir`; a missing, damaged or inconsistent keyring is a KeyringError. */
  static async open(keysDir: string): Promise<Keyring> {
    let names: string[];
    try {
      names = await readdir(keysDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new KeyringError(`no keyring in ${keysDir} (run \`vtl init\` to create one)`, keysDir);
      }
      throw err;
    }
    if (!names.includes(KEYRING_FILE)) {
      throw new KeyringError(`no keyring file ${KEYRING_FILE} in ${keysDir} (run \`vtl init\` to create one)`, keysDir);
    }
    const masters = await loadMasterKeys(keysDir, names);
    const file = await readFile(join(keysDir, KEYRING_FILE));
    const where = join(keysDir, KEYRING_FILE);
    if (!file.subarray(0, 8).equals(KEYRING_MAGIC)) {
      throw new KeyringError(`${where} is not a vtl keyring file (bad magic)`, keysDir);
    }
    const blob = file.subarray(8);
    const id = wrappedKeyId(blob);
    if (id === undefined) throw new KeyringError(`${where} is damaged (bad header)`, keysDir);
    const master = masters.get(id);
    if (!master) {
      throw new KeyringError(`${where} is wrapped by master key ${id}, but ${masterFile(id)} is missing`, keysDir);
    }
    const plain = unwrap(master, KEYRING_MAGIC, blob);
    if (!plain) {
      throw new KeyringError(`${where} is damaged or was modified (authentication failed); restore keys/ from a backup`, keysDir);
    }
    const { secret, seed } = parseSecrets(plain, where, keysDir);
    return new Keyring(keysDir, masters, id, secret, seed);
  }

  get keysDir(): string {
    return this.#dir;
  }
  /** Secret for xxh3.xxh128WithSecret (>= 136 bytes, validated on load). */
  get fingerprintSecret(): Buffer {
    return this.#secret;
  }
  /** Seed of the chunker's gear table. */
  get gearSeed(): Buffer {
    return this.#seed;
  }
  /** Id of the master key that wraps new keys (derived one-way; safe to show). */
  get masterKeyId(): string {
    return this.#current;
  }
  /** Master keys still present besides the current one: a rotation is not finished. */
  get retiredMasterKeyIds(): string[] {
    return [...this.#masters.keys()].filter((id) => id !== this.#current);
  }

  /**
   * The store's replication key: it protects everything the store ships to an object tier
   * (data keys of replicated containers, catalogs), so that a second region needs only this key
   * (exported with a passphrase), never the master key. Created on first use; stable across
   * master key rotations (which re-wrap it).
   */
  replicationKey(): Promise<Buffer> {
    return this.#serialised(async () => {
      if (this.#replication) return this.#replication;
      const where = join(this.#dir, REPLICATION_FILE);
      let file: Buffer | undefined;
      try {
        file = await readFile(where);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      if (file) {
        this.#replication = this.#unwrapFile(file, where, REPLICATION_MAGIC);
        if (this.#replication.length !== REPLICATION_KEY_BYTES) throw new KeyringError(`${where} is damaged (bad key length)`, this.#dir);
      } else {
        this.#replication = randomBytes(REPLICATION_KEY_BYTES);
        await this.#writeReplicationFile();
      }
      return this.#replication;
    });
  }

  newDataKey(containerId: number): { key: Buffer; wrapped: Buffer } {
    const ctx = dataKeyContext(containerId);
    const key = randomBytes(DATA_KEY_BYTES);
    return { key, wrapped: wrap(this.#masters.get(this.#current)!, this.#current, ctx, key) };
  }

  unwrapDataKey(containerId: number, wrapped: Buffer): Buffer {
    const ctx = dataKeyContext(containerId);
    const id = wrappedKeyId(wrapped);
    if (id === undefined || wrapped.length !== WRAP_OVERHEAD + DATA_KEY_BYTES) {
      throw new KeyringError(`wrapped data key of container ${containerId} is malformed`, this.#dir);
    }
    const master = this.#masters.get(id);
    if (!master) {
      throw new KeyringError(
        `data key of container ${containerId} is wrapped by master key ${id}, which is not in ${this.#dir}`,
        this.#dir,
      );
    }
    const key = unwrap(master, ctx, wrapped);
    if (!key) {
      throw new KeyringError(
        `data key of container ${containerId} fails to unwrap: it belongs to another container or is damaged`,
        this.#dir,
      );
    }
    return key;
  }

  /**
   * Replaces the master key: re-wraps every data key in `table` and the keyring file, then
   * deletes the old master key file(s). Chunk data is not touched. New data keys are wrapped by
   * the new master key from the moment its file is durable. Callers must not hold wrapped keys
   * made before this call that are not in `table` yet (serialise with container creation).
   */
  async rotateMasterKey(table: DataKeyTable): Promise<{ rewrapped: number }> {
    return this.#serialised(async () => {
      const master = randomBytes(MASTER_KEY_BYTES);
      const id = masterKeyIdOf(master);
      await writeFileDurable(join(this.#dir, masterFile(id)), master, 0o600);
      this.#masters.set(id, master);
      this.#current = id;
      return this.#rewrapAll(table);
    });
  }

  /** Completes an interrupted rotation: re-wraps under the current master key, drops the others. */
  async finishRotation(table: DataKeyTable): Promise<{ rewrapped: number }> {
    return this.#serialised(() => this.#rewrapAll(table));
  }

  toJSON(): object {
    return { keysDir: this.#dir, masterKeyId: this.#current };
  }

  [inspect.custom](): string {
    return `Keyring { keysDir: ${JSON.stringify(this.#dir)}, masterKeyId: '${this.#current}' }`;
  }

  #serialised<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#rotation.then(fn, fn);
    this.#rotation = run.catch(() => {});
    return run;
  }

  async #rewrapAll(table: DataKeyTable): Promise<{ rewrapped: number }> {
    let rewrapped = 0;
    // Repeat until a pass finds nothing left, so keys stored during a pass are caught too.
    for (;;) {
      const n = await this.#rewrapPass(table);
      rewrapped += n;
      if (n === 0) break;
    }
    await this.#writeKeyringFile();
    await this.#rewrapReplicationFile();
    // Everything is re-wrapped and durable: only now may the old keys go.
    for (const id of this.retiredMasterKeyIds) {
      await unlink(join(this.#dir, masterFile(id))).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
      this.#masters.delete(id);
    }
    await fsyncDir(this.#dir);
    return { rewrapped };
  }

  async #rewrapPass(table: DataKeyTable): Promise<number> {
    const master = this.#masters.get(this.#current)!;
    let batch: Array<[number, Buffer]> = [];
    let n = 0;
    for await (const [containerId, wrapped] of table.entries()) {
      if (wrappedKeyId(wrapped) === this.#current) continue;
      const key = this.unwrapDataKey(containerId, wrapped);
      batch.push([containerId, wrap(master, this.#current, dataKeyContext(containerId), key)]);
      key.fill(0);
      if (batch.length >= REWRAP_BATCH) {
        await table.putMany(batch);
        n += batch.length;
        batch = [];
      }
    }
    if (batch.length > 0) await table.putMany(batch);
    return n + batch.length;
  }

  /** Unwraps a MAGIC + blob file with whichever master key it names. */
  #unwrapFile(file: Buffer, where: string, magic: Buffer): Buffer {
    if (!file.subarray(0, 8).equals(magic)) throw new KeyringError(`${where} is not a vtl key file (bad magic)`, this.#dir);
    const blob = file.subarray(8);
    const id = wrappedKeyId(blob);
    const master = id === undefined ? undefined : this.#masters.get(id);
    if (!master) throw new KeyringError(`${where} is damaged or wrapped by a master key that is missing`, this.#dir);
    const plain = unwrap(master, magic, blob);
    if (!plain) throw new KeyringError(`${where} is damaged or was modified (authentication failed); restore keys/ from a backup`, this.#dir);
    return plain;
  }

  async #writeReplicationFile(): Promise<void> {
    const blob = wrap(this.#masters.get(this.#current)!, this.#current, REPLICATION_MAGIC, this.#replication!);
    await writeFileDurable(join(this.#dir, REPLICATION_FILE), Buffer.concat([REPLICATION_MAGIC, blob]), 0o600);
  }

  /** Rotation: the replication key file (when there is one) moves to the current master key. */
  async #rewrapReplicationFile(): Promise<void> {
    const where = join(this.#dir, REPLICATION_FILE);
    let file: Buffer;
    try {
      file = await readFile(where);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    if (wrappedKeyId(file.subarray(8)) === this.#current) return;
    this.#replication ??= this.#unwrapFile(file, where, REPLICATION_MAGIC);
    await this.#writeReplicationFile();
  }

  async #writeKeyringFile(): Promise<void> {
    const plain = Buffer.alloc(8 + this.#secret.length + this.#seed.length);
    plain.writeUInt32LE(this.#secret.length, 0);
    this.#secret.copy(plain, 4);
    plain.writeUInt32LE(this.#seed.length, 4 + this.#secret.length);
    this.#seed.copy(plain, 8 + this.#secret.length);
    const blob = wrap(this.#masters.get(this.#current)!, this.#current, KEYRING_MAGIC, plain);
    plain.fill(0);
    await writeFileDurable(join(this.#dir, KEYRING_FILE), Buffer.concat([KEYRING_MAGIC, blob]), 0o600);
  }
}

async function loadMasterKeys(keysDir: string, names: string[]): Promise<Map<string, Buffer>> {
  const masters = new Map<string, Buffer>();
  for (const name of names) {
    const m = MASTER_RE.exec(name);
    if (!m) continue;
    const key = await readFile(join(keysDir, name));
    if (key.length !== MASTER_KEY_BYTES || masterKeyIdOf(key) !== m[1]) {
      throw new KeyringError(
        `master key file ${join(keysDir, name)} is damaged (${key.length} bytes, id does not match its name); ` +
          'restore keys/ from a backup',
        keysDir,
      );
    }
    masters.set(m[1], key);
  }
  return masters;
}

/** Plaintext of keyring.bin: u32 LE n, secret[n], u32 LE m, seed[m]. */
function parseSecrets(plain: Buffer, where: string, keysDir: string): { secret: Buffer; seed: Buffer } {
  const bad = (why: string) => new KeyringError(`${where} is damaged: ${why}`, keysDir);
  if (plain.length < 8) throw bad('too short');
  const n = plain.readUInt32LE(0);
  if (n > MAX_SECRET_BYTES || 8 + n > plain.length) throw bad('bad fingerprint secret length');
  const secret = Buffer.from(plain.subarray(4, 4 + n));
  const m = plain.readUInt32LE(4 + n);
  if (m !== GEAR_SEED_BYTES || 8 + n + m !== plain.length) throw bad('bad gear seed length');
  const seed = Buffer.from(plain.subarray(8 + n));
  plain.fill(0);
  checkFingerprintSecret(secret, where);
  return { secret, seed };
}
