/**
 * Where the CLI takes its token from: --token-file is a file; a token typed there by mistake is
 * refused without being printed back (it would land in terminal scrollback and logs);
 * $VTL_TOKEN holds a token or a file.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { resolveToken } from '../../src/cli/client.js';

const SECRET = 'vtl_Q2hlY2tUaGF0VGhpc0lzTm90UHJpbnRlZEJhY2s';
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vtl-token-file-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

it('a token given as --token-file is refused without repeating it', () => {
  let message = '';
  try {
    resolveToken(SECRET, {});
  } catch (err) {
    message = (err as Error).message;
  }
  expect(message).toMatch(/looks like a token itself: put it in a file .*or in \$VTL_TOKEN/);
  expect(message).not.toContain(SECRET.slice(4));
});

it('--token-file reads a file; $VTL_TOKEN takes a token or a file', async () => {
  const file = join(dir, 'token');
  await writeFile(file, `${SECRET}\n`, { mode: 0o600 });
  expect(resolveToken(file, {}).token).toBe(SECRET);
  expect(resolveToken(undefined, { VTL_TOKEN: SECRET }).token).toBe(SECRET);
  expect(resolveToken(undefined, { VTL_TOKEN: file }).token).toBe(SECRET);
  expect(() => resolveToken(join(dir, 'missing'), {})).toThrow(/cannot read the token file .*missing: ENOENT/);
});
