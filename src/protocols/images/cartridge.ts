/**
 * Images of library cartridges by barcode, for the API and the CLI: finds the cartridge's
 * medium, holds it for the transfer and lets it go afterwards. A cartridge in a drive is used
 * through the drive's session (refused while a client has that session open); any other
 * cartridge is mounted directly, which keeps it from being loaded into a drive meanwhile.
 */
import { Readable } from 'node:stream';
import type { Libraries } from '../../library/index.js';
import type { Medium } from '../../tape/index.js';
import type { ImportJournal } from './journal.js';
import { exportImage, importImage, type ExportOptions, type ImportOptions, type ImportSummary } from './transfer.js';

export interface ImageDeps {
  libraries: Libraries;
  /** Without a journal, a crash during an import can leave the files written up to its last filemark. */
  journal?: ImportJournal;
}

interface Held {
  medium: Medium;
  release(): Promise<void>;
}

async function hold(libs: Libraries, barcode: string): Promise<Held> {
  const cart = await libs.getCartridge(barcode);
  if (cart.location.kind === 'drive') {
    const drive = await libs.drive(cart.location.library, cart.location.index);
    const medium = await drive.open();
    return { medium, release: () => drive.close({ rewind: true }) };
  }
  const medium = await libs.tapes.mount(barcode);
  return { medium, release: async () => void (await medium.unload()) };
}

export async function importCartridgeImage(deps: ImageDeps, barcode: string, format: string, source: AsyncIterable<Uint8Array>, opts: ImportOptions = {}): Promise<ImportSummary> {
  const h = await hold(deps.libraries, barcode);
  try {
    return await importImage(h.medium, format, source, { journal: deps.journal, ...opts });
  } finally {
    await h.release();
  }
}

/**
 * The cartridge is held until the returned stream closes (ends, fails or is destroyed): the
 * caller must consume or destroy it. The stream ends only after the cartridge was let go, so
 * whoever read it to the end can load the cartridge right away.
 */
export async function exportCartridgeImage(deps: ImageDeps, barcode: string, format: string, opts: ExportOptions = {}): Promise<Readable> {
  const h = await hold(deps.libraries, barcode);
  let out: Readable;
  try {
    out = await exportImage(h.medium, format, opts);
  } catch (err) {
    await h.release();
    throw err;
  }
  return Readable.from(releasedAtEnd(out, h, barcode), { objectMode: false, highWaterMark: 1 << 16 });
}

async function* releasedAtEnd(out: Readable, h: Held, barcode: string): AsyncGenerator<Buffer> {
  try {
    for await (const chunk of out) yield chunk as Buffer;
  } finally {
    // An early return (the reader went away) stops the tape reads; the export rewinds the
    // medium on its way out, which must be over before the medium is let go.
    if (!out.closed) await new Promise((done) => out.once('close', done).destroy());
    await h.release().catch((err: Error) => process.emitWarning(`releasing cartridge ${barcode} after an export: ${err.message}`));
  }
}
