/**
 * SCSI sense data for tape results (SSC-3): the key, the additional sense code and qualifier a
 * drive would return, with a readable message. Upper layers map these to errno or HTTP.
 */
import type { Sense, SenseKeyName, TapeResult } from './index.js';

const KEYS: Record<SenseKeyName, number> = {
  'NO SENSE': 0x0,
  'NOT READY': 0x2,
  'MEDIUM ERROR': 0x3,
  'ILLEGAL REQUEST': 0x5,
  'DATA PROTECT': 0x7,
  'BLANK CHECK': 0x8,
  'VOLUME OVERFLOW': 0xd,
};

export function sense(key: SenseKeyName, asc: number, ascq: number, message: string): Sense {
  return { key, code: KEYS[key], asc, ascq, message };
}

export const SENSE = {
  filemark: () => sense('NO SENSE', 0x00, 0x01, 'filemark detected'),
  earlyWarning: () => sense('NO SENSE', 0x00, 0x02, 'end of medium early warning: the cartridge is nearly full'),
  bom: () => sense('NO SENSE', 0x00, 0x04, 'beginning of medium detected'),
  eod: () => sense('BLANK CHECK', 0x00, 0x05, 'end of data detected'),
  overflow: () => sense('VOLUME OVERFLOW', 0x00, 0x02, 'end of medium: the cartridge is full'),
  noMedium: () => sense('NOT READY', 0x3a, 0x00, 'no medium loaded'),
  /** Write protect; on a read-only medium (a DR replica) its reason, which says what to do. */
  writeProtected: (readOnly?: string) => sense('DATA PROTECT', 0x27, 0x00, readOnly ? `the cartridge is read-only: ${readOnly}` : 'the cartridge is write protected'),
  wormOverwrite: () => sense('DATA PROTECT', 0x30, 0x0c, 'WORM medium: writes are accepted only at end of data'),
  wormErase: () => sense('DATA PROTECT', 0x30, 0x0c, 'WORM medium: erase refused (WORM data is kept until its retention date, forever without one)'),
  retained: (until: string) => sense('DATA PROTECT', 0x27, 0x00, `the cartridge is under retention until ${until}: its data cannot be erased or overwritten before then`),
  invalid: (message: string) => sense('ILLEGAL REQUEST', 0x24, 0x00, message),
  incorrectLength: (message: string) => sense('NO SENSE', 0x00, 0x00, message),
  checksum: (file: number) =>
    sense('MEDIUM ERROR', 0x11, 0x00, `unrecovered read error: checksum mismatch in tape file ${file}`),
};

/** A result with every flag cleared; `p` sets what happened. */
export function result(p: Partial<TapeResult> = {}): TapeResult {
  return {
    ok: true,
    transferred: 0,
    residue: 0,
    filemark: false,
    eod: false,
    eom: false,
    earlyWarning: false,
    bom: false,
    ili: false,
    ...p,
  };
}

/** A failed result carrying its sense. */
export function failure(s: Sense, p: Partial<TapeResult> = {}): TapeResult {
  return result({ ...p, ok: false, sense: s });
}
