/**
 * API errors: every failure leaves the service as `{error, message}` with an HTTP status that
 * says whose fault it is. Library errors and tape sense keys map to 4xx codes; damaged stored
 * data is 500 DATA_DAMAGED (what is damaged, and `vtl scrub`); an object store (replication
 * target, DR source) that cannot be reached or refuses the credentials is 502; anything else is
 * an internal error (500) whose message is logged, not sent.
 */
import { ReplicaIntegrityError } from '../crypto/index.js';
import { IntegrityError } from '../dedup/container.js';
import { LibraryError, type LibraryErrorCode } from '../library/index.js';
import { ReplicationError, TargetError } from '../replication/index.js';
import { TierAccessError, TierConfigError, TierError, TierIOError, tierErrorIn, unreachableCause } from '../tier/errors.js';
import { BucketNotFoundError } from '../tier/index.js';
import { MediumInUseError, SENSE, type Sense, type TapeResult } from '../tape/index.js';

export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

const LIBRARY_STATUS: Record<LibraryErrorCode, number> = {
  INVALID: 400,
  INVALID_ELEMENT: 400,
  NOT_FOUND: 404,
  EXISTS: 409,
  SOURCE_EMPTY: 409,
  DESTINATION_FULL: 409,
  REMOVAL_PREVENTED: 409,
  NO_FREE_ELEMENT: 409,
  DRIVE_EMPTY: 409,
  IN_USE: 409,
  DATA_PROTECT: 409,
};

/** What a drive's sense key means to an HTTP client. */
const SENSE_STATUS: Record<string, { status: number; code: string }> = {
  'NOT READY': { status: 409, code: 'DRIVE_EMPTY' },
  'DATA PROTECT': { status: 409, code: 'DATA_PROTECT' },
  'BLANK CHECK': { status: 409, code: 'END_OF_DATA' },
  'VOLUME OVERFLOW': { status: 507, code: 'END_OF_MEDIUM' },
  'ILLEGAL REQUEST': { status: 400, code: 'ILLEGAL_REQUEST' },
  'MEDIUM ERROR': { status: 500, code: 'MEDIUM_ERROR' },
  'NO SENSE': { status: 409, code: 'TAPE_CONDITION' },
};

export function senseError(sense: Sense | undefined, what: string): ApiError {
  const m = SENSE_STATUS[sense?.key ?? ''] ?? { status: 500, code: 'TAPE_ERROR' };
  // Write protect is the operator's own switch: say where it is. Not for a read-only medium (its
  // message says what to do: promote a replica) nor for retention (same sense code, no switch).
  const hint = sense?.key === 'DATA PROTECT' && sense.asc === 0x27 && sense.message === SENSE.writeProtected().message ? ' (clear it with vtl cartridge protect BARCODE --off)' : '';
  return new ApiError(m.status, m.code, `${what}: ${sense?.message ?? 'the drive reported a failure'}${hint}`);
}

/** Throws the matching ApiError when a tape operation failed. */
export function checkTape<T extends TapeResult>(r: T, what: string): T {
  if (!r.ok) throw senseError(r.sense, what);
  return r;
}

/** Damaged stored data: a local container (IntegrityError) or a replica object (ReplicaIntegrityError). */
export function isDamage(err: unknown): err is Error {
  if (err instanceof IntegrityError || err instanceof ReplicaIntegrityError) return true;
  // codec workers' errors cross a thread boundary; the name is what survives everywhere
  const name = (err as Error | undefined)?.name;
  return name === 'IntegrityError' || name === 'ReplicaIntegrityError';
}

/**
 * Damage in a replica read from a DR source (region B): scrub here cannot mend it, the source
 * store that shipped it can, while it still holds the data.
 */
const REPLICA_HINT =
  '. The next read fetches it from the object store again; if the damage stays, it is there: on the server that replicated it, ' +
  "'vtl replicate target check TARGET --deep' finds such objects and ships them again";

function isReplicaDamage(err: Error): boolean {
  return err instanceof ReplicaIntegrityError || err.name === 'ReplicaIntegrityError';
}

/**
 * The answer for damaged stored data. `what` names what could not be read (a cartridge, a tape
 * file); the cause names the container and says how to find and repair all the damage.
 */
export function damageError(err: Error, what?: string): ApiError {
  const hint = /vtl scrub/.test(err.message) ? '' : isReplicaDamage(err) ? REPLICA_HINT : ". Run 'vtl scrub' to find all damage; a replica, if one exists, can restore it";
  const head = what ? `${what} cannot be read: the stored data is damaged (${err.message}${hint})` : `the stored data is damaged: ${err.message}${hint}`;
  return new ApiError(500, 'DATA_DAMAGED', head);
}

/**
 * A replication target or DR source (the only object stores the service talks to) that failed:
 * unreachable (502 TARGET_UNREACHABLE), credentials refused (502 TARGET_ACCESS_DENIED), a
 * missing bucket, container or directory (404 BUCKET_NOT_FOUND, as when adding a target), a bad
 * URL (400), any other failure of the store (502 TARGET_ERROR). Other tier errors (bad keys or
 * ranges) are bugs here and stay internal.
 */
function tierError(err: TierError): { status: number; body: ErrorBody } | undefined {
  if (err instanceof TierAccessError) return { status: 502, body: { error: 'TARGET_ACCESS_DENIED', message: err.message } };
  if (err instanceof BucketNotFoundError) return { status: 404, body: { error: 'BUCKET_NOT_FOUND', message: err.message } };
  if (err instanceof TierConfigError) return { status: 400, body: { error: 'INVALID', message: err.message } };
  if (!(err instanceof TierIOError)) return undefined;
  if (unreachableCause(err)) return { status: 502, body: { error: 'TARGET_UNREACHABLE', message: err.message } };
  return { status: 502, body: { error: 'TARGET_ERROR', message: `the object store failed: ${err.message}${err.transient ? ' (it may succeed when repeated)' : ''}` } };
}

export interface ErrorBody {
  error: string;
  message: string;
}

/** Status and body for any thrown value. `internal` is true when the message must not leak. */
export function toErrorBody(err: unknown): { status: number; body: ErrorBody; internal: boolean } {
  if (err instanceof ApiError) return { status: err.statusCode, body: { error: err.code, message: err.message }, internal: false };
  if (err instanceof LibraryError) return { status: LIBRARY_STATUS[err.code] ?? 400, body: { error: err.code, message: err.message }, internal: false };
  if (err instanceof MediumInUseError) return { status: 409, body: { error: 'IN_USE', message: err.message }, internal: false };
  if (err instanceof ReplicationError || err instanceof TargetError) {
    const status = err.code === 'NOT_FOUND' || err.code === 'BUCKET_NOT_FOUND' ? 404 : err.code === 'INVALID' ? 400 : 409;
    return { status, body: { error: err.code, message: err.message }, internal: false };
  }
  if (isDamage(err)) return toErrorBody(damageError(err));
  if (isDiskFull(err)) return { status: 507, body: { error: 'STORE_FULL', message: diskFullMessage(err as Error) }, internal: false };
  const tier = tierErrorIn(err);
  const mapped = tier && tierError(tier);
  if (mapped) return { ...mapped, internal: false };
  const e = err as { validation?: unknown; statusCode?: number; code?: string; message?: string };
  if (e?.validation) return { status: 400, body: { error: 'INVALID', message: validationMessage(e) }, internal: false };
  if (typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    // fastify's own client errors (bad JSON, unsupported media type, body too large)
    return { status: e.statusCode, body: { error: clientCode(e.statusCode), message: e.message ?? 'bad request' }, internal: false };
  }
  return { status: 500, body: { error: 'INTERNAL', message: 'internal error (see the server log)' }, internal: true };
}

function clientCode(status: number): string {
  if (status === 404) return 'NOT_FOUND';
  if (status === 413) return 'TOO_LARGE';
  if (status === 415) return 'UNSUPPORTED_MEDIA_TYPE';
  return 'INVALID';
}

/** What the patterns of schemas.ts mean, for people who do not read regular expressions. */
const PATTERN_MEANING: Record<string, string> = {
  '^[A-Z0-9]{1,16}$': 'a barcode: 1 to 16 capital letters A-Z and digits',
  '^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$': 'a name: up to 32 letters, digits, _ and -, starting with a letter or digit',
};

/**
 * fastify's validation message, with the pattern a value failed told in words ("body/barcodes/0
 * must match pattern ..." becomes "body/barcodes/0 must be a barcode: ...").
 */
function validationMessage(e: { validation?: unknown; message?: string }): string {
  const first = Array.isArray(e.validation) ? (e.validation[0] as { keyword?: string; params?: { pattern?: string } }) : undefined;
  const meaning = first?.keyword === 'pattern' ? PATTERN_MEANING[first.params?.pattern ?? ''] : undefined;
  const msg = e.message ?? 'invalid request';
  return meaning ? msg.replace(/must match pattern "[^"]*"/, `must be ${meaning}`) : msg;
}

/**
 * The store's disk is full: an ENOSPC anywhere in the cause chain, or LevelDB's own words for it
 * (its errors carry no code). Not the client's fault and not an internal error: 507.
 */
export function isDiskFull(err: unknown): boolean {
  for (let e = err, depth = 0; typeof e === 'object' && e !== null && depth < 8; depth++) {
    const x = e as { code?: unknown; message?: unknown; cause?: unknown };
    if (x.code === 'ENOSPC' || (typeof x.message === 'string' && /no space left on device/i.test(x.message))) return true;
    e = x.cause;
  }
  return false;
}

function diskFullMessage(err: Error): string {
  if (/^disk full:/.test(err.message)) return err.message;
  // LevelDB refuses every write after a failed one until it is opened again.
  return `disk full: the device holding the vtl store has no space left (${err.message}). Free space (vtl gc reclaims erased cartridges) or grow the file system; if writes still fail then, restart the server`;
}
