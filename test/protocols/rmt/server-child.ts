/**
 * An rmt server in its own process over an existing data directory (argv[2]), for tests that
 * SIGKILL it: prints the port on stdout once it listens.
 */
import { Libraries } from '../../../src/library/index.js';
import { RmtServer } from '../../../src/protocols/rmt/index.js';
import { openDataStore } from '../../../src/stream/store.js';

const store = await openDataStore(process.argv[2]);
const libs = new Libraries({ db: store.db, streams: store.streams });
const server = new RmtServer({ libraries: libs, port: 0 });
const { port } = await server.listen();
process.stdout.write(`${port}\n`);
