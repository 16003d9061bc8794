/**
 * SHA-256 on a worker thread, so that verifying a benchmark's input and output does not slow
 * the main thread being measured. Data goes through a ring of shared-memory slots (copied
 * once, no allocation per call); a full ring makes `update` wait.
 */
import { Worker } from 'node:worker_threads';

const SLOT_BYTES = 1024 * 1024;
const SLOTS = 8;

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const ring = Buffer.from(workerData);
let h = createHash('sha256');
parentPort.on('message', (m) => {
  if (m === 'digest') { parentPort.postMessage(h.digest('hex')); h = createHash('sha256'); return; }
  const [slot, length] = m;
  h.update(ring.subarray(slot * ${SLOT_BYTES}, slot * ${SLOT_BYTES} + length));
  parentPort.postMessage(slot);
});
`;

export class BackgroundSha256 {
  private readonly ring = new SharedArrayBuffer(SLOT_BYTES * SLOTS);
  private readonly view = Buffer.from(this.ring);
  private readonly worker = new Worker(WORKER_SOURCE, { eval: true, workerData: this.ring });
  private readonly free: number[] = Array.from({ length: SLOTS }, (_, i) => i);
  private waiting: (() => void) | undefined;
  private digestWaiter: ((hex: string) => void) | undefined;

  constructor() {
    this.worker.on('message', (m: number | string) => {
      if (typeof m === 'string') {
        this.digestWaiter?.(m);
        return;
      }
      this.free.push(m);
      this.waiting?.();
      this.waiting = undefined;
    });
  }

  /** Queues a copy of `buf` for hashing (in order). */
  async update(buf: Uint8Array): Promise<void> {
    for (let at = 0; at < buf.length; at += SLOT_BYTES) {
      while (this.free.length === 0) await new Promise<void>((r) => (this.waiting = r));
      const slot = this.free.shift()!;
      const part = buf.subarray(at, Math.min(buf.length, at + SLOT_BYTES));
      this.view.set(part, slot * SLOT_BYTES);
      this.worker.postMessage([slot, part.length]);
    }
  }

  digest(): Promise<string> {
    return new Promise((resolve) => {
      this.digestWaiter = resolve;
      this.worker.postMessage('digest');
    });
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
