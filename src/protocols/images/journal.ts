/**
 * The import journal: one LevelDB entry per import in progress (sublevel `images-journal` of
 * the shared database), written before the import's first write and removed after its last
 * sync point or after it was undone. An entry found at startup means the process died during
 * that import: `recover` cuts the medium back to where the import started, so a crash never
 * leaves a half-imported tape. The client of such an import never got an answer, so undoing
 * it (even one that had reached its final sync point) is consistent with what it was told.
 */
import type { TapeDb, TapeStore } from '../../tape/index.js';

export interface JournalEntry {
  medium: string;
  /** End of data before the import: everything from here on belongs to the import. */
  startLba: number;
  format: string;
  startedAt: string;
}

export interface Recovered {
  medium: string;
  startLba: number;
  /** Objects (records and filemarks) removed. */
  removed: number;
  /** Why it could not be undone (the entry stays for the next start), e.g. write protect set meanwhile. */
  error?: string;
}

export class ImportJournal {
  private readonly entries;

  constructor(db: TapeDb) {
    this.entries = db.sublevel<string, JournalEntry>('images-journal', { valueEncoding: 'json' });
  }

  async begin(e: JournalEntry): Promise<void> {
    await this.entries.put(e.medium, e);
  }

  async finish(medium: string): Promise<void> {
    await this.entries.del(medium);
  }

  async pending(): Promise<JournalEntry[]> {
    return this.entries.values().all();
  }

  /** Undoes interrupted imports; call at startup, before any medium is loaded. Never throws for one medium. */
  async recover(tapes: TapeStore): Promise<Recovered[]> {
    const done: Recovered[] = [];
    for (const e of await this.pending()) {
      if (!(await tapes.exists(e.medium))) {
        await this.finish(e.medium);
        continue;
      }
      try {
        done.push({ medium: e.medium, startLba: e.startLba, removed: await this.undo(tapes, e) });
        await this.finish(e.medium);
      } catch (err) {
        done.push({ medium: e.medium, startLba: e.startLba, removed: 0, error: (err as Error).message });
      }
    }
    return done;
  }

  private async undo(tapes: TapeStore, e: JournalEntry): Promise<number> {
    const m = await tapes.mount(e.medium);
    try {
      const eod = m.eod.eodLba;
      if (eod <= e.startLba) return 0;
      const r = await m.locate(e.startLba);
      const cut = r.ok ? await m.erase() : r;
      if (!cut.ok) throw new Error(`cannot undo the interrupted import into ${e.medium}: ${cut.sense?.message}`);
      return eod - e.startLba;
    } finally {
      await m.unload();
    }
  }
}
