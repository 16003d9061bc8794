/**
 * Disaster recovery keys: what a second region needs to read a store's replicas, and nothing
 * more.
 *
 * Guarantees:
 * - The recovery key is the store's replication key plus its fingerprint secret and gear seed
 *   and store id; never the master key, so a leaked recovery key exposes the replicas only.
 * - A recovery key file is JSON: scrypt (N 2^15, r 8, p 1, 16-byte salt) turns the passphrase
 *   into an AES-256-GCM key that seals the material; the header (format, key id, KDF
 *   parameters) is authenticated too. A wrong passphrase or any edited byte is a
 *   RecoveryKeyError, never wrong keys. Key material never appears in errors or JSON of the
 *   classes here.
 * - ReplicaCipher seals what replication ships: data keys wrapped for one container id each,
 *   and objects (catalogs, recipe packs) bound to their object name, so an object moved to
 *   another name, or edited, fails to open with ReplicaIntegrityError.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, scryptSync } from 'node:crypto';
import { inspect } from 'node:util';
import { WRAP_OVERHEAD, masterKeyIdOf, unwrap, wrap } from './wrap.js';
import { checkFingerprintSecret, DATA_KEY_BYTES, GEAR_SEED_BYTES, REPLICATION_KEY_BYTES } from './keyring.js';

export class RecoveryKeyError extends Error {
  override readonly name = 'RecoveryKeyError';
}

export class ReplicaIntegrityError extends Error {
  override readonly name = 'ReplicaIntegrityError';
}

export interface RecoveryMaterial {
  storeId: string;
  replicationKey: Buffer;
  fingerprintSecret: Buffer;
  gearSeed: Buffer;
}

const FORMAT = 'vtl-recovery-key';
const SCRYPT = { N: 1 << 15, r: 8, p: 1 };
const MIN_PASSPHRASE = 8;

/** Id of a replication key: one-way, safe to show; replicas on a tier name it. */
export function replicationKeyId(key: Buffer): string {
  return masterKeyIdOf(key);
}

function checkPassphrase(passphrase: string): void {
  if (typeof passphrase !== 'string' || [...passphrase].length < MIN_PASSPHRASE) {
    throw new RecoveryKeyError(`the recovery key passphrase must have at least ${MIN_PASSPHRASE} characters`);
  }
}

function passphraseKey(passphrase: string, salt: Buffer, kdf: typeof SCRYPT): Buffer {
  return scryptSync(passphrase.normalize('NFC'), salt, 32, { ...kdf, maxmem: 256 * kdf.N * kdf.r });
}

/** The recovery key file's text for `m`, sealed by `passphrase`. */
export function exportRecoveryKey(m: RecoveryMaterial, passphrase: string): string {
  checkPassphrase(passphrase);
  const salt = randomBytes(16);
  const nonce = randomBytes(12);
  const header = { format: FORMAT, version: 1, storeId: m.storeId, keyId: replicationKeyId(m.replicationKey), kdf: { name: 'scrypt', ...SCRYPT, salt: salt.toString('base64') } };
  const plain = Buffer.from(JSON.stringify({
    replicationKey: m.replicationKey.toString('base64'),
    fingerprintSecret: m.fingerprintSecret.toString('base64'),
    gearSeed: m.gearSeed.toString('base64'),
  }));
  const key = passphraseKey(passphrase, salt, SCRYPT);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(Buffer.from(JSON.stringify(header)));
  const body = Buffer.concat([cipher.update(plain), cipher.final()]);
  plain.fill(0);
  key.fill(0);
  return `${JSON.stringify({ ...header, nonce: nonce.toString('base64'), sealed: body.toString('base64'), tag: cipher.getAuthTag().toString('base64') }, null, 2)}\n`;
}

/** Opens a recovery key file; RecoveryKeyError for a wrong passphrase or a damaged file. */
export function importRecoveryKey(text: string, passphrase: string): RecoveryMaterial {
  checkPassphrase(passphrase);
  let f: Record<string, unknown>;
  try {
    f = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new RecoveryKeyError('the recovery key file is not JSON (is it the file `vtl dr export-key` wrote?)');
  }
  if (f?.format !== FORMAT || f.version !== 1) throw new RecoveryKeyError(`not a vtl recovery key file (format ${JSON.stringify(f?.format)}, version ${JSON.stringify(f?.version)})`);
  const kdf = f.kdf as { name?: string; N?: number; r?: number; p?: number; salt?: string } | undefined;
  if (kdf?.name !== 'scrypt' || !validScrypt(kdf)) throw new RecoveryKeyError('the recovery key file names an unsupported or unsafe key derivation');
  const header = { format: f.format, version: f.version, storeId: f.storeId, keyId: f.keyId, kdf: { name: kdf.name, N: kdf.N, r: kdf.r, p: kdf.p, salt: kdf.salt } };
  const b64 = (v: unknown) => (typeof v === 'string' ? Buffer.from(v, 'base64') : Buffer.alloc(0));
  const key = passphraseKey(passphrase, b64(kdf.salt), { N: kdf.N!, r: kdf.r!, p: kdf.p! });
  let plain: Buffer;
  try {
    const d = createDecipheriv('aes-256-gcm', key, b64(f.nonce));
    d.setAAD(Buffer.from(JSON.stringify(header)));
    d.setAuthTag(b64(f.tag));
    plain = Buffer.concat([d.update(b64(f.sealed)), d.final()]);
  } catch {
    throw new RecoveryKeyError('the recovery key does not open: wrong passphrase, or the file was changed');
  } finally {
    key.fill(0);
  }
  const inner = JSON.parse(plain.toString()) as Record<string, string>;
  plain.fill(0);
  const m: RecoveryMaterial = {
    storeId: String(f.storeId),
    replicationKey: b64(inner.replicationKey),
    fingerprintSecret: b64(inner.fingerprintSecret),
    gearSeed: b64(inner.gearSeed),
  };
  if (m.replicationKey.length !== REPLICATION_KEY_BYTES || m.gearSeed.length !== GEAR_SEED_BYTES) throw new RecoveryKeyError('the recovery key file holds keys of the wrong length');
  checkFingerprintSecret(m.fingerprintSecret, 'the recovery key file');
  if (replicationKeyId(m.replicationKey) !== f.keyId) throw new RecoveryKeyError('the recovery key file is inconsistent (key id)');
  return m;
}

function validScrypt(k: { N?: number; r?: number; p?: number; salt?: string }): boolean {
  const pow2 = (n: number) => Number.isInteger(n) && n >= 1 << 14 && n <= 1 << 20 && (n & (n - 1)) === 0;
  return pow2(k.N ?? 0) && Number.isInteger(k.r) && k.r! >= 8 && k.r! <= 32 && Number.isInteger(k.p) && k.p! >= 1 && k.p! <= 16 && typeof k.salt === 'string';
}

const OBJECT_MAGIC = Buffer.from('VTLROBJ1', 'latin1');

/** Seals and opens what replication ships, under one replication key. */
export class ReplicaCipher {
  readonly keyId: string;
  readonly #wrapKey: Buffer;
  readonly #objectKey: Buffer;
  readonly #digestKey: Buffer;

  constructor(replicationKey: Buffer) {
    if (replicationKey.length !== REPLICATION_KEY_BYTES) throw new RangeError('a replication key has 32 bytes');
    this.keyId = replicationKeyId(replicationKey);
    this.#wrapKey = Buffer.from(replicationKey);
    const sub = (info: string) => Buffer.from(hkdfSync('sha256', replicationKey, Buffer.alloc(0), info, 32));
    this.#objectKey = sub('vtl/replica-object/v1');
    this.#digestKey = sub('vtl/replica-digest/v1');
  }

  wrapDataKey(containerId: number, key: Buffer): Buffer {
    return wrap(this.#wrapKey, this.keyId, dataKeyContext(containerId), key);
  }

  unwrapDataKey(containerId: number, wrapped: Buffer): Buffer {
    const key = wrapped.length === DATA_KEY_BYTES + WRAP_OVERHEAD ? unwrap(this.#wrapKey, dataKeyContext(containerId), wrapped) : undefined;
    if (!key) throw new ReplicaIntegrityError(`the replicated data key of container ${containerId} does not open: it is damaged, belongs to another container, or the recovery key is another store's`);
    return key;
  }

  /** Seals an object's body, bound to its name. */
  seal(name: string, plain: Buffer): Buffer {
    const nonce = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.#objectKey, nonce);
    c.setAAD(Buffer.concat([OBJECT_MAGIC, Buffer.from(name)]));
    const body = Buffer.concat([c.update(plain), c.final()]);
    return Buffer.concat([OBJECT_MAGIC, nonce, body, c.getAuthTag()]);
  }

  open(name: string, blob: Buffer): Buffer {
    if (blob.length < 8 + 12 + 16 || !blob.subarray(0, 8).equals(OBJECT_MAGIC)) throw new ReplicaIntegrityError(`replica object ${name} is not a sealed vtl object`);
    const d = createDecipheriv('aes-256-gcm', this.#objectKey, blob.subarray(8, 20));
    d.setAAD(Buffer.concat([OBJECT_MAGIC, Buffer.from(name)]));
    d.setAuthTag(blob.subarray(blob.length - 16));
    try {
      return Buffer.concat([d.update(blob.subarray(20, blob.length - 16)), d.final()]);
    } catch {
      throw new ReplicaIntegrityError(`replica object ${name} fails authentication: it is damaged, was moved, or belongs to another store`);
    }
  }

  /** A keyed digest (hex): equal for equal bytes, unguessable without the key. */
  digest(data: Buffer): string {
    return createHmac('sha256', this.#digestKey).update(data).digest().subarray(0, 16).toString('hex');
  }

  toJSON(): object {
    return { keyId: this.keyId };
  }

  [inspect.custom](): string {
    return `ReplicaCipher { keyId: '${this.keyId}' }`;
  }
}

function dataKeyContext(containerId: number): Buffer {
  if (!Number.isSafeInteger(containerId) || containerId < 0) throw new RangeError(`container id must be a non-negative integer, got ${containerId}`);
  const ctx = Buffer.alloc(24);
  ctx.write('vtl/replica/dk1', 0, 'latin1'); // 15 bytes + a zero
  ctx.writeBigUInt64LE(BigInt(containerId), 16);
  return ctx;
}
