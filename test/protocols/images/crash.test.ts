/**
 * A crash in the middle of an import (SIGKILL after several sync points) leaves a half-imported
 * tape on disk; the journal's recovery at the next start cuts it back to exactly the tape as it
 * was before the import.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, test } from 'vitest';
import { CODECS, importCartridgeImage } from '../../../src/protocols/images/index.js';
import { initDataStore } from '../../../src/stream/store.js';
import { randomBytes } from '../../helpers/data.js';
import { encode, openStore, source } from './util.js';

const CHILD = fileURLToPath(new URL('./crash-child.ts', import.meta.url));

test('SIGKILL during an import: the journal undoes it at the next start', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vtl-images-crash-'));
  try {
    await initDataStore(dir);
    let env = await openStore(dir);
    const code = await env.cartridge();
    const first = encode(CODECS.aws, [{ kind: 'record', data: randomBytes(70_000, 1) }, { kind: 'tapemark' }, { kind: 'record', data: randomBytes(10, 2) }]);
    await importCartridgeImage(env, code, 'aws', source(first));
    const before = await env.snapshot(code);
    await env.close();

    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dir, code], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((res) => child.on('exit', (c, sig) => res(sig ? -1 : c)));
    await new Promise<void>((res, rej) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (/MARKS ([4-9]|\d\d)/.test(out)) res();
      });
      void exited.then((c) => rej(new Error(`child exited (${c}) before it was killed: ${err}`)));
    });
    child.kill('SIGKILL');
    expect(await exited).toBe(-1);

    env = await openStore(dir);
    const pending = await env.journal.pending();
    expect(pending).toMatchObject([{ medium: code, startLba: 3, format: 'aws' }]);
    // On disk: the old tape, the filemark that ends its last file, and at least 4 imported files.
    const half = await env.libraries.tapes.info(code);
    expect(half.filemarks).toBeGreaterThanOrEqual(1 + 1 + 4);
    const done = await env.journal.recover(env.libraries.tapes);
    expect(done).toEqual([{ medium: code, startLba: 3, removed: half.objects - 3 }]);
    expect(await env.snapshot(code)).toEqual(before);
    expect(await env.journal.pending()).toEqual([]);
    await env.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('an import that cannot be undone yet (write protect set meanwhile) stays in the journal', async () => {
  const env = await openStore();
  try {
    const code = await env.cartridge();
    const image = encode(CODECS.aws, [{ kind: 'record', data: randomBytes(100, 1) }, { kind: 'tapemark' }, { kind: 'record', data: randomBytes(100, 2) }, { kind: 'tapemark' }]);
    await importCartridgeImage(env, code, 'aws', source(image));
    // As if a crash had interrupted an import that started after the first file.
    await env.journal.begin({ medium: code, startLba: 2, format: 'aws', startedAt: new Date().toISOString() });
    await env.libraries.updateCartridge(code, { writeProtected: true });
    const [failed] = await env.journal.recover(env.libraries.tapes);
    expect(failed).toMatchObject({ medium: code, removed: 0, error: expect.stringMatching(/write protected/) });
    expect(await env.journal.pending()).toHaveLength(1);
    await env.libraries.updateCartridge(code, { writeProtected: false });
    expect(await env.journal.recover(env.libraries.tapes)).toEqual([{ medium: code, startLba: 2, removed: 2 }]);
    expect(await env.libraries.tapes.info(code)).toMatchObject({ objects: 2, filemarks: 1 });
    expect(await env.journal.pending()).toEqual([]);
  } finally {
    await env.close();
  }
});
