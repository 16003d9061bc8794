/**
 * One cartridge: where it is, its flags, logical/unique/stored bytes and ratios, and its tape
 * files with their checksums (GET /api/v1/cartridges/:barcode). Restore-test history lights
 * up when the operations work adds its route. Replication: the state per target and, when the
 * cartridge came from another region, its replica record (the detail's `replication` and
 * `replica`); operators replicate it now to a chosen target and watch the job end.
 */
import { canOperate, enc, get, hasRoute, post, type Me } from '../api.js';
import { h, replace } from '../dom.js';
import { bytes, count, date, duration, ratio } from '../format.js';
import type { Page } from '../page.js';
import { errorBox, notice, table, unavailable } from '../ui.js';
import { where, type Cartridge } from './cartridges.js';
import { active, stateBadge, type Replica } from './replication.js';

interface Detail extends Cartridge {
  storedBytes: number;
  uniqueBytes: number;
  chunks: number;
  dedupRatio: number | null;
  compressionRatio: number | null;
  tapeFiles: { file: number; startLba: number; endLba: number; bytes: number; terminated: boolean; checksum: string }[] | null;
  /** Absent on a server without replication. */
  replication?: PerTarget[];
  replica?: Replica | null;
}
interface PerTarget {
  target: string;
  state: 'replicated' | 'stale' | 'never';
  lagSeconds: number | null;
  bytesShipped: number;
  lastBytesShipped: number;
  replicatedAt: string | null;
  seq: number | null;
  job: { id: string; state: string; lastError: string | null } | null;
}

const FOLLOW_MS = 2000;

export const cartridgePage: Page = (root, ctx) => {
  const bc = ctx.args[0] ?? '';
  replace(root, h('h1', {}, 'Cartridge ', h('span', { class: 'barcode' }, bc)), h('p', { class: 'hint' }, 'Loading…'));
  let stopped = false;
  void (async () => {
    let c: Detail;
    try {
      c = await get<Detail>(`/api/v1/cartridges/${enc(bc)}`);
    } catch (e) {
      if (!stopped) replace(root, h('h1', {}, 'Cartridge ', bc), errorBox(e), h('p', {}, h('a', { href: '#/cartridges' }, 'Back to the cartridges')));
      return;
    }
    const history = await restoreTests(bc, ctx.me);
    const replication = await replicationOf(c, ctx.me, () => stopped);
    if (stopped) return;
    const facts: [string, string][] = [
      ['Media', `${c.mediaType}, ${bytes(c.capacity)}`],
      ['State', c.state],
      ['Location', where(c.location)],
      ['WORM', c.worm ? 'yes' : 'no'],
      ['Write protected', c.writeProtected ? 'yes' : 'no'],
      ['Retention until', date(c.retentionUntil)],
      ['Logical bytes', bytes(c.logicalBytes)],
      ['Unique bytes', bytes(c.uniqueBytes)],
      ['Stored bytes', bytes(c.storedBytes)],
      ['Dedup ratio', ratio(c.dedupRatio)],
      ['Compression ratio', ratio(c.compressionRatio)],
      ['Chunks', count(c.chunks)],
      ['Created', date(c.createdAt)],
    ];
    const files =
      c.tapeFiles === null
        ? notice('A client holds this cartridge\'s drive right now, so its tape files cannot be read; try again later.', 'unavailable')
        : c.tapeFiles.length === 0
          ? h('p', { class: 'hint' }, 'No tape files: the cartridge is blank.')
          : table(
              ['File', 'Start LBA', 'End LBA', 'Bytes', 'Filemark', 'Checksum (XXH3-128)'],
              c.tapeFiles.map((f) => [String(f.file), String(f.startLba), String(f.endLba), `${count(f.bytes)} (${bytes(f.bytes)})`, f.terminated ? 'yes' : 'no', h('code', {}, f.checksum)]),
              { id: 'tape-files' },
            );
    replace(
      root,
      h('h1', {}, 'Cartridge ', h('span', { class: 'barcode', id: 'barcode' }, c.barcode)),
      h('p', {}, h('a', { href: '#/cartridges' }, '‹ All cartridges'), c.location.kind !== 'vault' ? [' · ', h('a', { href: `#/library/${enc(c.location.library ?? '')}` }, 'Its library')] : null),
      h('dl', { class: 'facts', id: 'facts' }, facts.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
      h('h2', {}, `Tape files (${c.files})`),
      files,
      h('h2', {}, 'Restore tests'),
      history,
      h('h2', {}, 'Replication'),
      replication,
    );
  })();
  return () => {
    stopped = true;
  };
};

interface Report {
  jobId: string;
  startedAt: string;
  seconds: number;
  files: number;
  bytes: number;
  mbPerSecond: number;
  result: string;
  failedFiles: { file: number; error: string | null }[];
}

/** Restore-test history, and for operators a button that starts one (a verify job). */
async function restoreTests(bc: string, me: Me): Promise<HTMLElement> {
  const route = '/api/v1/cartridges/{barcode}/verifications';
  if (!(await hasRoute(route))) return unavailable('Restore-test history', route.replace('{barcode}', ':barcode'), 'the operations work');
  const box = h('div', { id: 'restore-tests' });
  const draw = async (status?: HTMLElement) => {
    let r: { items: Report[] };
    try {
      r = await get<{ items: Report[] }>(`/api/v1/cartridges/${enc(bc)}/verifications`);
    } catch (e) {
      return replace(box, errorBox(e));
    }
    const start = canOperate(me) && (await hasRoute('/api/v1/cartridges/{barcode}/verify', 'post'))
      ? h('button', { type: 'button', id: 'run-verify', onclick: () => void run() }, 'Run a restore test now')
      : null;
    const rows = r.items.map((x) => [
      date(x.startedAt),
      h('span', { class: `result-${x.result}` }, x.result),
      String(x.files),
      bytes(x.bytes),
      `${x.seconds.toFixed(1)} s`,
      `${x.mbPerSecond.toFixed(1)} MB/s`,
      x.failedFiles.length ? x.failedFiles.map((f) => `file ${f.file}: ${f.error ?? 'failed'}`).join('; ') : '—',
    ]);
    replace(
      box,
      h('div', { class: 'toolbar' }, start, status),
      rows.length ? table(['Started', 'Result', 'Files', 'Bytes', 'Took', 'Speed', 'Failed files'], rows, { id: 'verifications' }) : h('p', { class: 'hint' }, 'No restore test has run on this cartridge.'),
    );
  };
  const run = async () => {
    try {
      const job = await post<{ id: string }>(`/api/v1/cartridges/${enc(bc)}/verify`);
      await draw(h('span', { id: 'verify-started' }, 'Started job ', h('a', { href: '#/jobs' }, job.id), '; the history below shows it when it ends. '));
    } catch (e) {
      await draw(errorBox(e));
    }
  };
  await draw();
  return box;
}

/**
 * The cartridge's replication per target, where it is a replica of another region, and for
 * operators "Replicate now"; while a job of this cartridge is queued or running the table
 * follows it (GET .../replication, which is cheaper than the whole detail).
 */
async function replicationOf(c: Detail, me: Me, stopped: () => boolean): Promise<HTMLElement> {
  if (c.replication === undefined) return unavailable('Replication', '/api/v1/replication/status', 'the replication work');
  const box = h('div', { id: 'cartridge-replication' });
  const status = h('span', { id: 'replicate-status', role: 'status' });
  const list = h('div', {});
  let timer: number | undefined;
  const draw = (items: PerTarget[], replica: Replica | null) => {
    replace(list, replicaFacts(replica), perTarget(items));
    clearTimeout(timer);
    if (items.some((x) => x.job && active(x.job)) && !stopped()) timer = window.setTimeout(() => void follow(), FOLLOW_MS);
  };
  const follow = async () => {
    if (stopped()) return;
    try {
      const r = await get<{ items: PerTarget[]; replica: Replica | null }>(`/api/v1/cartridges/${enc(c.barcode)}/replication`);
      if (!stopped()) draw(r.items, r.replica);
    } catch (e) {
      replace(status, errorBox(e));
    }
  };
  // A replica that is not promoted is read-only: only a store's own cartridges are replicated.
  const own = !c.replica || c.replica.state === 'promoted';
  const control = canOperate(me) && own ? await replicateControl(c.barcode, status, follow) : null;
  replace(box, h('div', { class: 'toolbar' }, control, status), list);
  draw(c.replication, c.replica ?? null);
  return box;
}

function replicaFacts(r: Replica | null): HTMLElement | null {
  if (!r) return null;
  const facts: [string, string][] = [
    ['Replica of', r.source],
    ['State', r.state === 'promoted' ? `promoted ${date(r.promotedAt)} (a writable cartridge of this store)` : 'replica (read-only until promoted)'],
    ['Catalog', String(r.seq)],
    ['Source sync point', date(r.syncedAt)],
    ['Catalog written', date(r.catalogCreatedAt)],
    ['Imported here', date(r.importedAt)],
    ['Logical bytes', bytes(r.logicalBytes)],
  ];
  return h('dl', { class: 'facts', id: 'replica-facts' }, facts.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

function perTarget(items: PerTarget[]): HTMLElement {
  if (!items.length) return h('p', { class: 'hint', id: 'no-replication' }, 'This store has no replication targets.');
  const state = (x: PerTarget) => h('span', { class: `repl-${x.state}`, 'data-replication-state': x.state }, x.state === 'stale' ? 'stale (written since)' : x.state === 'never' ? 'never replicated' : 'replicated');
  const job = (x: PerTarget) => (x.job ? h('span', { 'data-job': x.job.id }, h('a', { href: `#/replication?target=${enc(x.target)}` }, h('code', {}, x.job.id)), ' ', stateBadge(x.job.state), x.job.lastError ? h('span', { class: 'error' }, ` ${x.job.lastError}`) : '') : '—');
  return table(
    ['Target', 'State', 'Lag', 'Replicated at', 'Catalog', 'Shipped in all', 'Last shipment', 'Latest job'],
    items.map((x) => [h('strong', { 'data-target': x.target }, x.target), state(x), duration(x.lagSeconds), date(x.replicatedAt), x.seq === null ? '—' : String(x.seq), bytes(x.bytesShipped), bytes(x.lastBytesShipped), job(x)]),
    { id: 'replication-per-target' },
  );
}

/** A target to choose and the button; the job it starts is followed in the table. */
async function replicateControl(bc: string, status: HTMLElement, follow: () => Promise<void>): Promise<HTMLElement | null> {
  let targets: { name: string }[];
  try {
    targets = (await get<{ items: { name: string }[] }>('/api/v1/replication/targets')).items;
  } catch (e) {
    return errorBox(e);
  }
  if (!targets.length) return null;
  const select = h('select', { id: 'replicate-target', 'aria-label': 'replication target' }, targets.map((t) => h('option', { value: t.name }, t.name)));
  const button = h('button', { type: 'button', id: 'replicate-now' }, 'Replicate now');
  button.addEventListener('click', () => {
    button.disabled = true;
    replace(status, `Queuing a replication to ${select.value}…`);
    void post<{ id: string; state: string }>(`/api/v1/cartridges/${enc(bc)}/replicate`, { target: select.value })
      .then(
        (job) => replace(status, h('span', { id: 'replicate-started', 'data-job': job.id }, 'Job ', h('a', { href: `#/replication?target=${enc(select.value)}` }, job.id), ` ${job.state}; the table follows it.`)),
        (e) => replace(status, errorBox(e)),
      )
      .then(follow)
      .finally(() => (button.disabled = false));
  });
  return h('span', { class: 'toolbar' }, h('label', {}, 'to ', select), button);
}
