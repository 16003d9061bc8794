/**
 * The `vtl` command. Local commands (init, bench, index) work on a data directory directly;
 * commands that talk to a running server arrive with the service.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { DEFAULT_CHUNK_PARAMS, type ChunkParams } from '../dedup/chunker.js';
import { initDataStore, openDataStore } from '../stream/store.js';
import { benchDedup, formatBench } from './bench-dedup.js';
import { generateSample } from './sample.js';

const DEFAULT_DATA = process.env.VTL_DATA ?? './vtl-data';

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError('expected a positive whole number');
  return n;
}

/** --chunk-avg N scales min and max with it (min = avg/4, max = avg*8), as the defaults do. */
function chunkParams(avg?: number, min?: number, max?: number): ChunkParams {
  if (!avg && !min && !max) return DEFAULT_CHUNK_PARAMS;
  const a = avg ?? DEFAULT_CHUNK_PARAMS.avg;
  return { min: min ?? a / 4, avg: a, max: max ?? a * 8 };
}

export function buildProgram(): Command {
  const program = new Command('vtl').description('virtual tape library with inline deduplication').showHelpAfterError();

  program
    .command('init')
    .description('create a data directory: keys, config and an empty store')
    .option('--data <dir>', 'data directory', DEFAULT_DATA)
    .option('--chunk-avg <bytes>', 'average chunk size (power of two)', positiveInt)
    .option('--chunk-min <bytes>', 'minimum chunk size', positiveInt)
    .option('--chunk-max <bytes>', 'maximum chunk size', positiveInt)
    .action(async (o) => {
      await initDataStore(o.data, chunkParams(o.chunkAvg, o.chunkMin, o.chunkMax));
      console.log(`initialized vtl data directory ${o.data} (master key in ${join(o.data, 'keys')}, mode 0600)`);
    });

  program
    .command('serve')
    .description('serve the VTL (HTTP API and rmt)')
    .option('--data <dir>', 'data directory', DEFAULT_DATA)
    .action(() => {
      console.log('vtl serve: not yet. The service (HTTP API, rmt, dashboard) lands with the service issue;');
      console.log('today vtl offers the dedup engine: try `npx vtl bench dedup --sample system --generations 2`.');
    });

  const index = program.command('index').description('fingerprint index maintenance');
  index
    .command('rebuild')
    .description('rebuild the fingerprint index from container footers')
    .option('--data <dir>', 'data directory', DEFAULT_DATA)
    .action(async (o) => {
      const store = await openDataStore(o.data);
      try {
        const r = await store.chunks.rebuildIndex();
        console.log(`rebuilt the index from ${r.containers} containers, ${r.chunks} chunks`);
      } finally {
        await store.close();
      }
    });

  const keys = program.command('keys').description('key management');
  keys
    .command('rotate')
    .description('rotate the master key (re-wraps data keys; chunk data is not rewritten)')
    .option('--data <dir>', 'data directory', DEFAULT_DATA)
    .action(async (o) => {
      const store = await openDataStore(o.data);
      try {
        const r = await store.chunks.rotateMasterKey();
        console.log(`master key rotated; ${r.rewrapped} data keys re-wrapped`);
      } finally {
        await store.close();
      }
    });

  const bench = program.command('bench').description('benchmarks');
  bench
    .command('dedup')
    .description('ingest each FILE as one backup generation into a temporary store, restore and verify it')
    .argument('[files...]', 'backup generations, oldest first')
    .option('--json', 'print one JSON object')
    .option('--chunk-avg <bytes>', 'average chunk size', positiveInt)
    .option('--sample <kind>', "generate sample generations first ('system': a tar of a real tree)")
    .option('--sample-root <dir>', 'tree for --sample system', '/usr')
    .option('--sample-bytes <bytes>', 'cap on the sample size', positiveInt)
    .option('--generations <n>', 'generations for --sample', positiveInt, 2)
    .option('--keep-sample <dir>', 'write the sample there and keep it')
    .option('--work <dir>', 'where the temporary store and sample go', tmpdir())
    .option('--no-native', 'use the TypeScript chunker')
    .action(async (files: string[], o) => {
      let sampleDir: string | undefined;
      try {
        if (o.sample) {
          if (o.sample !== 'system') throw new InvalidArgumentError(`unknown sample '${o.sample}' (known: system)`);
          const outDir: string = o.keepSample ?? (await mkdtemp(join(o.work, 'vtl-sample-')));
          sampleDir = outDir;
          if (!o.json) console.error(`generating ${o.generations} sample generations from ${o.sampleRoot} in ${outDir} ...`);
          files = await generateSample({ root: o.sampleRoot, generations: o.generations, outDir, maxBytes: o.sampleBytes });
        }
        if (files.length === 0) throw new InvalidArgumentError('give FILE... or --sample system');
        const result = await benchDedup(files, {
          chunking: o.chunkAvg ? chunkParams(o.chunkAvg) : undefined,
          native: o.native ? undefined : false,
          workDir: o.work,
          progress: process.stderr.isTTY && !o.json,
        });
        console.log(o.json ? JSON.stringify(result) : formatBench(result));
        if (result.generations.some((g) => !g.verified)) process.exitCode = 1;
      } finally {
        if (sampleDir && !o.keepSample) await rm(sampleDir, { recursive: true, force: true });
      }
    });

  return program;
}
