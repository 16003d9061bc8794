/**
 * Barcodes (DESIGN.md section 3): 1 to 16 characters A-Z 0-9, unique in the installation.
 * LTO style is six characters and a media suffix: L5..L9 for LTO-5..9, LV..LZ for their WORM
 * versions (LV = LTO-5 WORM ... LZ = LTO-9 WORM).
 */
import type { MediaType } from '../tape/index.js';
import { LibraryError } from './errors.js';

const BARCODE = /^[A-Z0-9]{1,16}$/;
const WORM_LETTERS = 'VWXYZ';

export function checkBarcode(b: unknown): string {
  if (typeof b !== 'string' || !BARCODE.test(b)) {
    throw new LibraryError('INVALID', `invalid barcode ${JSON.stringify(b)}: use 1 to 16 characters A-Z and 0-9 (LTO style: VT0001L7)`);
  }
  return b;
}

/** Media type and WORM flag told by an LTO-style suffix, if there is one. */
export function suffixMedia(barcode: string): { mediaType: MediaType; worm: boolean } | undefined {
  const m = /^[A-Z0-9]{6}L([5-9V-Z])$/.exec(barcode);
  if (!m) return undefined;
  const c = m[1];
  const worm = WORM_LETTERS.includes(c);
  const gen = worm ? 5 + WORM_LETTERS.indexOf(c) : Number(c);
  return { mediaType: `LTO-${gen}` as MediaType, worm };
}

/** The suffix for a media type, or '' for custom media. */
export function mediaSuffix(mediaType: MediaType, worm: boolean): string {
  const m = /^LTO-([5-9])$/.exec(mediaType);
  if (!m) return '';
  const gen = Number(m[1]);
  return 'L' + (worm ? WORM_LETTERS[gen - 5] : String(gen));
}

/** `count` barcodes: prefix + zero-padded number (filling six characters) + media suffix. */
export function barcodeRange(prefix: string, start: number, count: number, suffix: string): string[] {
  if (typeof prefix !== 'string' || !/^[A-Z0-9]{0,5}$/.test(prefix)) {
    throw new LibraryError('INVALID', `invalid barcode prefix ${JSON.stringify(prefix)}: use 0 to 5 characters A-Z and 0-9`);
  }
  checkCount(start, 0, 'start');
  checkCount(count, 1, 'count');
  const width = 6 - prefix.length;
  const last = start + count - 1;
  if (String(last).length > width) {
    throw new LibraryError('INVALID', `barcode range ${prefix}${start}..${last} does not fit in ${width} digits after prefix ${prefix}`);
  }
  return Array.from({ length: count }, (_, i) => checkBarcode(prefix + String(start + i).padStart(width, '0') + suffix));
}

/** `count` barcodes counting up from `first` (its trailing number, before any LTO suffix). */
export function barcodeRangeFrom(first: string, count: number): string[] {
  checkBarcode(first);
  checkCount(count, 1, 'count');
  const suffix = suffixMedia(first) ? first.slice(-2) : '';
  const body = suffix ? first.slice(0, -2) : first;
  const m = /^(.*?)(\d+)$/.exec(body);
  if (!m) throw new LibraryError('INVALID', `barcode ${first} has no number to count up from`);
  const [, head, digits] = m;
  const start = Number(digits);
  if (String(start + count - 1).length > digits.length) {
    throw new LibraryError('INVALID', `barcode range from ${first} (${count}) overflows ${digits.length} digits`);
  }
  return Array.from({ length: count }, (_, i) => head + String(start + i).padStart(digits.length, '0') + suffix);
}

function checkCount(n: unknown, min: number, what: string): void {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min || n > 100_000) {
    throw new LibraryError('INVALID', `${what} must be a whole number from ${min} to 100000, got ${JSON.stringify(n)}`);
  }
}
