/**
 * Replication: this store's targets with their status (GET /api/v1/replication/status), the
 * per-library policies, the replication jobs (paged and filtered on the server, newest first),
 * and disaster recovery: other stores' targets attached here and the replicas they brought.
 * Everything comes from the REST API. Operators cancel jobs and refresh replicas; admins also add
 * and forget targets, set policies and promote replicas (after a confirm); auditors only read.
 */
import { api, canOperate, enc, get, hasRoute, post, type Me } from '../api.js';
import { h, replace } from '../dom.js';
import { bytes, count, date, duration } from '../format.js';
import type { Page } from '../page.js';
import { errorBox, notice, table } from '../ui.js';
import { gated, PAGE, pager } from './later.js';

export interface TargetStatus {
  name: string;
  url: string;
  bandwidthLimit: number | null;
  cartridges: number;
  replicated: number;
  pending: number;
  failed: number;
  maxLagSeconds: number | null;
  bytesShipped: number;
  queued: number;
  running: number;
  /** The newest check of the target (manual or scheduled); null or absent: never checked. */
  lastCheck?: TargetCheck | null;
}
export interface TargetCheck {
  at: string;
  scheduled: boolean;
  ok: boolean;
  missing: number;
  damaged: number;
  reshipped: number;
  lost: number;
  brokenReplicas: number;
  error: string | null;
}
export interface ReplicationJob {
  id: string;
  barcode: string;
  target: string;
  reason: string;
  requestedBy: string | null;
  state: 'queued' | 'running' | 'done' | 'failed' | 'cancelled';
  createdAt: string;
  finishedAt: string | null;
  attempts: number;
  nextAttemptAt: string | null;
  lastError: string | null;
  progress?: { done: number; total: number | null; message: string | null };
  result: { bytesShipped: number; logicalBytes: number; containersShipped: number; pagesShipped: number; seconds: number; seq: number } | null;
}
interface Policy {
  library: string;
  target: string;
  on: string[];
}
interface Source {
  name: string;
  url: string;
  storeId: string;
  attachedAt: string;
  lastRefreshAt: string | null;
  mounted: boolean;
  cacheBytes: number;
}
export interface Replica {
  barcode: string;
  source: string;
  seq: number;
  catalogCreatedAt: string;
  syncedAt: string | null;
  importedAt: string;
  logicalBytes: number;
  state: 'replica' | 'promoted';
  promotedAt: string | null;
}
interface Paged<T> {
  items: T[];
  total: number;
  offset: number;
}

const STATES = ['queued', 'running', 'done', 'failed', 'cancelled'];
const REFRESH_MS = 3000;
const isAdmin = (me: Me) => me.role === 'admin';
export const active = (j: { state: string }) => j.state === 'queued' || j.state === 'running';

/** A job's progress: containers shipped so far, with the replicator's own words. */
export function jobProgress(j: ReplicationJob): HTMLElement | string {
  const p = j.progress;
  if (!p || (p.done === 0 && p.total === null && !p.message)) return '—';
  const bar = p.total ? h('progress', { max: p.total, value: Math.min(p.done, p.total) }) : null;
  return h('span', { class: 'progress' }, bar, p.total ? ` ${count(p.done)} / ${count(p.total)}` : ` ${count(p.done)}`, p.message ? ` · ${p.message}` : '');
}

/** What a finished job shipped: short in the cell, the details in its title. */
export function jobResult(j: ReplicationJob): HTMLElement | string {
  const r = j.result;
  if (!r) return '—';
  const details = `${count(r.containersShipped)} containers and ${count(r.pagesShipped)} recipe pages shipped for ${bytes(r.logicalBytes)} logical`;
  return h('span', { class: 'nowrap', title: details, 'data-result': details }, `catalog ${r.seq} · ${bytes(r.bytesShipped)} in ${r.seconds.toFixed(1)} s`);
}

const when = (s: string | null | undefined) => h('span', { class: 'nowrap' }, date(s));

export const stateBadge = (state: string) => h('span', { class: `state state-${state}`, 'data-job-state': state }, state);

/** A section whose holder is redrawn while its heading and forms stay (typing is not lost). */
function section(id: string, title: string, ...fixed: (HTMLElement | null)[]): { el: HTMLElement; holder: HTMLElement } {
  const holder = h('div', { id: `${id}-body` }, h('p', { class: 'hint' }, 'Loading…'));
  return { el: h('section', { id }, h('h2', {}, title), fixed, holder), holder };
}

export const replicationPage: Page = (root, ctx) => {
  const { me, query } = ctx;
  const offset = Number(query.get('offset') ?? 0) || 0;
  const state = STATES.includes(query.get('state') ?? '') ? query.get('state')! : '';
  const target = query.get('target') ?? '';
  let timer: number | undefined;
  const stop = gated(root, 'Replication', '/api/v1/replication/status', 'the replication work', async (body, alive) => {
    const status = h('p', { id: 'repl-status', role: 'status' });
    const say = (what: HTMLElement | string) => replace(status, what);
    const hashFor = (q: Record<string, string>) => `#/replication?${new URLSearchParams(Object.entries(q).filter(([, v]) => v))}`;

    const targets = section('targets', 'Targets', isAdmin(me) ? addTargetForm(say, () => void redraw()) : null);
    const policies = section('policies', 'Policies', isAdmin(me) ? h('div', { id: 'policy-form-box' }) : null);
    const filter = jobFilter(state, target, (s, t) => ctx.go(hashFor({ state: s, target: t })));
    const jobs = section('jobs', 'Jobs', filter.el);
    const dr = section('dr', 'Disaster recovery: sources attached here', h('p', { class: 'hint' }, "Other stores' replication targets this store reads, and the replicas of their cartridges it holds (read-only until promoted)."));
    replace(body, status, targets.el, policies.el, jobs.el, dr.el);

    let known: TargetStatus[] = [];
    const redraw = async (): Promise<void> => {
      clearTimeout(timer);
      const [t, j] = await Promise.all([
        drawTargets(targets.holder, me, say, () => void redraw()).catch((e) => (replace(targets.holder, errorBox(e)), null)),
        drawJobs(jobs.holder, me, { state, target, offset }, say, () => void redraw(), (o) => ctx.go(hashFor({ state, target, offset: String(o) }))).catch((e) => (replace(jobs.holder, errorBox(e)), null)),
        drawPolicies(policies.holder, me, say, () => void redraw()).catch((e) => replace(policies.holder, errorBox(e))),
      ]);
      if (!alive()) return;
      if (t) {
        known = t;
        filter.targets(t.map((x) => x.name));
        const box = document.getElementById('policy-form-box');
        if (box) void policyForm(box, t, say, () => void redraw());
      }
      // While anything is queued or running, follow it; an idle page asks nothing.
      const busy = (t ?? known).some((x) => x.queued + x.running > 0) || (j ?? []).some(active);
      if (busy) timer = window.setTimeout(() => void (alive() && redraw()), REFRESH_MS);
    };
    await Promise.all([redraw(), drawDr(dr.holder, me, say, alive)]);
  });
  return () => {
    stop();
    clearTimeout(timer);
  };
};

async function drawTargets(holder: HTMLElement, me: Me, say: (x: HTMLElement | string) => void, changed: () => void): Promise<TargetStatus[]> {
  const r = await get<{ targets: TargetStatus[] }>('/api/v1/replication/status');
  const forget = (t: TargetStatus) => {
    if (!window.confirm(`Forget replication target ${t.name}? Nothing stored on it is deleted.`)) return;
    void api('DELETE', `/api/v1/replication/targets/${enc(t.name)}`).then(
      () => (say(`Target ${t.name} forgotten.`), changed()),
      (e) => say(errorBox(e)),
    );
  };
  const rows = r.targets.map((t) => [
    h('strong', { 'data-target': t.name }, t.name),
    h('code', {}, t.url),
    t.bandwidthLimit === null ? 'unlimited' : `${bytes(t.bandwidthLimit)}/s`,
    count(t.cartridges),
    h('span', { 'data-replicated': t.replicated }, count(t.replicated)),
    count(t.pending),
    h('span', { class: t.failed > 0 ? 'result-failed' : null }, count(t.failed)),
    duration(t.maxLagSeconds),
    bytes(t.bytesShipped),
    count(t.queued),
    count(t.running),
    lastCheck(t.lastCheck),
    isAdmin(me) ? h('button', { type: 'button', 'data-forget': t.name, onclick: () => forget(t) }, 'Forget') : '',
  ]);
  replace(
    holder,
    rows.length
      ? table(['Target', 'URL', 'Bandwidth', 'Cartridges', 'Replicated', 'Pending', 'Failed', 'Max lag', 'Bytes shipped', 'Queued', 'Running', 'Last check', ''], rows, { id: 'repl-targets' })
      : h('p', { class: 'hint', id: 'no-targets' }, 'No replication targets.'),
  );
  return r.targets;
}

/** A target's last check in a cell: when, and what it found (the full counts in the title). */
function lastCheck(c: TargetCheck | null | undefined): HTMLElement | string {
  if (!c) return 'never';
  const found = c.error !== null ? 'failed' : c.ok ? 'whole' : [c.missing && `${count(c.missing)} missing`, c.damaged && `${count(c.damaged)} damaged`, c.brokenReplicas && `${count(c.brokenReplicas)} broken replicas`].filter(Boolean).join(', ');
  const title = c.error ?? `${c.scheduled ? 'scheduled' : 'manual'} check: ${c.missing} missing, ${c.damaged} damaged, ${c.reshipped} shipped again, ${c.lost} no longer here, ${c.brokenReplicas} broken replicas`;
  return h('span', { 'data-last-check': c.error !== null ? 'failed' : c.ok ? 'ok' : 'found', class: c.ok ? null : 'result-failed', title }, `${date(c.at)} · ${found}`);
}

function addTargetForm(say: (x: HTMLElement | string) => void, changed: () => void): HTMLElement {
  const name = h('input', { id: 't-name', placeholder: 'name, e.g. east', 'aria-label': 'target name', required: true, pattern: '[a-z0-9][a-z0-9\\-]{0,31}', size: 12 });
  const url = h('input', { id: 't-url', placeholder: 'file:///path, s3://bucket/prefix?endpoint=…, azure://container/prefix?account=…', 'aria-label': 'target URL', required: true, size: 60 });
  const limit = h('input', { id: 't-limit', type: 'number', min: 4096, step: 1, placeholder: 'bytes/s (optional)', 'aria-label': 'bandwidth limit in bytes per second' });
  // Off by default, as in the CLI: a mistyped bucket name must be refused, not created.
  const create = h('input', { type: 'checkbox', id: 't-create' });
  const form = h('form', { class: 'toolbar', id: 'add-target' }, name, url, limit, h('label', { title: 'create the bucket, container or directory if it does not exist' }, create, 'create if missing'), h('button', { type: 'submit' }, 'Add target'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const body = { name: name.value.trim(), url: url.value.trim(), ...(limit.value ? { bandwidthLimit: Number(limit.value) } : {}), ...(create.checked ? { createBucket: true } : {}) };
    void post('/api/v1/replication/targets', body).then(
      () => {
        say(`Target ${body.name} added.`);
        form.reset();
        changed();
      },
      (e) => say(errorBox(e)),
    );
  });
  return form;
}

async function drawPolicies(holder: HTMLElement, me: Me, say: (x: HTMLElement | string) => void, changed: () => void): Promise<void> {
  const r = await get<{ items: Policy[] }>('/api/v1/replication/policies');
  const remove = (p: Policy) => {
    if (!window.confirm(`Stop replicating library ${p.library} automatically?`)) return;
    void api('DELETE', `/api/v1/libraries/${enc(p.library)}/replication`).then(
      () => (say(`Policy of ${p.library} removed.`), changed()),
      (e) => say(errorBox(e)),
    );
  };
  const rows = r.items.map((p) => [
    h('a', { href: `#/library/${enc(p.library)}` }, p.library),
    p.target,
    p.on.map((e) => (e === 'unloaded' ? 'on unload' : e === 'exported' ? 'on export' : e)).join(', '),
    isAdmin(me) ? h('button', { type: 'button', 'data-remove-policy': p.library, onclick: () => remove(p) }, 'Remove') : '',
  ]);
  replace(
    holder,
    rows.length ? table(['Library', 'Target', 'Replicates', ''], rows, { id: 'repl-policies' }) : h('p', { class: 'hint', id: 'no-policies' }, 'No library replicates automatically; cartridges are replicated on request.'),
  );
}

/** The admin's policy form, drawn once the libraries and targets are known (kept across refreshes). */
async function policyForm(box: HTMLElement, targets: TargetStatus[], say: (x: HTMLElement | string) => void, changed: () => void): Promise<void> {
  const names = targets.map((t) => t.name).join('\n');
  if (box.dataset.targets === names) return;
  box.dataset.targets = names;
  if (!targets.length) return replace(box, h('p', { class: 'hint' }, 'Add a target to set a policy.'));
  const libs = await get<{ items: { name: string }[] }>('/api/v1/libraries');
  const lib = h('select', { id: 'p-library', 'aria-label': 'library' }, libs.items.map((l) => h('option', { value: l.name }, l.name)));
  const target = h('select', { id: 'p-target', 'aria-label': 'target' }, targets.map((t) => h('option', { value: t.name }, t.name)));
  const unloaded = h('input', { type: 'checkbox', id: 'p-unloaded', checked: true });
  const exported = h('input', { type: 'checkbox', id: 'p-exported' });
  const form = h('form', { class: 'toolbar', id: 'set-policy' }, lib, target, h('label', {}, unloaded, 'on unload'), h('label', {}, exported, 'on export'), h('button', { type: 'submit' }, 'Set policy'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const on = [unloaded.checked ? 'unloaded' : null, exported.checked ? 'exported' : null].filter(Boolean);
    void api('PUT', `/api/v1/libraries/${enc(lib.value)}/replication`, { target: target.value, on }).then(
      () => (say(`Library ${lib.value} now replicates to ${target.value}.`), changed()),
      (e) => say(errorBox(e)),
    );
  });
  replace(box, form);
}

function jobFilter(state: string, target: string, go: (state: string, target: string) => void): { el: HTMLElement; targets(names: string[]): void } {
  const s = h('select', { id: 'f-state', 'aria-label': 'state' }, h('option', { value: '' }, 'all states'), STATES.map((x) => h('option', { value: x, selected: x === state }, x)));
  const t = h('select', { id: 'f-target', 'aria-label': 'target' }, h('option', { value: '' }, 'all targets'), target ? h('option', { value: target, selected: true }, target) : null);
  const change = () => go(s.value, t.value);
  s.addEventListener('change', change);
  t.addEventListener('change', change);
  return {
    el: h('div', { class: 'toolbar' }, s, t, h('span', { class: 'hint' }, `newest first, ${PAGE} a page; followed every ${REFRESH_MS / 1000} s while a job is queued or running`)),
    targets(names) {
      const have = new Set([...t.options].map((o) => o.value));
      for (const n of names) if (!have.has(n)) t.append(h('option', { value: n }, n));
    },
  };
}

async function drawJobs(
  holder: HTMLElement,
  me: Me,
  f: { state: string; target: string; offset: number },
  say: (x: HTMLElement | string) => void,
  changed: () => void,
  page: (offset: number) => void,
): Promise<ReplicationJob[]> {
  const q = new URLSearchParams({ offset: String(f.offset), limit: String(PAGE) });
  if (f.state) q.set('state', f.state);
  if (f.target) q.set('target', f.target);
  const r = await get<Paged<ReplicationJob>>(`/api/v1/replication/jobs?${q}`);
  const cancel = (j: ReplicationJob) =>
    void post<ReplicationJob>(`/api/v1/replication/jobs/${enc(j.id)}/cancel`).then(
      (x) => (say(x.state === 'cancelled' ? `Job ${j.id} cancelled.` : `Job ${j.id} stops at its next container.`), changed()),
      (e) => say(errorBox(e)),
    );
  const rows = r.items.map((j) => [
    h('code', {}, j.id),
    h('a', { href: `#/cartridge/${enc(j.barcode)}`, class: 'barcode' }, j.barcode),
    j.target,
    j.reason + (j.requestedBy ? ` (${j.requestedBy})` : ''),
    stateBadge(j.state),
    count(j.attempts),
    jobProgress(j),
    when(j.createdAt),
    when(j.finishedAt),
    jobResult(j),
    h('span', { class: j.lastError ? 'error' : null }, j.lastError ? `${j.lastError}${j.state === 'queued' && j.nextAttemptAt ? ` (retry at ${date(j.nextAttemptAt)})` : ''}` : ''),
    active(j) && canOperate(me) ? h('button', { type: 'button', 'data-cancel': j.id, onclick: () => cancel(j) }, 'Cancel') : '',
  ]);
  replace(
    holder,
    r.total > 0 ? pager(r.offset, r.items.length, r.total, page) : null,
    rows.length
      ? table(['Job', 'Cartridge', 'Target', 'Reason', 'State', 'Attempts', 'Progress', 'Queued at', 'Finished', 'Result', 'Error', ''], rows, { id: 'repl-jobs' })
      : h('p', { class: 'hint', id: 'no-jobs' }, 'No replication jobs.'),
  );
  return r.items;
}

interface RefreshResult {
  source: string;
  imported: unknown[];
  unchanged: number;
  conflicts: { barcode: string; reason: string }[];
  damaged?: { barcode: string; catalogs: number[]; fallback: number | null; reason: string }[];
  failed?: { barcode: string; reason: string }[];
}

/** One source's refresh: what came in, and each cartridge that did not with why (as `vtl dr refresh` says). */
function refreshLine(x: RefreshResult): string {
  const parts = [`${count(x.imported.length)} imported`, `${count(x.unchanged)} unchanged`];
  if (x.conflicts.length) parts.push(`conflicts: ${x.conflicts.map((c) => `${c.barcode} (${c.reason})`).join('; ')}`);
  if (x.damaged?.length) parts.push(`damaged: ${x.damaged.map((d) => `${d.barcode} (catalog ${d.catalogs.join(', ')}: ${d.reason}; ${d.fallback === null ? 'no usable catalog' : `catalog ${d.fallback} held instead`})`).join('; ')}`);
  if (x.failed?.length) parts.push(`not read now, try again: ${x.failed.map((f) => `${f.barcode} (${f.reason})`).join('; ')}`);
  return `${x.source}: ${parts.join(', ')}`;
}

/** Attached sources and the replicas held here; operators refresh, admins promote. */
async function drawDr(holder: HTMLElement, me: Me, say: (x: HTMLElement | string) => void, alive: () => boolean): Promise<void> {
  if (!(await hasRoute('/api/v1/dr/sources'))) return replace(holder, notice('This server has no disaster-recovery routes.', 'unavailable'));
  const draw = async (): Promise<void> => {
    const [sources, replicas] = await Promise.all([get<{ items: Source[] }>('/api/v1/dr/sources'), get<{ items: Replica[] }>('/api/v1/dr/cartridges')]);
    if (!alive()) return;
    const refresh = h('button', { type: 'button', id: 'dr-refresh', disabled: !sources.items.length }, 'Refresh replicas');
    refresh.addEventListener('click', () => {
      refresh.disabled = true;
      say('Reading the sources’ catalogs…');
      void post<{ results: RefreshResult[] }>('/api/v1/dr/refresh').then(
        (r) => {
          const trouble = r.results.some((x) => (x.damaged?.length ?? 0) + (x.failed?.length ?? 0) > 0);
          say(h('span', { id: 'dr-refreshed', class: trouble ? 'result-failed' : null }, r.results.map(refreshLine).join(' · ') || 'No sources.'));
          void draw().catch((e) => replace(holder, errorBox(e)));
        },
        (e) => ((refresh.disabled = false), say(errorBox(e))),
      );
    });
    const promote = (x: Replica) => {
      if (!window.confirm(`Promote ${x.barcode} (a replica of ${x.source}, catalog ${x.seq}) to a writable cartridge of this store? Its data is copied in, and refreshes from ${x.source} no longer change it. This is a failover step; it cannot be undone here.`)) return;
      say(`Promoting ${x.barcode}…`);
      void post(`/api/v1/dr/cartridges/${enc(x.barcode)}/promote`).then(
        () => (say(h('span', { id: 'dr-promoted' }, `${x.barcode} promoted: it is now a writable cartridge of this store.`)), void draw().catch((e) => replace(holder, errorBox(e)))),
        (e) => say(errorBox(e)),
      );
    };
    const sourceRows = sources.items.map((s) => [
      h('strong', { 'data-source': s.name }, s.name),
      h('code', {}, s.url),
      h('code', {}, s.storeId),
      when(s.attachedAt),
      when(s.lastRefreshAt),
      s.mounted ? 'yes' : 'no',
      bytes(s.cacheBytes),
    ]);
    const replicaRows = replicas.items.map((x) => [
      h('a', { href: `#/cartridge/${enc(x.barcode)}`, class: 'barcode' }, x.barcode),
      x.source,
      count(x.seq),
      when(x.syncedAt),
      when(x.catalogCreatedAt),
      when(x.importedAt),
      bytes(x.logicalBytes),
      h('span', { 'data-replica-state': x.state }, x.state === 'promoted' ? `promoted ${date(x.promotedAt)}` : 'replica (read-only)'),
      isAdmin(me) && x.state === 'replica' ? h('button', { type: 'button', 'data-promote': x.barcode, onclick: () => promote(x) }, 'Promote') : '',
    ]);
    replace(
      holder,
      canOperate(me) ? h('div', { class: 'toolbar' }, refresh) : null,
      sourceRows.length
        ? table(['Source', 'URL', 'Store', 'Attached', 'Last refresh', 'Mounted', 'Cache'], sourceRows, { id: 'dr-sources' })
        : h('p', { class: 'hint', id: 'no-sources' }, 'No sources attached (an admin attaches one with its recovery key: POST /api/v1/dr/sources or vtl dr attach).'),
      h('h3', {}, 'Replicas held here'),
      replicaRows.length
        ? table(['Cartridge', 'Source', 'Catalog', 'Source sync point', 'Catalog written', 'Imported', 'Logical bytes', 'State', ''], replicaRows, { id: 'dr-replicas' })
        : h('p', { class: 'hint', id: 'no-replicas' }, 'No replicas.'),
    );
  };
  await draw();
}
