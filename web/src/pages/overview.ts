/**
 * Overview: store-wide logical vs stored bytes and the ratios from /api/v1/stats. The server
 * keeps no history of these yet, so the chart is sampled by this page while it is open, and
 * "throughput now" is the change of logical bytes between the last two samples.
 */
import { get, hasRoute } from '../api.js';
import { h, replace, svg } from '../dom.js';
import { bytes, count, ratio } from '../format.js';
import type { Page } from '../page.js';
import { card, errorBox, unavailable } from '../ui.js';

interface Stats {
  libraries: number;
  cartridges: number;
  logicalBytes: number;
  uniqueBytes: number;
  storedBytes: number;
  dedupRatio: number | null;
  compressionRatio: number | null;
  reductionRatio: number | null;
  containers: number;
  chunks: number;
}
interface Sample {
  t: number;
  logical: number;
  stored: number;
}

const EVERY_MS = 5000;
const KEEP = 360; // 30 minutes of samples

export const overviewPage: Page = (root) => {
  const cards = h('div', { class: 'cards', id: 'stats' });
  const chart = h('div', { class: 'chart', id: 'chart' });
  const later = h('div', { class: 'later' });
  replace(
    root,
    h('h1', {}, 'Overview'),
    cards,
    h('h2', {}, 'Logical and stored bytes'),
    h('p', { class: 'hint' }, `Sampled by this page every ${EVERY_MS / 1000} s while it is open (the server keeps no history yet); the chart starts when you open the page.`),
    chart,
    later,
  );
  const samples: Sample[] = [];
  let timer: number | undefined;
  let stopped = false;

  const tick = async () => {
    // A hidden tab costs the server nothing (stats walk every cartridge); sampling resumes when shown.
    if (document.hidden) {
      timer = window.setTimeout(tick, EVERY_MS);
      return;
    }
    try {
      const s = await get<Stats>('/api/v1/stats');
      if (stopped) return;
      samples.push({ t: Date.now(), logical: s.logicalBytes, stored: s.storedBytes });
      if (samples.length > KEEP) samples.shift();
      renderCards(cards, s, samples);
      renderChart(chart, samples);
    } catch (e) {
      if (!stopped) replace(cards, errorBox(e));
    }
    if (!stopped) timer = window.setTimeout(tick, EVERY_MS);
  };
  void tick();
  void renderLater(later);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
};

function renderCards(el: HTMLElement, s: Stats, samples: Sample[]): void {
  const [a, b] = samples.slice(-2);
  const rate = a && b && b.t > a.t ? Math.max(0, (b.logical - a.logical) / ((b.t - a.t) / 1000)) : null;
  replace(
    el,
    card('Logical bytes', bytes(s.logicalBytes), 'logical', 'what clients wrote'),
    card('Stored bytes', bytes(s.storedBytes), 'stored', 'on disk after dedup and compression'),
    card('Dedup ratio', ratio(s.dedupRatio), 'dedup', `unique ${bytes(s.uniqueBytes)}`),
    card('Compression ratio', ratio(s.compressionRatio), 'compression'),
    card('Total reduction', ratio(s.reductionRatio), 'reduction', 'logical / stored'),
    card('Write throughput now', rate === null ? '—' : `${bytes(rate)}/s`, 'throughput', 'from the last two samples'),
    card('Libraries', count(s.libraries), 'libraries'),
    card('Cartridges', count(s.cartridges), 'cartridges'),
    card('Chunks', count(s.chunks), 'chunks', `${count(s.containers)} containers`),
  );
}

function renderChart(el: HTMLElement, samples: Sample[]): void {
  const W = 720;
  const H = 200;
  const pad = 40;
  const max = Math.max(1, ...samples.map((s) => Math.max(s.logical, s.stored)));
  const t0 = samples[0].t;
  const span = Math.max(1, samples[samples.length - 1].t - t0);
  const x = (t: number) => pad + ((t - t0) / span) * (W - 2 * pad);
  const y = (v: number) => H - pad / 2 - (v / max) * (H - pad);
  const line = (pick: (s: Sample) => number, cls: string) =>
    svg('polyline', { class: cls, fill: 'none', points: samples.map((s) => `${x(s.t).toFixed(1)},${y(pick(s)).toFixed(1)}`).join(' ') });
  const label = (text: string, yy: number) => {
    const t = svg('text', { x: 4, y: yy, class: 'axis' });
    t.textContent = text;
    return t;
  };
  const graph = svg(
    'svg',
    { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': 'logical and stored bytes over time' },
    svg('line', { x1: pad, y1: y(0), x2: W - pad, y2: y(0), class: 'axisline' }),
    label(bytes(max), 14),
    label('0', y(0)),
    line((s) => s.logical, 'logical'),
    line((s) => s.stored, 'stored'),
    // The newest sample as dots, so a single sample is visible too.
    ...(['logical', 'stored'] as const).map((k) => {
      const last = samples[samples.length - 1];
      return svg('circle', { class: k, cx: x(last.t).toFixed(1), cy: y(last[k]).toFixed(1), r: 3 });
    }),
  );
  replace(
    el,
    graph,
    h('div', { class: 'legend' }, h('span', { class: 'swatch logical' }), 'logical ', h('span', { class: 'swatch stored' }), 'stored ', h('span', { class: 'hint' }, `${samples.length} sample${samples.length === 1 ? '' : 's'}`)),
  );
}

async function renderLater(el: HTMLElement): Promise<void> {
  const [replication, alerts] = await Promise.all([hasRoute('/api/v1/replication'), hasRoute('/api/v1/alerts')]);
  replace(
    el,
    h('h2', {}, 'Replication lag'),
    replication ? h('p', {}, h('a', { href: '#/replication' }, 'See the replication page')) : unavailable('Replication', '/api/v1/replication', 'the replication work'),
    h('h2', {}, 'Open alerts'),
    alerts ? await alertList() : unavailable('Alerts', '/api/v1/alerts', 'the operations work'),
  );
}

async function alertList(): Promise<HTMLElement> {
  try {
    const r = await get<{ items?: { message?: string }[] }>('/api/v1/alerts');
    const items = r.items ?? [];
    return items.length ? h('ul', {}, items.map((a) => h('li', {}, a.message ?? JSON.stringify(a)))) : h('p', {}, 'No open alerts.');
  } catch (e) {
    return errorBox(e);
  }
}
