/**
 * Generators of rmt command streams for the fuzz tests (fuzz.test.ts against the server,
 * bridge-fuzz.test.ts through the bridges): random bytes, well-formed scripts (half of them
 * with the bridge extension's hello, buffered writes and undone reads) and mutations of them.
 */
import { seededRng } from '../../helpers/data.js';

/** Seeded: a run is reproducible from FUZZ_SEED. */
export const rng = seededRng;
export type Rng = ReturnType<typeof rng>;

const DEVICES = ['/lib1/nst0', '/lib1/st0', '/lib1/nst1', '/lib1/st1', '/lib1/rmt0', '/lib1/rmt1.1', '/lib1/nst9', '/nolib/st0', '/lib1/xx', ''];
const FLAGS = ['0 O_RDONLY', '65 O_WRONLY|O_CREAT', '2 O_RDWR', '1', '2', '2048 O_RDONLY|O_NONBLOCK', 'O_BOGUS', '-1', '3'];
const NUMBERS = ['0', '1', '-1', '512', '65536', '2097152', '2097153', '3000000000', '99999999999999999999', '-3000000000', 'x', ''];

function command(r: Rng): string | Buffer {
  switch (r.int(17)) {
    case 0:
      return `O${r.pick(DEVICES)}\n${r.pick(FLAGS)}\n`;
    case 1:
    case 2: {
      const n = r.int(4) === 0 ? r.int(9000) : r.int(600);
      const data = Buffer.alloc(n, r.int(256));
      return Buffer.concat([Buffer.from(`W${n}\n`), data]);
    }
    case 3:
    case 4:
      return `R${r.pick(['1', '100', '512', '10240', '65536', '3000000000', '-5', 'zz'])}\n`;
    case 5:
    case 6:
      return `I${r.int(42) - 1}\n${r.pick(['0', '1', '1', '2', '3', '-2', '512', '100000'])}\n`;
    case 7:
      return r.pick(['S', 'S\n']);
    case 8:
      return `L${r.pick(NUMBERS)}\n${r.pick(['0', '1', '2', 'SET', 'CUR', 'END', '7'])}\n`;
    case 9:
      return r.pick(['C\n', 'C/lib1/nst0\n']);
    case 10:
      return r.pick(['i1\n1\n', 'sT', 'v1\n', '\n\n']);
    case 11:
      return `W${r.pick(NUMBERS)}\n`;
    case 14: // the bridge extension: hello, buffered write, undo of reads
      return r.pick(['B1\n', 'B0\n', 'B99\n', 'Bx\n']);
    case 15: {
      const n = r.int(4) === 0 ? r.int(9000) : r.int(600);
      return Buffer.concat([Buffer.from(`w${n}\n`), Buffer.alloc(n, r.int(256))]);
    }
    case 16:
      return `U${r.pick(['0', '1', '2', '5', '300', '-1', 'x'])}\n`;
    default:
      return `I${r.pick(['6', '5', '1', '2', '12', '13', '30'])}\n1\n`;
  }
}

function script(r: Rng): Buffer {
  const parts: (string | Buffer)[] = [`O${r.pick(DEVICES.slice(0, 6))}\n${r.pick(FLAGS.slice(0, 3))}\n`];
  if (r.int(2)) parts.unshift('B1\n'); // a bridge's session: w and U are commands
  const n = 1 + r.int(12);
  for (let i = 0; i < n; i++) parts.push(command(r));
  if (r.int(2)) parts.push('C\n');
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p)));
}

function randomBytes(r: Rng, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = r.int(256);
  return b;
}

function mutate(r: Rng, input: Buffer): Buffer {
  let b = input;
  const k = 1 + r.int(4);
  for (let i = 0; i < k && b.length > 0; i++) {
    const at = r.int(b.length);
    switch (r.int(6)) {
      case 0: // flip a byte
        b = Buffer.from(b);
        b[at] ^= 1 << r.int(8);
        break;
      case 1: // insert random bytes
        b = Buffer.concat([b.subarray(0, at), randomBytes(r, 1 + r.int(8)), b.subarray(at)]);
        break;
      case 2: // delete a span
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + r.int(16))]);
        break;
      case 3: // duplicate a span
        b = Buffer.concat([b.subarray(0, at), b.subarray(at, at + 1 + r.int(64)), b.subarray(at)]);
        break;
      case 4: // cut the stream
        b = b.subarray(0, at);
        break;
      default: {
        // a number becomes a huge, negative or malformed one
        const text = b.toString('latin1');
        const m = /\d+/g;
        const all = [...text.matchAll(m)];
        if (all.length === 0) break;
        const hit = r.pick(all);
        b = Buffer.from(text.slice(0, hit.index) + r.pick(NUMBERS) + text.slice(hit.index! + hit[0].length), 'latin1');
      }
    }
  }
  return b;
}

/** Random MTOFFL/MTUNLOAD take cartridges offline; some streams bring them back (MTLOAD). */
function reload(r: Rng): Buffer {
  return Buffer.from(`O/lib1/nst${r.int(2)}\n2048 O_RDONLY|O_NONBLOCK\nI30\n1\nC\n`);
}

export function stream(r: Rng): { input: Buffer; reset: boolean } {
  const kind = r.int(20);
  const input = kind < 4 ? randomBytes(r, r.int(300)) : kind < 8 ? script(r) : kind < 10 ? reload(r) : mutate(r, script(r));
  return { input, reset: r.int(10) === 0 };
}
