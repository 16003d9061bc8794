/**
 * A Bloom filter summary of every fingerprint in the index, so that new chunks (the common case
 * on a first backup) skip LevelDB entirely. False positives only cost a LevelDB lookup; there
 * are no false negatives. It grows by adding layers of twice the capacity (a scalable Bloom
 * filter), so it never has to be rebuilt while the store is open.
 *
 * Fingerprints are keyed hashes already, so their 32-bit words serve directly as the two base
 * hashes of double hashing.
 */
const BITS_PER_KEY = 10; // about 1% false positives with 7 probes
const PROBES = 7;

class BloomLayer {
  readonly bits: Uint32Array;
  readonly mask: number;
  count = 0;

  constructor(readonly capacity: number) {
    let words = 1;
    while (words * 32 < capacity * BITS_PER_KEY) words *= 2;
    this.bits = new Uint32Array(words);
    this.mask = words * 32 - 1;
  }

  add(h1: number, h2: number): void {
    for (let i = 0; i < PROBES; i++) {
      const bit = (h1 + Math.imul(i, h2)) & this.mask;
      this.bits[bit >>> 5] |= 1 << (bit & 31);
    }
    this.count++;
  }

  has(h1: number, h2: number): boolean {
    for (let i = 0; i < PROBES; i++) {
      const bit = (h1 + Math.imul(i, h2)) & this.mask;
      if ((this.bits[bit >>> 5] & (1 << (bit & 31))) === 0) return false;
    }
    return true;
  }
}

export class BloomFilter {
  private layers: BloomLayer[];

  constructor(initialCapacity = 1 << 20) {
    this.layers = [new BloomLayer(initialCapacity)];
  }

  get count(): number {
    return this.layers.reduce((n, l) => n + l.count, 0);
  }

  add(fingerprint: Uint8Array): void {
    let top = this.layers[this.layers.length - 1];
    if (top.count >= top.capacity) {
      top = new BloomLayer(top.capacity * 2);
      this.layers.push(top);
    }
    top.add(word(fingerprint, 0), word(fingerprint, 4) | 1);
  }

  mayContain(fingerprint: Uint8Array): boolean {
    const h1 = word(fingerprint, 0);
    const h2 = word(fingerprint, 4) | 1;
    for (const layer of this.layers) if (layer.has(h1, h2)) return true;
    return false;
  }
}

function word(b: Uint8Array, at: number): number {
  return (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;
}
