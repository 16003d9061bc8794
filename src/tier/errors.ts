/**
 * Errors of the object tier. Every backend maps its own failures onto these, so callers
 * (dedup, replication, the retry decorator) can tell "not there" from "refused" from "try again"
 * without knowing which store they talk to. Messages name the operation and key, never credentials.
 */

export class TierError extends Error {
  /** True when the same request may succeed if repeated (network reset, 5xx, throttling). */
  readonly transient: boolean;

  constructor(message: string, opts: { transient?: boolean; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.transient = opts.transient ?? false;
  }
}

/** get/getStream of a key that does not exist. head answers undefined instead. */
export class ObjectNotFoundError extends TierError {
  constructor(readonly key: string) {
    super(`object not found: ${key}`);
  }
}

/** A byte range that does not lie inside the object. Ranges are never clamped. */
export class InvalidRangeError extends TierError {
  constructor(readonly key: string, detail: string) {
    super(`invalid range for ${key}: ${detail}`);
  }
}

/** A key (or list prefix) that breaks the key rules in keys.ts. */
export class InvalidKeyError extends TierError {
  constructor(key: string, reason: string) {
    super(`invalid object key ${JSON.stringify(key.slice(0, 200))}: ${reason}`);
  }
}

/**
 * Retention refused the request: deleting or overwriting an object before its retain-until date,
 * or asking for retention on a tier that cannot enforce it (never silently ignored).
 */
export class RetentionError extends TierError {}

/** A body whose length differed from the declared contentLength; nothing was stored. */
export class LengthMismatchError extends TierError {}

/** A malformed tier URL or missing credentials; the message never repeats secrets. */
export class TierConfigError extends TierError {}

/** A failure of the store itself (I/O, HTTP); `transient` tells the retry decorator what to do. */
export class TierIOError extends TierError {
  readonly status: number | undefined;

  constructor(message: string, opts: { transient: boolean; status?: number; cause?: unknown }) {
    super(message, opts);
    this.status = opts.status;
  }
}

/**
 * The store refused the credentials (HTTP 401/403: wrong key or secret, expired token, a policy
 * that denies the request). Not transient: repeating it with the same credentials cannot help.
 */
export class TierAccessError extends TierIOError {}

/** Error codes of a connection that could not be made or was lost (the store is not reachable). */
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN', 'ENOTFOUND', 'EAI_AGAIN',
  'ECONNABORTED', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT',
]);

/**
 * The network error code (ECONNREFUSED, ENOTFOUND, ...) in an error's cause chain when the store
 * could not be reached at all, else undefined. SDKs put it on the error or on a nested cause, or
 * (AggregateError, several addresses tried) on each of `errors`.
 */
export function unreachableCause(err: unknown): string | undefined {
  for (let e = err, depth = 0; typeof e === 'object' && e !== null && depth < 8; depth++) {
    const x = e as { code?: unknown; errors?: unknown; cause?: unknown; $metadata?: { httpStatusCode?: number } };
    if (x.$metadata?.httpStatusCode !== undefined) return undefined; // the store answered
    if (typeof x.code === 'string' && UNREACHABLE_CODES.has(x.code)) return x.code;
    if (Array.isArray(x.errors)) for (const inner of x.errors) {
      const c = unreachableCause(inner);
      if (c) return c;
    }
    e = x.cause;
  }
  return undefined;
}

/** Strips anything shaped like a secret from text taken from an SDK error before we repeat it. */
export function redactSecrets(text: string): string {
  return text
    .replace(/(sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token)=[^&\s"']+/gi, '$1=<redacted>')
    .replace(/(AccountKey|SharedAccessSignature)=[^;\s"']+/gi, '$1=<redacted>');
}

/** The first TierError in an error's cause chain (SDKs wrap errors our body streams raise). */
export function tierErrorIn(err: unknown): TierError | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (e instanceof TierError) return e;
  }
  return undefined;
}
