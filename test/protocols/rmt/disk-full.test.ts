/**
 * tar through rmt onto a store whose disk fills up: the write that meets the full disk fails
 * (EIO to the client), and the session's audit entry is an error that says writes failed and
 * why, not "ok" with records the cartridge does not hold. A real server on a small real file
 * system (tmpfs: needs root's mount, else the test says it is skipped and why), a raw rmt client.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { mountSmallFs } from '../../helpers/tmpfs.js';
import { call, ok as okCall, startTestServer } from '../../api/helpers.js';
import { randomBytes } from '../../helpers/data.js';
import { RawClient, ok } from './harness.js';

it('writes the full disk refuses make the rmt audit entry an error naming the cause', async (ctx) => {
  const tmp = await mkdtemp(join(tmpdir(), 'vtl-rmt-full-'));
  const mnt = join(tmp, 'mnt');
  await mkdir(mnt);
  const why = mountSmallFs(mnt, 40);
  if (why) {
    await rm(tmp, { recursive: true, force: true });
    ctx.skip(why);
  }
  try {
    const t = await startTestServer({ demo: true, data: join(mnt, 'data') });
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
      let entry: { result: string; detail: string } | undefined;
      for (let i = 0; i < 50 && !entry; i++) {
        const items = (await call(t, 'GET', '/api/v1/audit?action=rmt%20write&limit=1000')).body.items as Array<{ result: string; detail: string }>;
        entry = items.at(-1);
        if (!entry) await new Promise((r) => setTimeout(r, 100));
      }
      expect(entry).toMatchObject({ result: 'error', detail: expect.stringMatching(/failed \(.*(disk full|no space left)/i) });
    } finally {
      await t.server.close().catch(() => undefined);
    }
  } finally {
    execFileSync('umount', ['-l', mnt]);
    await rm(tmp, { recursive: true, force: true });
  }
}, 90_000);
