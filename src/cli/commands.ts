/**
 * `vtl` commands that talk to a running server over the REST API: library (with the mail-slot
 * moves `library import` / `library export`), cartridge, drive, move/load/unload, stats, token.
 * Every listing takes `--json` (the API's own objects, stable); otherwise output is a table.
 * Long transfers show a progress bar on a terminal.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Transform, type Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SingleBar } from 'cli-progress';
import { Command, InvalidArgumentError, Option } from 'commander';
import { ApiClient, CliError } from './client.js';
import { bytes, plural, ratio, table, where } from './format.js';

/* eslint-disable @typescript-eslint/no-explicit-any */
type Obj = Record<string, any>;

const enc = encodeURIComponent;
export const out = (s: string): void => void process.stdout.write(s + '\n');
export const json = (v: unknown): void => out(JSON.stringify(v, null, 2));

export function int(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError('expected a whole number');
  return n;
}

/** --url and --token-file on every command that talks to the server. */
export function api(cmd: Command): Command {
  return cmd
    .option('--url <url>', 'server URL (default $VTL_URL or http://127.0.0.1:7420)')
    .option('--token-file <file>', 'bearer token file (default $VTL_TOKEN, else ./vtl-data/admin.token)');
}

export function client(o: { url?: string; tokenFile?: string }): ApiClient {
  return new ApiClient({ url: o.url, tokenFile: o.tokenFile });
}

export function registerServiceCommands(program: Command): void {
  registerLibrary(program);
  registerCartridge(program);
  registerChanger(program);
  registerDrive(program);

  api(program.command('stats').description('store-wide logical and stored bytes, dedup and compression ratios'))
    .option('--json', 'print JSON')
    .action(async (o) => {
      const s = await client(o).get<Obj>('/api/v1/stats');
      if (o.json) return json(s);
      out(
        table(
          ['what', 'value'],
          [
            ['libraries', s.libraries],
            ['cartridges', s.cartridges],
            ['logical bytes', bytes(s.logicalBytes)],
            ['unique bytes', bytes(s.uniqueBytes)],
            ['stored bytes', bytes(s.storedBytes)],
            ['dedup ratio', ratio(s.dedupRatio)],
            ['compression ratio', ratio(s.compressionRatio)],
            ['total reduction', ratio(s.reductionRatio)],
            ['containers', s.containers],
            ['chunks', s.chunks],
          ],
        ),
      );
    });

  api(program.command('health').description('is the server up?'))
    .option('--json', 'print JSON')
    .action(async (o) => {
      const c = client(o);
      const h = await c.get<Obj>('/api/v1/health');
      if (o.json) return json(h);
      out(`${c.url}: ${h.status}, version ${h.version}, up ${Math.round(h.uptimeSeconds)} s, rmt ${h.rmt ?? 'off'}`);
    });

  registerToken(program);
}

function registerLibrary(program: Command): void {
  const lib = program.command('library').description('tape libraries');
  api(lib.command('list').description('list libraries'))
    .option('--json', 'print JSON')
    .action(async (o) => {
      const { items } = await client(o).get<{ items: Obj[] }>('/api/v1/libraries');
      if (o.json) return json(items);
      out(table(['name', 'model', 'drives', 'slots', 'mailslots'], items.map((l) => [l.name, `${l.vendor} ${l.product}`, l.drives, l.slots, l.mailslots])));
    });
  api(lib.command('create').description('create a library').argument('<name>'))
    .requiredOption('--drives <n>', 'drives', int)
    .requiredOption('--slots <n>', 'storage slots', int)
    .option('--mailslots <n>', 'import/export (mail) slots', int, 4)
    .addOption(new Option('--model <model>', 'changer model').choices(['IBM 03584L32', 'STK L700']))
    .option('--json', 'print JSON')
    .action(async (name: string, o) => {
      const l = await client(o).post<Obj>('/api/v1/libraries', { name, drives: o.drives, slots: o.slots, mailslots: o.mailslots, ...(o.model ? { model: o.model } : {}) });
      if (o.json) return json(l);
      out(`created library ${l.name}: ${l.drives} drives, ${l.slots} slots, ${l.mailslots} mail slots (${l.vendor} ${l.product})`);
    });
  api(lib.command('delete').description('delete an empty library').argument('<name>')).action(async (name: string, o) => {
    await client(o).delete(`/api/v1/libraries/${enc(name)}`);
    out(`deleted library ${name}`);
  });
  api(lib.command('status').alias('show').description('drives, slots and mail slots with their cartridges (like mtx status)').argument('<name>'))
    .option('--json', 'print JSON')
    .action(async (name: string, o) => {
      const c = client(o);
      const { items } = await c.get<{ items: Obj[] }>(`/api/v1/libraries/${enc(name)}/elements`);
      if (o.json) return json(items);
      const drives = (await c.get<{ items: Obj[] }>(`/api/v1/libraries/${enc(name)}/drives`)).items;
      const dstate = new Map(drives.map((d) => [d.address, d]));
      const full = (b: string | null) => (b ? `Full :VolumeTag=${b}` : 'Empty');
      const lines = [`  Storage Changer ${name}: ${drives.length} Drives, ${items.filter((e) => e.type !== 'drive').length} Slots ( ${items.filter((e) => e.type === 'mailslot').length} Import/Export )`];
      for (const e of items) {
        if (e.type === 'drive') {
          const d = dstate.get(e.address);
          const extra = d?.position ? `  file ${d.position.file} block ${d.position.block}${d.open ? ' (session open)' : ''}` : '';
          lines.push(`Data Transfer Element ${e.mtx}:${full(e.barcode)}${extra}`);
        } else lines.push(`      Storage Element ${e.mtx}${e.type === 'mailslot' ? ' IMPORT/EXPORT' : ''}:${full(e.barcode)}`);
      }
      out(lines.join('\n'));
    });
  // Mail-slot moves live here: `vtl import` / `vtl export` are tape images (images.ts).
  api(lib.command('import').description('move cartridges from mail slots into storage slots (all, or one)').argument('<library>').argument('[barcode]'))
    .option('--from-vault', 'first put BARCODE from the vault into a mail slot')
    .option('--json', 'print JSON')
    .action(async (name: string, barcode: string | undefined, o) => {
      const c = client(o);
      if (o.fromVault) {
        if (!barcode) throw new CliError('--from-vault needs a barcode');
        await c.post(`/api/v1/libraries/${enc(name)}/insert`, { barcode });
      }
      const r = await c.post<Obj>(`/api/v1/libraries/${enc(name)}/import`, barcode ? { barcode } : {});
      if (o.json) return json(r);
      out(r.moved.length ? `imported ${r.moved.join(', ')} into ${name}` : `no cartridges in the mail slots of ${name}`);
    });
  api(lib.command('export').description('move a cartridge into a mail slot').argument('<library>').argument('<barcode>'))
    .option('--to-vault', 'then take it out of the library into the vault')
    .action(async (name: string, barcode: string, o) => {
      const c = client(o);
      await c.post(`/api/v1/libraries/${enc(name)}/export`, { barcode });
      if (o.toVault) await c.post(`/api/v1/libraries/${enc(name)}/remove`, { barcode });
      out(`exported ${barcode} from ${name}${o.toVault ? ' to the vault' : ' to a mail slot'}`);
    });
}

function registerCartridge(program: Command): void {
  const cart = program.command('cartridge').description('cartridges (virtual tapes)');
  api(cart.command('list').description('list cartridges (filters and paging)'))
    .option('--library <name>', 'only in this library')
    .addOption(new Option('--state <state>', 'only in this state').choices(['scratch', 'in use', 'full', 'expired']))
    .addOption(new Option('--location <kind>', 'only in this kind of place').choices(['drive', 'slot', 'mailslot', 'vault']))
    .option('--media <type>', 'only this media type (LTO-7, ...)')
    .option('--prefix <prefix>', 'barcodes starting with this')
    .option('--offset <n>', 'skip this many', int, 0)
    .option('--limit <n>', 'at most this many (1..1000)', int, 100)
    .option('--json', 'print JSON (items, total, offset, limit)')
    .action(async (o) => {
      const q = new URLSearchParams();
      for (const [k, v] of [['library', o.library], ['state', o.state], ['location', o.location], ['mediaType', o.media], ['prefix', o.prefix], ['offset', o.offset], ['limit', o.limit]]) {
        if (v !== undefined) q.set(k, String(v));
      }
      const page = await client(o).get<Obj>(`/api/v1/cartridges?${q}`);
      if (o.json) return json(page);
      out(
        table(
          ['barcode', 'media', 'state', 'location', 'logical', 'files', 'flags'],
          page.items.map((c: Obj) => [c.barcode, c.mediaType, c.state, where(c.location), bytes(c.logicalBytes), c.files, flags(c)]),
        ),
      );
      if (page.total > page.offset + page.items.length) out(`(${page.items.length} of ${page.total}; --offset ${page.offset + page.items.length} for more)`);
    });
  api(cart.command('create').description('create cartridges in free slots of a library'))
    .requiredOption('--library <name>', 'library whose free slots receive them')
    .option('--barcodes <list>', 'comma-separated barcodes (VT0001L7,VT0002L7)')
    .option('--prefix <prefix>', 'barcode prefix for a range (with --count)')
    .option('--start <n>', 'first number of the range', int, 1)
    .option('--count <n>', 'how many', int)
    .option('--media <type>', 'media type (LTO-5..LTO-9, custom); default: from the barcode suffix (L7: LTO-7), LTO-7 for --prefix')
    .option('--capacity <bytes>', 'capacity of custom media', int)
    .option('--worm', 'write once, read many')
    .option('--json', 'print JSON')
    .action(async (o) => {
      const body: Obj = { library: o.library };
      if (o.barcodes) body.barcodes = String(o.barcodes).split(',').map((s) => s.trim()).filter(Boolean);
      else if (o.prefix !== undefined) Object.assign(body, { prefix: o.prefix, start: o.start, count: o.count ?? 1, mediaType: o.media ?? 'LTO-7' });
      else throw new CliError('give --barcodes A,B,... or --prefix P --count N');
      if (o.barcodes && o.media) body.mediaType = o.media;
      if (o.capacity) body.capacity = o.capacity;
      if (o.worm) body.worm = true;
      const { items } = await client(o).post<{ items: Obj[] }>('/api/v1/cartridges', body);
      if (o.json) return json(items);
      out(`created ${plural(items.length, 'cartridge')}: ${items[0].barcode}${items.length > 1 ? `..${items[items.length - 1].barcode}` : ''} in ${o.library}`);
    });
  api(cart.command('show').description('one cartridge: location, state, bytes, dedup ratio, tape files').argument('<barcode>'))
    .option('--json', 'print JSON')
    .action(async (barcode: string, o) => {
      const c = await client(o).get<Obj>(`/api/v1/cartridges/${enc(barcode)}`);
      if (o.json) return json(c);
      out(
        table(
          ['field', 'value'],
          [
            ['barcode', c.barcode],
            ['media', `${c.mediaType} (${bytes(c.capacity)})`],
            ['state', c.state],
            ['location', where(c.location)],
            ['flags', flags(c)],
            ['retention until', c.retentionUntil],
            ['logical bytes', bytes(c.logicalBytes)],
            ['stored bytes', bytes(c.storedBytes)],
            ['dedup ratio', ratio(c.dedupRatio)],
            ['compression ratio', ratio(c.compressionRatio)],
            ['tape files', c.files],
          ],
        ),
      );
      if (c.tapeFiles?.length) {
        out('');
        out(table(['file', 'start lba', 'bytes', 'filemark', 'checksum'], c.tapeFiles.map((f: Obj) => [f.file, f.startLba, f.bytes, f.terminated ? 'yes' : 'no', f.checksum])));
      }
    });
  api(cart.command('protect').description('set (or with --off clear) write protect').argument('<barcode>'))
    .option('--off', 'clear write protect')
    .action(async (barcode: string, o) => {
      const c = await client(o).patch<Obj>(`/api/v1/cartridges/${enc(barcode)}`, { writeProtected: !o.off });
      out(`${c.barcode}: write protect ${c.writeProtected ? 'on' : 'off'}`);
    });
  api(cart.command('retain').description('set the retention date (ISO 8601: 2030-01-01 is its start in UTC; or "none")').argument('<barcode>').argument('<date>')).action(async (barcode: string, date: string, o) => {
    const until = date === 'none' ? null : /^\d{4}-\d{2}-\d{2}$/.test(date) ? `${date}T00:00:00Z` : date;
    const c = await client(o).patch<Obj>(`/api/v1/cartridges/${enc(barcode)}`, { retentionUntil: until });
    out(`${c.barcode}: retention until ${c.retentionUntil ?? 'none'}`);
  });
  api(cart.command('erase').description('erase a cartridge (its data becomes garbage)').argument('<barcode>')).action(async (barcode: string, o) => {
    const c = await client(o).post<Obj>(`/api/v1/cartridges/${enc(barcode)}/erase`);
    out(`${c.barcode}: erased (${c.state})`);
  });
  api(cart.command('delete').description('delete a cartridge that is not in a drive').argument('<barcode>')).action(async (barcode: string, o) => {
    await client(o).delete(`/api/v1/cartridges/${enc(barcode)}`);
    out(`${barcode}: deleted`);
  });
}

function flags(c: Obj): string {
  return [c.worm ? 'WORM' : '', c.writeProtected ? 'protected' : ''].filter(Boolean).join(',') || '-';
}

function registerChanger(program: Command): void {
  api(program.command('move').description('move a cartridge between element addresses').argument('<library>').argument('<from>', 'source element address', int).argument('<to>', 'destination element address', int)).action(
    async (lib: string, from: number, to: number, o) => {
      await client(o).post(`/api/v1/libraries/${enc(lib)}/move`, { from, to });
      out(`moved ${lib} element ${from} -> ${to}`);
    },
  );
  api(program.command('load').description('load a cartridge into a drive (numbered from 0)').argument('<library>').argument('<drive>', 'drive number', int).argument('<barcode>')).action(
    async (lib: string, drive: number, barcode: string, o) => {
      await client(o).post(`/api/v1/libraries/${enc(lib)}/drives/${drive}/load`, { barcode });
      out(`loaded ${barcode} into ${lib} drive ${drive}`);
    },
  );
  api(program.command('unload').description('unload a drive back to its slot').argument('<library>').argument('<drive>', 'drive number', int)).action(async (lib: string, drive: number, o) => {
    const before = await client(o).get<Obj>(`/api/v1/libraries/${enc(lib)}/drives/${drive}`);
    await client(o).post(`/api/v1/libraries/${enc(lib)}/drives/${drive}/unload`);
    out(`unloaded ${before.barcode ?? 'the cartridge'} from ${lib} drive ${drive}`);
  });
}

function registerDrive(program: Command): void {
  const drive = program.command('drive').description('drives: list, tape files over HTTP, positioning');
  api(drive.command('list').description('drives of a library').argument('<library>'))
    .option('--json', 'print JSON')
    .action(async (lib: string, o) => {
      const { items } = await client(o).get<{ items: Obj[] }>(`/api/v1/libraries/${enc(lib)}/drives`);
      if (o.json) return json(items);
      out(table(['drive', 'address', 'cartridge', 'session', 'file', 'block', 'lba'], items.map((d) => [d.index, d.address, d.barcode, d.open ? 'open' : '-', d.position?.file, d.position?.block, d.position?.lba])));
    });
  api(drive.command('write').description('write FILE (or stdin) as one tape file at the drive position (refused where data follows it)').argument('<library>').argument('<drive>', 'drive number', int).argument('[file]', 'input (default stdin)'))
    .option('--block-size <bytes>', 'record size', int, 65536)
    .option('--append', 'first space to end of data, so the file is added after the others')
    .option('--overwrite', 'write at the position even where data follows (cutting it off, as on tape)')
    .option('--json', 'print JSON')
    .action(async (lib: string, n: number, file: string | undefined, o) => {
      if (o.append && o.overwrite) throw new CliError('--append and --overwrite exclude each other');
      if (o.append) await client(o).post(`/api/v1/libraries/${enc(lib)}/drives/${n}/space`, { kind: 'eod' });
      const size = file && file !== '-' ? (await stat(file)).size : undefined;
      const fromFile = file !== undefined && file !== '-';
      const input: Readable = fromFile ? createReadStream(file, { highWaterMark: 1 << 20 }) : process.stdin;
      const bar = progress(size);
      let r: Obj;
      try {
        r = await client(o).upload<Obj>(`/api/v1/libraries/${enc(lib)}/drives/${n}/file?blockSize=${o.blockSize}${o.overwrite ? '&overwrite=true' : ''}`, input.pipe(counter(bar)), size);
      } finally {
        bar?.stop(); // also on a refusal: a running bar redraws (and hides the cursor) until stopped
        if (fromFile) input.destroy(); // the server may answer before it has read everything
      }
      if (o.json) return json(r);
      out(`wrote tape file ${r.file}: ${r.bytes} bytes in ${r.records} records of ${r.blockSize}${r.earlyWarning ? ' (early warning: the cartridge is nearly full)' : ''}`);
    });
  api(drive.command('read').description('read the next tape file to FILE (or stdout)').argument('<library>').argument('<drive>', 'drive number', int).argument('[file]', 'output (default stdout)')).action(
    async (lib: string, n: number, file: string | undefined, o) => {
      const res = await client(o).download(`/api/v1/libraries/${enc(lib)}/drives/${n}/file`);
      const toStdout = !file || file === '-';
      const bar = toStdout ? undefined : progress(undefined);
      const sink: Writable = toStdout ? process.stdout : createWriteStream(file);
      try {
        await pipeline(res, counter(bar), sink, { end: !toStdout });
      } catch (err) {
        throw new CliError(`the tape file transfer broke off: ${(err as Error).message}`);
      } finally {
        bar?.stop();
      }
      if (!res.complete) throw new CliError('the tape file transfer broke off (the server aborted it: see its log)');
      if (!toStdout) out(`read tape file ${res.headers['x-tape-file']} into ${file}`);
    },
  );
  // An operation that stops short (end of data, a filemark, BOT) is a failure, as for mt: the
  // line says where the tape stands, and the exit status is 1 (also with --json).
  const op = (name: string, desc: string, args: Array<[string, string]>, body: (...a: any[]) => Obj | undefined) => {
    let c = api(drive.command(name).description(desc).argument('<library>').argument('<drive>', 'drive number', int));
    for (const [a, d] of args) c = c.argument(a, d);
    // Counts may be negative (backward): without this, `-1` would be taken for an option.
    if (args.some(([a]) => a === '[count]')) c.allowUnknownOption();
    c.option('--json', 'print JSON').action(async (lib: string, n: number, ...rest: any[]) => {
      const o = rest[rest.length - 2];
      const r = await client(o).post<Obj>(`/api/v1/libraries/${enc(lib)}/drives/${n}/${name}`, body(...rest.slice(0, -2)) ?? {});
      if (o.json) {
        json(r);
        if (!r.ok) process.exitCode = 1;
        return;
      }
      const p = r.position;
      const where = `now at file ${p?.file} block ${p?.block} (lba ${p?.lba}${p?.eod ? ', end of data' : ''})`;
      if (!r.ok) throw new CliError(`${lib} drive ${n}: ${name} stopped short: ${r.sense?.message ?? 'no reason given'} (residue ${r.residue}); ${where}`);
      out(`${lib} drive ${n}: ${name} done; ${where}`);
    });
  };
  const count = (value: string): number => {
    const n = Number(value);
    if (!Number.isSafeInteger(n)) throw new CliError(`the count must be a whole number (negative: backward), got ${JSON.stringify(value)}`);
    return n;
  };
  op('rewind', 'rewind to the beginning', [], () => undefined);
  op('space', 'space over records or filemarks (negative: backward), or to eod', [['<kind>', 'records | filemarks | eod'], ['[count]', 'how many (default 1)']], (kind: string, n?: string) => {
    if (!['records', 'filemarks', 'eod'].includes(kind)) throw new CliError(`space over records, filemarks or eod, not ${JSON.stringify(kind)}`);
    return { kind, ...(n !== undefined ? { count: count(n) } : {}) };
  });
  op('locate', 'locate to a logical block address', [['<lba>', 'block address']], (lba: string) => ({ lba: int(lba) }));
  op('weof', 'write filemarks (default 1)', [['[count]', 'how many']], (n?: string) => (n !== undefined ? { count: count(n) } : {}));
}

function registerToken(program: Command): void {
  const token = program.command('token').description('API tokens (admin)');
  api(token.command('list').description('list tokens'))
    .option('--json', 'print JSON')
    .action(async (o) => {
      const { items } = await client(o).get<{ items: Obj[] }>('/api/v1/tokens');
      if (o.json) return json(items);
      out(table(['id', 'name', 'role', 'created'], items.map((t) => [t.id, t.name, t.role, t.createdAt])));
    });
  api(token.command('create').description('create a token; prints its secret once').argument('<name>'))
    .addOption(new Option('--role <role>', 'what it may do').choices(['admin', 'operator', 'auditor']).makeOptionMandatory())
    .option('--json', 'print JSON')
    .action(async (name: string, o) => {
      const t = await client(o).post<Obj>('/api/v1/tokens', { name, role: o.role });
      if (o.json) return json(t);
      out(t.token);
      process.stderr.write(`created ${t.role} token ${t.id} (${t.name}); the line above is its secret, shown only now\n`);
    });
  api(token.command('revoke').description('revoke a token by id').argument('<id>')).action(async (id: string, o) => {
    const t = await client(o).delete<Obj>(`/api/v1/tokens/${enc(id)}`);
    out(`revoked token ${t.id} (${t.name}, ${t.role})`);
  });
}

export function progress(total: number | undefined): SingleBar | undefined {
  if (!process.stderr.isTTY) return undefined;
  const bar = new SingleBar({
    stream: process.stderr,
    format: total ? ' {bar} {percentage}% | {done} of {all} | {speed}' : ' {done} | {speed}',
    hideCursor: true,
  });
  bar.start(total ?? 0, 0, { done: bytes(0), all: bytes(total), speed: '' });
  return bar;
}

/** Counts bytes through a pipeline into the progress bar. */
export function counter(bar: SingleBar | undefined): Transform {
  let n = 0;
  const t0 = Date.now();
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      n += chunk.length;
      const s = (Date.now() - t0) / 1000;
      bar?.update(n, { done: bytes(n), speed: s > 0 ? `${bytes(n / s)}/s` : '' });
      cb(null, chunk);
    },
  });
}


