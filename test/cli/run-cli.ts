/** Runs the `vtl` program in this process, capturing its stdout and stderr. */
import { buildProgram } from '../../src/cli/program.js';

export async function runCli(args: string[]): Promise<{ out: string; error?: string; stderr: string }> {
  const program = buildProgram().exitOverride();
  for (const c of program.commands) c.exitOverride();
  let out = '';
  let stderr = '';
  const write = process.stdout.write.bind(process.stdout);
  const errWrite = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((chunk: string | Uint8Array) => {
    out += chunk.toString();
    return true;
  }) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => {
    stderr += chunk.toString();
    return true;
  }) as typeof process.stderr.write;
  try {
    await program.parseAsync(['node', 'vtl', ...args]);
    return { out, stderr };
  } catch (err) {
    return { out, error: (err as Error).message, stderr };
  } finally {
    process.stdout.write = write;
    process.stderr.write = errWrite;
  }
}
