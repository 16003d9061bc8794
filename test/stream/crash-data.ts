import { backupLikeBytes } from '../helpers/data.js';

/** The content every crash-test stream has: derived from its id, so both processes agree. */
export function streamBytes(id: string, length: number): Buffer {
  return backupLikeBytes(length, parseInt(id, 16) * 7919 + 13);
}
