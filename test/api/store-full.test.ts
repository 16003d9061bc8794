/**
 * A server whose disk fills up: the upload that meets it answers 507 STORE_FULL saying the disk
 * is full (it used to be 400 "the upload broke off", blaming the client), and so do later
 * requests the full disk refuses (not 400 "Bad Request" or an internal error). After space is
 * freed and the server restarted, what was written before reads back. A real server on a
 * small real file system (tmpfs: needs root's mount, else the test says it is skipped and why).
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { withSmallFs } from '../helpers/tmpfs.js';
import { randomBytes } from '../helpers/data.js';
import { call, getFile, ok, putFile, startTestServer } from './helpers.js';

const MiB = 1024 * 1024;

it('a full disk answers 507 STORE_FULL, not a client error; after freeing space and a restart the earlier file reads back', async (ctx) => {
  await withSmallFs(ctx, 40, 8, async (mnt) => {
    const t = await startTestServer({ demo: true, data: join(mnt, 'data') });
    try {
      await ok(t, 'POST', '/api/v1/libraries/lib1/drives/0/load', { barcode: 'VT0001L7' });
      const first = randomBytes(2 * MiB, 1);
      expect((await putFile(t, 'lib1', 0, first)).status).toBe(200);
      let refused: { status: number; body: { error: string; message: string } } | undefined;
      for (let i = 0; i < 40 && !refused; i++) {
        const r = await putFile(t, 'lib1', 0, randomBytes(2 * MiB, 10 + i));
        if (r.status !== 200) refused = r;
      }
      expect(refused, 'the disk should have filled up').toBeDefined();
      expect(refused!.status, JSON.stringify(refused!.body)).toBe(507);
      expect(refused!.body.error).toBe("STORE_FULL");
      expect(refused!.body.message).toMatch(/disk full/);
      // What the full disk refuses next says the same, in the API's shape.
      const next = await putFile(t, 'lib1', 0, randomBytes(MiB, 99));
      expect([200, 507], JSON.stringify(next.body)).toContain(next.status);
      if (next.status === 507) expect(next.body).toMatchObject({ error: 'STORE_FULL', message: expect.stringMatching(/disk full/) });
    } finally {
      await t.server.close().catch(() => undefined);
    }
    await rm(join(mnt, 'filler'));
    const again = await startTestServer({ data: join(mnt, 'data') });
    try {
      await ok(again, 'POST', '/api/v1/libraries/lib1/drives/0/rewind', {});
      const back = await getFile(again, 'lib1', 0);
      expect(back.status).toBe(200);
      expect(back.data.equals(randomBytes(2 * MiB, 1))).toBe(true);
      expect((await call(again, 'GET', '/api/v1/health')).status).toBe(200);
    } finally {
      await again.server.close().catch(() => undefined);
    }
  });
}, 90_000);
