/** Errors of library operations, with the sense a medium changer would return where one applies. */

export type LibraryErrorCode =
  | 'INVALID' // bad input: names, counts, barcodes, dates
  | 'NOT_FOUND'
  | 'EXISTS'
  | 'INVALID_ELEMENT'
  | 'SOURCE_EMPTY'
  | 'DESTINATION_FULL'
  | 'REMOVAL_PREVENTED' // the cartridge is in a drive with an open session
  | 'NO_FREE_ELEMENT'
  | 'DRIVE_EMPTY'
  | 'IN_USE'
  | 'DATA_PROTECT';

const SENSE: Partial<Record<LibraryErrorCode, { key: string; asc: number; ascq: number }>> = {
  INVALID_ELEMENT: { key: 'ILLEGAL REQUEST', asc: 0x21, ascq: 0x01 },
  SOURCE_EMPTY: { key: 'ILLEGAL REQUEST', asc: 0x3b, ascq: 0x0e },
  DESTINATION_FULL: { key: 'ILLEGAL REQUEST', asc: 0x3b, ascq: 0x0d },
  REMOVAL_PREVENTED: { key: 'ILLEGAL REQUEST', asc: 0x53, ascq: 0x02 },
  DRIVE_EMPTY: { key: 'NOT READY', asc: 0x3a, ascq: 0x00 },
  DATA_PROTECT: { key: 'DATA PROTECT', asc: 0x27, ascq: 0x00 },
};

export class LibraryError extends Error {
  readonly sense?: { key: string; asc: number; ascq: number };

  constructor(
    readonly code: LibraryErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'LibraryError';
    this.sense = SENSE[code];
  }
}
