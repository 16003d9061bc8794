/** Media types and their capacities in logical bytes (DESIGN.md section 3). */

export const MEDIA_TYPES = ['LTO-5', 'LTO-6', 'LTO-7', 'LTO-8', 'LTO-9', 'custom'] as const;
export type MediaType = (typeof MEDIA_TYPES)[number];

const TB = 1e12;
const CAPACITY: Record<Exclude<MediaType, 'custom'>, number> = {
  'LTO-5': 1.5 * TB,
  'LTO-6': 2.5 * TB,
  'LTO-7': 6 * TB,
  'LTO-8': 12 * TB,
  'LTO-9': 18 * TB,
};

/** Early-warning zone before the end of a medium. */
export const DEFAULT_EARLY_WARNING = 64 * 1024 * 1024;
/** Largest record a medium accepts. */
export const MAX_RECORD = 2 * 1024 * 1024;

export function isMediaType(s: string): s is MediaType {
  return (MEDIA_TYPES as readonly string[]).includes(s);
}

/** Capacity of a media type; `custom` needs its size in bytes. */
export function mediaCapacity(type: MediaType, custom?: number): number {
  if (type !== 'custom') {
    if (custom !== undefined && custom !== CAPACITY[type]) {
      throw new Error(`media type ${type} has a fixed capacity of ${CAPACITY[type]} bytes; use "custom" for another size`);
    }
    return CAPACITY[type];
  }
  if (custom === undefined || !Number.isSafeInteger(custom) || custom < 1) {
    throw new Error('a custom media type needs a capacity: a whole number of bytes, at least 1');
  }
  return custom;
}

/**
 * The early-warning zone: 64 MiB, but at most a quarter of the capacity so that small custom
 * media (tests, demos) still have room before their warning point.
 */
export function earlyWarningZone(capacity: number, requested?: number): number {
  if (requested !== undefined) {
    if (!Number.isSafeInteger(requested) || requested < 0 || requested >= capacity) {
      throw new Error(`early-warning zone must be 0..${capacity - 1} bytes, got ${requested}`);
    }
    return requested;
  }
  return Math.min(DEFAULT_EARLY_WARNING, Math.floor(capacity / 4));
}
