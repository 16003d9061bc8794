/**
 * fs backend: a directory used as a bucket (the embedded default). A key 'a/b/c' is the file
 * <root>/a/b/c.
 *
 * Atomic put: the body goes to a dot-named temp file in the object's own directory, is fsynced,
 * then renamed over the key and the directory fsynced, so a reader sees the old or the new file,
 * never a partial one (a reader that opened the old file keeps reading the old inode).
 *
 * Retention is a sidecar file `.<name>.retain` holding the ISO date, written (atomically) before
 * the object appears; delete and overwrite before that date throw RetentionError. It binds this
 * API only, not someone with a shell on the machine: use S3 Object Lock or Azure immutability
 * when retention must hold against an attacker.
 *
 * Limits of a filesystem: a key cannot be both an object and a folder of other keys ('a' and
 * 'a/b'), such a put fails; emptied directories are left in place; temp files of a crashed put
 * stay as dot-files, which list() never shows.
 */
import { randomBytes } from 'node:crypto';
import { constants, createReadStream, type Dirent } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { checkLength, checkRetainDate, emptyStream } from './body.js';
import { ObjectNotFoundError, RetentionError, TierConfigError, TierIOError } from './errors.js';
import { BucketNotFoundError, type ListEntry, type ObjectInfo, type ObjectTier, type OpenTierOptions, type PutOptions } from './index.js';
import { checkRangeInside, validateKey, validatePrefix, validateRange, type ByteRange } from './keys.js';
import type { FsTarget } from './url.js';

const TRANSIENT_CODES = new Set(['EMFILE', 'ENFILE', 'EAGAIN', 'EBUSY', 'EINTR']);

export class FsTier implements ObjectTier {
  readonly url: string;

  private constructor(private readonly root: string, url: string) {
    this.url = url;
  }

  /** A missing root directory is created (with its parents) only when asked (see OpenTierOptions.create). */
  static async open(target: FsTarget, opts: OpenTierOptions = {}): Promise<FsTier> {
    if (opts.create) await createRoot(target.root);
    await checkRoot(target.root);
    return new FsTier(target.root, target.redacted);
  }

  async put(key: string, body: Buffer | Readable, opts: PutOptions = {}): Promise<void> {
    const file = this.pathOf(key);
    checkRetainDate(opts.retainUntil);
    await this.refuseIfRetained(key, file, 'overwrite');
    const dir = dirname(file);
    // Folders are made below the root, never the root itself: a root gone since open (an
    // unmounted volume) must not be made again on the disk under the mount point.
    await checkRoot(this.root);
    await this.io('put', key, () => mkdir(dir, { recursive: true }));
    const temp = join(dir, `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
    try {
      await this.io('put', key, () => writeDurably(temp, key, body, opts.contentLength));
      if (opts.retainUntil) await this.io('put', key, () => this.writeRetention(file, opts.retainUntil!));
      await this.io('put', key, () => rename(temp, file));
      await this.io('put', key, () => syncDir(dir));
      // An expired sidecar must not describe the new body (a live one refused the put above).
      if (!opts.retainUntil) await unlink(sidecarOf(file)).catch(() => undefined);
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw err;
    }
  }

  async get(key: string, range?: ByteRange): Promise<Buffer> {
    const file = this.pathOf(key);
    if (range) validateRange(key, range);
    const handle = await this.openObject(key, file);
    try {
      const size = (await handle.stat()).size;
      if (!range) return await handle.readFile();
      checkRangeInside(key, range, size);
      return await readExactly(handle, range);
    } finally {
      await handle.close();
    }
  }

  async getStream(key: string, range?: ByteRange): Promise<Readable> {
    const file = this.pathOf(key);
    if (range) validateRange(key, range);
    const handle = await this.openObject(key, file);
    try {
      const size = (await handle.stat()).size;
      if (range) checkRangeInside(key, range, size);
      if (range?.length === 0 || size === 0) {
        await handle.close();
        return emptyStream();
      }
    } catch (err) {
      await handle.close();
      throw err;
    }
    // The stream owns the handle from here and closes it at the end or on destroy.
    const start = range?.offset ?? 0;
    const end = range ? range.offset + range.length - 1 : undefined;
    return createReadStream('', { fd: handle, start, end, autoClose: true });
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const file = this.pathOf(key);
    const info = await this.io('head', key, () => stat(file, { bigint: true })).catch((err) => {
      if (isCode(err.cause, 'ENOENT', 'ENOTDIR')) return undefined;
      throw err;
    });
    if (!info?.isFile()) return undefined;
    const retainUntil = await this.readRetention(file);
    const etag = `${info.ino.toString(16)}-${info.size.toString(16)}-${info.mtimeNs.toString(16)}`;
    return { size: Number(info.size), etag, ...(retainUntil ? { retainUntil } : {}) };
  }

  async *list(prefix: string): AsyncIterable<ListEntry> {
    validatePrefix(prefix);
    const cut = prefix.lastIndexOf('/') + 1;
    const dirKey = prefix.slice(0, cut);
    yield* this.walk(join(this.root, ...dirKey.split('/').filter(Boolean)), dirKey, prefix.slice(cut));
  }

  async delete(key: string): Promise<void> {
    const file = this.pathOf(key);
    await this.refuseIfRetained(key, file, 'delete');
    // Object first, sidecar second: a crash in between leaves an orphan sidecar, never an
    // unprotected object.
    const removed = await this.io('delete', key, () => unlink(file)).then(() => true, (err) => {
      if (isCode(err.cause, 'ENOENT', 'ENOTDIR', 'EISDIR', 'EPERM')) return false;
      throw err;
    });
    await unlink(sidecarOf(file)).catch(() => undefined);
    if (removed) await this.io('delete', key, () => syncDir(dirname(file)));
  }

  async supportsRetention(): Promise<boolean> {
    return true;
  }

  async close(): Promise<void> {}

  /** Keys are validated first, so no segment is '..' or absolute: the path stays under root. */
  private pathOf(key: string): string {
    validateKey(key);
    const file = join(this.root, ...key.split('/'));
    if (!file.startsWith(this.root.endsWith(sep) ? this.root : this.root + sep)) throw new TierConfigError(`key escapes the tier root: ${key}`);
    return file;
  }

  private async openObject(key: string, file: string): Promise<FileHandle> {
    try {
      return await open(file, constants.O_RDONLY);
    } catch (err) {
      if (isCode(err, 'ENOENT', 'ENOTDIR', 'EISDIR')) throw new ObjectNotFoundError(key);
      throw wrap('get', key, err);
    }
  }

  private async *walk(dir: string, dirKey: string, namePrefix: string): AsyncGenerator<ListEntry> {
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      // No folder of that prefix lists nothing; no root at all is a missing tier, not an empty one.
      if (isCode(err, 'ENOENT', 'ENOTDIR')) return checkRoot(this.root);
      throw wrap('list', dirKey, err);
    }
    // Sort a folder as 'name/' so the walk yields whole keys in byte order ('a.c' < 'a/b').
    const visible = entries
      .filter((e) => !e.name.startsWith('.') && e.name.startsWith(namePrefix) && (e.isFile() || e.isDirectory()))
      .map((e) => ({ e, sortKey: e.isDirectory() ? `${e.name}/` : e.name }))
      .sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0));
    for (const { e } of visible) {
      const key = dirKey + e.name;
      if (e.isDirectory()) {
        yield* this.walk(join(dir, e.name), `${key}/`, '');
        continue;
      }
      // A file deleted since readdir is simply not listed.
      const info = await stat(join(dir, e.name)).catch(() => undefined);
      if (info?.isFile()) yield { key, size: info.size };
    }
  }

  private async refuseIfRetained(key: string, file: string, what: 'delete' | 'overwrite'): Promise<void> {
    const until = await this.readRetention(file);
    if (!until || until.getTime() <= Date.now()) return;
    const exists = await stat(file).then((s) => s.isFile(), () => false);
    if (exists) throw new RetentionError(`${what} of ${key} refused: retained until ${until.toISOString()}`);
  }

  private async readRetention(file: string): Promise<Date | undefined> {
    const text = await readFile(sidecarOf(file), 'utf8').catch(() => undefined);
    if (text === undefined) return undefined;
    const date = new Date(text.trim());
    // An unreadable date must not unlock the object: treat it as retained forever.
    return Number.isNaN(date.getTime()) ? new Date(8.64e15) : date;
  }

  private async writeRetention(file: string, until: Date): Promise<void> {
    const sidecar = sidecarOf(file);
    const temp = `${sidecar}.${randomBytes(6).toString('hex')}.tmp`;
    await writeDurably(temp, sidecar, Buffer.from(`${until.toISOString()}\n`), undefined);
    await rename(temp, sidecar);
    // Durable before the object appears, so no crash leaves the object without its retention.
    await syncDir(dirname(file));
  }

  private async io<T>(op: string, key: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw wrap(op, key, err);
    }
  }
}

function sidecarOf(file: string): string {
  return join(dirname(file), `.${basename(file)}.retain`);
}

async function writeDurably(path: string, key: string, body: Buffer | Readable, contentLength: number | undefined): Promise<void> {
  const handle = await open(path, 'wx', 0o644);
  try {
    let written = 0;
    if (Buffer.isBuffer(body)) {
      checkLength(key, contentLength, body.length);
      await handle.writeFile(body);
      written = body.length;
    } else {
      for await (const chunk of body) {
        const buf: Buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
        written += buf.length;
        if (contentLength !== undefined && written > contentLength) checkLength(key, contentLength, written);
        await handle.writeFile(buf);
      }
      checkLength(key, contentLength, written);
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function readExactly(handle: FileHandle, range: ByteRange): Promise<Buffer> {
  const out = Buffer.allocUnsafe(range.length);
  let done = 0;
  while (done < range.length) {
    const { bytesRead } = await handle.read(out, done, range.length - done, range.offset + done);
    if (bytesRead === 0) throw new TierIOError(`short read at ${range.offset + done}`, { transient: false });
    done += bytesRead;
  }
  return out;
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function isCode(err: unknown, ...codes: string[]): boolean {
  return typeof err === 'object' && err !== null && codes.includes((err as NodeJS.ErrnoException).code ?? '');
}

function wrap(op: string, key: string, err: unknown): Error {
  if (!(err instanceof Error) || !('code' in err) || err instanceof TierIOError) return err as Error;
  const code = (err as NodeJS.ErrnoException).code ?? '';
  const hint = code === 'ENOTDIR' || code === 'EISDIR' ? ' (a key cannot be both an object and a folder of keys on the fs tier)' : '';
  return new TierIOError(`fs tier ${op} ${key}: ${err.message}${hint}`, { transient: TRANSIENT_CODES.has(code), cause: err });
}

async function createRoot(root: string): Promise<void> {
  await mkdir(root, { recursive: true }).catch((err: NodeJS.ErrnoException) => {
    // Something else by that name: checkRoot says what.
    if (err.code !== 'EEXIST' && err.code !== 'ENOTDIR') throw new TierConfigError(`fs tier directory ${root} cannot be created: ${err.code ?? err.message}`);
  });
}

/** Missing (a mistyped path, an unmounted volume) is BucketNotFoundError; a file there is not a tier. */
async function checkRoot(root: string): Promise<void> {
  const info = await stat(root).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') throw new BucketNotFoundError('directory', root, 'on this server');
    throw new TierConfigError(`fs tier root ${root} cannot be read: ${err.code ?? err.message}`);
  });
  if (!info.isDirectory()) throw new TierConfigError(`fs tier root is not a directory: ${root}`);
}
