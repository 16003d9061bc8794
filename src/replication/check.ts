/**
 * Checking a target against what this store shipped to it. Objects can go missing or be damaged
 * on a target (a lifecycle rule, an operator, bit rot in a bucket) without the source hearing of
 * it: replication records what it shipped and does not look again, and every later generation
 * dedups against those containers. A check:
 * 1. lists the target's containers and compares them with the record of what was shipped
 *    (sizes; with `deep`, every byte of those this store still has);
 * 2. ships again at once every container that is missing or damaged and is still here; one that
 *    is not (GC collected it since) is struck from the record;
 * 3. opens each cartridge's newest catalog on the target (authenticated) and checks that its
 *    packs and containers are there; a cartridge whose replica cannot be read back whole is
 *    struck from the record too, so that its next replication ships a complete generation.
 * Guarantees: nothing on the target is deleted; a container is written again only from this
 * store's own sealed copy (the bytes the record says were shipped).
 */
import { CONTAINER_HEADER, catalogObject, containerObject, decodeCatalog, type Catalog } from './layout.js';
import { putContainer, shippedKey, stateKey, type ShipDeps } from './ship.js';
import type { OpenTarget } from './targets.js';

export interface TargetCheck {
  target: string;
  deep: boolean;
  /** Containers the record says this target holds. */
  containersRecorded: number;
  /** Of those: absent, or of another size, on the target. */
  missing: number[];
  /** Of those: present, but their bytes differ from this store's copy (deep only). */
  damaged: number[];
  /** Missing or damaged ones shipped again. */
  reshipped: number[];
  /** Missing or damaged ones this store no longer has (collected): struck from the record. */
  lost: number[];
  cartridgesChecked: number;
  /** Cartridges whose newest replica cannot be read back whole: replicated in full next time. */
  brokenReplicas: Array<{ barcode: string; seq: number; reason: string }>;
  bytesShipped: number;
}

export interface CheckOptions {
  deep: boolean;
  progress: (done: number, total: number, message: string) => void;
  cancelled: () => boolean;
}

export async function checkTarget(deps: ShipDeps, target: OpenTarget, opts: CheckOptions): Promise<TargetCheck> {
  const name = target.record.name;
  const report: TargetCheck = {
    target: name,
    deep: opts.deep,
    containersRecorded: 0,
    missing: [],
    damaged: [],
    reshipped: [],
    lost: [],
    cartridgesChecked: 0,
    brokenReplicas: [],
    bytesShipped: 0,
  };
  const onTarget = new Map<number, number>();
  for await (const e of target.tier.list('containers/')) onTarget.set(parseInt(e.key.slice('containers/'.length), 16), e.size);
  const recorded = new Map<number, number>();
  for await (const [key, size] of deps.tables.shipped.iterator({ gt: `${name}!`, lt: `${name}"` })) {
    recorded.set(parseInt(key.slice(name.length + 1), 16), size);
  }
  report.containersRecorded = recorded.size;
  let done = 0;
  for (const [id, size] of recorded) {
    if (opts.cancelled()) throw new Error('cancelled');
    opts.progress(done++, recorded.size, `containers checked on ${name}`);
    const present = onTarget.get(id) === size;
    if (present && !opts.deep) continue;
    const local = await deps.chunks.sealedContainer(id);
    if (present && (!local || (await sameBody(target, id, local.bytes)))) continue;
    (present ? report.damaged : report.missing).push(id);
    if (!local) {
      await deps.tables.shipped.del(shippedKey(name, id));
      report.lost.push(id);
      continue;
    }
    const sent = await putContainer(deps, target, id, local);
    onTarget.set(id, sent);
    report.reshipped.push(id);
    report.bytesShipped += sent;
  }
  await checkCatalogs(deps, target, onTarget, opts, report);
  return report;
}

/** The object's bytes after its header equal this store's sealed container. */
async function sameBody(target: OpenTarget, id: number, local: Buffer): Promise<boolean> {
  const body = await target.tier.get(containerObject(id));
  return body.length === CONTAINER_HEADER + local.length && body.subarray(CONTAINER_HEADER).equals(local);
}

/** Each cartridge's newest catalog opens, and names only packs and containers the target has. */
async function checkCatalogs(deps: ShipDeps, target: OpenTarget, onTarget: Map<number, number>, opts: CheckOptions, report: TargetCheck): Promise<void> {
  const name = target.record.name;
  const states = [];
  for await (const s of deps.tables.state.values({ gt: `${name}!`, lt: `${name}"` })) states.push(s);
  for (const s of states) {
    if (opts.cancelled()) throw new Error('cancelled');
    opts.progress(report.cartridgesChecked++, states.length, `catalogs checked on ${name}`);
    const reason = await replicaProblem(deps, target, s.barcode, s.seq, onTarget, opts.deep);
    if (!reason) continue;
    report.brokenReplicas.push({ barcode: s.barcode, seq: s.seq, reason });
    const b = deps.tables.root.batch();
    b.del(stateKey(name, s.barcode), { sublevel: deps.tables.state });
    b.del(stateKey(name, s.barcode), { sublevel: deps.tables.pageTables });
    await b.write({ sync: true } as object);
  }
}

async function replicaProblem(deps: ShipDeps, target: OpenTarget, barcode: string, seq: number, onTarget: Map<number, number>, deep: boolean): Promise<string | undefined> {
  const catName = catalogObject(barcode, seq);
  let catalog: Catalog;
  try {
    catalog = decodeCatalog(deps.cipher.open(catName, await target.tier.get(catName)), catName);
  } catch (err) {
    return `catalog ${catName}: ${(err as Error).message}`;
  }
  const gone = catalog.containers.filter((id) => !onTarget.has(id));
  if (gone.length > 0) return `container${gone.length === 1 ? '' : 's'} ${gone.slice(0, 5).join(', ')}${gone.length > 5 ? ', ...' : ''} missing`;
  for (const pack of catalog.stream.packs) {
    try {
      if (deep) deps.cipher.open(pack, await target.tier.get(pack));
      else if (!(await target.tier.head(pack))) return `pack ${pack} missing`;
    } catch (err) {
      return `pack ${pack}: ${(err as Error).message}`;
    }
  }
  return undefined;
}
