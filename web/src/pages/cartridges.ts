/**
 * Cartridges: search, sort and paging run on the server (GET /api/v1/cartridges with q, sort,
 * order, offset, limit), so the browser holds one page whatever the library's size. The
 * page's state is in the hash, so back/forward and reloads keep it. No replication column: the
 * list endpoint does not carry it (one lookup per row); the cartridge page shows it.
 */
import { enc, get } from '../api.js';
import { h, replace } from '../dom.js';
import { bytes, count, date } from '../format.js';
import type { Page } from '../page.js';
import { errorBox, table } from '../ui.js';

export interface Cartridge {
  barcode: string;
  mediaType: string;
  capacity: number;
  worm: boolean;
  writeProtected: boolean;
  retentionUntil: string | null;
  state: string;
  location: { kind: string; library?: string; address?: number; index?: number };
  logicalBytes: number;
  files: number;
  createdAt: string;
}

const PAGE = 50;
const COLUMNS: { key: string; label: string }[] = [
  { key: 'barcode', label: 'Barcode' },
  { key: 'mediaType', label: 'Media' },
  { key: 'state', label: 'State' },
  { key: 'location', label: 'Location' },
  { key: 'logicalBytes', label: 'Logical bytes' },
  { key: 'files', label: 'Files' },
  { key: 'retentionUntil', label: 'WORM / retention' },
  { key: 'createdAt', label: 'Created' },
];

export function where(l: Cartridge['location']): string {
  if (l.kind === 'vault') return 'vault';
  const n = (l.index ?? 0) + (l.kind === 'drive' ? 0 : 1);
  return `${l.library} ${l.kind === 'mailslot' ? 'mail slot' : l.kind} ${n}`;
}

export const cartridgesPage: Page = (root, ctx) => {
  const q = ctx.query;
  const state = {
    q: q.get('q') ?? '',
    sort: q.get('sort') ?? 'barcode',
    order: q.get('order') === 'desc' ? 'desc' : 'asc',
    page: Math.max(0, Number(q.get('page') ?? 0) || 0),
    location: q.get('location') ?? '',
    st: q.get('state') ?? '',
  };
  const go = (patch: Partial<typeof state>) => {
    const s = { ...state, ...patch };
    const p = new URLSearchParams();
    if (s.q) p.set('q', s.q);
    if (s.sort !== 'barcode') p.set('sort', s.sort);
    if (s.order !== 'asc') p.set('order', s.order);
    if (s.page) p.set('page', String(s.page));
    if (s.location) p.set('location', s.location);
    if (s.st) p.set('state', s.st);
    ctx.go(`#/cartridges?${p}`);
  };

  const search = h('input', { type: 'search', id: 'search', placeholder: 'barcode contains…', value: state.q, maxlength: 16, 'aria-label': 'search barcodes' });
  const form = h('form', { class: 'toolbar', id: 'search-form' }, search, select('state', 'all states', ['scratch', 'in use', 'full', 'expired'], state.st), select('location', 'all locations', ['drive', 'slot', 'mailslot', 'vault'], state.location), h('button', { type: 'submit' }, 'Search'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = search.value.trim();
    if (!/^[A-Za-z0-9]{0,16}$/.test(v)) return void replace(body, errorBox(new Error('a barcode has letters and digits only')));
    go({ q: v, page: 0, st: (form.querySelector('#f-state') as HTMLSelectElement).value, location: (form.querySelector('#f-location') as HTMLSelectElement).value });
  });
  const body = h('div', { id: 'cartridge-table' }, h('p', { class: 'hint' }, 'Loading…'));
  replace(root, h('h1', {}, 'Cartridges'), form, body);

  let stopped = false;
  void (async () => {
    const p = new URLSearchParams({ sort: state.sort, order: state.order, offset: String(state.page * PAGE), limit: String(PAGE) });
    if (state.q) p.set('q', state.q);
    if (state.st) p.set('state', state.st);
    if (state.location) p.set('location', state.location);
    try {
      const r = await get<{ items: Cartridge[]; total: number; offset: number }>(`/api/v1/cartridges?${p}`);
      if (stopped) return;
      const head = COLUMNS.map((c) => {
        const on = state.sort === c.key;
        const arrow = on ? (state.order === 'asc' ? ' ▲' : ' ▼') : '';
        return h('a', { href: '#', class: 'sort', 'data-sort': c.key, onclick: (ev: Event) => (ev.preventDefault(), go({ sort: c.key, order: on && state.order === 'asc' ? 'desc' : 'asc', page: 0 })) }, c.label + arrow);
      });
      const rows = r.items.map((c) => [
        h('a', { href: `#/cartridge/${enc(c.barcode)}`, class: 'barcode' }, c.barcode),
        c.mediaType,
        c.state,
        where(c.location),
        bytes(c.logicalBytes),
        String(c.files),
        [c.worm ? 'WORM' : '', c.writeProtected ? 'write-protected' : '', c.retentionUntil ? `until ${date(c.retentionUntil)}` : ''].filter(Boolean).join(', ') || '—',
        date(c.createdAt),
      ]);
      const pages = Math.max(1, Math.ceil(r.total / PAGE));
      const first = r.total === 0 ? 0 : r.offset + 1;
      const pager = h(
        'div',
        { class: 'pager' },
        h('button', { type: 'button', id: 'prev', disabled: state.page === 0, onclick: () => go({ page: state.page - 1 }) }, '‹ Previous'),
        h('span', { id: 'range' }, `${count(first)}–${count(r.offset + r.items.length)} of ${count(r.total)}`),
        h('span', { class: 'hint' }, ` · page ${count(state.page + 1)} of ${count(pages)} `),
        h('button', { type: 'button', id: 'next', disabled: state.page + 1 >= pages, onclick: () => go({ page: state.page + 1 }) }, 'Next ›'),
      );
      replace(body, pager, table(head, rows.map((r) => r.map((c) => (typeof c === 'string' ? c : c)))), r.items.length ? null : h('p', { class: 'hint' }, 'No cartridge matches.'));
    } catch (e) {
      if (!stopped) replace(body, errorBox(e));
    }
  })();
  return () => {
    stopped = true;
  };
};

function select(name: string, all: string, values: string[], current: string): HTMLSelectElement {
  return h('select', { id: `f-${name}`, 'aria-label': name }, h('option', { value: '' }, all), values.map((v) => h('option', { value: v, selected: v === current }, v)));
}
