/**
 * Runs the `vtl` program in this process, capturing its stdout, stderr and the exit code it
 * set (process.exitCode, put back afterwards so that it never becomes the test run's own).
 */
import { buildProgram } from '../../src/cli/program.js';

export async function runCli(args: string[]): Promise<{ out: string; error?: string; stderr: string; exitCode: number }> {
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
  const before = process.exitCode;
  process.exitCode = undefined;
  const exitCode = () => Number(process.exitCode ?? 0);
  try {
    await program.parseAsync(['node', 'vtl', ...args]);
    return { out, stderr, exitCode: exitCode() };
  } catch (err) {
    return { out, error: (err as Error).message, stderr, exitCode: exitCode() || 1 };
  } finally {
    process.stdout.write = write;
    process.stderr.write = errWrite;
    process.exitCode = before;
  }
}
