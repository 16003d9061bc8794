/**
 * `vtl rmt`, apart from program.ts: it starts once per tar, cpio or mt run (an rsh wrapper or
 * an ssh ForceCommand), so main.ts loads it alone rather than every command's dependencies.
 */
import type { Command } from 'commander';
import { runRmtBridge } from '../protocols/rmt/bridge.js';

export function addRmtCommand(program: Command): void {
  program
    .command('rmt')
    .description('speak rmt on stdin/stdout, relayed to a vtl rmt server (for tar --rsh-command or ssh ForceCommand)')
    .option('--server <host:port>', 'rmt server (default $VTL_RMT or 127.0.0.1:7421)')
    .action(async (o) => {
      await runRmtBridge(o.server ?? process.env.VTL_RMT ?? '127.0.0.1:7421', process.stdin, process.stdout);
    });
}
