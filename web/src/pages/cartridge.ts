/**
 * One cartridge: where it is, its flags, logical/unique/stored bytes and ratios, and its tape
 * files with their checksums (GET /api/v1/cartridges/:barcode). Restore-test history lights
 * up when the operations work adds its route.
 */
import { canOperate, enc, get, hasRoute, post, type Me } from '../api.js';
import { h, replace } from '../dom.js';
import { bytes, count, date, ratio } from '../format.js';
import type { Page } from '../page.js';
import { errorBox, notice, table, unavailable } from '../ui.js';
import { where, type Cartridge } from './cartridges.js';

interface Detail extends Cartridge {
  storedBytes: number;
  uniqueBytes: number;
  chunks: number;
  dedupRatio: number | null;
  compressionRatio: number | null;
  tapeFiles: { file: number; startLba: number; endLba: number; bytes: number; terminated: boolean; checksum: string }[] | null;
}

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
