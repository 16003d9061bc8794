#!/usr/bin/env node
/** Entry point of the `vtl` command (run by the launcher beside it, `vtl`, with its node options). */
import { Command } from 'commander';

/** `vtl rmt` loads only the bridge: it starts once per tar run, and the rest takes 0.3 s. */
async function program(): Promise<Command> {
  if (process.argv[2] !== 'rmt') return (await import('./program.js')).buildProgram();
  const { addRmtCommand } = await import('./rmt.js');
  const p = new Command('vtl').showHelpAfterError();
  addRmtCommand(p);
  return p;
}

// `vtl ... | head`: once the reader of stdout is gone, nothing more can be said there; exit
// quietly instead of dying with an EPIPE stack trace, with the status a Unix tool killed by
// SIGPIPE has (128 + 13), not 0: `vtl image export ... -o - | gzip` whose gzip died wrote a cut
// image, and a script with `set -o pipefail` must see that. (Node ignores SIGPIPE, so the
// signal cannot end the process itself. What the command did on the server is done either way.)
const SIGPIPE_STATUS = 141;
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(SIGPIPE_STATUS);
  console.error(`vtl: writing to stdout: ${err.message}`);
  process.exit(1);
});

program()
  .then((p) => p.parseAsync(process.argv))
  .catch((err: Error) => {
    console.error(`vtl: ${err.message}`);
    process.exitCode = 1;
  });
