/**
 * Jobs and the audit log (replication has its own page, replication.ts). Each page first asks
 * the OpenAPI document whether its route is on this server: until then it says "not available
 * yet", afterwards it shows what the route returns. Both page on the server (offset/limit), like
 * the cartridges.
 */
import { canOperate, enc, get, hasRoute, post } from '../api.js';
import { h, replace } from '../dom.js';
import { count, date } from '../format.js';
import type { Page } from '../page.js';
import { errorBox, notice, table, unavailable } from '../ui.js';

interface Job {
  id: string;
  kind: string;
  target: string | null;
  state: string;
  requestedBy: string | null;
  createdAt: string;
  finishedAt: string | null;
  progress?: { done: number; total: number | null; unit: string; message: string | null };
  error: string | null;
}
interface AuditEntry {
  seq: number;
  at: string;
  actor: string;
  role: string | null;
  action: string;
  target: string;
  status: number;
  result: string;
  detail: string | null;
}
interface Paged<T> {
  items: T[];
  total: number;
  offset: number;
}

export const PAGE = 50;

/** Runs `draw` when the route exists, else shows the unavailable state; returns the stopper. */
export function gated(root: HTMLElement, title: string, route: string, by: string, draw: (body: HTMLElement, alive: () => boolean) => Promise<void>): () => void {
  const body = h('div', { id: 'list' }, h('p', { class: 'hint' }, 'Asking the server…'));
  replace(root, h('h1', {}, title), body);
  let stopped = false;
  void (async () => {
    if (!(await hasRoute(route))) return void (!stopped && replace(body, unavailable(title, route, by)));
    await draw(body, () => !stopped).catch((e) => !stopped && replace(body, errorBox(e)));
  })();
  return () => {
    stopped = true;
  };
}

export function pager(offset: number, shown: number, total: number, go: (offset: number) => void): HTMLElement {
  return h(
    'div',
    { class: 'pager' },
    h('button', { type: 'button', id: 'prev', disabled: offset === 0, onclick: () => go(Math.max(0, offset - PAGE)) }, '‹ Previous'),
    h('span', { id: 'range' }, `${count(total === 0 ? 0 : offset + 1)}–${count(offset + shown)} of ${count(total)}`),
    h('button', { type: 'button', id: 'next', disabled: offset + shown >= total, onclick: () => go(offset + PAGE) }, 'Next ›'),
  );
}

function progressOf(j: Job): HTMLElement | string {
  const p = j.progress;
  if (!p) return '—';
  const pct = p.total ? Math.min(100, (p.done / p.total) * 100) : null;
  const bar = h('progress', { max: 100, value: pct ?? 0 });
  if (pct === null) bar.removeAttribute('value');
  const what = p.total ? `${count(p.done)} / ${count(p.total)} ${p.unit}` : `${count(p.done)} ${p.unit}`;
  return h('span', { class: 'progress' }, bar, ` ${what}`, p.message ? ` · ${p.message}` : '');
}

export const jobsPage: Page = (root, ctx) => {
  let timer: number | undefined;
  const offset = Number(ctx.query.get('offset') ?? 0) || 0;
  const state = ctx.query.get('state') ?? '';
  const stop = gated(root, 'Jobs', '/api/v1/jobs', 'the operations work', async (body, alive) => {
    const filter = h('select', { id: 'f-state', 'aria-label': 'state' }, h('option', { value: '' }, 'all states'), ['running', 'succeeded', 'failed', 'cancelled', 'interrupted'].map((s) => h('option', { value: s, selected: s === state }, s)));
    filter.addEventListener('change', () => ctx.go(`#/jobs?${new URLSearchParams(filter.value ? { state: filter.value } : {})}`));
    const list = h('div', {});
    replace(body, h('div', { class: 'toolbar' }, filter, h('span', { class: 'hint' }, 'newest first; refreshed every 3 s while a job runs')), list);
    const draw = async () => {
      const q = new URLSearchParams({ offset: String(offset), limit: String(PAGE) });
      if (state) q.set('state', state);
      const r = await get<Paged<Job>>(`/api/v1/jobs?${q}`);
      if (!alive()) return;
      const rows = r.items.map((j) => [
        h('code', {}, j.id),
        j.kind,
        j.target ? (j.kind === 'verify' ? h('a', { href: `#/cartridge/${enc(j.target)}` }, j.target) : j.target) : '—',
        h('span', { class: `state state-${j.state}`, 'data-job-state': j.state }, j.state),
        progressOf(j),
        j.requestedBy ?? '—',
        date(j.createdAt),
        date(j.finishedAt),
        j.error ?? '',
        j.state === 'running' && canOperate(ctx.me) ? h('button', { type: 'button', 'data-cancel': j.id, onclick: () => void post(`/api/v1/jobs/${enc(j.id)}/cancel`).then(draw, (e) => replace(list, errorBox(e))) }, 'Cancel') : '',
      ]);
      replace(
        list,
        pager(r.offset, r.items.length, r.total, (o) => ctx.go(`#/jobs?${new URLSearchParams({ ...(state ? { state } : {}), offset: String(o) })}`)),
        r.items.length ? table(['Job', 'Kind', 'Target', 'State', 'Progress', 'Requested by', 'Started', 'Finished', 'Error', ''], rows, { id: 'jobs' }) : h('p', { class: 'hint' }, 'No jobs.'),
      );
      if (r.items.some((j) => j.state === 'running')) timer = window.setTimeout(() => void draw().catch(() => undefined), 3000);
    };
    await draw();
  });
  return () => {
    stop();
    clearTimeout(timer);
  };
};

export const auditPage: Page = (root, ctx) => {
  const q = ctx.query;
  return gated(root, 'Audit log', '/api/v1/audit', 'the operations work', async (body, alive) => {
    const field = (name: string, label: string, type = 'text') => h('input', { type, id: `f-${name}`, name, placeholder: label, 'aria-label': label, value: q.get(name) ?? '' });
    const actor = field('actor', 'actor (token name or id)');
    const action = field('action', 'action starts with, e.g. POST');
    const since = field('since', 'since', 'datetime-local');
    const until = field('until', 'until', 'datetime-local');
    const form = h('form', { class: 'toolbar', id: 'audit-filter' }, actor, action, h('label', {}, 'since ', since), h('label', {}, 'until ', until), h('button', { type: 'submit' }, 'Filter'));
    const check = h('button', { type: 'button', id: 'audit-verify' }, 'Check the hash chain');
    const checked = h('span', { id: 'audit-chain' });
    const list = h('div', {});
    replace(body, form, h('div', { class: 'toolbar' }, check, checked), list);
    const params = (offset: number) => {
      const p = new URLSearchParams();
      if (actor.value) p.set('actor', actor.value);
      if (action.value) p.set('action', action.value);
      if (since.value) p.set('since', since.value);
      if (until.value) p.set('until', until.value);
      if (offset) p.set('offset', String(offset));
      return p;
    };
    form.addEventListener('submit', (ev) => (ev.preventDefault(), ctx.go(`#/audit?${params(0)}`)));
    check.addEventListener('click', () => {
      void get<{ intact: boolean; entries: number; problem: { seq: number; reason: string } | null }>('/api/v1/audit/verify').then(
        (r) => replace(checked, r.intact ? `intact: ${count(r.entries)} entries` : `BROKEN at entry ${r.problem?.seq}: ${r.problem?.reason}`),
        (e) => replace(checked, errorBox(e)),
      );
    });
    const fetchAt = (offset: number) => {
      const api = params(offset);
      for (const k of ['since', 'until']) if (api.get(k)) api.set(k, new Date(api.get(k)!).toISOString());
      api.set('offset', String(offset));
      api.set('limit', String(PAGE));
      return get<Paged<AuditEntry>>(`/api/v1/audit?${api}`);
    };
    // The log is oldest first; without a chosen page, show its newest page.
    let r = await fetchAt(Number(q.get('offset') ?? 0) || 0);
    if (!q.has('offset') && r.total > PAGE) r = await fetchAt(r.total - PAGE);
    if (!alive()) return;
    const rows = r.items.map((e) => [String(e.seq), date(e.at), e.actor, e.role ?? '—', e.action, e.target, String(e.status), h('span', { class: `result-${e.result}` }, e.result), e.detail ?? '']);
    replace(
      list,
      pager(r.offset, r.items.length, r.total, (o) => ctx.go(`#/audit?${params(o)}`)),
      r.items.length ? table(['#', 'At', 'Actor', 'Role', 'Action', 'Target', 'Status', 'Result', 'Detail'], rows, { id: 'audit' }) : notice('No audit entries match.'),
    );
  });
};
