/**
 * A time-series line chart in plain SVG (no chart library): the asked-for time range on x (so
 * a young server shows where its history starts), bytes from 0 on y with ticks at round sizes,
 * one path per series broken where the server took no samples (it was down), and a readout
 * of the point nearest the pointer. Styling is by class only (the CSP forbids inline styles).
 */
import { h, replace, svg } from './dom.js';
import { bytes, date } from './format.js';

export interface Series {
  /** CSS class of the line and its swatch. */
  key: string;
  label: string;
  /** One value per time. */
  values: number[];
}

export interface ChartData {
  from: number;
  to: number;
  /** Epoch ms, ascending. */
  times: number[];
  series: Series[];
}

const W = 860;
const H = 260;
const PAD = { left: 72, right: 16, top: 14, bottom: 30 };
const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const TIME_STEPS = [MIN, 5 * MIN, 15 * MIN, 30 * MIN, HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY];

export function lineChart(d: ChartData): HTMLElement {
  const step = byteStep(Math.max(1, ...d.series.flatMap((s) => s.values)) / 4);
  const max = Math.max(1, Math.ceil(Math.max(1, ...d.series.flatMap((s) => s.values)) / step)) * step;
  const span = Math.max(1, d.to - d.from);
  const x = (t: number) => PAD.left + ((t - d.from) / span) * (W - PAD.left - PAD.right);
  const y = (v: number) => H - PAD.bottom - (v / max) * (H - PAD.top - PAD.bottom);
  const gap = gapThreshold(d.times);
  const cursor = svg('line', { class: 'cursor', x1: 0, x2: 0, y1: PAD.top, y2: H - PAD.bottom, visibility: 'hidden' });
  const graph = svg(
    'svg',
    { viewBox: `0 0 ${W} ${H}`, class: 'timechart', role: 'img', 'aria-label': d.series.map((s) => s.label).join(' and ') + ' over time' },
    ...yTicks(max, step, y),
    ...xTicks(d.from, d.to, x),
    svg('line', { class: 'axisline', x1: PAD.left, y1: y(0), x2: W - PAD.right, y2: y(0) }),
    ...d.series.map((s) => svg('path', { class: `line ${s.key}`, fill: 'none', d: pathOf(d.times, s.values, x, y, gap) })),
    // The newest point as dots, so a single point is visible too.
    ...(d.times.length ? d.series.map((s) => svg('circle', { class: `dot ${s.key}`, cx: x(d.times.at(-1)!).toFixed(1), cy: y(s.values.at(-1)!).toFixed(1), r: 3.5 })) : []),
    cursor,
  );
  const readout = h('div', { class: 'readout', id: 'chart-readout' }, d.times.length ? 'Point at the chart to read a value.' : '');
  graph.addEventListener('pointermove', (ev) => {
    const i = nearest(d.times, d.from + ((svgX(graph, ev) - PAD.left) / (W - PAD.left - PAD.right)) * span);
    if (i < 0) return;
    const cx = x(d.times[i]).toFixed(1);
    cursor.setAttribute('x1', cx);
    cursor.setAttribute('x2', cx);
    cursor.setAttribute('visibility', 'visible');
    replace(readout, date(new Date(d.times[i]).toISOString()), ...d.series.flatMap((s) => [' · ', h('span', { class: `swatch ${s.key}` }), `${s.label} ${bytes(s.values[i])}`]));
  });
  graph.addEventListener('pointerleave', () => cursor.setAttribute('visibility', 'hidden'));
  return h('div', {}, graph, readout);
}

/** "M x,y L x,y ..." with a new "M" after a gap, so downtime is not drawn as a straight line. */
function pathOf(times: number[], values: number[], x: (t: number) => number, y: (v: number) => number, gap: number): string {
  return times.map((t, i) => `${i === 0 || t - times[i - 1] > gap ? 'M' : 'L'}${x(t).toFixed(1)},${y(values[i]).toFixed(1)}`).join(' ');
}

/** Three times the usual spacing of the points (their median gap) counts as missing samples. */
function gapThreshold(times: number[]): number {
  const gaps = times
    .slice(1)
    .map((t, i) => t - times[i])
    .sort((a, b) => a - b);
  return gaps.length ? 3 * gaps[Math.floor(gaps.length / 2)] : Infinity;
}

/** A round tick step at or above raw: 1, 2, 2.5 or 5 × 10^n of a binary unit (B, KiB, MiB...). */
function byteStep(raw: number): number {
  const unit = 1024 ** Math.max(0, Math.floor(Math.log(Math.max(raw, 1)) / Math.log(1024)));
  for (const m of [1, 2, 2.5, 5, 10, 20, 25, 50, 100, 200, 250, 500]) if (m * unit >= raw) return m * unit;
  return 1024 * unit;
}

function yTicks(max: number, step: number, y: (v: number) => number): SVGElement[] {
  const out: SVGElement[] = [];
  for (let k = 0; k * step <= max; k++) {
    const v = k * step;
    out.push(svg('line', { class: 'grid', x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }), text(bytes(v), PAD.left - 6, y(v) + 4, 'end'));
  }
  return out;
}

function xTicks(from: number, to: number, x: (t: number) => number): SVGElement[] {
  const step = TIME_STEPS.find((s) => (to - from) / s <= 8) ?? 30 * DAY;
  const out: SVGElement[] = [];
  for (let t = Math.ceil(from / step) * step; t <= to; t += step) {
    const iso = new Date(t).toISOString();
    const label = step < DAY ? iso.slice(11, 16) : iso.slice(5, 10);
    out.push(svg('line', { class: 'tick', x1: x(t), x2: x(t), y1: H - PAD.bottom, y2: H - PAD.bottom + 4 }), text(label, x(t), H - PAD.bottom + 16, 'middle'));
  }
  out.push(text('UTC', W - PAD.right, H - 2, 'end'));
  return out;
}

function text(s: string, xx: number, yy: number, anchor: 'start' | 'middle' | 'end'): SVGElement {
  const t = svg('text', { x: xx.toFixed(1), y: yy.toFixed(1), class: 'axis', 'text-anchor': anchor });
  t.textContent = s;
  return t;
}

function svgX(el: SVGElement, ev: PointerEvent): number {
  const r = el.getBoundingClientRect();
  return ((ev.clientX - r.left) / Math.max(1, r.width)) * W;
}

/** Index of the time nearest t (binary search), or -1 when there is none. */
function nearest(times: number[], t: number): number {
  if (!times.length) return -1;
  let lo = 0;
  let hi = times.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (times[mid] < t) lo = mid + 1;
    else hi = mid;
  }
  return lo > 0 && t - times[lo - 1] < times[lo] - t ? lo - 1 : lo;
}
