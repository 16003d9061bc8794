/** Child of the GC kill test: opens the store, says READY, runs GC, says DONE (unless killed first). */
import { openEnv } from './gc-util.js';

const env = await openEnv(process.argv[2]);
process.stdout.write('READY\n');
// Each container swept is announced, so the parent can tell where its kill landed.
const report = await env.gc.run({
  progress: (done, _total, message) => void (message?.startsWith('container') && process.stdout.write(`SWEPT ${done}\n`)),
  checkCancelled: () => undefined,
});
process.stdout.write(`DONE ${JSON.stringify({ deleted: report.deleted, compacted: report.compacted })}\n`);
await env.close();
