#!/usr/bin/env node
/** Entry point of the `vtl` command. */
import { buildProgram } from './program.js';

buildProgram()
  .parseAsync(process.argv)
  .catch((err: Error) => {
    console.error(`vtl: ${err.message}`);
    process.exitCode = 1;
  });
