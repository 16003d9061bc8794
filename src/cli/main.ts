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

program()
  .then((p) => p.parseAsync(process.argv))
  .catch((err: Error) => {
    console.error(`vtl: ${err.message}`);
    process.exitCode = 1;
  });
