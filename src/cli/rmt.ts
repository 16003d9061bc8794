/**
 * `vtl rmt`, apart from program.ts: it starts once per tar, cpio or mt run (an rsh wrapper or
 * an ssh ForceCommand), so main.ts loads it alone rather than every command's dependencies.
 */
import type { Command } from 'commander';
import { nativeBridgePath, runNativeBridge } from '../protocols/rmt/bridge-native.js';
import { runRmtBridge } from '../protocols/rmt/bridge.js';

export function addRmtCommand(program: Command): void {
  program
    .command('rmt')
    .description('speak rmt on stdin/stdout, relayed to a vtl rmt server (for tar --rsh-command or ssh ForceCommand)')
    .option('--server <host:port>', 'rmt server (default $VTL_RMT or 127.0.0.1:7421)')
    .action(async (o) => {
      const server = o.server ?? process.env.VTL_RMT ?? '127.0.0.1:7421';
      // The C bridge when it was built (stdin and stdout untouched until then); else this one.
      const binary = nativeBridgePath();
      const status = binary === undefined ? undefined : runNativeBridge(binary, server);
      if (status !== undefined) {
        process.exitCode = status;
        return;
      }
      await runRmtBridge(server, process.stdin, process.stdout);
    });
}
