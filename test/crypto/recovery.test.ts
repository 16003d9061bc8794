/**
 * Recovery keys: export/import under a passphrase, tamper and wrong-passphrase detection, the
 * replica cipher's bindings, and a replication key that survives master key rotation.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Keyring } from '../../src/crypto/keyring.js';
import { exportRecoveryKey, importRecoveryKey, ReplicaCipher, RecoveryKeyError, ReplicaIntegrityError, type RecoveryMaterial } from '../../src/crypto/recovery.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const material = (): RecoveryMaterial => ({ storeId: 'abcdef0123456789', replicationKey: randomBytes(32), fingerprintSecret: randomBytes(192), gearSeed: randomBytes(32) });

describe('recovery key file', () => {
  it('round-trips under the passphrase and never contains the keys in the clear', () => {
    const m = material();
    const text = exportRecoveryKey(m, 'a long passphrase');
    for (const k of [m.replicationKey, m.fingerprintSecret, m.gearSeed]) {
      expect(text).not.toContain(k.toString('base64'));
      expect(text).not.toContain(k.toString('hex'));
    }
    const back = importRecoveryKey(text, 'a long passphrase');
    expect(back.storeId).toBe(m.storeId);
    expect(back.replicationKey.equals(m.replicationKey)).toBe(true);
    expect(back.fingerprintSecret.equals(m.fingerprintSecret)).toBe(true);
    expect(back.gearSeed.equals(m.gearSeed)).toBe(true);
  });

  it('refuses a wrong passphrase, an edited file, a short passphrase and garbage', () => {
    const text = exportRecoveryKey(material(), 'a long passphrase');
    expect(() => importRecoveryKey(text, 'another passphrase')).toThrow(RecoveryKeyError);
    const f = JSON.parse(text);
    expect(() => importRecoveryKey(JSON.stringify({ ...f, storeId: 'ffffffffffffffff' }), 'a long passphrase')).toThrow(RecoveryKeyError);
    const sealed = Buffer.from(f.sealed, 'base64');
    sealed[3] ^= 1;
    expect(() => importRecoveryKey(JSON.stringify({ ...f, sealed: sealed.toString('base64') }), 'a long passphrase')).toThrow(RecoveryKeyError);
    expect(() => importRecoveryKey(JSON.stringify({ ...f, kdf: { ...f.kdf, N: 2 } }), 'a long passphrase')).toThrow(/unsafe/);
    expect(() => exportRecoveryKey(material(), 'short')).toThrow(RecoveryKeyError);
    expect(() => importRecoveryKey('not json', 'a long passphrase')).toThrow(RecoveryKeyError);
  });
});

describe('replica cipher', () => {
  it('binds objects to their names and data keys to their containers', () => {
    const c = new ReplicaCipher(randomBytes(32));
    const body = c.seal('catalogs/VT0001L7/000000000001', Buffer.from('hello'));
    expect(c.open('catalogs/VT0001L7/000000000001', body).toString()).toBe('hello');
    expect(() => c.open('catalogs/VT0002L7/000000000001', body)).toThrow(ReplicaIntegrityError);
    const edited = Buffer.from(body);
    edited[25] ^= 1;
    expect(() => c.open('catalogs/VT0001L7/000000000001', edited)).toThrow(ReplicaIntegrityError);
    const key = randomBytes(32);
    const wrapped = c.wrapDataKey(7, key);
    expect(c.unwrapDataKey(7, wrapped).equals(key)).toBe(true);
    expect(() => c.unwrapDataKey(8, wrapped)).toThrow(ReplicaIntegrityError);
    expect(() => new ReplicaCipher(randomBytes(32)).unwrapDataKey(7, wrapped)).toThrow(ReplicaIntegrityError);
    expect(JSON.stringify(c)).not.toContain(key.toString('hex'));
  });
});

describe('replication key in the keyring', () => {
  it('is created once, kept across reopen and master key rotation', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vtl-repkey-'));
    dirs.push(dir);
    const ring = await Keyring.create(join(dir, 'keys'));
    const k1 = await ring.replicationKey();
    expect((await ring.replicationKey()).equals(k1)).toBe(true);
    const table = { get: async () => undefined, putMany: async () => undefined, entries: async function* () {} };
    await ring.rotateMasterKey(table);
    const reopened = await Keyring.open(join(dir, 'keys'));
    expect((await reopened.replicationKey()).equals(k1)).toBe(true);
    // The old master key is gone: the file really was re-wrapped by the new one.
    expect((await readdir(join(dir, 'keys'))).filter((n) => n.startsWith('master-'))).toHaveLength(1);
  });
});
