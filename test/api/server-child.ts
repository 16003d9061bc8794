/** A vtl server in its own process (for RSS measurements): prints one JSON line when ready. */
import { startServer } from '../../src/server.js';

const server = await startServer({ data: process.argv[2], host: '127.0.0.1', port: 0, rmtPort: 0, demo: true });
process.stdout.write(JSON.stringify({ url: server.url, tokenFile: server.adminTokenFile, pid: process.pid }) + '\n');
process.on('SIGTERM', () => {
  void server.close().then(() => process.exit(0));
});
