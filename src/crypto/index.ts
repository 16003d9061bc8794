/**
 * Crypto layer: the store's keys. Depends on node:crypto only.
 *
 * Guarantees (details in keyring.ts):
 * - One master key per store wraps (AES-256-GCM) a random 32-byte data key per container and
 *   the store's fingerprint secret and gear seed; keys never appear in logs or errors.
 * - A wrapped data key unwraps only for the container it was made for.
 * - Master key rotation re-wraps keys only (never chunk data) and is crash-safe.
 * - A separate replication key protects what is shipped to object tiers; the recovery key file
 *   (recovery.ts) carries it to a second region under a passphrase, without the master key.
 */
export {
  Keyring,
  KeyringError,
  checkFingerprintSecret,
  type DataKeyTable,
  DATA_KEY_BYTES,
  FINGERPRINT_SECRET_BYTES,
  GEAR_SEED_BYTES,
  MIN_FINGERPRINT_SECRET_BYTES,
  REPLICATION_KEY_BYTES,
} from './keyring.js';
export { exportRecoveryKey, importRecoveryKey, replicationKeyId, ReplicaCipher, RecoveryKeyError, ReplicaIntegrityError, type RecoveryMaterial } from './recovery.js';
