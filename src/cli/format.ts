/** Human output: aligned tables and byte counts. `--json` output bypasses all of this. */

export function table(headers: string[], rows: Array<Array<string | number | null | undefined>>): string {
  const cells = rows.map((r) => r.map((c) => (c === null || c === undefined ? '-' : String(c))));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i]?.length ?? 0)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
  return [line(headers), ...cells.map(line)].join('\n');
}

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

export function ratio(r: number | null | undefined): string {
  return r === null || r === undefined ? '-' : `${r.toFixed(2)}x`;
}

export interface LocationLike {
  kind: string;
  library?: string;
  index?: number;
  address?: number;
}

export function where(l: LocationLike): string {
  if (l.kind === 'vault') return 'vault';
  return `${l.library} ${l.kind} ${l.index} (@${l.address})`;
}

/** `1 record`, `2 records`. */
export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}
