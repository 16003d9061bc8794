import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { randomBytes } from 'node:crypto';
import { xxh3 } from '@node-rs/xxhash';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Keyring, KeyringError, type DataKeyTable } from '../../src/crypto/keyring.js';
import { masterKeyIdOf, wrap, wrappedKeyId } from '../../src/crypto/wrap.js';
import { openChunk, sealChunk } from '../../src/dedup/container.js';

/** In-memory DataKeyTable; `failAfter` simulates a crash after that many putMany calls. */
class MemoryTable implements DataKeyTable {
  readonly map = new Map<number, Buffer>();
  putCalls = 0;
  constructor(public failAfter = Infinity) {}
  async get(id: number) {
    return this.map.get(id);
  }
  async putMany(entries: Array<[number, Buffer]>) {
    if (this.putCalls >= this.failAfter) throw new Error('simulated crash');
    this.putCalls++;
    for (const [id, w] of entries) this.map.set(id, w);
  }
  async *entries(): AsyncIterable<[number, Buffer]> {
    for (const e of [...this.map]) yield e;
  }
}

let dir: string;
let keys: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vtl-keyring-'));
  keys = join(dir, 'keys');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function masterFiles(): Promise<string[]> {
  return (await readdir(keys)).filter((n) => n.startsWith('master-')).sort();
}

function fill(ring: Keyring, table: MemoryTable, n: number): Map<number, Buffer> {
  const plain = new Map<number, Buffer>();
  for (let id = 1; id <= n; id++) {
    const { key, wrapped } = ring.newDataKey(id);
    plain.set(id, key);
    table.map.set(id, wrapped);
  }
  return plain;
}

describe('Keyring create/open', () => {
  it('round-trips secrets and data keys through the files', async () => {
    const ring = await Keyring.create(keys);
    expect(ring.fingerprintSecret.length).toBe(192);
    expect(ring.gearSeed.length).toBe(32);
    expect(ring.masterKeyId).toMatch(/^[0-9a-f]{16}$/);
    const { key, wrapped } = ring.newDataKey(42);
    expect(key.length).toBe(32);

    const again = await Keyring.open(keys);
    expect(again.fingerprintSecret.equals(ring.fingerprintSecret)).toBe(true);
    expect(again.gearSeed.equals(ring.gearSeed)).toBe(true);
    expect(again.masterKeyId).toBe(ring.masterKeyId);
    expect(again.unwrapDataKey(42, wrapped).equals(key)).toBe(true);
    // The secret is usable by xxh3 (a short one would abort the process).
    expect(xxh3.xxh128WithSecret(Buffer.from('chunk'), again.fingerprintSecret)).toBeTypeOf('bigint');
  });

  it('writes key files with mode 0600 in a 0700 directory', async () => {
    const ring = await Keyring.create(keys);
    expect((await stat(keys)).mode & 0o777).toBe(0o700);
    const names = await readdir(keys);
    expect(names.sort()).toEqual(['keyring.bin', `master-${ring.masterKeyId}.key`]);
    for (const n of names) expect((await stat(join(keys, n))).mode & 0o777).toBe(0o600);
    const master = await readFile(join(keys, `master-${ring.masterKeyId}.key`));
    expect(master.length).toBe(32);
    expect(masterKeyIdOf(master)).toBe(ring.masterKeyId);
  });

  it('refuses to create over an existing keyring and reports a missing one clearly', async () => {
    await Keyring.create(keys);
    await expect(Keyring.create(keys)).rejects.toThrow(/already exists/);
    await rm(join(keys, 'keyring.bin')); // a lost keyring file: the master key may still matter
    await expect(Keyring.create(keys)).rejects.toThrow(/holds a master key but no keyring.bin/);
    await expect(Keyring.open(keys)).rejects.toThrow(/no keyring file/);
    await expect(Keyring.open(join(dir, 'nope'))).rejects.toThrow(KeyringError);
    await expect(Keyring.open(join(dir, 'nope'))).rejects.toThrow(/no keyring.*vtl init/);
  });

  it('never shows keys through JSON.stringify, util.inspect or errors', async () => {
    const ring = await Keyring.create(keys);
    const master = await readFile(join(keys, `master-${ring.masterKeyId}.key`));
    const { key, wrapped } = ring.newDataKey(7);
    const secrets = [master, ring.fingerprintSecret, ring.gearSeed, key];
    let err: unknown;
    try {
      ring.unwrapDataKey(8, wrapped);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KeyringError);
    const outputs = [
      JSON.stringify(ring),
      JSON.stringify({ ring }),
      inspect(ring, { showHidden: true, depth: 10 }),
      inspect(ring, { showHidden: true, depth: 10, customInspect: false }),
      inspect({ nested: [ring] }),
      String(ring),
      Object.keys(ring).join(','),
      inspect(err, { showHidden: true, depth: 10 }),
      (err as Error).message,
    ];
    // Probes for a key in hex, base64, raw and util.inspect's '<Buffer 1f 2e ...>' form.
    const probes = (s: Buffer) => [
      s.toString('hex').slice(0, 24),
      s.toString('base64').slice(0, 24),
      s.toString('latin1').slice(0, 12),
      inspect(s).slice(8, 40),
    ];
    for (const s of secrets) {
      // Control: the probes do find a key that is shown.
      for (const p of probes(s)) expect(JSON.stringify({ s: s.toString('hex') }) + inspect({ s }) + s.toString('latin1') + s.toString('base64')).toContain(p);
      for (const out of outputs) for (const p of probes(s)) expect(out).not.toContain(p);
    }
    expect(JSON.stringify(ring)).toContain(ring.masterKeyId);
  });
});

describe('data keys', () => {
  it('unwrap only for their own container, and not after any change', async () => {
    const ring = await Keyring.create(keys);
    const { key, wrapped } = ring.newDataKey(1);
    expect(ring.unwrapDataKey(1, wrapped).equals(key)).toBe(true);
    expect(() => ring.unwrapDataKey(2, wrapped)).toThrow(/container 2 fails to unwrap/);
    for (let bit = 0; bit < wrapped.length * 8; bit++) {
      const bad = Buffer.from(wrapped);
      bad[bit >> 3] ^= 1 << (bit & 7);
      expect(() => ring.unwrapDataKey(1, bad)).toThrow(KeyringError);
    }
    expect(() => ring.unwrapDataKey(1, wrapped.subarray(0, 40))).toThrow(/malformed/);
    expect(() => ring.newDataKey(-1)).toThrow(RangeError);
  });

  it('names a missing master key when a key was wrapped by another keyring', async () => {
    const a = await Keyring.create(keys);
    const b = await Keyring.create(join(dir, 'other'));
    const { wrapped } = b.newDataKey(3);
    expect(() => a.unwrapDataKey(3, wrapped)).toThrow(new RegExp(`master key ${b.masterKeyId}, which is not in`));
  });
});

describe('master key rotation', () => {
  it('re-wraps every data key; old chunk data stays readable through the new keyring', async () => {
    const ring = await Keyring.create(keys);
    const table = new MemoryTable();
    const plain = fill(ring, table, 2500);
    const oldId = ring.masterKeyId;
    // A chunk sealed with container 17's data key before the rotation.
    const fp = randomBytes(16);
    const chunk = Buffer.from('tape block '.repeat(500));
    const frame = await sealChunk(plain.get(17)!, 17, 0, fp, chunk);

    const { rewrapped } = await ring.rotateMasterKey(table);
    expect(rewrapped).toBe(2500);
    expect(ring.masterKeyId).not.toBe(oldId);
    expect(ring.retiredMasterKeyIds).toEqual([]);
    expect(await masterFiles()).toEqual([`master-${ring.masterKeyId}.key`]);
    expect((await stat(join(keys, `master-${ring.masterKeyId}.key`))).mode & 0o777).toBe(0o600);

    const reopened = await Keyring.open(keys);
    expect(reopened.masterKeyId).toBe(ring.masterKeyId);
    expect(reopened.fingerprintSecret.equals(ring.fingerprintSecret)).toBe(true);
    for (const [id, w] of table.map) {
      expect(wrappedKeyId(w)).toBe(ring.masterKeyId);
      expect(reopened.unwrapDataKey(id, w).equals(plain.get(id)!)).toBe(true);
    }
    const key17 = reopened.unwrapDataKey(17, table.map.get(17)!);
    expect(openChunk(key17, 17, fp, frame).equals(chunk)).toBe(true);
    // A second rotation with nothing left over re-wraps everything again.
    expect((await reopened.rotateMasterKey(table)).rewrapped).toBe(2500);
  });

  it('survives a crash in the middle of re-wrapping (both master keys present)', async () => {
    const ring = await Keyring.create(keys);
    const table = new MemoryTable(1); // the second putMany "crashes"
    const plain = fill(ring, table, 3000);
    const oldId = ring.masterKeyId;
    await expect(ring.rotateMasterKey(table)).rejects.toThrow(/simulated crash/);
    expect((await masterFiles()).length).toBe(2);
    const ids = new Set([...table.map.values()].map((w) => wrappedKeyId(w)));
    expect(ids.size).toBe(2); // partly re-wrapped

    const after = await Keyring.open(keys);
    expect(after.masterKeyId).toBe(oldId); // the keyring file was not re-wrapped yet
    expect(after.retiredMasterKeyIds.length).toBe(1);
    for (const [id, w] of table.map) expect(after.unwrapDataKey(id, w).equals(plain.get(id)!)).toBe(true);
    // A key made now is safe too, and finishing the rotation leaves one master key.
    const late = after.newDataKey(5000);
    table.map.set(5000, late.wrapped);
    plain.set(5000, late.key);
    table.failAfter = Infinity;
    await after.finishRotation(table);
    expect(await masterFiles()).toEqual([`master-${after.masterKeyId}.key`]);
    const final = await Keyring.open(keys);
    for (const [id, w] of table.map) expect(final.unwrapDataKey(id, w).equals(plain.get(id)!)).toBe(true);
  });

  it('survives a crash after re-wrapping but before the old master key is deleted', async () => {
    const ring = await Keyring.create(keys);
    const table = new MemoryTable();
    const plain = fill(ring, table, 10);
    const oldName = `master-${ring.masterKeyId}.key`;
    const oldKey = await readFile(join(keys, oldName));
    await ring.rotateMasterKey(table);
    await writeFile(join(keys, oldName), oldKey, { mode: 0o600 }); // as if unlink never happened
    const after = await Keyring.open(keys);
    expect(after.retiredMasterKeyIds).toEqual([masterKeyIdOf(oldKey)]);
    for (const [id, w] of table.map) expect(after.unwrapDataKey(id, w).equals(plain.get(id)!)).toBe(true);
    expect((await after.finishRotation(table)).rewrapped).toBe(0);
    expect(await masterFiles()).toEqual([`master-${after.masterKeyId}.key`]);
  });
});

describe('damaged keyrings', () => {
  async function rewriteSecrets(secretLen: number, seedLen = 32): Promise<void> {
    const [name] = await masterFiles();
    const master = await readFile(join(keys, name));
    const plain = Buffer.alloc(8 + secretLen + seedLen);
    plain.writeUInt32LE(secretLen, 0);
    plain.writeUInt32LE(seedLen, 4 + secretLen);
    const magic = Buffer.from('VTLKEYR1', 'latin1');
    const blob = wrap(master, masterKeyIdOf(master), magic, plain);
    await writeFile(join(keys, 'keyring.bin'), Buffer.concat([magic, blob]));
  }

  it('rejects a fingerprint secret shorter than 136 bytes with a clear error', async () => {
    await Keyring.create(keys);
    await rewriteSecrets(100);
    await expect(Keyring.open(keys)).rejects.toThrow(/fingerprint secret .* is 100 bytes; at least 136/);
    await rewriteSecrets(135);
    await expect(Keyring.open(keys)).rejects.toThrow(KeyringError);
    await rewriteSecrets(136);
    const ring = await Keyring.open(keys); // the minimum is accepted and works with xxh3
    expect(xxh3.xxh128WithSecret(Buffer.alloc(100), ring.fingerprintSecret)).toBeTypeOf('bigint');
    await rewriteSecrets(192, 31);
    await expect(Keyring.open(keys)).rejects.toThrow(/gear seed/);
  });

  it('rejects a modified keyring file or master key file', async () => {
    const ring = await Keyring.create(keys);
    const file = join(keys, 'keyring.bin');
    const good = await readFile(file);
    for (const at of [0, 9, 20, 30, 100, good.length - 1]) {
      const bad = Buffer.from(good);
      bad[at] ^= 0x10;
      await writeFile(file, bad);
      await expect(Keyring.open(keys)).rejects.toThrow(KeyringError);
    }
    await writeFile(file, good.subarray(0, 20));
    await expect(Keyring.open(keys)).rejects.toThrow(KeyringError);
    await writeFile(file, good);
    const masterPath = join(keys, `master-${ring.masterKeyId}.key`);
    const master = await readFile(masterPath);
    master[3] ^= 1;
    await writeFile(masterPath, master);
    await expect(Keyring.open(keys)).rejects.toThrow(/master key file .* is damaged/);
    await rm(masterPath);
    await expect(Keyring.open(keys)).rejects.toThrow(/is missing/);
  });
});
