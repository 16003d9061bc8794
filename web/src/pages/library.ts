/**
 * Library view: drives, mail slots and storage slots as a grid with barcodes, and what each
 * drive is doing. Operators act by clicking: pick a cartridge, then an empty element to move
 * it there, or use the buttons (load, unload, import, export). Auditors see the same grid
 * without any action.
 */
import { canOperate, enc, get, post } from '../api.js';
import { h, replace } from '../dom.js';
import type { Page, PageContext } from '../page.js';
import { errorBox, notice } from '../ui.js';

interface Library {
  name: string;
  model: string;
  drives: number;
  slots: number;
  mailslots: number;
}
interface Element {
  type: 'drive' | 'slot' | 'mailslot';
  address: number;
  index: number;
  barcode: string | null;
}
interface Drive {
  index: number;
  address: number;
  barcode: string | null;
  open: boolean;
  position: { file: number; lba: number; eod: boolean } | null;
}

const REFRESH_MS = 10_000;

export const libraryPage: Page = (root, ctx) => {
  let stopped = false;
  let timer: number | undefined;
  void (async () => {
    let libs: Library[];
    try {
      libs = (await get<{ items: Library[] }>('/api/v1/libraries')).items;
    } catch (e) {
      replace(root, h('h1', {}, 'Library'), errorBox(e));
      return;
    }
    if (stopped) return;
    if (libs.length === 0) {
      replace(root, h('h1', {}, 'Library'), notice('This server has no libraries yet (vtl library create).'));
      return;
    }
    const lib = libs.find((l) => l.name === ctx.args[0]) ?? libs[0];
    const picker = h('select', { id: 'library-select', 'aria-label': 'library' }, libs.map((l) => h('option', { value: l.name, selected: l.name === lib.name }, l.name)));
    picker.addEventListener('change', () => ctx.go(`#/library/${enc(picker.value)}`));
    const view = new LibraryView(lib, ctx);
    replace(root, h('h1', {}, 'Library ', picker), h('p', { class: 'hint' }, `${lib.model}: ${lib.drives} drives, ${lib.slots} slots, ${lib.mailslots} mail slots`), view.el);
    await view.refresh();
    // Drives change under rmt and HTTP clients: look again while nobody is mid-action.
    timer = window.setInterval(() => void view.refreshIfIdle(), REFRESH_MS);
  })();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
};

class LibraryView {
  readonly el = h('div', { class: 'library' });
  private readonly status = h('div', { class: 'status', id: 'action-status', 'aria-live': 'polite' });
  private readonly actions = h('div', { class: 'actions', id: 'actions' });
  private readonly grid = h('div', { id: 'grid' });
  private elements: Element[] = [];
  private drives = new Map<number, Drive>();
  private selected: Element | undefined;
  private busy = false;
  private readonly operator: boolean;

  constructor(
    private readonly lib: Library,
    ctx: PageContext,
  ) {
    this.operator = canOperate(ctx.me);
    const refresh = h('button', { type: 'button', id: 'refresh', onclick: () => void this.refresh() }, 'Refresh');
    replace(this.el, h('div', { class: 'toolbar' }, refresh, this.operator ? null : h('span', { class: 'readonly' }, 'read-only: your role cannot move cartridges')), this.actions, this.status, this.grid);
  }

  async refresh(): Promise<void> {
    try {
      const base = `/api/v1/libraries/${enc(this.lib.name)}`;
      const [els, drives] = await Promise.all([get<{ items: Element[] }>(`${base}/elements`), get<{ items: Drive[] }>(`${base}/drives`)]);
      this.elements = els.items;
      this.drives = new Map(drives.items.map((d) => [d.address, d]));
    } catch (e) {
      replace(this.status, errorBox(e));
      return;
    }
    if (this.selected) this.selected = this.elements.find((e) => e.address === this.selected!.address && e.barcode);
    this.render();
  }

  async refreshIfIdle(): Promise<void> {
    if (!this.busy && !this.selected && this.el.isConnected) await this.refresh();
  }

  private render(): void {
    const of = (t: Element['type']) => this.elements.filter((e) => e.type === t);
    replace(
      this.grid,
      this.section('Drives', 'drives', of('drive')),
      this.section('Mail slots', 'mailslots', of('mailslot')),
      this.section('Storage slots', 'slots', of('slot')),
    );
    this.renderActions();
  }

  private section(title: string, id: string, els: Element[]): HTMLElement {
    const full = els.filter((e) => e.barcode).length;
    return h('section', { id }, h('h2', {}, `${title} `, h('span', { class: 'hint' }, `${full} of ${els.length} full`)), h('div', { class: `grid grid-${id}` }, els.map((e) => this.cell(e))));
  }

  private cell(e: Element): HTMLElement {
    const d = e.type === 'drive' ? this.drives.get(e.address) : undefined;
    const doing = d ? driveState(d) : null;
    const cls = ['cell', e.type, e.barcode ? 'full' : 'empty', this.selected?.address === e.address ? 'selected' : '', d?.open ? 'busy' : ''].join(' ');
    const name = e.type === 'drive' ? `Drive ${e.index}` : e.type === 'mailslot' ? `Mail ${e.index + 1}` : `Slot ${e.index + 1}`;
    return h(
      'button',
      { type: 'button', class: cls, 'data-address': e.address, 'data-barcode': e.barcode ?? '', title: `${name} (element ${e.address})`, onclick: () => this.click(e) },
      h('span', { class: 'name' }, name),
      h('span', { class: 'barcode' }, e.barcode ?? 'empty'),
      doing ? h('span', { class: 'doing' }, doing) : null,
    );
  }

  private click(e: Element): void {
    if (this.busy) return;
    if (!this.operator) {
      this.selected = e.barcode ? e : undefined;
      this.render();
      return;
    }
    if (this.selected && !e.barcode) {
      const from = this.selected;
      void this.run(`move ${from.barcode} to element ${e.address}`, () => post(`/api/v1/libraries/${enc(this.lib.name)}/move`, { from: from.address, to: e.address }));
      return;
    }
    this.selected = e.barcode && this.selected?.address !== e.address ? e : undefined;
    this.render();
  }

  private renderActions(): void {
    const s = this.selected;
    if (!s || !s.barcode) {
      replace(this.actions, h('p', { class: 'hint' }, this.operator ? 'Click a cartridge to act on it.' : 'Click a cartridge to see where it is.'));
      return;
    }
    const bc = s.barcode;
    const base = `/api/v1/libraries/${enc(this.lib.name)}`;
    const buttons: HTMLElement[] = [];
    const button = (label: string, id: string, what: string, call: () => Promise<unknown>) =>
      buttons.push(h('button', { type: 'button', 'data-action': id, onclick: () => void this.run(what, call) }, label));
    if (this.operator) {
      if (s.type === 'slot') {
        for (const d of this.elements.filter((x) => x.type === 'drive' && !x.barcode)) {
          button(`Load into drive ${d.index}`, `load-${d.index}`, `load ${bc} into drive ${d.index}`, () => post(`${base}/drives/${d.index}/load`, { barcode: bc }));
        }
        button('Export to a mail slot', 'export', `export ${bc}`, () => post(`${base}/export`, { barcode: bc }));
      }
      if (s.type === 'drive') button('Unload', 'unload', `unload drive ${s.index}`, () => post(`${base}/drives/${s.index}/unload`, {}));
      if (s.type === 'mailslot') {
        button('Import into a slot', 'import', `import ${bc}`, () => post(`${base}/import`, { barcode: bc }));
        button('Remove to the vault', 'remove', `remove ${bc} to the vault`, () => post(`${base}/remove`, { barcode: bc }));
      }
    }
    replace(
      this.actions,
      h('strong', { id: 'selected' }, bc),
      ` in element ${s.address}. `,
      h('a', { href: `#/cartridge/${enc(bc)}` }, 'Open the cartridge'),
      this.operator ? h('span', { class: 'hint' }, ' · or click an empty element to move it there · ') : null,
      buttons,
      this.operator ? h('button', { type: 'button', onclick: () => ((this.selected = undefined), this.render()) }, 'Cancel') : null,
    );
  }

  private async run(what: string, call: () => Promise<unknown>): Promise<void> {
    this.busy = true;
    replace(this.status, notice(`Working: ${what}…`));
    try {
      await call();
      replace(this.status, notice(`Done: ${what}.`));
      this.selected = undefined;
    } catch (e) {
      replace(this.status, errorBox(e));
    } finally {
      this.busy = false;
    }
    await this.refresh();
  }
}

function driveState(d: Drive): string {
  if (!d.barcode) return 'idle, empty';
  if (d.open) return d.position ? `in session · file ${d.position.file}, lba ${d.position.lba}` : 'in session';
  return d.position ? `loaded · file ${d.position.file}${d.position.eod ? ', at EOD' : ''}` : 'loaded';
}
