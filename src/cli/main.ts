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
// quietly, as Unix tools do, instead of dying with an EPIPE stack trace. (What the command did
// on the server is done either way.)
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  console.error(`vtl: writing to stdout: ${err.message}`);
  process.exit(1);
});

program()
  .then((p) => p.parseAsync(process.argv))
  .catch((err: Error) => {
    console.error(`vtl: ${err.message}`);
    process.exitCode = 1;
  });
