/**
 * Write, verify, append, verify on real recipe streams: a tape read to its end of data, appended
 * to there, and read again from where the first read stopped (the stream reader's windows
 * ahead were taken when the stream ended at the old end of data).
 */
import { describe, expect, it } from 'vitest';
import { TapeStore } from '../../src/tape/index.js';
import { withStore } from '../helpers/store.js';
import { rec } from './util.js';

const RECORD = 64 * 1024;

describe('append after a read to the end of data', () => {
  it('reads the appended file from the position the earlier read left off (write, verify, append, verify)', async () => {
    await withStore(async (ds) => {
      const tapes = new TapeStore({ db: ds.db, streams: ds.streams });
      await tapes.create('AP0001L7', { mediaType: 'LTO-7' } as never);
      const m = await tapes.mount('AP0001L7');
      // File 1: 150 records (about 9.4 MiB: more than two of the reader's windows).
      for (let i = 0; i < 150; i++) expect((await m.write(rec(i, RECORD))).ok).toBe(true);
      await m.writeFilemarks(1);
      await m.rewind();
      for (let i = 0; i < 150; i++) expect((await m.read(RECORD)).data.equals(rec(i, RECORD))).toBe(true);
      const fm = await m.read(RECORD);
      expect(fm.filemark).toBe(true);
      // At the end of data: append file 2 there, then go back over its filemark to read it.
      for (let i = 0; i < 40; i++) expect((await m.write(rec(1000 + i, RECORD))).ok).toBe(true);
      await m.writeFilemarks(1);
      expect((await m.space('filemarks', -1)).ok).toBe(true);
      expect((await m.space('filemarks', -1)).ok).toBe(true);
      expect((await m.space('filemarks', 1)).ok).toBe(true);
      for (let i = 0; i < 40; i++) {
        const r = await m.read(RECORD);
        expect(r.ok, `record ${i} of file 2: ${JSON.stringify(r.sense)}`).toBe(true);
        expect(r.data.equals(rec(1000 + i, RECORD))).toBe(true);
      }
      expect((await m.read(RECORD)).filemark).toBe(true);
    });
  });
});
