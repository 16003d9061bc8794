/**
 * Replication and disaster recovery commands over the REST API:
 *   vtl replicate target add NAME URL [--bandwidth BYTES_PER_S] [--create-bucket] | target list | target remove NAME
 *   vtl replicate BARCODE --target NAME [--wait] [--json]     (exit 1 when the job failed)
 *   vtl replicate status | jobs | policy set LIB --target NAME --on unloaded,exported | policy remove LIB
 *   vtl replicate target check NAME [--deep]   (what went missing or bad there is shipped again)
 *   vtl dr export-key --out FILE        (passphrase from $VTL_DR_PASSPHRASE or a prompt)
 *   vtl dr attach URL --key-file FILE [--name NAME]   (run against region B's server)
 *   vtl dr list [--json] | sources | refresh [--source NAME] | promote BARCODE
 *   (attach and refresh exit 1 when a cartridge could not be imported as the source holds it:
 *   damaged catalogs, barcode conflicts, a target that could not be read; --json too)
 * Credentials for s3:// and azure:// URLs are read by the server from the SDKs' environment
 * (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AZURE_STORAGE_*), never passed on the command line.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { Command, InvalidArgumentError } from 'commander';
import { CliError, type ApiClient } from './client.js';
import { api, client, int, json, out } from './commands.js';
import { bytes, table } from './format.js';

/* eslint-disable @typescript-eslint/no-explicit-any */
type Obj = Record<string, any>;
const enc = encodeURIComponent;

export function registerReplicationCommands(program: Command): void {
  registerReplicate(program);
  registerDr(program);
}

/**
 * `replicate` takes a barcode and has subcommands; its --url and --token-file are parsed by it
 * wherever they appear, so the subcommands read them with optsWithGlobals().
 */
function registerReplicate(program: Command): void {
  const rep = api(program.command('replicate').description('replicate cartridges to object tiers (S3, Azure, a directory)').argument('[barcode]', 'the cartridge to replicate now'))
    .option('--target <name>', 'the replication target')
    .option('--wait', 'wait until the job has ended (exit code 1 when it failed)')
    .option('--json', 'print JSON (the job)')
    .action(async (barcode: string | undefined, o) => {
      if (!barcode) throw new CliError('give a barcode (vtl replicate BARCODE --target NAME), or a subcommand: target, status, jobs, policy');
      if (!o.target) throw new CliError('--target NAME is required (see `vtl replicate target list`)');
      const c = client(o);
      let j = await c.post<Obj>(`/api/v1/cartridges/${enc(barcode)}/replicate`, { target: o.target });
      if (o.wait) j = await waitForReplication(c, j.id);
      if (j.state === 'failed' || j.state === 'cancelled') process.exitCode = 1;
      if (o.json) return json(j);
      out(jobLine(j));
    });

  const target = rep.command('target').description('replication targets');
  api(target.command('add').description('add a target (URL: file:///dir, s3://bucket/prefix?endpoint=...&region=..., azure://container/prefix?account=...)').argument('<name>').argument('<url>'))
    .option('--bandwidth <bytesPerSecond>', 'ship at most this many bytes per second', int)
    .option('--create-bucket', 'create the bucket (S3), container (Azure) or directory (file://) if it does not exist; without it, a missing one is an error')
    .option('--json', 'print JSON')
    .action(async (name: string, url: string, o, cmd: Command) => {
      o = cmd.optsWithGlobals();
      // Sent only when given, so that this client still talks to a server without the field.
      const create = o.createBucket ? { createBucket: true } : {};
      const t = await client(o).post<Obj>('/api/v1/replication/targets', { name, url, bandwidthLimit: o.bandwidth ?? null, ...create });
      if (o.json) return json(t);
      out(`target ${t.name}: ${t.url}${t.bandwidthLimit ? ` (at most ${bytes(t.bandwidthLimit)}/s)` : ''}`);
    });
  api(target.command('list').description('targets (URLs without credentials)'))
    .option('--json', 'print JSON')
    .action(async (o, cmd: Command) => {
      o = cmd.optsWithGlobals();
      const r = await client(o).get<Obj>('/api/v1/replication/targets');
      if (o.json) return json(r.items);
      out(table(['name', 'url', 'bandwidth', 'created'], r.items.map((t: Obj) => [t.name, t.url, t.bandwidthLimit ? `${bytes(t.bandwidthLimit)}/s` : '-', t.createdAt])));
    });
  api(target.command('check').description('compare a target with what was shipped to it and ship again what is missing or damaged there (exit 1 when anything was)').argument('<name>'))
    .option('--deep', 'compare every byte of the containers, not only that they are there (reads the whole target)')
    .option('--json', 'print JSON')
    .action(async (name: string, o, cmd: Command) => {
      o = cmd.optsWithGlobals();
      const r = await client(o).post<Obj>(`/api/v1/replication/targets/${enc(name)}/check`, { deep: Boolean(o.deep) });
      const found = r.missing.length + r.damaged.length + r.brokenReplicas.length;
      if (found > 0) process.exitCode = 1;
      if (o.json) return json(r);
      out(`target ${r.target}: ${r.containersRecorded} containers${r.deep ? ' compared byte for byte' : ' listed'}, ${r.cartridgesChecked} replica${r.cartridgesChecked === 1 ? '' : 's'} checked: ${found === 0 ? 'whole' : 'problems found'}`);
      if (r.missing.length) out(`  missing there: ${r.missing.map(hex8).join(' ')}`);
      if (r.damaged.length) out(`  damaged there: ${r.damaged.map(hex8).join(' ')}`);
      if (r.reshipped.length) out(`  shipped again: ${r.reshipped.map(hex8).join(' ')} (${bytes(r.bytesShipped)})`);
      if (r.lost.length) out(`  no longer in this store (collected), struck from the record: ${r.lost.map(hex8).join(' ')}`);
      for (const b of r.brokenReplicas) out(`  ${b.barcode} catalog ${b.seq}: ${b.reason}; its next replication ships it whole (vtl replicate ${b.barcode} --target ${r.target})`);
    });
  api(target.command('remove').description('forget a target (nothing on it is deleted)').argument('<name>')).action(async (name: string, o, cmd: Command) => {
      o = cmd.optsWithGlobals();
    await client(o).json('DELETE', `/api/v1/replication/targets/${enc(name)}`);
    out(`target ${name} removed`);
  });

  api(rep.command('status').description('per target: cartridges replicated and pending, largest lag, bytes shipped'))
    .option('--json', 'print JSON')
    .action(async (o, cmd: Command) => {
      o = cmd.optsWithGlobals();
      const r = await client(o).get<Obj>('/api/v1/replication/status');
      if (o.json) return json(r);
      out(table(['target', 'cartridges', 'replicated', 'pending', 'failed', 'max lag', 'shipped', 'queued', 'running'], r.targets.map((t: Obj) => [t.name, t.cartridges, t.replicated, t.pending, t.failed, t.maxLagSeconds === null ? '-' : `${Math.round(t.maxLagSeconds)} s`, bytes(t.bytesShipped), t.queued, t.running])));
    });

  api(rep.command('jobs').description('replication jobs, newest first'))
    .option('--barcode <barcode>', 'only this cartridge')
    .option('--target <name>', 'only this target')
    .option('--state <state>', 'queued, running, done, failed or cancelled')
    .option('--limit <n>', 'at most this many', int, 100)
    .option('--json', 'print JSON')
    .action(async (o, cmd: Command) => {
      o = cmd.optsWithGlobals();
      const q = new URLSearchParams({ limit: String(o.limit) });
      for (const k of ['barcode', 'target', 'state'] as const) if (o[k]) q.set(k, o[k]);
      const r = await client(o).get<Obj>(`/api/v1/replication/jobs?${q}`);
      if (o.json) return json(r);
      out(table(['id', 'barcode', 'target', 'state', 'attempts', 'shipped', 'created', 'error'], r.items.map((j: Obj) => [j.id, j.barcode, j.target, j.state, j.attempts, j.result ? bytes(j.result.bytesShipped) : '-', j.createdAt, j.lastError ?? ''])));
    });

  const policy = rep.command('policy').description('replicate a library\'s cartridges automatically');
  // --target is checked here, not by commander: `replicate` has its own --target, which commander
  // gives the value wherever it stands, so a required option here never saw it.
  api(policy.command('set').description('replicate on unload and/or export').argument('<library>'))
    .option('--target <name>', 'the target (required)')
    .option('--on <events>', 'unloaded,exported', 'unloaded,exported')
    .action(async (library: string, o, cmd: Command) => {
      o = cmd.optsWithGlobals();
      if (!o.target) throw new CliError('--target NAME is required (see `vtl replicate target list`)');
      const p = await client(o).json<Obj>('PUT', `/api/v1/libraries/${enc(library)}/replication`, { target: o.target, on: String(o.on).split(',').map((s) => s.trim()) });
      out(`library ${p.library}: replicate to ${p.target} when ${p.on.join(' or ')}`);
    });
  api(policy.command('remove').argument('<library>')).action(async (library: string, o, cmd: Command) => {
      o = cmd.optsWithGlobals();
    await client(o).json('DELETE', `/api/v1/libraries/${enc(library)}/replication`);
    out(`library ${library}: no automatic replication`);
  });
}

function registerDr(program: Command): void {
  const dr = program.command('dr').description('disaster recovery: the recovery key, and replicas of another region');
  api(dr.command('export-key').description('write the recovery key (sealed by a passphrase) to a file; keep it away from this site'))
    .requiredOption('--out <file>', 'where to write it (created; never overwritten)')
    .action(async (o) => {
      const passphrase = await askPassphrase(true);
      const r = await client(o).post<Obj>('/api/v1/dr/export-key', { passphrase });
      await writeFile(o.out, r.keyFile, { mode: 0o600, flag: 'wx' }).catch((err: NodeJS.ErrnoException) => {
        throw new CliError(err.code === 'EEXIST' ? `${o.out} exists: choose another file` : `cannot write ${o.out}: ${err.message}`);
      });
      out(`recovery key of store ${r.storeId} (replication key ${r.keyId}) written to ${o.out}`);
    });
  api(dr.command('attach').description("attach another store's replication target read-only, and import its cartridges into the vault").argument('<url>'))
    .requiredOption('--key-file <file>', 'the recovery key file of that store')
    .option('--name <name>', 'what to call the source here')
    .option('--json', 'print JSON')
    .action(async (url: string, o) => {
      const keyFile = await readFile(o.keyFile, 'utf8').catch((err: Error) => {
        throw new CliError(`cannot read ${o.keyFile}: ${err.message}`);
      });
      const passphrase = await askPassphrase(false);
      const r = await client(o).post<Obj>('/api/v1/dr/sources', { url, keyFile, passphrase, ...(o.name ? { name: o.name } : {}) });
      refreshExitCode([r]);
      if (o.json) return json(r);
      printRefresh(r);
    });
  api(dr.command('refresh').description('import catalogs newer than the replicas held here'))
    .option('--source <name>', 'only this source')
    .option('--json', 'print JSON')
    .action(async (o) => {
      const r = await client(o).post<Obj>('/api/v1/dr/refresh', o.source ? { source: o.source } : {});
      refreshExitCode(r.results);
      if (o.json) return json(r.results);
      r.results.forEach(printRefresh);
    });
  api(dr.command('list').description('replicas held here (and promoted ones)'))
    .option('--json', 'print JSON')
    .action(async (o) => {
      const r = await client(o).get<Obj>('/api/v1/dr/cartridges');
      if (o.json) return json(r.items);
      out(table(['barcode', 'source', 'catalog', 'state', 'bytes', 'synced at source', 'imported'], r.items.map((x: Obj) => [x.barcode, x.source, x.seq, x.state, bytes(x.logicalBytes), x.syncedAt ?? '-', x.importedAt])));
    });
  api(dr.command('sources').description('attached sources'))
    .option('--json', 'print JSON')
    .action(async (o) => {
      const r = await client(o).get<Obj>('/api/v1/dr/sources');
      if (o.json) return json(r.items);
      out(table(['name', 'url', 'store', 'attached', 'last refresh', 'cache'], r.items.map((s: Obj) => [s.name, s.url, s.storeId, s.attachedAt, s.lastRefreshAt ?? '-', bytes(s.cacheBytes)])));
    });
  api(dr.command('promote').description('make a replica a writable cartridge here (failover; its data is copied in)').argument('<barcode>'))
    .option('--json', 'print JSON')
    .action(async (barcode: string, o) => {
      const c = await client(o).post<Obj>(`/api/v1/dr/cartridges/${enc(barcode)}/promote`);
      if (o.json) return json(c);
      out(`${c.barcode} is now a writable cartridge of this store (${bytes(c.logicalBytes)}, ${c.files} tape files)`);
    });
}

const hex8 = (id: number) => id.toString(16).padStart(8, '0');

function printRefresh(r: Obj): void {
  const damaged: Obj[] = r.damaged ?? [];
  const failed: Obj[] = r.failed ?? [];
  const more = [damaged.length ? `, ${damaged.length} damaged` : '', failed.length ? `, ${failed.length} not read` : ''].join('');
  out(`source ${r.source}: ${r.imported.length} imported, ${r.unchanged} unchanged, ${r.conflicts.length} conflicts${more}`);
  for (const i of r.imported) out(`  ${i.barcode} catalog ${i.seq} (${bytes(i.logicalBytes)})`);
  for (const c of r.conflicts) out(`  ${c.barcode}: conflict: ${c.reason}`);
  for (const d of damaged) out(`  ${d.barcode}: damaged: ${d.reason}`);
  for (const f of failed) out(`  ${f.barcode}: not read: ${f.reason}`);
}

/** Exit code 1 when anything of a source could not be imported as it holds it. */
function refreshExitCode(results: Obj[]): void {
  if (results.some((r) => r.conflicts.length || r.damaged?.length || r.failed?.length)) process.exitCode = 1;
}

/** Polls a replication job until it has ended; progress on stderr when that is a terminal. */
export async function waitForReplication(c: ApiClient, id: string, pollMs = 250): Promise<Obj> {
  const tty = process.stderr.isTTY;
  let told = 0;
  for (;;) {
    const j = await c.get<Obj>(`/api/v1/replication/jobs/${enc(id)}`);
    if (j.state !== 'queued' && j.state !== 'running') {
      if (tty) process.stderr.write('\n');
      return j;
    }
    if (tty) process.stderr.write(`\rreplicating ${j.barcode} to ${j.target}: ${j.state}${j.progress.total ? ` ${j.progress.done}/${j.progress.total} containers` : ''}${j.lastError ? ` (retrying: ${j.lastError})` : ''}   `);
    else if (j.lastError && j.attempts > told) {
      // A log (cron, a script) gets one line per failed attempt: the job waits for the target, it does not fail.
      told = j.attempts;
      process.stderr.write(`vtl: replicating ${j.barcode} to ${j.target}: attempt ${j.attempts} failed (${j.lastError}); retrying${j.nextAttemptAt ? ` at ${j.nextAttemptAt}` : ''}, as long as it takes (cancel: POST /api/v1/replication/jobs/${j.id}/cancel)\n`);
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

function jobLine(j: Obj): string {
  const r = j.result as Obj | null;
  const what = r ? `: catalog ${r.seq}, ${bytes(r.bytesShipped)} shipped for ${bytes(r.logicalBytes)} of data (${r.containersShipped} containers, ${r.pagesShipped} recipe pages) in ${r.seconds.toFixed(1)} s` : '';
  const err = j.lastError && j.state !== 'done' ? ` (${j.lastError})` : '';
  return `replication job ${j.id} of ${j.barcode} to ${j.target}: ${j.state}${what}${err}`;
}

/** $VTL_DR_PASSPHRASE, else a prompt on the terminal (asked twice when creating). */
async function askPassphrase(confirm: boolean): Promise<string> {
  const env = process.env.VTL_DR_PASSPHRASE;
  if (env !== undefined) return env;
  if (!process.stdin.isTTY) throw new CliError('set VTL_DR_PASSPHRASE, or run on a terminal to be asked for the passphrase');
  const first = await prompt('recovery key passphrase: ');
  if (confirm && (await prompt('again: ')) !== first) throw new CliError('the passphrases differ');
  if ([...first].length < 8) throw new InvalidArgumentError('the passphrase must have at least 8 characters');
  return first;
}

function prompt(question: string): Promise<string> {
  return new Promise((resolve) => {
    const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
    const write = (rl as unknown as { _writeToOutput: (s: string) => void })._writeToOutput;
    (rl as unknown as { _writeToOutput: (s: string) => void })._writeToOutput = (s: string) => {
      if (s.startsWith(question)) write.call(rl, s); // echo the question, not what is typed
    };
    rl.question(question, (answer) => {
      rl.close();
      process.stderr.write('\n');
      resolve(answer);
    });
  });
}
