/**
 * The `vtl` command. Local commands (init, serve, bench, index, keys) work on a data directory
 * directly; the others talk to a running server over its REST API (commands.ts).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { DEFAULT_CHUNK_PARAMS, type ChunkParams } from '../dedup/chunker.js';
import { initDataStore, openDataStore } from '../stream/store.js';
import { TokenStore, ensureAdminToken } from '../api/auth.js';
import { addRmtCommand } from './rmt.js';
import { startServer, type ServerConfig } from '../server.js';
import { benchDedup, formatBench } from './bench-dedup.js';
import { registerServiceCommands } from './commands.js';
import { registerImageCommands } from './images.js';
import { registerOpsCommands } from './ops.js';
import { registerReplicationCommands } from './replication.js';
import { generateSample } from './sample.js';

const DEFAULT_DATA = process.env.VTL_DATA ?? './vtl-data';

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('expected a port number 0..65535');
  return n;
}

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
      const store = await openDataStore(o.data);
      try {
        const admin = await ensureAdminToken(o.data, new TokenStore(store.db));
        console.log(`initialized vtl data directory ${o.data} (master key in ${join(o.data, 'keys')}, admin token in ${admin.path}, both mode 0600)`);
      } finally {
        await store.close();
      }
    });

  program
    .command('serve')
    .description('serve the VTL: HTTP API and rmt (creates the data directory and a demo library on first start)')
    .option('--data <dir>', 'data directory (default $VTL_DATA or ./vtl-data)')
    .option('--host <host>', 'HTTP address (default $VTL_HOST, config.json server.host, or 127.0.0.1)')
    .option('--port <port>', 'HTTP port (default $VTL_PORT, config.json server.port, or 7420)', port)
    .option('--rmt-port <port>', 'rmt port (default $VTL_RMT_PORT, config.json server.rmtPort, or 7421)', port)
    .option('--no-demo', 'do not create the demo library on first start')
    .option('--log', 'log every request (JSON lines on stdout)')
    .action(async (o) => {
      const flags: Partial<ServerConfig> = { data: o.data, host: o.host, port: o.port, rmtPort: o.rmtPort, logger: o.log };
      if (o.demo === false) flags.demo = false;
      await serve(flags);
    });

  addRmtCommand(program);

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

  registerServiceCommands(program);
  registerImageCommands(program);
  registerOpsCommands(program);
  registerReplicationCommands(program);
  return program;
}

/** Runs the service until SIGINT or SIGTERM, then shuts down with every drive synced. */
async function serve(flags: Partial<ServerConfig>): Promise<void> {
  const server = await startServer(flags);
  const c = server.config;
  if (server.initialized) console.log(`vtl: initialized data directory ${c.data}`);
  if (server.demoCreated) console.log('vtl: created demo library lib1 (4 drives, 32 slots, 4 mail slots, cartridges VT0001L7..VT0032L7, LTO-7)');
  console.log(`vtl: serving ${c.data} at ${server.url} (API ${server.url}/api/v1, OpenAPI ${server.url}/api/v1/openapi.json)`);
  console.log(`vtl: rmt on ${server.rmtAddress}`);
  console.log(`vtl: admin token in ${server.adminTokenFile} (send it as "Authorization: Bearer <token>")`);
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (sig: string) => {
      if (stopping) {
        console.error(`vtl: ${sig} again: exiting without waiting`);
        process.exit(130);
      }
      stopping = true;
      console.log(`vtl: ${sig}: finishing requests, syncing drives ...`);
      server.close().then(
        () => {
          console.log('vtl: stopped');
          resolve();
        },
        (err: Error) => {
          console.error(`vtl: shutdown failed: ${err.message}`);
          process.exitCode = 1;
          resolve();
        },
      );
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
  });
}
