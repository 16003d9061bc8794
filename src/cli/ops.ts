/**
 * Operations commands over the REST API: jobs (list, show, cancel), restore tests
 * (`vtl verify BARCODE [--wait] [--json] [--history]`) and the audit log (`vtl audit [list]`,
 * `vtl audit verify`, which exits 0 only when the chain is intact). `--json` prints the API's
 * own objects. A failed verify or a broken audit chain sets exit code 1. Retention: library
 * policies and the expire job (`vtl retention show|set|expire`). Space reclamation: `vtl gc`.
 * `vtl scrub --json` prints the report's fields (chunksChecked, damagedChunks, repairedChunks,
 * affectedCartridges, ...) with the job id and state; exit code 1 when damage was found.
 */
import { Command } from 'commander';
import { api, client, int, json, out } from './commands.js';
import type { ApiClient } from './client.js';
import { bytes, table } from './format.js';

/* eslint-disable @typescript-eslint/no-explicit-any */
type Obj = Record<string, any>;
const enc = encodeURIComponent;

export function registerOpsCommands(program: Command): void {
  registerJobs(program);
  registerVerify(program);
  registerAudit(program);
  registerRetention(program);
  registerGc(program);
  registerScrub(program);
}

/** Polls a job until it ends; shows its progress on stderr when that is a terminal. */
export async function waitForJob(c: ApiClient, id: string, pollMs = 250): Promise<Obj> {
  const tty = process.stderr.isTTY;
  for (;;) {
    const j = await c.get<Obj>(`/api/v1/jobs/${enc(id)}`);
    if (j.state !== 'running') {
      if (tty) process.stderr.write('\n');
      return j;
    }
    if (tty) process.stderr.write(`\r${j.kind} ${j.target ?? ''}: ${progressText(j.progress)}   `);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

function progressText(p: Obj): string {
  const amount = (n: number) => (p.unit === 'bytes' ? bytes(n) : String(n));
  const pct = p.total ? ` (${Math.floor((100 * p.done) / p.total)}%)` : '';
  return `${amount(p.done)}${p.total !== null ? ` of ${amount(p.total)}` : ''} ${p.unit === 'bytes' ? '' : p.unit}${pct}`.replace(/\s+/g, ' ').trim();
}

function jobLine(j: Obj): string {
  const err = j.error ? `: ${j.error}` : '';
  return `job ${j.id} (${j.kind}${j.target ? ' ' + j.target : ''}) ${j.state}${err}`;
}

function registerJobs(program: Command): void {
  const job = program.command('job').description('long-running work: verify, gc, expiry');
  api(job.command('list').description('jobs, newest first'))
    .option('--kind <kind>', 'only this kind (verify, gc, ...)')
    .option('--state <state>', 'running, succeeded, failed, cancelled or interrupted')
    .option('--target <barcode>', 'only jobs on this cartridge')
    .option('--limit <n>', 'at most this many', int, 100)
    .option('--json', 'print JSON')
    .action(async (o) => {
      const q = new URLSearchParams({ limit: String(o.limit) });
      for (const k of ['kind', 'state', 'target'] as const) if (o[k]) q.set(k, o[k]);
      const r = await client(o).get<Obj>(`/api/v1/jobs?${q}`);
      if (o.json) return json(r);
      out(table(['id', 'kind', 'target', 'state', 'progress', 'created', 'finished'], r.items.map((j: Obj) => [j.id, j.kind, j.target ?? '', j.state, progressText(j.progress), j.createdAt, j.finishedAt ?? ''])));
    });
  api(job.command('show').description('one job: state, progress, result').argument('<id>'))
    .option('--json', 'print JSON')
    .action(async (id: string, o) => {
      const j = await client(o).get<Obj>(`/api/v1/jobs/${enc(id)}`);
      if (o.json) return json(j);
      out(jobLine(j));
      out(`progress: ${progressText(j.progress)}${j.progress.message ? ` - ${j.progress.message}` : ''}`);
      if (j.result !== null) out(`result: ${JSON.stringify(j.result, null, 2)}`);
    });
  api(job.command('cancel').description('ask a running job to stop').argument('<id>'))
    .option('--wait', 'wait until it has stopped')
    .option('--json', 'print JSON')
    .action(async (id: string, o) => {
      const c = client(o);
      let j = await c.post<Obj>(`/api/v1/jobs/${enc(id)}/cancel`);
      if (o.wait) j = await waitForJob(c, id);
      if (o.json) return json(j);
      // Without --wait the job is usually still running: it stops at its next check.
      out(j.state === 'running' ? `${jobLine(j)}; cancel requested (--wait to wait until it has stopped)` : jobLine(j));
    });
}

function registerVerify(program: Command): void {
  api(program.command('verify').description('restore test: read every tape file of a cartridge and check its checksum (a job)').argument('<barcode>'))
    .option('--wait', 'wait for the result (exit code 1 when a file failed)')
    .option('--history', 'show the reports of earlier runs instead of starting one')
    .option('--json', 'print JSON (the job record, or the list of reports with --history)')
    .action(async (barcode: string, o) => {
      const c = client(o);
      if (o.history) return showHistory(c, barcode, o.json);
      let j = await c.post<Obj>(`/api/v1/cartridges/${enc(barcode)}/verify`);
      if (o.wait) j = await waitForJob(c, j.id);
      if (j.state === 'failed' || j.state === 'cancelled' || j.state === 'interrupted') process.exitCode = 1;
      if (o.json) return json(j);
      if (j.state === 'running') return out(`${jobLine(j)}; follow it with \`vtl job show ${j.id}\``);
      const r = j.result as Obj | null;
      if (!r) return out(jobLine(j));
      out(`${barcode}: ${r.result}: ${r.files} tape files, ${bytes(r.bytes)} in ${r.seconds.toFixed(1)} s (${r.mbPerSecond.toFixed(1)} MB/s)`);
      for (const f of r.failedFiles) out(`  file ${f.file}: ${f.error}`);
      if (!r.failedFiles.length && j.error) out(`  ${j.error}`);
    });
}

async function showHistory(c: ApiClient, barcode: string, asJson: boolean): Promise<void> {
  const r = await c.get<Obj>(`/api/v1/cartridges/${enc(barcode)}/verifications`);
  if (asJson) return json(r.items);
  out(
    table(
      ['when', 'result', 'files', 'bytes', 'MB/s', 'failed files', 'job'],
      r.items.map((v: Obj) => [v.startedAt, v.result, v.files, bytes(v.bytes), v.mbPerSecond.toFixed(1), v.failedFiles.map((f: Obj) => f.file).join(',') || '-', v.jobId]),
    ),
  );
}

function registerAudit(program: Command): void {
  const audit = program.command('audit').description('the audit log of every mutation (hash-chained)');
  api(audit.command('list', { isDefault: true }).description('entries, oldest first, filtered and paged'))
    .option('--since <date>', 'from this ISO date on')
    .option('--until <date>', 'before this ISO date')
    .option('--actor <name>', 'token name or token id')
    .option('--action <prefix>', "action prefix, e.g. 'POST /api/v1/cartridges'")
    .option('--offset <n>', 'skip this many', int, 0)
    .option('--limit <n>', 'at most this many', int, 100)
    .option('--last <n>', 'the newest N entries that match (still oldest first); instead of --offset/--limit', int)
    .option('--json', 'print JSON')
    .action(async (o) => {
      const c = client(o);
      const filters = new URLSearchParams();
      for (const k of ['since', 'until', 'actor', 'action'] as const) if (o[k]) filters.set(k, o[k]);
      const page = (offset: number, limit: number) => c.get<Obj>(`/api/v1/audit?${new URLSearchParams({ ...Object.fromEntries(filters), offset: String(offset), limit: String(limit) })}`);
      let r = await page(o.offset, o.last ?? o.limit);
      // The newest: one request learns how many match, a second reads the tail.
      if (o.last !== undefined && r.total > o.last) r = await page(r.total - o.last, o.last);
      if (o.json) return json(r);
      out(table(['seq', 'when', 'actor', 'token', 'action', 'target', 'result', 'status', 'detail'], r.items.map((e: Obj) => [e.seq, e.at, e.actor, e.tokenId ?? '', e.action, e.target, e.result, e.status, e.detail ?? ''])));
      if (r.total > r.offset + r.items.length) out(`(${r.total} entries; more with --offset ${r.offset + r.items.length})`);
    });
  api(audit.command('verify').description('check the hash chain; exit code 0 only when it is intact'))
    .option('--json', 'print JSON')
    .action(async (o) => {
      const r = await client(o).get<Obj>('/api/v1/audit/verify');
      if (!r.intact) process.exitCode = 1;
      if (o.json) return json(r);
      out(r.intact ? `audit log intact: ${r.entries} entries` : `audit log BROKEN at entry ${r.problem.seq}: ${r.problem.reason}`);
    });
}

function registerRetention(program: Command): void {
  const r = program.command('retention').description('retention policies and expiry of cartridges');
  api(r.command('show').description("a library's retention policy").argument('<library>'))
    .option('--json', 'print JSON')
    .action(async (lib: string, o) => {
      const p = await client(o).get<Obj>(`/api/v1/libraries/${enc(lib)}/retention`);
      if (o.json) return json(p);
      out(`${lib}: ${p.scratchAfterDays === null ? 'no policy' : `scratch after ${p.scratchAfterDays} days`}`);
    });
  api(r.command('set').description("set a library's retention policy").argument('<library>'))
    .requiredOption('--scratch-after-days <days>', "days data is kept before the cartridge returns to scratch, or 'none'")
    .option('--json', 'print JSON')
    .action(async (lib: string, o) => {
      const days = o.scratchAfterDays === 'none' ? null : int(o.scratchAfterDays);
      const p = await client(o).json<Obj>('PUT', `/api/v1/libraries/${enc(lib)}/retention`, { scratchAfterDays: days });
      if (o.json) return json(p);
      out(`${lib}: ${p.scratchAfterDays === null ? 'no policy' : `scratch after ${p.scratchAfterDays} days`}`);
    });
  api(r.command('expire').description('date cartridges by policy and return expired ones to scratch (a job)'))
    .option('--dry-run', 'only report what would change')
    .option('--wait', 'wait for the result')
    .option('--json', 'print JSON (the job record)')
    .action(async (o) => {
      const c = client(o);
      let j = await c.post<Obj>('/api/v1/retention/expire', o.dryRun ? { dryRun: true } : {});
      if (o.wait) j = await waitForJob(c, j.id);
      if (j.state === 'failed') process.exitCode = 1;
      if (o.json) return json(j);
      const res = j.result as Obj | null;
      if (!res) return out(jobLine(j));
      out(`${res.dryRun ? 'dry run: ' : ''}${res.examined} cartridges examined, ${res.scratched.length} returned to scratch, ${res.dated.length} dated by policy, ${res.skipped.length} skipped`);
      for (const b of res.scratched) out(`  scratch ${b}`);
      for (const d of res.dated) out(`  dated   ${d.barcode} until ${d.retentionUntil}`);
      for (const k of res.skipped) out(`  skipped ${k.barcode}: ${k.reason}`);
    });
}

function registerGc(program: Command): void {
  api(program.command('gc').description('reclaim space: delete containers with no live chunk, compact those below the live threshold (a job)'))
    .option('--threshold <share>', 'compact containers whose live share is below this (0..1, default 0.5)', Number)
    .option('--wait', 'wait for the result')
    .option('--json', 'print JSON (the job record)')
    .action(async (o) => {
      const c = client(o);
      let j = await c.post<Obj>('/api/v1/gc', o.threshold === undefined ? {} : { threshold: o.threshold });
      if (o.wait) j = await waitForJob(c, j.id);
      if (j.state === 'failed' || j.state === 'cancelled' || j.state === 'interrupted') process.exitCode = 1;
      if (o.json) return json(j);
      const r = j.result as Obj | null;
      if (!r) return out(jobLine(j));
      out(`gc: ${r.containers} containers: ${r.deleted} deleted, ${r.compacted} compacted, ${r.kept} kept, ${r.skipped.length} skipped; ${bytes(r.reclaimedBytes)} reclaimed, ${bytes(r.movedBytes)} moved, in ${r.seconds.toFixed(1)} s`);
      for (const k of r.skipped) out(`  skipped container ${k.container}: ${k.reason}`);
    });
}

function registerScrub(program: Command): void {
  api(program.command('scrub').description('read every container and check every chunk; list damage and the cartridges it touches (a job)'))
    .option('--max-mbps <n>', 'read at most this many MB/s (default 200; 0 = unthrottled)', Number)
    .option('--wait', 'wait for the result (exit code 1 when damage was found)')
    .option('--json', 'print JSON: the report fields with job and state')
    .action(async (o) => {
      const c = client(o);
      let j = await c.post<Obj>('/api/v1/scrub', o.maxMbps === undefined ? {} : { maxMBps: o.maxMbps });
      if (o.wait) j = await waitForJob(c, j.id);
      const r = j.result as Obj | null;
      if (j.state === 'failed' || j.state === 'cancelled' || j.state === 'interrupted' || (r && r.damagedChunks + r.damagedContainers.length + r.danglingIndexEntries > 0)) process.exitCode = 1;
      if (o.json) return json({ job: j.id, state: j.state, error: j.error, ...(r ?? {}) });
      if (!r) return out(jobLine(j));
      out(`scrub: ${r.containers} containers, ${r.chunksChecked} chunks, ${bytes(r.bytesRead)} at ${r.mbPerSecond.toFixed(1)} MB/s: ${r.damagedChunks} damaged chunks, ${r.damagedContainers.length} damaged footers, ${r.danglingIndexEntries} index entries into missing containers, ${r.repairedChunks} repaired`);
      for (const d of r.damaged) out(`  container ${d.container}${d.offset === null ? '' : ` offset ${d.offset}`}: ${d.reason}`);
      for (const a of r.affectedCartridges) out(`  affected: ${a.barcode} tape files ${a.files.join(', ')}`);
    });
}
