/**
 * Library models and their SCSI element addressing (what READ ELEMENT STATUS reports).
 *
 * | model          | transport | I/E (mail) slots | drives | storage slots |
 * |----------------|-----------|------------------|--------|---------------|
 * | IBM 03584L32   | 1         | 769..            | 257..  | 1025..        |
 * | STK L700       | 0         | 10..             | 500..  | 1000..        |
 *
 * mtx numbering (as `mtx status` prints it): drives 0..N-1 ("Data Transfer Element n"),
 * storage slots 1..M, then the import/export slots M+1..M+K.
 */
import { LibraryError } from './errors.js';

export type ElementType = 'transport' | 'drive' | 'slot' | 'mailslot';

export interface Model {
  vendor: string;
  product: string;
  transport: number;
  mailslot: number;
  drive: number;
  slot: number;
  maxDrives: number;
  maxMailslots: number;
  maxSlots: number;
}

export const MODELS: Record<string, Model> = {
  'IBM 03584L32': { vendor: 'IBM', product: '03584L32', transport: 1, mailslot: 769, drive: 257, slot: 1025, maxDrives: 256, maxMailslots: 255, maxSlots: 60000 },
  'STK L700': { vendor: 'STK', product: 'L700', transport: 0, mailslot: 10, drive: 500, slot: 1000, maxDrives: 490, maxMailslots: 490, maxSlots: 60000 },
};
export const DEFAULT_MODEL = 'IBM 03584L32';
export const DEFAULT_DRIVE = 'IBM ULT3580-TD7';

export interface Geometry {
  model: string;
  drives: number;
  slots: number;
  mailslots: number;
}

export interface ElementRef {
  type: Exclude<ElementType, 'transport'>;
  address: number;
  /** 0-based index within its type. */
  index: number;
  /** The number `mtx` uses for it. */
  mtx: number;
}

export function modelOf(name: string): Model {
  const m = MODELS[name];
  if (!m) throw new LibraryError('INVALID', `unknown library model ${JSON.stringify(name)}; expected one of ${Object.keys(MODELS).join(', ')}`);
  return m;
}

/** Resolves a SCSI element address of a library; throws INVALID_ELEMENT otherwise. */
export function elementAt(g: Geometry, address: number): ElementRef {
  const m = modelOf(g.model);
  const within = (base: number, n: number) => Number.isSafeInteger(address) && address >= base && address < base + n;
  if (within(m.drive, g.drives)) return { type: 'drive', address, index: address - m.drive, mtx: address - m.drive };
  if (within(m.slot, g.slots)) return { type: 'slot', address, index: address - m.slot, mtx: address - m.slot + 1 };
  if (within(m.mailslot, g.mailslots)) return { type: 'mailslot', address, index: address - m.mailslot, mtx: g.slots + address - m.mailslot + 1 };
  const range = (what: string, base: number, n: number) => (n === 0 ? [] : [`${what} ${n === 1 ? base : `${base}..${base + n - 1}`}`]);
  const ranges = [...range('drives', m.drive, g.drives), ...range('storage slots', m.slot, g.slots), ...range('mail slots', m.mailslot, g.mailslots)];
  throw new LibraryError('INVALID_ELEMENT', `no element at address ${address} in this library (element addresses: ${ranges.join(', ')})`);
}

/** The element of a type and 0-based index. */
export function elementOf(g: Geometry, type: ElementRef['type'], index: number): ElementRef {
  const m = modelOf(g.model);
  const [base, n] = type === 'drive' ? [m.drive, g.drives] : type === 'slot' ? [m.slot, g.slots] : [m.mailslot, g.mailslots];
  if (!Number.isSafeInteger(index) || index < 0 || index >= n) {
    throw new LibraryError('INVALID_ELEMENT', `no ${type} ${index}: this library has ${n} (numbered from 0)`);
  }
  return elementAt(g, base + index);
}

export function allElements(g: Geometry): ElementRef[] {
  const out: ElementRef[] = [];
  for (let i = 0; i < g.drives; i++) out.push(elementOf(g, 'drive', i));
  for (let i = 0; i < g.slots; i++) out.push(elementOf(g, 'slot', i));
  for (let i = 0; i < g.mailslots; i++) out.push(elementOf(g, 'mailslot', i));
  return out;
}

export function checkGeometry(g: Geometry): void {
  const m = modelOf(g.model);
  const count = (n: number, min: number, max: number, what: string) => {
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new LibraryError('INVALID', `${what} must be a whole number from ${min} to ${max} for the ${g.model}, got ${JSON.stringify(n)}`);
    }
  };
  count(g.drives, 1, m.maxDrives, 'drives');
  count(g.slots, 1, m.maxSlots, 'slots');
  count(g.mailslots, 0, m.maxMailslots, 'mailslots');
}
