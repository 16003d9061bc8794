/**
 * JSON schemas of the API's bodies and responses. They drive fastify's validation and
 * serialization and the OpenAPI document, so what is documented is what is enforced.
 * Response schemas list every field: fastify serializes only what a schema names.
 */

export const errorSchema = {
  type: 'object',
  description: 'Every error: a stable code and a readable message',
  required: ['error', 'message'],
  properties: { error: { type: 'string' }, message: { type: 'string' } },
} as const;

export const errors = { '4xx': errorSchema, '5xx': errorSchema } as const;

const str = { type: 'string' } as const;
const int = { type: 'integer' } as const;
const num = { type: 'number' } as const;
const bool = { type: 'boolean' } as const;
const nullable = <T extends object>(s: T) => ({ anyOf: [s, { type: 'null' }] }) as const;

export const libName = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$' } as const;
export const barcode = { type: 'string', pattern: '^[A-Z0-9]{1,16}$' } as const;
export const mediaType = { type: 'string', enum: ['LTO-5', 'LTO-6', 'LTO-7', 'LTO-8', 'LTO-9', 'custom'] } as const;

export const librarySchema = {
  type: 'object',
  properties: {
    name: str,
    model: str,
    vendor: str,
    product: str,
    driveVendor: str,
    driveProduct: str,
    drives: int,
    slots: int,
    mailslots: int,
    createdAt: str,
  },
} as const;

export const locationSchema = {
  type: 'object',
  description: 'Where a cartridge is: an element of a library, or the vault',
  properties: { kind: { type: 'string', enum: ['drive', 'slot', 'mailslot', 'vault'] }, library: str, address: int, index: int },
} as const;

export const tapeFileSchema = {
  type: 'object',
  properties: { file: int, startLba: int, endLba: int, bytes: int, terminated: bool, checksum: str },
} as const;

const cartridgeProps = {
  barcode: str,
  mediaType: str,
  capacity: num,
  worm: bool,
  writeProtected: bool,
  retentionUntil: nullable(str),
  state: { type: 'string', enum: ['scratch', 'in use', 'full', 'expired'] },
  location: locationSchema,
  logicalBytes: num,
  files: int,
  createdAt: str,
} as const;

export const cartridgeSchema = { type: 'object', properties: cartridgeProps } as const;

export const cartridgeReplicationSchema = {
  type: 'object',
  properties: {
    target: str,
    state: { type: 'string', enum: ['replicated', 'stale', 'never'] },
    lagSeconds: nullable(num),
    bytesShipped: num,
    lastBytesShipped: num,
    replicatedAt: nullable(str),
    seq: nullable(int),
    job: nullable({ type: 'object', properties: { id: str, state: str, lastError: nullable(str) } }),
  },
} as const;
export const replicaSchema = {
  type: 'object',
  properties: {
    barcode: str, source: str, seq: int, catalogCreatedAt: str, syncedAt: nullable(str), importedAt: str, logicalBytes: num,
    state: { type: 'string', enum: ['replica', 'promoted'] }, promotedAt: nullable(str),
  },
} as const;
export const cartridgeDetailSchema = {
  type: 'object',
  properties: {
    ...cartridgeProps,
    storedBytes: num,
    uniqueBytes: num,
    chunks: int,
    dedupRatio: nullable(num),
    compressionRatio: nullable(num),
    tapeFiles: nullable({ type: 'array', items: tapeFileSchema }),
    /** Per replication target of this store; empty when it was never replicated. */
    replication: { type: 'array', items: cartridgeReplicationSchema },
    /** Set when the cartridge is a replica of another region's store. */
    replica: nullable(replicaSchema),
  },
} as const;

export const positionSchema = {
  type: 'object',
  properties: { lba: int, file: int, block: int, byte: num, bop: bool, eod: bool, beyondEarlyWarning: bool },
} as const;

export const driveSchema = {
  type: 'object',
  properties: { library: str, index: int, address: int, barcode: nullable(str), open: bool, blockSize: int, position: nullable(positionSchema) },
} as const;

export const elementSchema = {
  type: 'object',
  properties: { type: { type: 'string', enum: ['drive', 'slot', 'mailslot'] }, address: int, index: int, mtx: int, barcode: nullable(str) },
} as const;

export const senseSchema = {
  type: 'object',
  properties: { key: str, code: int, asc: int, ascq: int, message: str },
} as const;

/** What a tape operation reports besides success: the SSC result flags and the new position. */
export const tapeOpSchema = {
  type: 'object',
  properties: {
    ok: bool,
    transferred: num,
    residue: num,
    filemark: bool,
    eod: bool,
    eom: bool,
    earlyWarning: bool,
    bom: bool,
    sense: senseSchema,
    position: nullable(positionSchema),
  },
} as const;

export const statsSchema = {
  type: 'object',
  properties: {
    libraries: int,
    cartridges: int,
    logicalBytes: num,
    uniqueBytes: num,
    storedBytes: num,
    dedupRatio: nullable(num),
    compressionRatio: nullable(num),
    reductionRatio: nullable(num),
    containers: int,
    chunks: int,
  },
} as const;

/** One point of the capacity history: the totals of /stats at `at`, and the bytes moved during `seconds`. */
export const historyPointSchema = {
  type: 'object',
  properties: {
    at: str,
    seconds: num,
    samples: int,
    ...statsSchema.properties,
    traffic: {
      type: 'object',
      description: 'bytes written (in) and read (out) per protocol during the seconds this point covers',
      additionalProperties: { type: 'object', properties: { in: num, out: num } },
    },
  },
} as const;

export const tokenSchema = {
  type: 'object',
  properties: { id: str, name: str, role: str, createdAt: str },
} as const;

export const listOf = <T extends object>(items: T) => ({ type: 'object', properties: { items: { type: 'array', items } } }) as const;
