/**
 * Child of the crash test: appends an endless AWSTAPE image to a cartridge through the journal
 * and prints `MARKS <n>` whenever more tapemarks (sync points) were written, until it is killed.
 * Usage: node --import tsx test/protocols/images/crash-child.ts DIR BARCODE
 */
import { CODECS, importCartridgeImage } from '../../../src/protocols/images/index.js';
import { randomBytes } from '../../helpers/data.js';
import { openStore } from './util.js';

const [dir, barcode] = process.argv.slice(2);
const env = await openStore(dir);

async function* endless(): AsyncGenerator<Buffer> {
  const enc = CODECS.aws.encoder();
  for (let i = 1; ; i++) {
    yield Buffer.concat(enc.record(randomBytes(100_000, i)));
    if (i % 3 === 0) yield Buffer.concat(enc.tapemark());
  }
}

let marks = 0;
await importCartridgeImage(env, barcode, 'aws', endless(), {
  append: true,
  onProgress: (p) => {
    if (p.tapemarks > marks) {
      marks = p.tapemarks;
      process.stdout.write(`MARKS ${marks}\n`);
    }
  },
});
