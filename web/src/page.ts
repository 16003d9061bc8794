/** What every page gets, and what it hands back: a function that stops its timers. */
import type { Me } from './api.js';

export interface PageContext {
  me: Me;
  /** The path parts after the page name: #/cartridge/VT0001L7 -> ['VT0001L7']. */
  args: string[];
  query: URLSearchParams;
  /** Changes the hash (and so the page), e.g. go('cartridges', {}, {page: '2'}). */
  go(hash: string): void;
}

export type Page = (root: HTMLElement, ctx: PageContext) => void | (() => void);
