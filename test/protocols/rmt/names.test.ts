/** Device names, dialect opcodes, open flags and server addresses. */
import { describe, expect, test } from 'vitest';
import { parseDevice, parseOpenFlags, parseServerAddress, tapeOp } from '../../../src/protocols/rmt/index.js';

describe('device names', () => {
  test.each([
    ['/lib1/st0', { library: 'lib1', drive: 0, dialect: 'linux', rewindOnClose: true, closeFilemarks: 1 }],
    ['/lib1/nst3', { library: 'lib1', drive: 3, dialect: 'linux', rewindOnClose: false, closeFilemarks: 1 }],
    ['/AIX_lib-2/rmt1', { library: 'AIX_lib-2', drive: 1, dialect: 'aix', rewindOnClose: true, closeFilemarks: 2 }],
    ['/AIX/rmt1.1', { library: 'AIX', drive: 1, dialect: 'aix', rewindOnClose: false, closeFilemarks: 1 }],
    ['/AIX/rmt0.4', { library: 'AIX', drive: 0, dialect: 'aix', rewindOnClose: true, closeFilemarks: 2 }],
  ])('%s', (name, expected) => {
    expect(parseDevice(name)).toEqual(expected);
  });

  test.each(['lib1/st0', '/lib1/st', '/lib1/sst0', '/lib1/nst0.1', '/lib1/rmt0.8', '/../etc/st0', '/lib1/st0/', '/dev/nst0/x', '/-x/st0', '/lib1/st12345', ''])(
    'rejects %j',
    (name) => {
      expect(parseDevice(name)).toBeUndefined();
    },
  );
});

describe('opcodes by dialect', () => {
  test('Linux MTIOCTOP numbers', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 22, 23, 30, 31].map((n) => tapeOp('linux', n))).toEqual([
      'reset', 'fsf', 'bsf', 'fsr', 'bsr', 'weof', 'rewind', 'offline', 'nop', 'retension', 'bsfm', 'fsfm', 'eom', 'erase', 'seek', 'tell', 'load', 'unload',
    ]);
    expect(tapeOp('linux', 14)).toBeUndefined();
    expect(tapeOp('linux', -1)).toBeUndefined();
  });

  test('AIX STIOCTOP numbers', () => {
    expect([5, 6, 7, 8, 10, 11, 12, 13, 14].map((n) => tapeOp('aix', n))).toEqual(['offline', 'rewind', 'erase', 'retension', 'weof', 'fsf', 'bsf', 'fsr', 'bsr']);
    expect(tapeOp('aix', 1)).toBeUndefined(); // Linux FSF is no AIX operation
    expect(tapeOp('aix', 0)).toBeUndefined();
  });

  test('no inherited names pass as opcodes', () => {
    expect(tapeOp('linux', Number('constructor'))).toBeUndefined();
  });
});

describe('open flags', () => {
  test.each([
    ['65 O_WRONLY|O_CREAT', { access: 'write', nonblock: false }], // GNU tar -c
    ['0 O_RDONLY', { access: 'read', nonblock: false }],
    ['2 O_RDWR', { access: 'readwrite', nonblock: false }],
    ['2', { access: 'readwrite', nonblock: false }], // BSD: decimal only
    ['1', { access: 'write', nonblock: false }],
    ['0', { access: 'read', nonblock: false }],
    ['2048', { access: 'read', nonblock: true }],
    ['999 O_RDONLY|O_NONBLOCK', { access: 'read', nonblock: true }], // the symbolic form wins
    ['O_RDWR', { access: 'readwrite', nonblock: false }],
  ])('%j', (line, expected) => {
    expect(parseOpenFlags(line)).toEqual(expected);
  });

  test.each(['', 'x', '3', '-1', '1 2', '1 O_RDONLY junk', 'O_RDONLY 1', '1 o_rdonly', '12345678901'])('rejects %j', (line) => {
    expect(parseOpenFlags(line)).toBeUndefined();
  });
});

describe('server address', () => {
  test('forms', () => {
    expect(parseServerAddress('127.0.0.1:7421')).toEqual({ host: '127.0.0.1', port: 7421 });
    expect(parseServerAddress('tapehost')).toEqual({ host: 'tapehost', port: 7421 });
    expect(parseServerAddress(':9000')).toEqual({ host: '127.0.0.1', port: 9000 });
    expect(parseServerAddress('[::1]:9000')).toEqual({ host: '::1', port: 9000 });
  });

  test.each(['h:0', 'h:65536', 'h:x', 'a:b:c'])('rejects %j', (s) => {
    expect(() => parseServerAddress(s)).toThrow(/bad rmt server address/);
  });
});
