/**
 * GNU tar through rmt into vtl against `vtl bench dedup` on the same tar file.
 *
 * Run: npx tsx bench/rmt.bench.ts [TARFILE]
 *   TARFILE defaults to a sample tar of /usr (src/cli/sample.ts), VTL_BENCH_RMT_BYTES bytes
 *   (default 256 MiB), written to a temporary directory in /dev/shm (tmpfs: this VM's page
 *   cache does not keep files, so a tar on disk would be read at the disk's rate). VTL_BENCH_RMT_RUNS (default 2) runs of
 *   each side, alternating; the best of each is reported. VTL_BENCH_RMT_BLOCKING (default 128)
 *   sets tar's blocking factor. VTL_BENCH_RMT_SERVER_NODE_ARGS adds node options to the server's
 *   process (`--cpu-prof --cpu-prof-dir=DIR`); VTL_BENCH_RMT_BRIDGE_NODE_ARGS runs the Node CLI's
 *   `vtl rmt` with them instead of the launcher's.
 *
 * Both sides run the current source: it is compiled (tsc, no type check) into the temporary
 * directory first, beside a copy of the `vtl` launcher (src/cli/vtl), and every vtl command
 * runs as an installed vtl's does: through the launcher (`vtl rmt` is then the C bridge itself,
 * where it is built), and the server scripts with the launcher's node options.
 *
 * rmt side: an RmtServer from the compiled source in its own process (its codec workers load
 * the compiled code, as with `npm start`) over a fresh data store, a library with one drive;
 * `tar -b 128 -cf localhost:/bench/st0 FILE` through an rsh wrapper that runs `vtl rmt`, then
 * `tar -b 128 -xOf localhost:/bench/st0 > /dev/null`. MB/s = the tar file's bytes / wall time
 * (each includes starting `vtl rmt`).
 * dedup side: `vtl bench dedup --json FILE` (ingest and restore of the same bytes, no network).
 * Transport ceiling: the same read through the same `vtl rmt`, from an in-memory rmt server
 * holding the archive (no store, no tape layer): what tar, the bridge and the protocol cost
 * alone, which bounds the rmt restore however fast the store is.
 *
 * Server ceilings: after the rmt read, the tape file read once more straight from the server
 * over TCP, 64 one-record reads kept in flight as `vtl rmt` reads ahead; and the tar file
 * written to a fresh server the same way (64 writes in flight, then a close). No tar, no
 * bridge: they bound the rmt rates however fast the relay in front of the server becomes.
 *
 * Tar client ceiling: the same read from bench/rmt-tar-ceiling.c (compiled with cc), a C rmt
 * server the rsh wrapper execs on tar's own pipes with the archive in memory: no bridge, no TCP,
 * no store. Measured with the pipe tar made (64 KiB on Linux) and enlarged to 1 MiB. It bounds
 * any rmt read on this machine, whatever vtl does behind the drive.
 *
 * Noise: the machine has 2 cores that other processes may share. tar, the bridge and the
 * server are three processes on those 2 cores; `uptime` is printed with the results. MB = 10^6.
 * Each rmt phase also reports the CPU seconds it took: the server's process (with its codec
 * threads), tar (a child: read from /proc, Linux only) and `vtl rmt` (the rsh wrapper runs it
 * and appends `times` to a file), since on 2 cores their sum, against what `vtl bench dedup`
 * alone needs, bounds the ratio.
 */
import { execFileSync, spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateSample } from '../src/cli/sample.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const RUNS = Number(process.env.VTL_BENCH_RMT_RUNS ?? 2);
/** tar's blocking factor: records of 512 x N bytes (the target is stated for -b 128). */
const BLOCKING = Number(process.env.VTL_BENCH_RMT_BLOCKING ?? 128);
/** Records the server ceilings keep in flight (as `vtl rmt` reads ahead 4 MiB of 64 KiB records). */
const READ_WINDOW = 64;
/** The enlarged pipe of the tar client ceiling's second measurement. */
const BIG_PIPE = 2 ** 20;

/**
 * Compiles the current source into `dir` (a package beside the repository's node_modules and
 * native addon, as dist is), with a copy of the `vtl` launcher; returns both entry points.
 */
async function buildVtl(dir: string): Promise<{ launcher: string; main: string }> {
  await mkdir(dir, { recursive: true });
  const tsc = join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
  execFileSync(process.execPath, [tsc, '-p', join(REPO, 'tsconfig.build.json'), '--outDir', join(dir, 'dist'), '--noCheck', '--sourceMap', 'false'], { cwd: REPO, stdio: 'inherit' });
  await writeFile(join(dir, 'package.json'), '{"type":"module"}\n');
  await symlink(join(REPO, 'node_modules'), join(dir, 'node_modules'));
  await symlink(join(REPO, 'native'), join(dir, 'native'));
  await writeFile(join(dir, 'rmt-server.mjs'), SERVER_SCRIPT);
  await writeFile(join(dir, 'rmt-memory-server.mjs'), MEMORY_SERVER_SCRIPT);
  const launcher = join(dir, 'src', 'cli', 'vtl');
  await mkdir(dirname(launcher), { recursive: true });
  await copyFile(join(REPO, 'src', 'cli', 'vtl'), launcher);
  await chmod(launcher, 0o755);
  const m = /^node_options='([^']*)'$/m.exec(readFileSync(launcher, 'utf8'));
  if (!m) throw new Error('src/cli/vtl has no node_options line');
  nodeOptions = m[1].split(/\s+/).filter(Boolean);
  return { launcher, main: join(dir, 'dist', 'cli', 'main.js') };
}

/** The build: its `vtl` launcher, and the Node CLI it runs. */
let vtl = { launcher: '', main: '' };
/** The launcher's node options, for the server scripts. */
let nodeOptions: string[] = [];

function sh(command: string): Promise<void> {
  return new Promise((res, rej) => {
    const child = spawn('sh', ['-c', command], { stdio: ['ignore', 'ignore', 'inherit'] });
    child.on('error', rej);
    child.on('close', (code) => (code === 0 ? res() : rej(new Error(`${command} exited ${code}`))));
  });
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** CPU seconds so far of this process's waited-for children (cutime + cstime): tar here. */
function childrenCpu(): number {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ');
  // After "pid (comm) ": field 3 is state, so cutime and cstime (fields 16, 17) sit at 13, 14.
  return (Number(fields[13]) + Number(fields[14])) / 100;
}

interface Phase {
  mbps: number;
  serverCpu: number;
  tarCpu: number;
  bridgeCpu: number;
}

/**
 * The children's CPU seconds the rsh wrapper appended (`times`: its second line), once the
 * wrapper has finished (tar does not always wait for it).
 */
async function bridgeCpu(file: string): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    const m = /\n(\d+)m([\d.]+)s (\d+)m([\d.]+)s/.exec(text);
    if (m) return 60 * Number(m[1]) + Number(m[2]) + 60 * Number(m[3]) + Number(m[4]);
    await new Promise((res) => setTimeout(res, 20));
  }
  return NaN;
}

/** Runs one tar command and measures it. */
async function phase(command: string, bytes: number, cpuFile: string, server: ServerProcess): Promise<Phase> {
  const c0 = { self: server.cpu(), children: childrenCpu() };
  const t = performance.now();
  await sh(`VTL_BENCH_CPU_FILE=${quote(cpuFile)} ${command}`);
  const seconds = (performance.now() - t) / 1000;
  const c1 = { self: server.cpu(), children: childrenCpu() };
  return { mbps: bytes / 1e6 / seconds, serverCpu: c1.self - c0.self, tarCpu: c1.children - c0.children, bridgeCpu: await bridgeCpu(cpuFile) };
}

const showPhase = (p: Phase) => `${p.mbps.toFixed(1)} MB/s (cpu s: server ${p.serverCpu.toFixed(2)}, vtl rmt ${p.bridgeCpu.toFixed(2)}, tar ${p.tarCpu.toFixed(2)})`;

/**
 * The rmt server's process: the compiled build (as `npm start` runs it) over a fresh data store
 * with one library, one drive and a loaded cartridge. It prints its port, and closes on SIGTERM.
 */
const SERVER_SCRIPT = `
import { initDataStore, openDataStore } from './dist/stream/store.js';
import { Libraries } from './dist/library/index.js';
import { RmtServer } from './dist/protocols/rmt/index.js';
const dir = process.argv[2];
await initDataStore(dir);
const store = await openDataStore(dir);
const libs = new Libraries({ db: store.db, streams: store.streams });
await libs.createLibrary({ name: 'bench', drives: 1, slots: 2, mailslots: 0 });
await libs.createCartridges({ library: 'bench', barcodes: ['BN0001L7'] });
await libs.load('bench', 0, 'BN0001L7');
const server = new RmtServer({ libraries: libs, port: 0 });
const { port } = await server.listen();
process.stdout.write(port + '\\n');
process.once('SIGTERM', async () => {
  await server.close();
  await libs.close();
  await store.close();
  process.exit(0);
});
`;

/** Extra node options from the environment (for profiling: `--cpu-prof --cpu-prof-dir=DIR`). */
const nodeArgs = (name: string): string[] => (process.env[name] ?? '').split(/\s+/).filter(Boolean);

/**
 * The transport ceiling's server: it holds one tape file (an archive tar wrote with the same
 * blocking factor) in memory as records of `recordBytes`, and answers the commands tar and
 * `vtl rmt` send when reading it (O, B, R, U, S, I, L, C). No store, no tape layer: what tar,
 * the bridge and the protocol cost alone.
 */
const MEMORY_SERVER_SCRIPT = `
import { createServer } from 'node:net';
import { readFileSync } from 'node:fs';
const tape = readFileSync(process.argv[2]);
const recordBytes = Number(process.argv[3]);
const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
  let input = Buffer.alloc(0);
  let pos = 0;
  let reads = [];
  const line = () => {
    const i = input.indexOf(10);
    if (i < 0) return null;
    const l = input.subarray(0, i).toString('latin1');
    input = input.subarray(i + 1);
    return l;
  };
  const command = () => {
    const before = input;
    const c = String.fromCharCode(input[0]);
    input = input.subarray(1);
    if (c === '\\n') return true;
    if (c === 'S') return socket.write('A48\\n'), socket.write(Buffer.alloc(48)), true;
    const args = [line()];
    if ('OIL'.includes(c)) args.push(line());
    if (args.includes(null)) return (input = before), false;
    if (c === 'R') {
      const n = Math.min(Number(args[0]), recordBytes, tape.length - pos);
      reads.push(n);
      socket.write('A' + n + '\\n');
      if (n > 0) socket.write(tape.subarray(pos, pos + n));
      pos += n;
    } else if (c === 'U') {
      for (let k = Number(args[0]); k > 0; k--) pos -= reads.pop();
      socket.write('A' + args[0] + '\\n');
    } else {
      reads = [];
      if (c === 'O') pos = 0;
      socket.write(c === 'B' ? 'A1\\n' : 'A0\\n');
    }
    return true;
  };
  socket.on('data', (chunk) => {
    input = input.length ? Buffer.concat([input, chunk]) : chunk;
    socket.cork();
    while (input.length > 0 && command());
    socket.uncork();
  });
  socket.on('end', () => socket.end());
  socket.on('error', () => socket.destroy());
});
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
process.once('SIGTERM', () => process.exit(0));
`;

interface ServerProcess {
  port: number;
  /** CPU seconds the server process has used so far (every thread). */
  cpu(): number;
  stop(): Promise<void>;
}

/** Starts one of the server scripts written beside the build (`rmt-server.mjs`, ...). */
async function startServer(script: string, args: string[]): Promise<ServerProcess> {
  const child = spawn(process.execPath, [...nodeOptions, ...nodeArgs('VTL_BENCH_RMT_SERVER_NODE_ARGS'), join(dirname(vtl.main), '..', '..', script), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  const port = await new Promise<number>((res, rej) => {
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('\n')) res(Number(out.trim()));
    });
    child.once('exit', (code) => rej(new Error(`the rmt server exited (${code}) before listening`)));
  });
  return {
    port,
    cpu: () => {
      const f = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1].split(' ');
      return (Number(f[11]) + Number(f[12])) / 100; // utime, stime
    },
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** An rsh wrapper in `dir` that runs `vtl rmt` against the server on `port`; tar's command. */
async function tarThrough(dir: string, port: number): Promise<string> {
  const rsh = join(dir, 'rsh');
  // With node options for the bridge (profiling), the Node CLI's `vtl rmt`; else the launcher's.
  const bridgeArgs = nodeArgs('VTL_BENCH_RMT_BRIDGE_NODE_ARGS');
  const command = bridgeArgs.length > 0 ? [process.execPath, ...nodeOptions, ...bridgeArgs, vtl.main] : [vtl.launcher];
  await writeFile(rsh, `#!/bin/sh\n${command.map(quote).join(' ')} rmt --server 127.0.0.1:${port}\nstatus=$?\ntimes >> "$VTL_BENCH_CPU_FILE"\nexit $status\n`);
  await chmod(rsh, 0o755);
  return `tar --rsh-command=${quote(rsh)} -b ${BLOCKING}`;
}

/**
 * The server alone: reads the tape file rmtRun wrote over one TCP connection, READ_WINDOW
 * reads of one record each kept in flight (as `vtl rmt` reads ahead), with no tar and no bridge.
 * What the server's read path delivers, whatever the relay in front of it.
 */
function serverRead(port: number, server: ServerProcess): Promise<{ mbps: number; serverCpu: number }> {
  const record = 512 * BLOCKING;
  let inFlight = 0;
  let bytes = 0;
  let t = 0;
  let cpu = 0;
  const ask = (socket: Socket) => {
    let text = '';
    for (; inFlight < READ_WINDOW; inFlight++) text += `R${record}\n`;
    socket.write(text);
  };
  // Replies 0 and 1 answer the hello and the open; every later one is a read's, with data.
  return conversation(port, 'B1\nO/bench/st0\n0\n', (i) => i >= 2, (socket, n, i) => {
    if (i === 0) return undefined;
    if (i === 1) {
      t = performance.now();
      cpu = server.cpu();
    } else if (i >= 2) {
      bytes += n;
      inFlight--;
      // The filemark after the file: what is still in flight is answered and dropped.
      if (n === 0) return { mbps: bytes / 1e6 / ((performance.now() - t) / 1000), serverCpu: server.cpu() - cpu };
    }
    if (i === 1 || inFlight <= READ_WINDOW / 2) ask(socket);
    return undefined;
  });
}

/**
 * The server alone, writing: `file` sent as records of one tar record each to a fresh server,
 * READ_WINDOW writes in flight, then a close (a sync point); no tar, no bridge. What the
 * server's write path takes in, whatever the relay in front of it.
 */
async function serverWriteRun(file: string, work: string): Promise<{ mbps: number; serverCpu: number }> {
  const dir = await mkdtemp(join(work, 'server-write-'));
  try {
    const server = await startServer('rmt-server.mjs', [join(dir, 'data')]);
    try {
      return await serverWrite(server, readFileSync(file));
    } finally {
      await server.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function serverWrite(server: ServerProcess, data: Buffer): Promise<{ mbps: number; serverCpu: number }> {
  const record = 512 * BLOCKING;
  let closing = false;
  let sent = 0;
  let inFlight = 0;
  let t = 0;
  let cpu = 0;
  const send = (socket: Socket) => {
    socket.cork();
    for (; inFlight < READ_WINDOW && sent < data.length; inFlight++) {
      const n = Math.min(record, data.length - sent);
      socket.write(`W${n}\n`);
      socket.write(data.subarray(sent, sent + n));
      sent += n;
    }
    if (sent === data.length && inFlight === 0 && !closing) {
      closing = true;
      socket.write('C\n');
    }
    socket.uncork();
  };
  // Reply 0 answers the open, then one per write, then the close's.
  return conversation(server.port, 'O/bench/st0\n65 O_WRONLY|O_CREAT\n', () => false, (socket, _n, i) => {
    if (i === 0) {
      t = performance.now();
      cpu = server.cpu();
    } else if (closing) {
      return { mbps: data.length / 1e6 / ((performance.now() - t) / 1000), serverCpu: server.cpu() - cpu };
    } else {
      inFlight--;
    }
    send(socket);
    return undefined;
  });
}

/**
 * A pipelined rmt conversation with the server: sends `first`, then hands reply i (its
 * number; `withData(i)`: after the data that follows it) to `onReply`, until that returns the
 * result. An E reply, or the server closing first, fails it.
 */
function conversation<T>(port: number, first: string, withData: (i: number) => boolean, onReply: (socket: Socket, n: number, i: number) => T | undefined): Promise<T> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, noDelay: true });
    let input: Buffer = Buffer.alloc(0);
    let replies = 0;
    socket.on('connect', () => socket.write(first));
    socket.on('error', reject);
    socket.on('close', () => reject(new Error('the server closed the connection early'))); // no-op once settled
    socket.on('data', (chunk: Buffer) => {
      input = input.length > 0 ? Buffer.concat([input, chunk]) : chunk;
      for (let nl; (nl = input.indexOf(10)) >= 0; ) {
        const line = input.subarray(0, nl).toString('latin1');
        if (line[0] !== 'A') {
          socket.destroy();
          return reject(new Error(`the server answered ${line} ${input.subarray(nl + 1, nl + 200).toString('latin1')}`));
        }
        const n = Number(line.slice(1));
        const skip = withData(replies) ? Math.max(0, n) : 0;
        if (input.length < nl + 1 + skip) return;
        input = input.subarray(nl + 1 + skip);
        const done = onReply(socket, n, replies++);
        if (done !== undefined) {
          socket.destroy();
          return resolve(done);
        }
      }
    });
  });
}

async function rmtRun(file: string, work: string): Promise<{ write: Phase; read: Phase; server: { mbps: number; serverCpu: number } }> {
  const dir = await mkdtemp(join(work, 'rmt-'));
  try {
    const server = await startServer('rmt-server.mjs', [join(dir, 'data')]);
    const tar = await tarThrough(dir, server.port);
    const bytes = statSync(file).size;
    try {
      const write = await phase(`${tar} -cf localhost:/bench/st0 -C ${quote(dirname(file))} ${quote(basename(file))}`, bytes, join(dir, 'cpu-write'), server);
      const read = await phase(`${tar} -xOf localhost:/bench/st0 > /dev/null`, bytes, join(dir, 'cpu-read'), server);
      return { write, read, server: await serverRead(server.port, server) };
    } finally {
      await server.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The same read as rmtRun's, against the in-memory server holding the archive tar writes
 * locally with the same blocking factor (what rmtRun's write phase stores on the tape).
 */
async function transportRun(file: string, work: string): Promise<Phase> {
  const dir = await mkdtemp(join(work, 'transport-'));
  try {
    const archive = join(dir, 'archive.tar');
    await sh(`tar -b ${BLOCKING} -cf ${quote(archive)} -C ${quote(dirname(file))} ${quote(basename(file))}`);
    const server = await startServer('rmt-memory-server.mjs', [archive, String(512 * BLOCKING)]);
    try {
      const tar = await tarThrough(dir, server.port);
      return await phase(`${tar} -xOf localhost:/bench/st0 > /dev/null`, statSync(file).size, join(dir, 'cpu-read'), server);
    } finally {
      await server.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * tar alone: the same read from bench/rmt-tar-ceiling.c, which the rsh wrapper execs on tar's
 * own pipes (no bridge, no TCP, no store), with the pipe as tar made it or enlarged to
 * `pipeBytes`. No rmt server tar reads through can beat it on this machine.
 */
async function tarCeilingRun(file: string, work: string, ceiling: string, pipeBytes?: number): Promise<number> {
  const dir = await mkdtemp(join(work, 'ceiling-'));
  try {
    const archive = join(dir, 'archive.tar');
    await sh(`tar -b ${BLOCKING} -cf ${quote(archive)} -C ${quote(dirname(file))} ${quote(basename(file))}`);
    const rsh = join(dir, 'rsh');
    const env = `TAPE=${quote(archive)} RECORD=${512 * BLOCKING}${pipeBytes ? ` PIPE_BYTES=${pipeBytes}` : ''}`;
    await writeFile(rsh, `#!/bin/sh\n${env} exec ${quote(ceiling)}\n`);
    await chmod(rsh, 0o755);
    const t = performance.now();
    await sh(`tar --rsh-command=${quote(rsh)} -b ${BLOCKING} -xOf localhost:/bench/st0 > /dev/null`);
    return statSync(file).size / 1e6 / ((performance.now() - t) / 1000);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Compiles bench/rmt-tar-ceiling.c into `dir`; undefined (and says why) without a C compiler. */
function buildTarCeiling(dir: string): string | undefined {
  const out = join(dir, 'rmt-tar-ceiling');
  try {
    execFileSync('cc', ['-O2', '-o', out, join(REPO, 'bench', 'rmt-tar-ceiling.c')], { stdio: ['ignore', 'ignore', 'inherit'] });
    return out;
  } catch (err) {
    console.error(`no tar client ceiling: cannot compile bench/rmt-tar-ceiling.c with cc (${(err as Error).message})`);
    return undefined;
  }
}

function dedupRun(file: string, work: string): { ingest: number; restore: number } {
  const out = execFileSync(vtl.launcher, ['bench', 'dedup', '--json', '--work', work, file], { cwd: REPO, encoding: 'utf8' });
  const g = JSON.parse(out).generations[0];
  return { ingest: g.ingestMBps, restore: g.restoreMBps };
}

const work = await mkdtemp(join(tmpdir(), 'vtl-bench-rmt-'));
/**
 * The sample lives in tmpfs where there is one: this VM's page cache drops files within
 * seconds, so a tar on disk would put the disk's read rate into both sides' figures.
 */
const sampleDir = existsSync('/dev/shm') ? await mkdtemp('/dev/shm/vtl-bench-rmt-') : work;
try {
  console.error('compiling the current source ...');
  vtl = await buildVtl(join(work, 'vtl'));
  const ceiling = buildTarCeiling(work);
  let file = process.argv[2];
  if (!file) {
    const maxBytes = Number(process.env.VTL_BENCH_RMT_BYTES ?? 256 * 2 ** 20);
    console.error(`generating a ${(maxBytes / 2 ** 20).toFixed(0)} MiB sample tar of /usr ...`);
    [file] = await generateSample({ root: '/usr', generations: 1, outDir: sampleDir, maxBytes });
  }
  const size = statSync(file).size;
  const best = { write: 0, read: 0, ingest: 0, restore: 0, transport: 0, tarPipe: 0, tarBigPipe: 0, serverRead: 0, serverWrite: 0 };
  for (let i = 0; i < RUNS; i++) {
    const d = dedupRun(file, work);
    const r = await rmtRun(file, work);
    const t = await transportRun(file, work);
    const w = await serverWriteRun(file, work);
    const tarAlone = ceiling ? [await tarCeilingRun(file, work, ceiling), await tarCeilingRun(file, work, ceiling, BIG_PIPE)] : [NaN, NaN];
    console.error(
      `run ${i + 1}: dedup ingest ${d.ingest.toFixed(1)} restore ${d.restore.toFixed(1)} MB/s; rmt write ${showPhase(r.write)}, read ${showPhase(r.read)}; ` +
        `server alone: write ${w.mbps.toFixed(1)} MB/s (cpu s ${w.serverCpu.toFixed(2)}), read ${r.server.mbps.toFixed(1)} MB/s (cpu s ${r.server.serverCpu.toFixed(2)}); transport only ${showPhase(t)}; tar alone ${tarAlone.map((x) => x.toFixed(1)).join(' / ')} MB/s`,
    );
    best.serverRead = Math.max(best.serverRead, r.server.mbps);
    best.serverWrite = Math.max(best.serverWrite, w.mbps);
    best.tarPipe = Math.max(best.tarPipe, tarAlone[0]);
    best.tarBigPipe = Math.max(best.tarBigPipe, tarAlone[1]);
    best.transport = Math.max(best.transport, t.mbps);
    best.write = Math.max(best.write, r.write.mbps);
    best.read = Math.max(best.read, r.read.mbps);
    best.ingest = Math.max(best.ingest, d.ingest);
    best.restore = Math.max(best.restore, d.restore);
  }
  const pct = (a: number, b: number) => `${((100 * a) / b).toFixed(0)}%`;
  console.log(`tar file: ${file} (${(size / 1e6).toFixed(1)} MB), best of ${RUNS}; vtl: the current source`);
  console.log(`ingest:  tar -b ${BLOCKING} through rmt ${best.write.toFixed(1)} MB/s, vtl bench dedup ${best.ingest.toFixed(1)} MB/s (${pct(best.write, best.ingest)}; target >= 80%)`);
  console.log(`restore: tar -b ${BLOCKING} through rmt ${best.read.toFixed(1)} MB/s, vtl bench dedup ${best.restore.toFixed(1)} MB/s (${pct(best.read, best.restore)}; target >= 80%)`);
  console.log(`server write ceiling: the tar file written over TCP to a fresh server with ${READ_WINDOW} writes in flight, no tar, no bridge ${best.serverWrite.toFixed(1)} MB/s (${pct(best.serverWrite, best.ingest)} of vtl bench dedup's ingest)`);
  console.log(`server read ceiling: the tape file read over TCP with ${READ_WINDOW} reads in flight, no tar, no bridge ${best.serverRead.toFixed(1)} MB/s (${pct(best.serverRead, best.restore)} of vtl bench dedup's restore)`);
  console.log(`transport ceiling: tar -b ${BLOCKING} -x through vtl rmt from an in-memory rmt server (no store) ${best.transport.toFixed(1)} MB/s`);
  if (ceiling) {
    console.log(
      `tar client ceiling: tar -b ${BLOCKING} -x over its own pipes from a C in-memory rmt server (no bridge, no TCP, no store) ${best.tarPipe.toFixed(1)} MB/s, ` +
        `${best.tarBigPipe.toFixed(1)} MB/s with a ${BIG_PIPE / 2 ** 20} MiB pipe (${pct(best.tarBigPipe, best.restore)} of vtl bench dedup's restore)`,
    );
  }
  console.log(`load: ${execFileSync('uptime', { encoding: 'utf8' }).trim()} (2 shared cores: the figures are noisy)`);
} finally {
  await rm(work, { recursive: true, force: true });
  await rm(sampleDir, { recursive: true, force: true });
}
