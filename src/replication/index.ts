/**
 * Replication layer: ships a store's cartridges to object tiers, and reads another store's
 * replicas in a second region (disaster recovery).
 *
 * Guarantees:
 * - Only sealed containers cross the wire (already compressed and encrypted), each at most once
 *   per target; then the cartridge's recipe pages that changed (sealed by the replication key)
 *   and, as the commit point, its catalog. A reader never meets a catalog whose data is not on
 *   the target (layout.ts, ship.ts).
 * - Replication jobs are persistent: they survive restarts, retry transient failures for as long
 *   as the target stays away, and never ship a container twice (replicator.ts). A deleted
 *   cartridge's jobs end cancelled, saying so.
 * - Every target is checked on a schedule (VTL_TARGET_CHECK_EVERY_MS, weekly by default) against
 *   what was shipped to it; what went missing there is shipped again (check.ts, replicator.ts).
 * - A second region needs the recovery key (the replication key under a passphrase), never the
 *   master key; it reads the target without writing to it, checks every chunk as the local store
 *   does, and keeps replicas read-only until promoted (dr.ts, replica-source.ts).
 */
import type { AbstractSublevel } from 'abstract-level';
import type { Level } from 'level';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type ReplicationDb = AbstractSublevel<Level<any, any>, any, string, any>;

export { Replicator, ReplicationError, REPLICATION_JOB_STATES, checkAlert } from './replicator.js';
export type { ReplicationJob, ReplicationJobState, Policy, CartridgeReplication, TargetSummary, TargetCheckRecord, ReplicatorOptions } from './replicator.js';
export { Targets, TargetError, Bandwidth } from './targets.js';
export type { TargetRecord } from './targets.js';
export { DisasterRecovery } from './dr.js';
export type { SourceRecord, ReplicaRecord, RefreshResult } from './dr.js';
export type { ShipResult, ReplicaState } from './ship.js';
export type { TargetCheck } from './check.js';
