/**
 * TapeDevice.write's `done`: the rmt session gives a record's buffer back to the pool there,
 * and the next record that spans socket reads is joined in it. So `done` must not come before
 * the medium has taken the bytes, also while writes stream (answered before they are stored).
 * Here `done` scribbles over the buffer at once, as the worst reuse would; the tape must still
 * hold the records as written.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { TapeDevice } from '../../../src/protocols/rmt/device.js';
import { parseDevice, parseOpenFlags } from '../../../src/protocols/rmt/names.js';
import { randomBytes } from '../../helpers/data.js';
import { RawClient, ok, startHarness, type Harness } from './harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ drives: 1 });
});
afterAll(async () => {
  await h?.close();
});

test('done comes only once the medium has the record: scribbling over it then changes nothing on the tape', async () => {
  const dev = await TapeDevice.open(h.libs, parseDevice('/lib1/st0')!, parseOpenFlags('65 O_WRONLY|O_CREAT')!);
  const RECORD = 65536;
  const COUNT = 200; // 12.5 MiB: the stream writer waits for its store more than once
  const data = randomBytes(RECORD * COUNT, 5);
  let dones = 0;
  for (let i = 0; i < COUNT; i++) {
    const buf = Buffer.from(data.subarray(i * RECORD, (i + 1) * RECORD)); // a copy: it is scribbled on
    expect(await dev.write(buf, () => (dones++, buf.fill(0xee)))).toBe(RECORD);
  }
  await dev.close();
  expect(dones).toBe(COUNT);

  const c = await RawClient.connect(h.port);
  try {
    ok(await c.open('/lib1/st0', '0 O_RDONLY'));
    const read = createHash('sha256');
    for (let i = 0; i < COUNT; i++) read.update(ok(await c.read(RECORD), RECORD).data!);
    ok(await c.read(RECORD), 0); // the filemark close wrote
    expect(read.digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
    ok(await c.close());
  } finally {
    c.destroy();
  }
});

test('done comes also when the write is refused before it reaches the medium', async () => {
  const dev = await TapeDevice.open(h.libs, parseDevice('/lib1/st0')!, parseOpenFlags('0 O_RDONLY')!);
  let dones = 0;
  await expect(dev.write(Buffer.alloc(512), () => dones++)).rejects.toThrow(/open for reading only/);
  expect(dones).toBe(1);
  await dev.close();
});
