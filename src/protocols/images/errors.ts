/** Errors of image import and export. */

/** A malformed image: where in the image (byte offset) and why. Nothing was imported. */
export class ImageFormatError extends Error {
  readonly code = 'MALFORMED_IMAGE';
  constructor(
    readonly format: string,
    readonly offset: number,
    readonly reason: string,
  ) {
    super(`${format} image is malformed at byte ${offset}: ${reason}`);
    this.name = 'ImageFormatError';
  }
}

export type ImageRequestCode =
  | 'BAD_FORMAT'
  | 'BAD_OPTION'
  | 'NOT_BLANK'
  | 'WRITE_PROTECTED'
  | 'WORM'
  | 'NOT_LOADED'
  | 'NO_ROOM'
  | 'TAPE_ERROR'
  | 'NOT_REPRESENTABLE';

/**
 * A request the image layer refuses or a tape operation that failed, with a code the API maps
 * to HTTP (BAD_* and NOT_REPRESENTABLE: 400; NOT_BLANK, WRITE_PROTECTED, WORM: 409;
 * NO_ROOM: 507; TAPE_ERROR: 500).
 */
export class ImageRequestError extends Error {
  constructor(
    readonly code: ImageRequestCode,
    message: string,
  ) {
    super(message);
    this.name = 'ImageRequestError';
  }
}
