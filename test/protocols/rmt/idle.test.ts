/**
 * Stray connections cannot lock backups out: one that never opened a device and sends nothing
 * for `idleMs` is closed; a client that opened a device keeps its connection however long it
 * waits, with the device open (reading its own disks between records) or closed (tar -M asking
 * for the next volume). A real RmtServer over a real store.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { RmtServer } from '../../../src/protocols/rmt/index.js';
import { RawClient, ok, startHarness, type Harness } from './harness.js';

let h: Harness;
let server: RmtServer;
let port: number;

beforeAll(async () => {
  h = await startHarness({ drives: 1 });
  server = new RmtServer({ libraries: h.libs, port: 0, idleMs: 300 });
  port = (await server.listen()).port;
});
afterAll(async () => {
  await server?.close();
  await h?.close();
});

it('closes a connection that never opened a device and sits idle; keeps a client that opened one, also between volumes', async () => {
  const idle = await RawClient.connect(port);
  const busy = await RawClient.connect(port);
  ok(await busy.open('/lib1/nst0'));
  expect(await idle.waitClosed(3000)).toBe(true);
  // the one with its device open outlived the idle limit several times over, and still works
  await new Promise((r) => setTimeout(r, 1000));
  ok(await busy.write(Buffer.alloc(65536, 7)), 65536);
  ok(await busy.close());
  // between volumes: no device open, the connection stays
  await new Promise((r) => setTimeout(r, 1000));
  ok(await busy.open('/lib1/nst0'));
  ok(await busy.close());
  busy.socket.destroy();
});
