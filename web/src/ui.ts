/** Small pieces the pages share: cards, notices, error boxes, tables. */
import { ApiError } from './api.js';
import { h } from './dom.js';

export function card(label: string, value: string, id?: string, note?: string): HTMLElement {
  return h('div', { class: 'card', 'data-stat': id ?? null }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value), note ? h('div', { class: 'note' }, note) : null);
}

export function notice(text: string, kind: 'info' | 'unavailable' | 'error' = 'info'): HTMLElement {
  return h('p', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : null }, text);
}

export function errorBox(e: unknown): HTMLElement {
  const msg = e instanceof ApiError ? `${e.code}: ${e.message}` : (e as Error)?.message ?? String(e);
  return notice(msg, 'error');
}

/** The state of a feature whose routes are not on this server yet. */
export function unavailable(what: string, route: string, by: string): HTMLElement {
  return h(
    'div',
    { class: 'unavailable', 'data-unavailable': route },
    h('strong', {}, `${what}: not available yet`),
    h('p', {}, `This server has no ${route} route (${by} adds it). The page lights up by itself once the server offers it; nothing here is invented.`),
  );
}

export function table(headers: (string | HTMLElement)[], rows: (Node | string)[][], attrs: Record<string, string> = {}): HTMLTableElement {
  return h(
    'table',
    attrs,
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', {}, x)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c))))),
  );
}
