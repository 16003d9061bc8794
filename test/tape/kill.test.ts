/**
 * Sync points survive SIGKILL: a child process appends records and filemarks and reports each
 * acknowledged sync point; the parent kills it at random moments, reopens the store and checks
 * that everything acknowledged is there bit for bit, that the tape ends exactly at a sync point
 * (nothing unsynced visible), and that every tape file's checksum verifies.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';
import { TapeStore } from '../../src/tape/index.js';
import { openMemoryDataStore } from '../helpers/memory-streams.js';
import { endsAtSync, isMark, objectData } from './kill-schedule.js';

const CHILD = fileURLToPath(new URL('./kill-child.ts', import.meta.url));
const ROUNDS = 5;
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

type Mode = 'memory' | 'real';

async function openStore(mode: Mode, dir: string) {
  if (mode === 'real') {
    const { openDataStore } = await import('../../src/stream/store.js');
    return openDataStore(dir);
  }
  return openMemoryDataStore(dir);
}

/** Runs the child until `ms` after it is ready, kills it; returns the last acknowledged EOD. */
function runAndKill(mode: Mode, dir: string, ms: number): Promise<{ start: number; acked: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dir, 'KILL01', mode], { stdio: ['ignore', 'pipe', 'pipe'] });
    let start = -1;
    let acked = -1;
    let buf = '';
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.stdout.on('data', (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const [word, n] = buf.slice(0, nl).split(' ');
        buf = buf.slice(nl + 1);
        if (word === 'READY') {
          start = Number(n);
          acked = start;
          setTimeout(() => child.kill('SIGKILL'), ms);
        } else if (word === 'ACK') acked = Number(n);
      }
    });
    child.on('exit', (code, signal) => {
      if (signal === 'SIGKILL' && start >= 0) resolve({ start, acked });
      else reject(new Error(`child ended with ${code ?? signal} before the kill: ${err}`));
    });
  });
}

/** Reads the whole tape and compares every object with the schedule. */
async function check(mode: Mode, dir: string, acked: number): Promise<number> {
  const ds = await openStore(mode, dir);
  try {
    const tapes = new TapeStore({ db: ds.db, streams: ds.streams });
    const m = await tapes.mount('KILL01');
    await m.space('eod');
    const eod = (await m.readPosition()).lba;
    expect(eod).toBeGreaterThanOrEqual(acked);
    expect(endsAtSync(eod), `tape ends at ${eod}, not at a sync point`).toBe(true);
    await m.rewind();
    for (let k = 0; k < eod; k++) {
      const r = await m.read(65536);
      if (isMark(k)) expect(r, `object ${k}`).toMatchObject({ ok: true, filemark: true });
      else expect(r.ok && r.data.equals(objectData(k)), `record ${k}`).toBe(true);
    }
    expect((await m.read(1)).sense?.key).toBe('BLANK CHECK');
    expect((await m.verify()).bad).toEqual([]);
    await m.unload();
    return eod;
  } finally {
    await ds.close();
  }
}

describe.each<Mode>(['memory', 'real'])('SIGKILL during writes (%s streams)', (mode) => {
  test(`${ROUNDS} kills at random moments lose nothing acknowledged`, async () => {
    const dir = await mkdtemp(join(tmpdir(), `vtl-kill-${mode}-`));
    dirs.push(dir);
    if (mode === 'real') {
      const { initDataStore } = await import('../../src/stream/store.js');
      await initDataStore(dir);
    }
    let eod = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const { start, acked } = await runAndKill(mode, dir, (mode === 'real' ? 600 : 150) + Math.floor(Math.random() * 1200));
      expect(start).toBe(eod); // the child resumed exactly where the last check ended
      eod = await check(mode, dir, acked);
      console.log(`${mode} round ${round}: resumed at ${start}, acknowledged ${acked}, reopened at ${eod}`);
    }
    expect(eod).toBeGreaterThan(0);
  });
});
