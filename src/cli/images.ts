/**
 * `vtl import` and `vtl export`: tape images (AWSTAPE, SIMH, raw) into and out of a cartridge
 * over the API. Both stream: the file is never held in memory, progress goes to stderr on a
 * terminal. An export is written next to its target and renamed into place only when complete,
 * so a broken-off transfer never leaves a file that looks like a whole image.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, stat, unlink } from 'node:fs/promises';
import { Transform, type Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Option, type Command } from 'commander';
import { CliError } from './client.js';
import { api, client, counter, int, json, out, progress } from './commands.js';
import { bytes, plural } from './format.js';

/* eslint-disable @typescript-eslint/no-explicit-any */
type Obj = Record<string, any>;

/** What the server speaks (src/protocols/images); the CLI only talks HTTP, so it names them itself. */
const FORMATS = ['aws', 'simh', 'raw'];
const formatOption = () => new Option('--format <format>', 'image format: aws (AWSTAPE), simh (.tap), raw (one tape file)').choices(FORMATS).makeOptionMandatory();

export function registerImageCommands(program: Command): void {
  api(program.command('import').description('import a tape image FILE (or - for stdin) onto a cartridge: all of it or nothing').argument('<file>'))
    .requiredOption('--barcode <barcode>', 'the cartridge (blank, unless --append)')
    .addOption(formatOption())
    .option('--block-size <bytes>', 'raw: record size (default 65536)', int)
    .option('--append', 'write after the data already on the cartridge')
    .option('--accept-bad-records', 'simh: import records flagged bad instead of refusing the image')
    .option('--json', 'print the import summary as JSON')
    .action(importCommand);

  api(program.command('export').description('export a cartridge as a tape image').argument('<barcode>'))
    .addOption(formatOption())
    .requiredOption('-o, --output <file>', 'where to write the image (- for stdout)')
    .option('--file <n>', 'raw: the tape file to export (0-based)', int)
    .option('--json', 'print what was written as JSON')
    .action(exportCommand);
}

async function importCommand(file: string, o: Obj): Promise<void> {
  const q = new URLSearchParams({ format: o.format });
  if (o.blockSize !== undefined) q.set('blockSize', String(o.blockSize));
  if (o.append) q.set('append', 'true');
  if (o.acceptBadRecords) q.set('acceptBadRecords', 'true');
  const fromStdin = file === '-';
  const size = fromStdin ? undefined : await fileSize(file);
  const input: Readable = fromStdin ? process.stdin : createReadStream(file, { highWaterMark: 1 << 20 });
  const bar = progress(size);
  let sum: Obj;
  try {
    sum = await client(o).upload<Obj>(`/api/v1/cartridges/${encodeURIComponent(o.barcode)}/image?${q}`, input.pipe(counter(bar)), size);
  } catch (err) {
    if (err instanceof CliError && err.code === 'MALFORMED_IMAGE') throw new CliError(`${file}: ${err.message}; nothing was imported into ${o.barcode}`, err.status, err.code);
    throw err;
  } finally {
    bar?.stop();
    if (!fromStdin) input.destroy(); // the server may answer before it has read everything
  }
  if (o.json) return json(sum);
  out(
    `imported ${file} into ${sum.medium}: ${plural(sum.records, 'record')}, ${plural(sum.tapemarks, 'tapemark')}, ${bytes(sum.logicalBytes)} of data ` +
      `(${sum.format} image of ${bytes(sum.bytes)}; blocks ${sum.startLba}..${sum.endLba})`,
  );
  if (sum.badRecords > 0) process.stderr.write(`vtl: warning: ${sum.badRecords} records were flagged bad in the image (first at byte ${sum.badRecordOffsets[0]})\n`);
  // An empty image is a blank tape's, so it imports (as nothing); it is also what a failed copy leaves.
  if (sum.bytes === 0) process.stderr.write(`vtl: warning: ${file === '-' ? 'the input' : file} is empty: nothing was imported (check the copy if a blank tape was not meant)\n`);
}

async function exportCommand(barcode: string, o: Obj): Promise<void> {
  const q = new URLSearchParams({ format: o.format });
  if (o.file !== undefined) q.set('file', String(o.file));
  const res = await client(o).download(`/api/v1/cartridges/${encodeURIComponent(barcode)}/image?${q}`);
  const toStdout = o.output === '-';
  const part = `${o.output}.part`;
  const bar = toStdout ? undefined : progress(undefined);
  const sink: Writable = toStdout ? process.stdout : createWriteStream(part);
  let written = 0;
  const tally = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      written += chunk.length;
      cb(null, chunk);
    },
  });
  try {
    await pipeline(res, counter(bar), tally, sink, { end: !toStdout });
    if (!res.complete) throw new Error('the server cut the transfer off (see its log)');
    if (!toStdout) await rename(part, o.output);
  } catch (err) {
    if (!toStdout) await unlink(part).catch(() => undefined);
    throw new CliError(`exporting ${barcode} broke off after ${written} bytes: ${(err as Error).message}${toStdout ? '' : `; ${o.output} was not written`}`);
  } finally {
    bar?.stop();
  }
  if (o.json) return json({ barcode, format: o.format, output: o.output, bytes: written });
  if (!toStdout) out(`exported ${barcode} to ${o.output} (${o.format} image, ${bytes(written)})`);
}

async function fileSize(file: string): Promise<number> {
  const st = await stat(file).catch((err: NodeJS.ErrnoException) => {
    throw new CliError(`cannot read ${file}: ${err.code ?? err.message}`);
  });
  if (!st.isFile()) throw new CliError(`${file} is not a regular file (use - to read an image from stdin)`);
  return st.size;
}
