/**
 * Library layer: tape libraries (drives, storage slots, import/export "mail" slots), the
 * cartridges in them and the vault (a shelf outside any library).
 *
 * Guarantees:
 * - A library identifies as a model (`IBM 03584L32` with `IBM ULT3580-TD7` drives by default,
 *   or `STK L700`); every element has a SCSI element address and an mtx number (elements.ts).
 * - Barcodes are unique across the installation; each cartridge is in exactly one place (an
 *   element of one library, or the vault), recorded together with the element index in one
 *   LevelDB batch. Invalid names, barcodes and counts are rejected with a clear message and
 *   change nothing.
 * - Moves behave as a medium changer's: source empty, destination full, and a cartridge in a
 *   drive with an open session (medium removal prevented) are errors with the changer's sense.
 *   Moving out of a drive unloads the medium (a sync point); moving into one loads it at BOT.
 * - Cartridge state is derived, never stale: scratch (blank), in use, full (past early
 *   warning), expired (retention date passed). WORM, write protect and retention are enforced by
 *   the tape layer.
 * - Drives hold a session: the loaded cartridge, its position (the medium's), block-size mode
 *   and whether a client has it open. Session state lives in memory; where cartridges are is
 *   persistent.
 * Errors are `LibraryError` with a `code` (and SCSI `sense` where a changer has one).
 */
export { Libraries, Drive } from './libraries.js';
export type { LibrarySpec, LibraryRecord, Location, CartridgeState, Cartridge, CartridgeSpec, CartridgeEvent, ElementStatus, DriveStatus } from './libraries.js';
export { LibraryError } from './errors.js';
export type { LibraryErrorCode } from './errors.js';
export { MODELS, DEFAULT_MODEL, DEFAULT_DRIVE } from './elements.js';
export type { ElementType, ElementRef } from './elements.js';
export { checkBarcode, suffixMedia, barcodeRange, barcodeRangeFrom } from './barcode.js';
