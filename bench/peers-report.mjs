// Formats bench/peers.sh's measurements: vtl's figures beside Borg's and restic's, and the
// design's targets as vtl/Borg ratios from the same run with PASS or MISS.
// Usage: node bench/peers-report.mjs RESULTS.tsv VTL.json OUT.json
// RESULTS.tsv rows are "peer<TAB>generation<TAB>metric<TAB>value" (generation 0: whole run).
// MB means 10^6 bytes.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

const [resultsPath, vtlPath, outPath] = process.argv.slice(2);
if (!resultsPath || !vtlPath || !outPath) {
  console.error('usage: node bench/peers-report.mjs RESULTS.tsv VTL.json OUT.json');
  process.exit(2);
}

/** peer -> generation -> metric -> value (numbers where they parse; peak RSS keeps the max). */
function readResults(path) {
  const out = {};
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line) continue;
    const [peer, gen, metric, raw] = line.split('\t');
    const value = raw !== '' && Number.isFinite(Number(raw)) ? Number(raw) : raw;
    const slot = ((out[peer] ??= {})[gen] ??= {});
    slot[metric] = metric === 'rss_kb' ? Math.max(slot[metric] ?? 0, Number(value) || 0) : value;
  }
  return out;
}

const results = readResults(resultsPath);
const sample = results.sample ?? {};
const gens = Object.keys(sample).map(Number).filter((g) => g > 0).sort((a, b) => a - b);
const sizes = gens.map((g) => sample[g].bytes);
const warnings = [];

function peerFigures(name, bytesOf) {
  const r = results[name];
  if (!r) return null;
  const rate = (g, metric) => (r[g]?.[metric] > 0 ? bytesOf(g) / r[g][metric] / 1e6 : null);
  const rss = Math.max(0, ...Object.values(r).map((s) => s.rss_kb ?? 0));
  const restoreSeconds = gens.reduce((n, g) => n + (r[g]?.restore_s ?? NaN), 0);
  return {
    ingestMBps: gens.map((g) => rate(g, 'ingest_s')),
    restoreMBps: gens.map((g) => rate(g, 'restore_s')),
    restoreAllMBps: restoreSeconds > 0 ? sizes.reduce((a, b) => a + b, 0) / restoreSeconds / 1e6 : null,
    storedBytes: typeof r[0]?.stored === 'number' ? r[0].stored : null,
    peakRssMiB: rss > 0 ? rss / 1024 : null,
    version: r[0]?.version ?? null,
  };
}

function vtlFigures() {
  const source = results.vtl?.[0]?.source;
  if (!source || !existsSync(vtlPath)) return null;
  let json;
  try {
    json = JSON.parse(readFileSync(vtlPath, 'utf8'));
  } catch (err) {
    warnings.push(`vtl output is not JSON (${err.message}); see ${vtlPath}`);
    return null;
  }
  const g = Array.isArray(json.generations) ? json.generations : [];
  if (g.length !== gens.length) warnings.push(`vtl reports ${g.length} generations, the sample has ${gens.length}`);
  g.forEach((x, i) => {
    if (sizes[i] !== undefined && x.logicalBytes !== sizes[i]) {
      warnings.push(`vtl generation ${i + 1}: logicalBytes ${x.logicalBytes} but the tar has ${sizes[i]} bytes`);
    }
    if (x.verified !== true) warnings.push(`vtl generation ${i + 1}: restore not verified`);
  });
  const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  const restoreSeconds = g.reduce((n, x) => n + x.logicalBytes / (x.restoreMBps * 1e6), 0);
  const rss = results.vtl[0].rss_kb;
  return {
    source,
    runner: results.vtl[0].runner ?? null,
    ingestMBps: gens.map((_, i) => num(g[i]?.ingestMBps)),
    restoreMBps: gens.map((_, i) => num(g[i]?.restoreMBps)),
    restoreAllMBps: restoreSeconds > 0 && g.length === gens.length ? sizes.reduce((a, b) => a + b, 0) / restoreSeconds / 1e6 : null,
    storedBytes: num(json.totals?.storedBytes),
    peakRssMiB: rss > 0 ? rss / 1024 : null,
    totals: json.totals ?? null,
    chunking: json.chunking ?? null,
    frameCodec: json.frameCodec ?? null,
  };
}

const peers = {
  vtl: vtlFigures(),
  borg: peerFigures('borg', (g) => sample[g].bytes),
  borg8k: peerFigures('borg8k', (g) => sample[g].bytes),
  restic: peerFigures('restic', (g) => sample[g].bytes),
};

const fmt = (v, digits = 0) => (v === null || v === undefined || Number.isNaN(v) ? '-' : v.toFixed(digits));
const pad = (s, n) => String(s).padStart(n);
const MB = (b) => (b === null ? '-' : (b / 1e6).toFixed(0));

function table() {
  const cols = ['vtl', 'borg', 'borg8k', 'restic'];
  const rcols = ['vtl', 'borg', 'restic'];
  const lines = [];
  lines.push(`${pad('gen', 3)} ${pad('size MB', 8)}   ingest MB/s:${cols.map((c) => pad(c, 8)).join('')}   restore MB/s:${rcols.map((c) => pad(c, 8)).join('')}`);
  gens.forEach((g, i) => {
    const ing = cols.map((c) => pad(fmt(peers[c]?.ingestMBps[i]), 8)).join('');
    const res = rcols.map((c) => pad(fmt(peers[c]?.restoreMBps[i]), 8)).join('');
    lines.push(`${pad(g, 3)} ${pad(MB(sizes[i]), 8)}   ${pad('', 12)}${ing}   ${pad('', 13)}${res}`);
  });
  lines.push('');
  lines.push(`stored MB after all generations: ${cols.map((c) => `${c} ${MB(peers[c]?.storedBytes ?? null)}`).join(', ')}`);
  lines.push(`peak RSS MiB:                    ${cols.map((c) => `${c} ${fmt(peers[c]?.peakRssMiB)}`).join(', ')}`);
  return lines.join('\n');
}

/** A target: ratio of two figures against a bound; PASS or MISS only when both figures exist. */
function target(name, a, b, op, bound, unit = 'x') {
  const ratio = a !== null && a !== undefined && b ? a / b : null;
  const pass = ratio === null ? null : op === '>=' ? ratio >= bound : op === '<' ? ratio < bound : ratio <= bound;
  return { name, ratio, op, bound, unit, result: pass === null ? 'n/a' : pass ? 'PASS' : 'MISS' };
}

const v = peers.vtl;
const b = peers.borg;
const targets = [
  target('gen-1 ingest, vtl / borg lz4', v?.ingestMBps[0], b?.ingestMBps[0], '>=', 2.5),
  target('gen-2 ingest, vtl / borg lz4', v?.ingestMBps[1], b?.ingestMBps[1], '>=', 3),
  target('restore (all gens), vtl / borg extract', v?.restoreAllMBps, b?.restoreAllMBps, '>=', 2),
  target('stored bytes, vtl / borg 8 KiB chunks', v?.storedBytes, peers.borg8k?.storedBytes, '<=', 1),
  target('peak RSS MiB, vtl', v?.peakRssMiB, 1, '<', 512, ' MiB'),
];
const againstRestic = [
  target('gen-1 ingest, vtl / restic', v?.ingestMBps[0], peers.restic?.ingestMBps[0], '>=', 1),
  target('gen-2 ingest, vtl / restic', v?.ingestMBps[1], peers.restic?.ingestMBps[1], '>=', 1),
  target('restore (all gens), vtl / restic dump', v?.restoreAllMBps, peers.restic?.restoreAllMBps, '>=', 1),
  target('stored bytes, vtl / restic', v?.storedBytes, peers.restic?.storedBytes, '<=', 1),
].map(({ result: _, op: __, bound: ___, ...t }) => t);

function targetLines(list, withBound = true) {
  return list.map((t) => {
    const ratio = pad(t.ratio === null ? '-' : t.ratio.toFixed(t.unit === 'x' ? 2 : 0) + t.unit, 9);
    return withBound ? `  ${t.name.padEnd(42)} ${ratio}  ${`${t.op} ${t.bound}${t.unit}`.padEnd(10)} ${t.result}` : `  ${t.name.padEnd(42)} ${ratio}`;
  });
}

const load = results.host?.[0]?.load;
console.log(`vtl beside its peers: ${gens.length} generation(s) of a tar of ${sample[0]?.root ?? '?'} (seed ${sample[0]?.seed ?? '?'}); MB = 10^6 bytes; load average at the end ${load ?? '?'}`);
if (!v) console.log('vtl: no figures (not run or failed; see the log)');
else if (v.source !== 'run') console.log(`vtl: figures from ${v.source.replace(/^file:/, '')}, NOT from this run: the ratios below only check the plumbing`);
for (const p of ['borg', 'restic']) if (!peers[p]) console.log(`${p}: not run (apt-get install borgbackup restic)`);
if (v?.runner === 'tsx') console.log('vtl: run through tsx (no dist/ build): its RSS includes the TypeScript loader');
if (v?.chunking) console.log(`vtl chunking: ${JSON.stringify(v.chunking)}${v.frameCodec ? `; frame codec: ${v.frameCodec}` : ''}`);
console.log('');
console.log(table());
console.log('');
console.log('targets (DESIGN.md section 6):');
console.log(targetLines(targets).join('\n'));
console.log('beside restic (no target):');
console.log(targetLines(againstRestic, false).join('\n'));
for (const w of warnings) console.log(`warning: ${w}`);

writeFileSync(outPath, JSON.stringify({ sample: { root: sample[0]?.root, seed: sample[0]?.seed, bytes: sizes }, load, peers, targets, againstRestic, warnings }, null, 2) + '\n');
