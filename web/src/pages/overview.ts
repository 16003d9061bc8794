/**
 * Overview: the store-wide figures now (GET /api/v1/stats), logical vs stored bytes over the
 * last day, 7 days or 90 days from the server's capacity history (GET /api/v1/stats/history,
 * which also gives "throughput now": the bytes of its newest interval), replication lag per
 * target (GET /api/v1/replication/status, when the server has replication) and the recent
 * alerts (GET /api/v1/alerts) linked to the cartridges and jobs they concern. Refreshed while
 * the tab is visible.
 */
import { ApiError, enc, get } from '../api.js';
import { lineChart } from '../chart.js';
import { h, replace } from '../dom.js';
import { bytes, count, date, duration, ratio } from '../format.js';
import type { Page } from '../page.js';
import { card, errorBox, table, unavailable } from '../ui.js';

interface Totals {
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
interface Point extends Totals {
  at: string;
  seconds: number;
  samples: number;
  traffic: Record<string, { in: number; out: number }>;
}
interface History {
  resolution: 'fine' | 'hourly';
  from: string;
  to: string;
  intervalSeconds: number | null;
  points: Point[];
  latest: Point | null;
}
interface Alert {
  id: string;
  at: string;
  kind: string;
  message: string;
  details: Record<string, unknown>;
}
interface Target {
  name: string;
  url: string;
  cartridges: number;
  replicated: number;
  pending: number;
  failed: number;
  maxLagSeconds: number | null;
}

const DAY = 86_400_000;
const RANGES: Record<string, { label: string; ms: number }> = {
  '1d': { label: '1 day', ms: DAY },
  '7d': { label: '7 days', ms: 7 * DAY },
  '90d': { label: '90 days', ms: 90 * DAY },
};
const REFRESH_MS = 30_000;
const ALERTS = 10;
const BARCODE = /^[A-Z0-9]{1,16}$/;

export const overviewPage: Page = (root, ctx) => {
  const range = RANGES[ctx.query.get('range') ?? ''] ? ctx.query.get('range')! : '1d';
  const cards = h('div', { class: 'cards', id: 'stats' });
  const chart = h('div', { class: 'chart', id: 'chart' }, h('p', { class: 'hint' }, 'Loading the history…'));
  const replication = h('section', { class: 'panel', id: 'replication' }, h('h2', {}, 'Replication lag'));
  const alerts = h('section', { class: 'panel', id: 'alerts' }, h('h2', {}, 'Recent alerts'));
  const buttons = Object.entries(RANGES).map(([k, r]) =>
    h('button', { type: 'button', 'data-range': k, class: k === range ? 'active' : null, 'aria-pressed': String(k === range), onclick: () => ctx.go(`#/overview?range=${k}`) }, r.label),
  );
  replace(
    root,
    h('h1', {}, 'Overview'),
    cards,
    h('h2', {}, 'Logical and stored bytes'),
    h('div', { class: 'toolbar', id: 'ranges' }, buttons),
    chart,
    h('div', { class: 'panels' }, replication, alerts),
  );

  let stopped = false;
  let timer: number | undefined;
  const tick = async () => {
    // A hidden tab costs the server nothing (stats walk every cartridge); it refreshes when shown.
    if (!document.hidden) {
      await Promise.all([
        drawFigures(cards, chart, RANGES[range].ms, () => stopped),
        drawReplication(replication, () => stopped),
        drawAlerts(alerts, () => stopped),
      ]);
    }
    if (!stopped) timer = window.setTimeout(() => void tick(), REFRESH_MS);
  };
  void tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
};

async function drawFigures(cards: HTMLElement, chart: HTMLElement, rangeMs: number, stopped: () => boolean): Promise<void> {
  const to = Date.now();
  const q = new URLSearchParams({ from: new Date(to - rangeMs).toISOString(), to: new Date(to).toISOString() });
  const [stats, history] = await Promise.all([get<Totals>('/api/v1/stats').catch((e: unknown) => e), get<History>(`/api/v1/stats/history?${q}`).catch((e: unknown) => e)]);
  if (stopped()) return;
  if (stats instanceof Error) replace(cards, errorBox(stats));
  else renderCards(cards, stats as Totals, history instanceof Error ? null : (history as History));
  if (history instanceof ApiError && history.status === 404) replace(chart, unavailable('Capacity history', '/api/v1/stats/history', 'a newer server'));
  else if (history instanceof Error) replace(chart, errorBox(history));
  else renderChart(chart, history as History, to - rangeMs, to);
}

/** Bytes per second of the newest sample interval, summed over protocols, or null when stale. */
function throughput(h: History | null): { in: number; out: number; seconds: number; protocols: string[] } | null {
  const p = h?.latest;
  if (!p || p.seconds <= 0) return null;
  // A point older than three intervals means sampling stopped: its rate is not "now".
  const every = (h!.intervalSeconds ?? 60) * 1000;
  if (Date.now() - Date.parse(p.at) > 3 * every + 5000) return null;
  const all = Object.values(p.traffic);
  const sum = (pick: (t: { in: number; out: number }) => number) => all.reduce((a, t) => a + pick(t), 0) / p.seconds;
  return { in: sum((t) => t.in), out: sum((t) => t.out), seconds: p.seconds, protocols: Object.keys(p.traffic) };
}

function renderCards(el: HTMLElement, s: Totals, history: History | null): void {
  const rate = throughput(history);
  const note = rate ? `read ${bytes(rate.out)}/s · last ${duration(rate.seconds)} (${rate.protocols.join(', ') || 'no protocol'})` : history ? 'no recent sample' : 'history unavailable';
  replace(
    el,
    card('Logical bytes', bytes(s.logicalBytes), 'logical', 'what clients wrote'),
    card('Stored bytes', bytes(s.storedBytes), 'stored', 'on disk after dedup and compression'),
    card('Dedup ratio', ratio(s.dedupRatio), 'dedup', `unique ${bytes(s.uniqueBytes)}`),
    card('Compression ratio', ratio(s.compressionRatio), 'compression'),
    card('Total reduction', ratio(s.reductionRatio), 'reduction', 'logical / stored'),
    card('Write throughput now', rate ? `${bytes(rate.in)}/s` : '—', 'throughput', note),
    card('Libraries', count(s.libraries), 'libraries'),
    card('Cartridges', count(s.cartridges), 'cartridges'),
    card('Chunks', count(s.chunks), 'chunks', `${count(s.containers)} containers`),
  );
}

function renderChart(el: HTMLElement, r: History, from: number, to: number): void {
  const every = r.intervalSeconds === null ? 'The server is not sampling (VTL_HISTORY_INTERVAL_MS=0).' : `The server records a point every ${duration(r.intervalSeconds)}`;
  const kept = 'fine points are kept 2 days, hourly ones 400 days.';
  if (!r.points.length) {
    replace(el, h('p', { class: 'hint', id: 'chart-empty' }, `No history in this range yet. ${every}${r.intervalSeconds === null ? '' : `; ${kept}`}`));
    return;
  }
  const times = r.points.map((p) => Date.parse(p.at));
  const last = r.points[r.points.length - 1];
  replace(
    el,
    lineChart({
      from,
      to,
      times,
      series: [
        { key: 'logical', label: 'logical', values: r.points.map((p) => p.logicalBytes) },
        { key: 'stored', label: 'stored', values: r.points.map((p) => p.storedBytes) },
      ],
    }),
    h(
      'div',
      { class: 'legend' },
      h('span', { class: 'swatch logical' }),
      'logical ',
      h('span', { class: 'swatch stored' }),
      'stored ',
      h('span', { class: 'hint', id: 'chart-points', 'data-points': r.points.length, 'data-resolution': r.resolution }, `${count(r.points.length)} ${r.resolution} point${r.points.length === 1 ? '' : 's'}, the last at ${date(last.at)} (dedup ${ratio(last.dedupRatio)}, compression ${ratio(last.compressionRatio)}). ${every}${r.intervalSeconds === null ? '' : `; ${kept}`}`),
    ),
  );
}

async function drawReplication(el: HTMLElement, stopped: () => boolean): Promise<void> {
  let body: HTMLElement;
  try {
    const r = await get<{ targets?: Target[] }>('/api/v1/replication/status');
    const targets = r.targets ?? [];
    body = targets.length
      ? table(
          ['Target', 'Cartridges', 'Replicated', 'Pending', 'Failed', 'Max lag'],
          targets.map((t) => [
            h('a', { href: `#/replication?target=${enc(t.name)}`, title: t.url, 'data-target': t.name }, t.name),
            count(t.cartridges),
            count(t.replicated),
            count(t.pending),
            h('span', { class: t.failed > 0 ? 'result-failed' : null }, count(t.failed)),
            duration(t.maxLagSeconds),
          ]),
          { id: 'replication-targets' },
        )
      : h('p', { class: 'hint', id: 'no-replication' }, 'No replication targets.');
  } catch (e) {
    // 404: this server has no replication yet, which is the same as no targets.
    body = e instanceof ApiError && e.status === 404 ? h('p', { class: 'hint', id: 'no-replication' }, 'No replication targets.') : errorBox(e);
  }
  if (!stopped()) replace(el, h('h2', {}, 'Replication lag'), body);
}

async function drawAlerts(el: HTMLElement, stopped: () => boolean): Promise<void> {
  let body: HTMLElement;
  try {
    const r = await get<{ items: Alert[] }>(`/api/v1/alerts?limit=${ALERTS}`);
    body = r.items.length
      ? table(
          ['Kind', 'At', 'Message', 'Concerns'],
          r.items.map((a) => [h('span', { class: `alert-kind kind-${a.kind}`, 'data-alert-kind': a.kind }, a.kind.replace(/_/g, ' ')), date(a.at), a.message, concerns(a)]),
          { id: 'alert-list' },
        )
      : h('p', { class: 'hint', id: 'no-alerts' }, 'No alerts.');
  } catch (e) {
    body = e instanceof ApiError && e.status === 404 ? unavailable('Alerts', '/api/v1/alerts', 'the operations work') : errorBox(e);
  }
  if (stopped()) return;
  replace(el, h('h2', {}, 'Recent alerts'), h('p', { class: 'hint' }, `The newest ${ALERTS}; alerts are also in the audit log and go to the webhooks.`), body);
}

/** Links to what an alert is about: the cartridges it names and the job that raised it. */
function concerns(a: Alert): HTMLElement {
  const d = a.details;
  const links: (HTMLElement | string)[] = [];
  const cartridge = (bc: string) => h('a', { href: `#/cartridge/${enc(bc)}`, class: 'barcode' }, bc);
  if (typeof d.target === 'string' && BARCODE.test(d.target)) links.push(cartridge(d.target));
  const affected = Array.isArray(d.affectedCartridges) ? (d.affectedCartridges as { barcode?: unknown }[]).map((c) => c.barcode).filter((b): b is string => typeof b === 'string') : [];
  for (const bc of affected.slice(0, 5)) links.push(cartridge(bc));
  if (affected.length > 5) links.push(`and ${count(affected.length - 5)} more`);
  if (typeof d.job === 'string') links.push(h('a', { href: `#/jobs${a.kind === 'job_failed' ? '?state=failed' : ''}`, 'data-job': d.job }, `job ${d.job}`));
  if (a.kind === 'capacity' && typeof d.used === 'number') links.push(`data directory ${(d.used * 100).toFixed(1)}% full`);
  return h('span', { class: 'concerns' }, links.flatMap((l, i) => (i ? [' ', l] : [l])));
}
