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

  /** Hands the buffer over (it must own its ArrayBuffer, e.g. from Buffer.allocUnsafeSlow). */
  update(buf: Buffer): void {
    if (buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength) {
      this.worker.postMessage(buf.buffer, [buf.buffer as ArrayBuffer]);
    } else {
      this.worker.postMessage(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
    }
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
