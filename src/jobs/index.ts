/**
 * Jobs layer: long-running operations work (restore tests, space reclamation, expiry) and the
 * audit log.
 *
 * Guarantees:
 * - Every job has a durable record (`jobs` / `runs`) from the moment `start` answers: kind,
 *   target, who asked, state, progress (saved at most once a second), result or error. A job
 *   cut off by a stop ends `interrupted`; one cut off by a crash is marked so at the next start,
 *   never left `running`.
 * - Scheduled jobs keep their period across restarts (counted from the last run on record); a
 *   run that is due at start, or was cut off, starts again soon after the start.
 * - Cancel is cooperative: the job stops at its next check and ends `cancelled`, keeping the
 *   partial result it had.
 * - A verify job reads every tape file of a cartridge, checks its end-to-end checksum and
 *   stores a report (when, files, bytes, MB/s, result, each failed file and why) as history.
 * - The expire job dates cartridges by their library's `scratchAfterDays` policy and returns
 *   cartridges whose retention date has passed to scratch (erased: their chunks become garbage).
 * - GC marks live chunks from every recipe (Bloom filter, bounded memory) and deletes or
 *   compacts containers in the chunk store's crash-safe order; nothing live is ever lost,
 *   also while backups run.
 * - Scrub reads every sealed container, checks every chunk and lists the damaged ones with the
 *   cartridges and tape files that depend on them (repair from replicas: not in this build).
 * - Alerts (failed jobs, scrub damage, capacity over a threshold) are kept, written to the audit
 *   log and POSTed to webhooks with retries.
 * - The audit log is hash-chained: `verify()` finds an edited entry, a deleted entry and a
 *   cut-off tail.
 * This layer uses library, tape and stream; the API and CLI use it.
 */
export { Jobs, JobCancelled, JobNotFound, JOB_STATES } from './jobs.js';
export type { JobRecord, JobState, JobContext, JobFn, JobProgress, StartJob, JobsDb } from './jobs.js';
export { Verifications, VerifyError } from './verify.js';
export type { VerifyReport, FileVerdict } from './verify.js';
export { Retention, NO_POLICY } from './retention.js';
export type { LibraryPolicy, ExpireReport } from './retention.js';
export { Schedule } from './schedule.js';
export { GarbageCollector } from './gc.js';
export { Scrubber } from './scrub.js';
export type { ScrubOptions, ScrubReport, DamagedChunk, AffectedCartridge } from './scrub.js';
export type { GcOptions, GcReport } from './gc.js';
export { Alerts } from './alerts.js';
export type { Alert, AlertKind, AlertOptions, Webhook } from './alerts.js';
export { AuditLog, entryHash } from './audit.js';
export type { AuditEntry, AuditInput, AuditFilter, ChainCheck } from './audit.js';
