/**
 * The dashboard shell: login, navigation and a hash router (#/page/arg?query). The hash holds
 * page state only (barcodes, paging), never the token.
 */
import './style.css';
import { ApiError, session, whenUnauthorized, whoami, type Me } from './api.js';
import { h, replace } from './dom.js';
import type { Page, PageContext } from './page.js';
import { overviewPage } from './pages/overview.js';
import { libraryPage } from './pages/library.js';
import { cartridgesPage } from './pages/cartridges.js';
import { cartridgePage } from './pages/cartridge.js';
import { auditPage, jobsPage } from './pages/later.js';
import { replicationPage } from './pages/replication.js';

const PAGES: Record<string, { title: string; page: Page; nav: boolean }> = {
  overview: { title: 'Overview', page: overviewPage, nav: true },
  library: { title: 'Library', page: libraryPage, nav: true },
  cartridges: { title: 'Cartridges', page: cartridgesPage, nav: true },
  cartridge: { title: 'Cartridge', page: cartridgePage, nav: false },
  jobs: { title: 'Jobs', page: jobsPage, nav: true },
  audit: { title: 'Audit log', page: auditPage, nav: true },
  replication: { title: 'Replication', page: replicationPage, nav: true },
};

const app = document.getElementById('app')!;
let me: Me | undefined;
let stop: (() => void) | void;

whenUnauthorized(() => {
  session.clear();
  me = undefined;
  showLogin('The server no longer accepts this token; log in again.');
});

function parseHash(): { name: string; args: string[]; query: URLSearchParams } {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, qs = ''] = raw.split('?', 2);
  const [name, ...args] = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { name: name && PAGES[name] ? name : 'overview', args, query: new URLSearchParams(qs) };
}

function route(): void {
  if (!me) return;
  if (stop) stop();
  stop = undefined;
  const { name, args, query } = parseHash();
  const main = h('main', { id: 'page', 'data-page': name });
  replace(app, shell(me, name), main);
  document.title = `vtl · ${PAGES[name].title}`;
  const ctx: PageContext = { me, args, query, go: (hash) => (location.hash = hash) };
  stop = PAGES[name].page(main, ctx);
}

function shell(user: Me, current: string): HTMLElement {
  const active = current === 'cartridge' ? 'cartridges' : current;
  const nav = Object.entries(PAGES)
    .filter(([, p]) => p.nav)
    .map(([k, p]) => h('a', { href: `#/${k}`, class: k === active ? 'active' : null, 'data-nav': k }, p.title));
  const readOnly = user.role === 'auditor';
  return h(
    'header',
    {},
    h('span', { class: 'brand' }, 'vtl'),
    h('nav', {}, nav),
    h(
      'span',
      { class: 'who' },
      h('span', { id: 'who-name' }, user.name),
      ' ',
      h('span', { class: `role role-${user.role}`, id: 'who-role' }, user.role),
      readOnly ? h('span', { class: 'readonly', id: 'read-only' }, 'read-only') : null,
      ' ',
      h('button', { type: 'button', id: 'logout', onclick: logout }, 'Log out'),
    ),
  );
}

function logout(): void {
  session.clear();
  me = undefined;
  if (stop) stop();
  stop = undefined;
  showLogin();
}

function showLogin(message?: string): void {
  if (stop) stop();
  stop = undefined;
  const input = h('input', { type: 'password', id: 'token', name: 'token', autocomplete: 'off', placeholder: 'vtl_…', required: true, size: 50 });
  const error = h('p', { class: 'error', id: 'login-error', role: 'alert' }, message ?? '');
  const form = h(
    'form',
    { class: 'login', id: 'login' },
    h('h1', {}, 'vtl dashboard'),
    h('label', { for: 'token' }, 'API token'),
    input,
    h('p', { class: 'hint' }, 'A token from `vtl token create` (the first admin token is in the data directory, admin.token). It is kept in this tab only.'),
    h('button', { type: 'submit' }, 'Log in'),
    error,
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    void login(input.value.trim(), error);
  });
  replace(app, form);
  document.title = 'vtl · log in';
  input.focus();
}

async function login(token: string, error: HTMLElement): Promise<void> {
  replace(error, '');
  try {
    me = await whoami(token);
  } catch (e) {
    replace(error, e instanceof ApiError && e.status === 401 ? 'This token is not valid (unknown or revoked).' : `Could not log in: ${(e as Error).message}`);
    return;
  }
  session.set(token);
  route();
}

async function start(): Promise<void> {
  const token = session.token();
  if (!token) return showLogin();
  try {
    me = await whoami(token);
  } catch (e) {
    session.clear();
    return showLogin(e instanceof ApiError && e.status === 401 ? 'The saved token is no longer valid.' : (e as Error).message);
  }
  route();
}

window.addEventListener('hashchange', route);
void start();
