/**
 * SHA-256 on a worker thread, so that verifying a benchmark's input and output does not slow
 * the main thread being measured. Buffers are transferred, not copied.
 */
import { Worker } from 'node:worker_threads';

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
let h = createHash('sha256');
parentPort.on('message', (m) => {
  if (m === 'digest') { parentPort.postMessage(h.digest('hex')); h = createHash('sha256'); }
  else h.update(new Uint8Array(m));
});
`;

export class BackgroundSha256 {
  private readonly worker = new Worker(WORKER_SOURCE, { eval: true });

  /**
   * Hashes a copy of `buf`. Copying into a plain ArrayBuffer and transferring that is several
   * times cheaper than transferring a Buffer's own memory (which V8 copies anyway, slowly).
   */
  update(buf: Uint8Array): void {
    const copy = new Uint8Array(new ArrayBuffer(buf.length));
    copy.set(buf);
    this.worker.postMessage(copy.buffer, [copy.buffer]);
  }

  digest(): Promise<string> {
    return new Promise((resolve) => {
      this.worker.once('message', (hex: string) => resolve(hex));
      this.worker.postMessage('digest');
    });
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
