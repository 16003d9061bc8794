/**
 * Worker thread of the codec pool: seals chunks into frames (lz4 + AES-256-GCM) and opens
 * frames back into chunks, so that both cores do this work and not only the event loop's.
 */
import { parentPort } from 'node:worker_threads';
import { openChunk, sealChunk } from './container.js';
import type { CodecReply, CodecRequest } from './codec-pool.js';

const port = parentPort!;

port.on('message', (req: CodecRequest) => {
  handle(req).then(
    (reply) => port.postMessage(reply, [reply.block.buffer as ArrayBuffer]),
    (err: Error & { file?: string; offset?: number; reason?: string; container?: number }) =>
      port.postMessage({ id: req.id, error: { name: err.name, message: err.message, file: err.file, offset: err.offset, reason: err.reason, container: err.container } }),
  );
});

async function handle(req: CodecRequest): Promise<CodecReply> {
  const key = Buffer.from(req.key.buffer, req.key.byteOffset, req.key.byteLength);
  const data = Buffer.from(req.data.buffer, req.data.byteOffset, req.data.byteLength);
  const n = req.starts.length;
  const outs: Buffer[] = new Array(n);
  if (req.op === 'seal') {
    const jobs: Promise<void>[] = [];
    for (let j = 0; j < n; j++) {
      const fp = Buffer.from(req.fingerprints.buffer, req.fingerprints.byteOffset + j * 16, 16);
      const raw = data.subarray(req.starts[j], req.starts[j] + req.lengths[j]);
      jobs.push(sealChunk(key, req.containers[j], req.seqs[j], fp, raw).then((f) => void (outs[j] = f)));
    }
    await Promise.all(jobs);
  } else {
    for (let j = 0; j < n; j++) {
      const fp = Buffer.from(req.fingerprints.buffer, req.fingerprints.byteOffset + j * 16, 16);
      const k = req.keys ? Buffer.from(req.keys.buffer, req.keys.byteOffset + j * 32, 32) : key;
      const frame = data.subarray(req.starts[j], req.starts[j] + req.lengths[j]);
      outs[j] = openChunk(k, req.containers[j], fp, frame, { file: req.files?.[j] ?? 'frame', offset: req.offsets?.[j] ?? 0 });
    }
  }
  return pack(req.id, outs);
}

/** One transferable block holding every output, with its bounds. */
function pack(id: number, outs: Buffer[]): CodecReply {
  const bounds = new Uint32Array(outs.length + 1);
  for (let j = 0; j < outs.length; j++) bounds[j + 1] = bounds[j] + outs[j].length;
  const block = new Uint8Array(new ArrayBuffer(bounds[outs.length]));
  for (let j = 0; j < outs.length; j++) block.set(outs[j], bounds[j]);
  return { id, block, bounds };
}
