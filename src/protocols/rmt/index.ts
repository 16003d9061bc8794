/**
 * Remote tape protocol (rmt): how unchanged backup tools (GNU tar, cpio, mt; AIX mksysb-style
 * tapes) reach vtl's drives, over TCP (127.0.0.1:7421) or through `vtl rmt` on stdin/stdout.
 *
 * Guarantees:
 * - Device names `/LIB/stN` (rewind on close) and `/LIB/nstN` speak Linux MTIOCTOP opcodes;
 *   `/LIB/rmtN` (rewind on close) and `/LIB/rmtN.1` speak AIX STIOCTOP opcodes. N is the drive
 *   number (from 0); the drive must hold a cartridge.
 * - Replies follow the rmt protocol (`A<n>`, `E<errno>\n<message>`), reads and closes behave as
 *   Linux st (see device.ts), S answers a Linux x86-64 `struct mtget`.
 * - Filemarks and closes are sync points: the reply comes only after the data is durable. A
 *   client that disconnects is closed as if it had sent C; a partial record is never written.
 * - One session per drive: a second open gets EBUSY.
 * - At most 256 connections; one that never opened a device and stays silent for 120 s is
 *   closed, so stray connections cannot lock backups out (a refusal at the limit is logged).
 *   A client that opened a device keeps its connection however long it waits.
 * - What a device session wrote or erased, and the writes and erases the cartridge refused
 *   (write protect, WORM), are reported when it closes (`onChange`: the audit log), with the
 *   client's address, and the close is answered after that report settles; an open for writing
 *   refused by write protect is reported at once.
 * - Before a device session's first write, filemark or erase (once per open; a read-only open
 *   never), `onBegin` notes it and is awaited: one audit note, never per record. Its change at
 *   close carries the note's id and settles it, also when the server stops gracefully; a note
 *   a crash leaves becomes an `interrupted` entry at the next start naming the cartridge and
 *   what was rolled back. A note that cannot be made is reported; the session goes on.
 * - A graceful server stop ends a device the client has not closed as a crash does: records
 *   written after the cartridge's last sync point (those a bridge acknowledged ahead included)
 *   are rolled back, no filemark is written, and the session's change is an error saying what
 *   was rolled back; a session with nothing unsynced (idle after a filemark) loses nothing and
 *   its change is ok, and a device open for reading is simply closed.
 * - Bad input gets an E reply or a closed connection, never unbounded memory: every announced
 *   length is checked (records at most 2 MiB) before anything is allocated or read.
 * - `vtl rmt` (bridge.ts) pipelines for its client, through a vtl extension of the protocol that
 *   only a session that said hello (`B1`) accepts: writes are acknowledged ahead of the tape
 *   within a credit the server grants (never into the early-warning zone; an error comes back
 *   for the next command, as st's deferred errors do), reads are sent ahead and taken back
 *   exactly before any other command. Sync points are still answered only when durable, and a
 *   client sees the same replies and positions as without the bridge.
 */
export { RmtServer, DEFAULT_RMT_HOST, DEFAULT_RMT_PORT } from './server.js';
export type { RmtServerOptions } from './server.js';
export { runRmtBridge, parseServerAddress } from './bridge.js';
export { parseDevice, parseOpenFlags, tapeOp, RmtError, ERRNO } from './names.js';
export type { DeviceName, Dialect, TapeOp } from './names.js';
export { MAX_TRANSFER, MTGET_SIZE, GMT, WRITE_WINDOW } from './device.js';
export { BRIDGE_EXTENSION } from './session.js';
export type { RmtBegin, RmtChange } from './session.js';
