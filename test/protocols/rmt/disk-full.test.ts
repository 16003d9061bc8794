/**
 * tar through rmt onto a store whose disk fills up: the write that meets the full disk fails
 * (EIO to the client), and the session's audit entry is an error that says writes failed and
 * why, not "ok" with records the cartridge does not hold (or, where the full disk refused the
 * audit log's own write too, an interrupted entry from its note at the next start). A real
 * server on a small real file system (tmpfs: needs root's mount, else the test says it is
 * skipped and why), a raw rmt client.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { withSmallFs } from '../../helpers/tmpfs.js';
import { call, ok as okCall, startTestServer } from '../../api/helpers.js';
import { randomBytes } from '../../helpers/data.js';
import { RawClient, ok } from './harness.js';

it('writes the full disk refuses make the rmt audit entry an error naming the cause', async (ctx) => {
  await withSmallFs(ctx, 40, 8, async (mnt) => {
    const data = join(mnt, 'data');
    const t = await startTestServer({ demo: true, data });
    try {
      await okCall(t, 'POST', '/api/v1/libraries/lib1/drives/0/load', { barcode: 'VT0001L7' });
      const c = await RawClient.connect(Number(t.server.rmtAddress.split(':').pop()));
      try {
        ok(await c.open('/lib1/nst0'));
        let failed = false;
        for (let i = 0; i < 1000 && !failed; i++) failed = !(await c.write(randomBytes(64 * 1024, i))).ok;
        expect(failed, 'the disk should have filled up').toBe(true);
        await c.close();
      } finally {
        c.socket.destroy();
      }
    } finally {
      await t.server.close().catch(() => undefined);
    }
    // Where the full disk also refused the audit log's own write (LevelDB met it first), the
    // session's note stands in for the entry: the next start logs it as interrupted. Either
    // way the log has one entry for the session, and it does not say ok.
    await rm(join(mnt, 'filler'));
    const again = await startTestServer({ data });
    try {
      const items = (await call(again, 'GET', '/api/v1/audit?action=rmt%20write&limit=1000')).body.items as Array<{ result: string; detail: string; target: string }>;
      expect(items).toHaveLength(1);
      const entry = items[0];
      expect(entry.target).toBe('VT0001L7');
      if (entry.result === 'error') expect(entry.detail).toMatch(/failed \(.*(disk full|no space left)/i);
      else expect(entry).toMatchObject({ result: 'interrupted', detail: expect.stringContaining('rolled back') });
    } finally {
      await again.server.close().catch(() => undefined);
    }
  });
}, 90_000);
