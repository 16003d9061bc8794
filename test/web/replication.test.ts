/**
 * The dashboard's replication views in a real browser (Debian's chromium via playwright-core)
 * against real vtl servers: region A replicates to a file:// target (a temp directory), region B
 * attaches that target as a DR source. Checked: the Replication page (targets with their status,
 * jobs with state, result and errors, an operator's cancel, an admin's target and policy forms,
 * the auditor's read-only view), the cartridge page's replication per target and "Replicate
 * now" followed to its end, and on region B the replicas with Refresh and a confirmed Promote.
 * Screenshots go to test-output/web/.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { backupLikeBytes, flip, randomBytes } from '../helpers/data.js';
import { call, putFile, startTestServer, type TestServer } from '../api/helpers.js';
import { buildDashboard, repoRoot } from './build.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
const shots = join(repoRoot, 'test-output', 'web');
const PASSPHRASE = 'correct horse battery staple';

if (!haveChromium) console.warn(`replication e2e skipped: ${CHROMIUM} is missing; install the Debian package "chromium" (apt-get install -y chromium)`);

describe.skipIf(!haveChromium)('replication in the dashboard (chromium)', () => {
  let a: TestServer;
  let b: TestServer;
  let dirs: string[] = [];
  let browser: Browser;
  let page: Page;
  let server: TestServer; // the server the page is on
  const tokens: string[] = [];
  const requestUrls: string[] = [];
  let operator = '';
  let auditor = '';
  let firstJob = '';

  const ok = async (t: TestServer, method: string, path: string, body?: unknown) => {
    const r = await call(t, method, path, body);
    if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  };
  const tempDir = async (name: string) => {
    const d = await mkdtemp(join(tmpdir(), `vtl-web-${name}-`));
    dirs.push(d);
    return d;
  };
  /** One tape file appended through the HTTP tape stream, between a load and an unload (a sync point). */
  const writeTapeFile = async (t: TestServer, barcode: string, data: Buffer) => {
    await ok(t, 'POST', '/api/v1/libraries/lib1/drives/0/load', { barcode });
    await ok(t, 'POST', '/api/v1/libraries/lib1/drives/0/space', { kind: 'eod', count: 0 });
    expect((await putFile(t, 'lib1', 0, data, 65536)).status).toBe(200);
    await ok(t, 'POST', '/api/v1/libraries/lib1/drives/0/unload');
  };
  /** The job once it has ended (a loop, not expect.poll: beforeAll uses it too). */
  const jobEnd = async (t: TestServer, id: string) => {
    for (const until = Date.now() + 30_000; Date.now() < until; await new Promise((r) => setTimeout(r, 200))) {
      const j = await ok(t, 'GET', `/api/v1/replication/jobs/${id}`);
      if (!['queued', 'running'].includes(j.state)) return j;
    }
    throw new Error(`replication job ${id} did not end within 30 s`);
  };
  const shot = (name: string) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  const open = (hash: string) => page.goto(`${server.url}/#${hash}`);
  async function login(t: TestServer, token: string): Promise<void> {
    server = t;
    await page.goto(`${t.url}/`);
    await page.evaluate('sessionStorage.clear()');
    await page.goto(`${t.url}/`);
    await page.locator('#token').fill(token);
    await page.locator('#login button[type=submit]').click();
    await page.locator('#who-role').waitFor();
  }
  /** The cells of a table's row that holds `text`, in column order. */
  const cells = (table: string, text: string) => page.locator(`${table} tbody tr`, { hasText: text }).first().locator('td').allTextContents();

  beforeAll(async () => {
    await buildDashboard();
    await mkdir(shots, { recursive: true });
    a = await startTestServer();
    await ok(a, 'POST', '/api/v1/libraries', { name: 'lib1', drives: 2, slots: 10, mailslots: 2 });
    await ok(a, 'POST', '/api/v1/cartridges', { library: 'lib1', prefix: 'VT', start: 1, count: 4, mediaType: 'LTO-7' });
    const east = await tempDir('east');
    await ok(a, 'POST', '/api/v1/replication/targets', { name: 'east', url: pathToFileURL(east).href });
    await writeTapeFile(a, 'VT0001L7', backupLikeBytes(2 * 1024 * 1024 + 77, 11));
    const job = await ok(a, 'POST', '/api/v1/cartridges/VT0001L7/replicate', { target: 'east' });
    expect(job.state).toBe('queued');
    firstJob = job.id;
    expect((await jobEnd(a, job.id)).state).toBe('done');
    operator = (await ok(a, 'POST', '/api/v1/tokens', { name: 'ops', role: 'operator' })).token;
    auditor = (await ok(a, 'POST', '/api/v1/tokens', { name: 'audit', role: 'auditor' })).token;
    tokens.push(a.admin, operator, auditor);

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    page.setDefaultTimeout(15_000);
    page.on('request', (r) => requestUrls.push(r.url()));
  });

  afterAll(async () => {
    await browser?.close();
    await a?.stop();
    await b?.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
    dirs = [];
  });

  test('the Replication page lists the target with 1 replicated cartridge and the job as done', async () => {
    await login(a, operator);
    await page.locator('[data-nav=replication]').click();
    await page.locator('#repl-targets').waitFor();
    const status = (await ok(a, 'GET', '/api/v1/replication/status')).targets;
    expect(status).toHaveLength(1);
    expect(status[0]).toMatchObject({ name: 'east', cartridges: 1, replicated: 1, pending: 0, failed: 0, queued: 0, running: 0 });
    const row = await cells('#repl-targets', 'east');
    expect(row[0]).toBe('east');
    expect(row[1]).toBe(status[0].url);
    expect(row[1]).toMatch(/^file:\/\//);
    expect(row.slice(2, 7)).toEqual(['unlimited', '1', '1', '0', '0']); // bandwidth, cartridges, replicated, pending, failed
    expect(row[7]).toBe('0 s'); // max lag now: the one cartridge is replicated
    expect(row[8]).toMatch(/^[\d.]+ (KiB|MiB)$/);
    expect(row[11]).toBe('never'); // last check
    const job = await cells('#repl-jobs', firstJob);
    expect(job.slice(1, 6)).toEqual(['VT0001L7', 'east', 'manual (admin)', 'done', '1']);
    const result = (await ok(a, 'GET', `/api/v1/replication/jobs/${firstJob}`)).result;
    expect(job[9]).toMatch(new RegExp(`^catalog ${result.seq} · [\\d.]+ (KiB|MiB) in [\\d.]+ s$`));
    expect(await page.locator('#repl-jobs [data-result]').first().getAttribute('title')).toContain(`${result.containersShipped} containers and ${result.pagesShipped} recipe pages shipped`);
    expect(await page.locator('#repl-jobs [data-cancel]').count()).toBe(0); // nothing to cancel
    expect(await page.locator('#add-target, #set-policy, [data-forget]').count()).toBe(0); // admin only
    expect(await page.locator('#no-sources').textContent()).toContain('No sources attached');
    expect(await page.locator('#dr-refresh').isDisabled()).toBe(true);
    await shot('20-replication');
  });

  test('the cartridge page shows its replication; "Replicate now" starts a job the page follows to its end', async () => {
    // A second tape file after the replication: the replica is stale.
    await writeTapeFile(a, 'VT0001L7', randomBytes(300 * 1024, 12));
    expect((await ok(a, 'GET', '/api/v1/cartridges/VT0001L7')).files).toBe(2);
    await open('/cartridge/VT0001L7');
    const state = page.locator('#replication-per-target [data-target=east]').locator('xpath=ancestor::tr').locator('[data-replication-state]');
    expect(await state.getAttribute('data-replication-state')).toBe('stale');
    let row = await cells('#replication-per-target', 'east');
    expect(row[4]).toBe('1'); // catalog 1
    expect(row[7]).toContain(firstJob);
    await page.locator('#replicate-target').selectOption('east');
    await page.locator('#replicate-now').click();
    const started = page.locator('#replicate-started');
    await started.waitFor();
    const id = (await started.getAttribute('data-job'))!;
    expect(id).not.toBe(firstJob);
    // The table follows the job without a reload.
    await expect.poll(() => state.getAttribute('data-replication-state'), { timeout: 20_000 }).toBe('replicated');
    // The catalog is written (replicated) a moment before the job records its end: the page
    // shows that too without a reload.
    await expect.poll(async () => (await cells('#replication-per-target', 'east'))[7], { timeout: 20_000 }).toContain('done');
    row = await cells('#replication-per-target', 'east');
    expect(row[4]).toBe('2');
    expect(row[7]).toContain(id);
    const detail = (await ok(a, 'GET', '/api/v1/cartridges/VT0001L7')).replication[0];
    expect(detail).toMatchObject({ target: 'east', state: 'replicated', seq: 2, job: { id, state: 'done' } });
    expect(detail.lastBytesShipped).toBeGreaterThan(300 * 1024);
    await shot('21-cartridge-replication');

    await page.locator(`#replicate-started a`).click();
    await page.locator('#repl-jobs').waitFor();
    expect(page.url()).toContain('target=east');
    const ids = await page.locator('#repl-jobs tbody tr td:first-child').allTextContents();
    expect(ids).toEqual([id, firstJob]); // newest first
    expect(await page.locator('#range').textContent()).toBe('1–2 of 2');
  });

  test('an operator cancels a queued job; a failed job shows its error', async () => {
    // A target whose directory is gone (a file in its place): its job fails with the reason.
    const broken = await tempDir('broken');
    await ok(a, 'POST', '/api/v1/replication/targets', { name: 'broken', url: pathToFileURL(join(broken, 'tier')).href, createBucket: true });
    await rm(join(broken, 'tier'), { recursive: true });
    await writeFile(join(broken, 'tier'), 'not a directory');
    const failed = await jobEnd(a, (await ok(a, 'POST', '/api/v1/cartridges/VT0001L7/replicate', { target: 'broken' })).id);
    expect(failed.state).toBe('failed');
    expect(failed.lastError).toBeTruthy();

    // A target limited to 4 KiB/s: its job runs for seconds, and the next one waits behind it.
    await ok(a, 'POST', '/api/v1/replication/targets', { name: 'slow', url: pathToFileURL(await tempDir('slow')).href, bandwidthLimit: 4096 });
    await writeTapeFile(a, 'VT0002L7', randomBytes(48 * 1024, 13));
    const running = await ok(a, 'POST', '/api/v1/cartridges/VT0002L7/replicate', { target: 'slow' });
    const queued = await ok(a, 'POST', '/api/v1/cartridges/VT0001L7/replicate', { target: 'slow' });
    await open('/replication');
    await page.locator(`#repl-jobs [data-cancel="${queued.id}"]`).waitFor();
    const before = await cells('#repl-jobs', queued.id);
    expect(before[4]).toBe('queued');
    await shot('22-replication-running');
    await page.locator(`#repl-jobs [data-cancel="${queued.id}"]`).click();
    await expect.poll(() => page.locator('#repl-status').textContent()).toBe(`Job ${queued.id} cancelled.`);
    await expect.poll(async () => (await cells('#repl-jobs', queued.id))[4]).toBe('cancelled');
    expect((await ok(a, 'GET', `/api/v1/replication/jobs/${queued.id}`)).state).toBe('cancelled');
    // The other job goes on, and the page follows it to its end by itself.
    await expect.poll(async () => (await cells('#repl-jobs', running.id))[4], { timeout: 30_000 }).toBe('done');
    expect(await page.locator(`#repl-jobs [data-cancel]`).count()).toBe(0);

    const fail = await cells('#repl-jobs', failed.id);
    expect(fail[4]).toBe('failed');
    expect(fail[10]).toBe(failed.lastError);
    expect((await cells('#repl-targets', 'broken'))[6]).toBe('1'); // failed jobs
    // The targets table of the draw that showed the job done may have been read a moment before
    // it ended; the page draws again while it showed something running.
    await expect.poll(async () => (await cells('#repl-targets', 'slow')).slice(3, 5), { timeout: 10_000 }).toEqual(['1', '1']);
    expect((await cells('#repl-targets', 'slow'))[2]).toBe('4.00 KiB/s');
    await page.locator('#f-state').selectOption('failed');
    await expect.poll(() => page.locator('#range').textContent()).toBe('1–1 of 1');
    expect(page.url()).toContain('state=failed');
    await shot('23-replication-failed');
  });

  test('an admin adds a target, sets and removes a policy and forgets the target through the forms', async () => {
    await login(a, a.admin);
    await open('/replication');
    await page.locator('#add-target').waitFor();
    await page.locator('#t-name').fill('west');
    await page.locator('#t-url').fill(pathToFileURL(await tempDir('west')).href);
    await page.locator('#add-target button[type=submit]').click();
    await page.locator('#repl-targets [data-target=west]').waitFor();
    expect((await ok(a, 'GET', '/api/v1/replication/targets')).items.map((t: { name: string }) => t.name)).toContain('west');
    // A directory that does not exist is refused, unless "create if missing" is ticked.
    const north = join(await tempDir('north'), 'tier');
    await page.locator('#t-name').fill('north');
    await page.locator('#t-url').fill(pathToFileURL(north).href);
    await page.locator('#add-target button[type=submit]').click();
    await expect.poll(() => page.locator('#repl-status').textContent()).toContain('BUCKET_NOT_FOUND');
    await expect(stat(north)).rejects.toMatchObject({ code: 'ENOENT' });
    await page.locator('#t-create').check();
    await page.locator('#add-target button[type=submit]').click();
    await page.locator('#repl-targets [data-target=north]').waitFor();
    expect((await stat(north)).isDirectory()).toBe(true);
    // Its last check in the table, once there is one.
    await ok(a, 'POST', '/api/v1/replication/targets/north/check', {});
    await page.reload();
    await expect.poll(async () => (await cells('#repl-targets', 'north'))[11]).toMatch(/ · whole$/);
    await ok(a, 'DELETE', '/api/v1/replication/targets/north');
    await page.locator('#add-target').waitFor();
    // A refused one: the server's message on the page, nothing added.
    await page.locator('#t-name').fill('west');
    await page.locator('#t-url').fill('ftp://nowhere/x');
    await page.locator('#add-target button[type=submit]').click();
    await page.locator('#repl-status .error').waitFor();
    console.log(`refused target shown as: ${await page.locator('#repl-status').textContent()}`);

    await expect.poll(() => page.locator('#p-target option').allTextContents()).toContain('west');
    await page.locator('#p-library').selectOption('lib1');
    await page.locator('#p-target').selectOption('west');
    await page.locator('#p-exported').check();
    await page.locator('#set-policy button[type=submit]').click();
    await expect.poll(() => cells('#repl-policies', 'lib1')).toEqual(['lib1', 'west', 'on unload, on export', 'Remove']);
    expect((await ok(a, 'GET', '/api/v1/replication/policies')).items).toEqual([{ library: 'lib1', target: 'west', on: ['unloaded', 'exported'] }]);
    await shot('24-replication-admin');
    // The target is in use by the policy: forgetting it is refused until the policy goes.
    page.once('dialog', (d) => void d.accept());
    await page.locator('[data-forget=west]').click();
    await expect.poll(() => page.locator('#repl-status').textContent()).toContain('IN_USE');
    page.once('dialog', (d) => void d.dismiss());
    await page.locator('[data-remove-policy=lib1]').click();
    expect((await ok(a, 'GET', '/api/v1/replication/policies')).items).toHaveLength(1); // dismissed: kept
    page.once('dialog', (d) => void d.accept());
    await page.locator('[data-remove-policy=lib1]').click();
    await page.locator('#no-policies').waitFor();
    page.once('dialog', (d) => void d.accept());
    await page.locator('[data-forget=west]').click();
    await expect.poll(() => page.locator('#repl-targets [data-target=west]').count()).toBe(0);
    expect((await ok(a, 'GET', '/api/v1/replication/targets')).items.map((t: { name: string }) => t.name)).not.toContain('west');
  });

  test('the auditor sees the same page read-only', async () => {
    await login(a, auditor);
    await open('/replication');
    await page.locator('#repl-jobs').waitFor();
    await expect.poll(() => page.locator('#repl-targets tbody tr').count()).toBe(3); // east, broken, slow
    expect(await page.locator('#repl-jobs tbody tr').count()).toBe(5);
    expect(await page.locator('#add-target, #set-policy, #dr-refresh, [data-forget], [data-cancel], [data-promote]').count()).toBe(0);
    await open('/cartridge/VT0001L7');
    await page.locator('#replication-per-target').waitFor();
    expect(await page.locator('#replication-per-target tbody tr').count()).toBe(3);
    expect(await page.locator('#replicate-now').count()).toBe(0);
    await shot('25-replication-auditor');
  });

  test('region B: the attached source and its replicas; Refresh imports a new catalog, Promote asks first', async () => {
    b = await startTestServer();
    const { keyFile } = await ok(a, 'POST', '/api/v1/dr/export-key', { passphrase: PASSPHRASE });
    const east = (await ok(a, 'GET', '/api/v1/replication/targets')).items.find((t: { name: string }) => t.name === 'east').url;
    const attached = await ok(b, 'POST', '/api/v1/dr/sources', { url: east, keyFile, passphrase: PASSPHRASE, name: 'site-a' });
    expect(attached.imported.map((x: { barcode: string }) => x.barcode)).toEqual(['VT0001L7']);
    const bOperator = (await ok(b, 'POST', '/api/v1/tokens', { name: 'b-ops', role: 'operator' })).token;
    tokens.push(b.admin, bOperator);
    // Region A writes and replicates again: B learns of it at the next refresh.
    await writeTapeFile(a, 'VT0001L7', randomBytes(64 * 1024, 14));
    expect((await jobEnd(a, (await ok(a, 'POST', '/api/v1/cartridges/VT0001L7/replicate', { target: 'east' })).id)).state).toBe('done');

    await login(b, bOperator);
    await open('/replication');
    await page.locator('#dr-sources').waitFor();
    expect((await cells('#dr-sources', 'site-a')).slice(0, 2)).toEqual(['site-a', east]);
    expect((await cells('#dr-replicas', 'VT0001L7')).slice(0, 3)).toEqual(['VT0001L7', 'site-a', '2']);
    expect(await page.locator('[data-promote]').count()).toBe(0); // operators refresh, admins promote
    await page.locator('#dr-refresh').click();
    await expect.poll(() => page.locator('#dr-refreshed').textContent().catch(() => '')).toBe('site-a: 1 imported, 0 unchanged');
    await expect.poll(async () => (await cells('#dr-replicas', 'VT0001L7'))[2]).toBe('3');
    expect(await page.locator('#dr-refreshed').getAttribute('class')).toBeNull();
    await shot('26-dr-operator');
    // A newer catalog damaged on the target: the refresh says so, and which one is held instead.
    await writeTapeFile(a, 'VT0001L7', randomBytes(64 * 1024, 15));
    expect((await jobEnd(a, (await ok(a, 'POST', '/api/v1/cartridges/VT0001L7/replicate', { target: 'east' })).id)).state).toBe('done');
    const catalog4 = join(fileURLToPath(east), 'catalogs', 'VT0001L7', '000000000004');
    await flip(catalog4, Math.floor((await stat(catalog4)).size / 2));
    await page.locator('#dr-refresh').click();
    await expect.poll(() => page.locator('#dr-refreshed').textContent().catch(() => '')).toMatch(/^site-a: 0 imported, 0 unchanged, damaged: VT0001L7 \(catalog 4: .+; catalog 3 held instead\)$/);
    expect(await page.locator('#dr-refreshed').getAttribute('class')).toBe('result-failed');

    await login(b, b.admin);
    await open('/replication');
    const promote = page.locator('[data-promote=VT0001L7]');
    await promote.waitFor();
    let asked = '';
    page.once('dialog', (d) => ((asked = d.message()), void d.dismiss()));
    await promote.click();
    expect(asked).toContain('Promote VT0001L7');
    expect((await ok(b, 'GET', '/api/v1/dr/cartridges')).items[0].state).toBe('replica'); // dismissed: nothing changed
    page.once('dialog', (d) => void d.accept());
    await promote.click();
    await page.locator('#dr-promoted').waitFor({ timeout: 30_000 });
    await expect.poll(() => page.locator('#dr-replicas [data-replica-state]').getAttribute('data-replica-state')).toBe('promoted');
    expect((await ok(b, 'GET', '/api/v1/dr/cartridges')).items[0]).toMatchObject({ barcode: 'VT0001L7', state: 'promoted' });
    expect(await page.locator('[data-promote]').count()).toBe(0);
    await shot('27-dr-promoted');
    await page.locator('#dr-replicas a.barcode', { hasText: 'VT0001L7' }).click();
    await page.locator('#replica-facts').waitFor();
    const facts = await page.locator('#replica-facts').textContent();
    expect(facts).toContain('Replica ofsite-a');
    expect(facts).toContain('promoted');
    await shot('28-cartridge-replica');
  });

  test('no request carried a token in its URL', () => {
    expect(requestUrls.length).toBeGreaterThan(10);
    for (const u of requestUrls) for (const tok of tokens) expect(u).not.toContain(tok);
  });
});
