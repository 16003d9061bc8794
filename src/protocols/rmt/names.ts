/**
 * What an rmt client names and numbers: device names (which library, which drive, which
 * dialect, rewind on close or not), the dialects' MTIOCTOP opcodes, open flags and the Linux
 * errno values the replies carry.
 */

/** Where the rmt server listens by default (here so the bridge needs nothing of the server). */
export const DEFAULT_RMT_HOST = '127.0.0.1';
export const DEFAULT_RMT_PORT = 7421;

/** Linux `/LIB/stN`, `/LIB/nstN`; AIX `/LIB/rmtN`, `/LIB/rmtN.D`. */
export type Dialect = 'linux' | 'aix';

export interface DeviceName {
  library: string;
  drive: number;
  dialect: Dialect;
  /** Rewind when the device is closed. */
  rewindOnClose: boolean;
  /** Filemarks written on close after writing. */
  closeFilemarks: number;
}

/** Tape operations, independent of the dialect that numbered them. */
export type TapeOp =
  | 'reset' | 'fsf' | 'bsf' | 'fsr' | 'bsr' | 'weof' | 'rewind' | 'offline' | 'nop' | 'retension'
  | 'bsfm' | 'fsfm' | 'eom' | 'erase' | 'setblk' | 'seek' | 'tell' | 'load' | 'unload'
  | 'ignored';

/** Linux `<linux/mtio.h>` MTIOCTOP opcodes. */
const LINUX_OPS: Record<number, TapeOp> = {
  0: 'reset', 1: 'fsf', 2: 'bsf', 3: 'fsr', 4: 'bsr', 5: 'weof', 6: 'rewind', 7: 'offline',
  8: 'nop', 9: 'retension', 10: 'bsfm', 11: 'fsfm', 12: 'eom', 13: 'erase', 20: 'setblk',
  // 21 SETDENSITY, 24 SETDRVBUFFER, 28 LOCK, 29 UNLOCK, 32 COMPRESSION: nothing to do on a VTL.
  21: 'ignored', 22: 'seek', 23: 'tell', 24: 'ignored', 28: 'ignored', 29: 'ignored',
  30: 'load', 31: 'unload', 32: 'ignored', 35: 'weof',
};

/** AIX `<sys/tape.h>` STIOCTOP opcodes. */
const AIX_OPS: Record<number, TapeOp> = {
  5: 'offline', 6: 'rewind', 7: 'erase', 8: 'retension', 10: 'weof', 11: 'fsf', 12: 'bsf', 13: 'fsr', 14: 'bsr',
};

export function tapeOp(dialect: Dialect, op: number): TapeOp | undefined {
  const table = dialect === 'linux' ? LINUX_OPS : AIX_OPS;
  return Object.prototype.hasOwnProperty.call(table, op) ? table[op] : undefined;
}

const NAME = /^\/([A-Za-z0-9][A-Za-z0-9_-]{0,31})\/(?:(n?)st(\d{1,4})|rmt(\d{1,4})(?:\.([0-7]))?)$/;

/** Parses a device name; undefined when it names no vtl drive. */
export function parseDevice(name: string): DeviceName | undefined {
  const m = NAME.exec(name);
  if (!m) return undefined;
  if (m[3] !== undefined) {
    return { library: m[1], drive: Number(m[3]), dialect: 'linux', rewindOnClose: m[2] !== 'n', closeFilemarks: 1 };
  }
  // AIX minor numbers: odd suffixes (.1, .3, .5, .7) do not rewind on close.
  const rewind = m[5] === undefined || Number(m[5]) % 2 === 0;
  return { library: m[1], drive: Number(m[4]), dialect: 'aix', rewindOnClose: rewind, closeFilemarks: rewind ? 2 : 1 };
}

export type AccessMode = 'read' | 'write' | 'readwrite';

export interface OpenFlags {
  access: AccessMode;
  nonblock: boolean;
}

const O_ACCMODE = 3;
const LINUX_O_NONBLOCK = 0o4000;
const SYMBOLIC = /^O_[A-Z]+(\|O_[A-Z]+)*$/;

/**
 * Open flags: GNU clients send `65 O_WRONLY|O_CREAT` (decimal, then symbolic, which is
 * portable and wins), BSD clients the decimal only (whose access mode bits are the same on
 * every system).
 */
export function parseOpenFlags(line: string): OpenFlags | undefined {
  const parts = line.trim().split(/\s+/).filter(Boolean);
  if (parts.length === 0 || parts.length > 2) return undefined;
  let decimal: number | undefined;
  let symbolic: string | undefined;
  if (/^\d{1,10}$/.test(parts[0])) decimal = Number(parts[0]);
  else if (SYMBOLIC.test(parts[0]) && parts.length === 1) symbolic = parts[0];
  else return undefined;
  if (parts.length === 2) {
    if (!SYMBOLIC.test(parts[1])) return undefined;
    symbolic = parts[1];
  }
  if (symbolic !== undefined) {
    const names = new Set(symbolic.split('|'));
    const access: AccessMode = names.has('O_RDWR') ? 'readwrite' : names.has('O_WRONLY') ? 'write' : 'read';
    return { access, nonblock: names.has('O_NONBLOCK') || names.has('O_NDELAY') };
  }
  const mode = decimal! & O_ACCMODE;
  if (mode === 3) return undefined;
  return { access: mode === 0 ? 'read' : mode === 1 ? 'write' : 'readwrite', nonblock: (decimal! & LINUX_O_NONBLOCK) !== 0 };
}

/** Linux errno values and their strerror texts. */
export const ERRNO = {
  ENOENT: [2, 'No such file or directory'],
  EIO: [5, 'Input/output error'],
  ENXIO: [6, 'No such device or address'],
  EBADF: [9, 'Bad file descriptor'],
  ENOMEM: [12, 'Cannot allocate memory'],
  EACCES: [13, 'Permission denied'],
  EBUSY: [16, 'Device or resource busy'],
  EINVAL: [22, 'Invalid argument'],
  ENOSPC: [28, 'No space left on device'],
  EROFS: [30, 'Read-only file system'],
  ENAMETOOLONG: [36, 'File name too long'],
  ENOMEDIUM: [123, 'No medium found'],
} as const satisfies Record<string, readonly [number, string]>;

export type ErrnoName = keyof typeof ERRNO;

/** A failed command: the reply is `E<errno>\n<message>\n`. */
export class RmtError extends Error {
  readonly errno: number;

  constructor(
    readonly code: ErrnoName,
    detail?: string,
  ) {
    super(detail ? `${ERRNO[code][1]}: ${detail}` : ERRNO[code][1]);
    this.name = 'RmtError';
    this.errno = ERRNO[code][0];
  }
}
