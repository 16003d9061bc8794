/**
 * A deliberately naive in-memory tape: an array of objects and an index, every operation a
 * linear walk. The property test checks that the real medium gives the same results.
 */
export type Obj = { fm: true } | { fm: false; data: Buffer };

export interface RefResult {
  ok: boolean;
  transferred: number;
  residue: number;
  filemark: boolean;
  eod: boolean;
  eom: boolean;
  earlyWarning: boolean;
  bom: boolean;
  ili: boolean;
  senseKey?: string;
  data?: Buffer;
}

const r = (p: Partial<RefResult> = {}): RefResult => ({
  ok: true,
  transferred: 0,
  residue: 0,
  filemark: false,
  eod: false,
  eom: false,
  earlyWarning: false,
  bom: false,
  ili: false,
  ...p,
});
const fail = (senseKey: string, p: Partial<RefResult> = {}) => r({ ...p, ok: false, senseKey });

export class ReferenceTape {
  objs: Obj[] = [];
  pos = 0;
  bs = 0;

  constructor(
    readonly capacity: number,
    readonly earlyWarning: number,
  ) {}

  private bytes(): number {
    let n = 0;
    for (const o of this.objs) if (!o.fm) n += o.data.length;
    return n;
  }

  private cut(): void {
    this.objs = this.objs.slice(0, this.pos);
  }

  private ew(p: Partial<RefResult>): RefResult {
    return this.bytes() > this.capacity - this.earlyWarning ? r({ ...p, eom: true, earlyWarning: true, senseKey: 'NO SENSE' }) : r(p);
  }

  write(data: Buffer): RefResult {
    if (data.length === 0) return r();
    if (this.bs > 0 && data.length % this.bs !== 0) return fail('ILLEGAL REQUEST');
    const size = this.bs || data.length;
    const count = data.length / size;
    this.cut();
    let n = 0;
    while (n < count && this.bytes() + size <= this.capacity && (this.bs > 0 || n === 0)) {
      this.objs.push({ fm: false, data: data.subarray(n * size, (n + 1) * size) });
      n++;
    }
    this.pos = this.objs.length;
    if (n < count) return fail('VOLUME OVERFLOW', { eom: true, transferred: n * size, residue: this.bs ? count - n : data.length });
    return this.ew({ transferred: data.length });
  }

  writeFilemarks(n: number): RefResult {
    if (n === 0) return r();
    this.cut();
    for (let i = 0; i < n; i++) this.objs.push({ fm: true });
    this.pos = this.objs.length;
    return this.ew({});
  }

  read(len: number): RefResult {
    if (this.bs > 0 && len % this.bs !== 0) return fail('ILLEGAL REQUEST', { data: Buffer.alloc(0) });
    if (this.bs > 0) return this.readFixed(len / this.bs);
    const o = this.objs[this.pos];
    if (!o) return fail('BLANK CHECK', { eod: true, residue: len, data: Buffer.alloc(0) });
    this.pos++;
    if (o.fm) return r({ filemark: true, residue: len, senseKey: 'NO SENSE', data: Buffer.alloc(0) });
    const size = o.data.length;
    if (len === size) return r({ transferred: size, data: o.data });
    if (len > size) return r({ transferred: size, ili: true, residue: len - size, senseKey: 'NO SENSE', data: o.data });
    return fail('NO SENSE', { transferred: len, ili: true, residue: len - size, data: o.data.subarray(0, len) });
  }

  private readFixed(count: number): RefResult {
    const parts: Buffer[] = [];
    let done = 0;
    const out = (x: RefResult) => ({ ...x, data: Buffer.concat(parts) });
    while (done < count) {
      const o = this.objs[this.pos];
      const part = { residue: count - done, transferred: done * this.bs };
      if (!o) return out(fail('BLANK CHECK', { ...part, eod: true }));
      this.pos++;
      if (o.fm) return out(r({ ...part, filemark: true, senseKey: 'NO SENSE' }));
      if (o.data.length !== this.bs) return out(fail('NO SENSE', { ...part, ili: true }));
      parts.push(o.data);
      done++;
    }
    return out(r({ transferred: count * this.bs }));
  }

  spaceRecords(n: number): RefResult {
    for (let i = 0; i < Math.abs(n); i++) {
      const left = Math.abs(n) - i;
      if (n > 0) {
        const o = this.objs[this.pos];
        if (!o) return fail('BLANK CHECK', { eod: true, residue: left });
        this.pos++;
        if (o.fm) return fail('NO SENSE', { filemark: true, residue: left });
      } else {
        if (this.pos === 0) return fail('NO SENSE', { bom: true, residue: left });
        if (this.objs[this.pos - 1].fm) {
          this.pos--;
          return fail('NO SENSE', { filemark: true, residue: left });
        }
        this.pos--;
      }
    }
    return r();
  }

  spaceFilemarks(n: number): RefResult {
    let crossed = 0;
    while (crossed < Math.abs(n)) {
      const left = Math.abs(n) - crossed;
      if (n > 0) {
        const o = this.objs[this.pos];
        if (!o) return fail('BLANK CHECK', { eod: true, residue: left });
        this.pos++;
        if (o.fm) crossed++;
      } else {
        if (this.pos === 0) return fail('NO SENSE', { bom: true, residue: left });
        this.pos--;
        if (this.objs[this.pos].fm) crossed++;
      }
    }
    return r();
  }

  spaceEod(): RefResult {
    this.pos = this.objs.length;
    return r();
  }

  locate(lba: number): RefResult {
    if (lba > this.objs.length) {
      this.pos = this.objs.length;
      return fail('BLANK CHECK', { eod: true });
    }
    this.pos = lba;
    return r();
  }

  setBlockSize(bs: number): RefResult {
    this.bs = bs;
    return r();
  }

  rewind(): RefResult {
    this.pos = 0;
    return r();
  }

  erase(): RefResult {
    this.cut();
    return r();
  }

  position() {
    let file = 0;
    let start = 0;
    for (let i = 0; i < this.pos; i++) {
      if (this.objs[i].fm) {
        file++;
        start = i + 1;
      }
    }
    return { lba: this.pos, file, block: this.pos - start, bop: this.pos === 0, eod: this.pos >= this.objs.length };
  }
}
