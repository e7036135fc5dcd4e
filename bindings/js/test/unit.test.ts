/** Unit tests of the frame, codec, control, limits and error layers. */

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import {
  Codec,
  ControlInvalidError,
  ControlMissingError,
  decodeErrorInfo,
  decodeExact,
  decodeGoAway,
  decodeHeader,
  decodeHello,
  decodeHelloAck,
  defaultLimits,
  defaultTimeouts,
  displayErrorCode,
  EmptyVersionRangeError,
  emptyAdvertisedLimits,
  encodeErrorInfo,
  encodeFrame,
  encodeGoAway,
  encodeHeader,
  encodeHello,
  encodeHelloAck,
  ErrorCode,
  errorCodeLabel,
  errorCodeName,
  Flags,
  FrameDecoder,
  FrameTooLargeError,
  FrameType,
  frameToBytes,
  GatewireError,
  HEADER_LEN,
  headerToBytes,
  InsufficientSizeError,
  InvalidFlagsError,
  InvalidLimitError,
  isApplicationCode,
  newService,
  isExtension,
  MAX_FRAME_CEILING,
  newFrame,
  newHeader,
  ReadBuffer,
  RemoteCloseError,
  RESERVE_STEP,
  TruncatedError,
  truncateReason,
  UnknownTypeError,
  validateHeader,
  validateLimits,
  validateTimeouts,
  type Frame,
  type Hello,
} from '../src/index.js';

const enc = new TextEncoder();

function sample(): Frame {
  const h = newHeader(FrameType.RESPONSE, 3, 0, 0);
  h.codec = Codec.FLATBUFFERS;
  return newFrame(h, enc.encode('hello'));
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

describe('frame header', () => {
  it('round-trips, little-endian', () => {
    const h = {
      length: 0x0001_0304,
      type: FrameType.REQUEST,
      flags: Flags.MORE | Flags.DEADLINE,
      codec: Codec.POSTCARD,
      id: 7,
      arg: 0xdead_beef,
    };
    const bytes = headerToBytes(h);
    assert.deepEqual([...bytes.subarray(0, 4)], [4, 3, 1, 0]);
    assert.deepEqual([...bytes.subarray(12, 16)], [0xef, 0xbe, 0xad, 0xde]);
    assert.deepEqual(decodeHeader(bytes, 0xffff_ffff), h);
  });

  it('needs 16 bytes', () => {
    const bytes = headerToBytes(newHeader(FrameType.PING, 0, 0, 8));
    for (let n = 0; n < HEADER_LEN; n++) {
      assert.equal(decodeHeader(bytes.subarray(0, n), 1024), undefined);
    }
  });

  it('checks the length before anything else', () => {
    const bytes = headerToBytes(newHeader(0x42, 0, 0, 1025));
    bytes[7] = 1;
    assert.throws(() => decodeHeader(bytes, 1024), (e) => e instanceof FrameTooLargeError && e.len === 1025 && e.max === 1024);
  });

  it('applies the ceiling over a configured limit', () => {
    const bytes = headerToBytes(newHeader(FrameType.RESPONSE, 1, 0, MAX_FRAME_CEILING + 1));
    assert.throws(
      () => decodeHeader(bytes, 0xffff_ffff),
      (e) => e instanceof FrameTooLargeError && e.max === MAX_FRAME_CEILING && e.wireCode === ErrorCode.TOO_LARGE,
    );
  });

  it('gives every type byte a defined outcome', () => {
    for (let b = 0; b <= 255; b++) {
      const h = newHeader(b, 0, 0, 0);
      if (isExtension(b)) {
        validateHeader(h);
      } else if (b === 0 || b > 0x0e) {
        assert.throws(() => validateHeader(h), (e) => e instanceof UnknownTypeError && e.type === b);
      }
    }
  });

  it('rejects reserved flag bits on every type', () => {
    for (let b = 1; b <= 0x0e; b++) {
      for (let bit = 4; bit < 8; bit++) {
        const h = newHeader(b, 1, 0, 0);
        h.flags = 1 << bit;
        assert.throws(() => validateHeader(h), (e) => e instanceof InvalidFlagsError && e.flags === 1 << bit);
      }
    }
  });

  it('reports the size a caller-owned buffer needs', () => {
    assert.throws(
      () => encodeHeader(newHeader(FrameType.PING, 0, 0, 8), new Uint8Array(10)),
      (e) => e instanceof InsufficientSizeError && e.required === 16 && e.available === 10,
    );
  });

  it('refuses fields outside their integer range', () => {
    assert.throws(() => headerToBytes(newHeader(FrameType.REQUEST, 2 ** 32, 0, 0)), RangeError);
    assert.throws(() => headerToBytes(newHeader(FrameType.REQUEST, -1, 0, 0)), RangeError);
    assert.throws(() => headerToBytes(newHeader(0x100, 1, 0, 0)), RangeError);
    assert.throws(() => headerToBytes(newHeader(FrameType.REQUEST, 1.5, 0, 0)), RangeError);
  });
});

describe('codec', () => {
  it('reports the exact size required', () => {
    const f = sample();
    assert.throws(() => encodeFrame(f, new Uint8Array(20)), (e) => e instanceof InsufficientSizeError && e.required === 21);
    assert.equal(encodeFrame(f, new Uint8Array(32)), 21);
    assert.equal(encodeFrame(f, new Uint8Array(32), 11), 21);
    assert.throws(() => encodeFrame(f, new Uint8Array(32), 12), InsufficientSizeError);
  });

  it('decodes whole and byte by byte', () => {
    const f = sample();
    const wire = concat(frameToBytes(f), frameToBytes(f));
    const dec = new FrameDecoder(1024);
    const buf = new ReadBuffer();
    buf.append(wire);
    assert.deepEqual(dec.decode(buf), f);
    assert.deepEqual(dec.decode(buf), f);
    assert.equal(dec.decode(buf), undefined);

    const dec2 = new FrameDecoder(1024);
    const buf2 = new ReadBuffer();
    const out: Frame[] = [];
    for (const b of wire) {
      buf2.append(Uint8Array.of(b));
      for (let fr = dec2.decode(buf2); fr !== undefined; fr = dec2.decode(buf2)) {
        out.push(fr);
      }
    }
    assert.deepEqual(out, [f, f]);
    dec2.decodeEof(buf2);
  });

  it('keeps its error forever', () => {
    const wire = concat(headerToBytes(newHeader(0x20, 0, 0, 0)), headerToBytes(sample().header));
    const dec = new FrameDecoder(1024);
    const buf = new ReadBuffer();
    buf.append(wire);
    let first: unknown;
    assert.throws(() => dec.decode(buf), (e) => {
      first = e;
      return e instanceof UnknownTypeError && e.type === 0x20;
    });
    assert.throws(() => dec.decode(buf), (e) => e === first);
    assert.throws(() => dec.decodeEof(buf), (e) => e === first);
  });

  it('does not reserve a declared length', () => {
    const dec = new FrameDecoder(1 << 20);
    const buf = new ReadBuffer();
    buf.append(headerToBytes(newHeader(FrameType.RESPONSE, 1, 0, 1 << 20)));
    assert.equal(dec.decode(buf), undefined);
    assert.ok(buf.capacity <= HEADER_LEN + RESERVE_STEP, `capacity ${buf.capacity}`);
  });

  it('treats end of input mid-frame as truncation', () => {
    const wire = frameToBytes(sample());
    for (let cut = 1; cut < wire.length; cut++) {
      const dec = new FrameDecoder(1024);
      const buf = new ReadBuffer();
      buf.append(wire.subarray(0, cut));
      assert.equal(dec.decode(buf), undefined);
      assert.throws(() => dec.decodeEof(buf), TruncatedError, `cut ${cut}`);
    }
  });

  it('decodes exactly one frame from a message', () => {
    const wire = frameToBytes(sample());
    assert.deepEqual(decodeExact(wire, 1024), sample());
    assert.throws(() => decodeExact(concat(wire, Uint8Array.of(0)), 1024), TruncatedError);
    assert.throws(() => decodeExact(wire.subarray(0, 10), 1024), TruncatedError);
  });

  it('hands out payloads that later input never overwrites', () => {
    const dec = new FrameDecoder(1 << 20);
    const buf = new ReadBuffer();
    const first = newFrame(newHeader(FrameType.RESPONSE, 1, 0, 0), new Uint8Array(100).fill(0xaa));
    buf.append(frameToBytes(first));
    const got = dec.decode(buf);
    assert.ok(got !== undefined);
    // More input, enough to force the buffer to grow and to fill its tail.
    for (let i = 0; i < 200; i++) {
      buf.append(frameToBytes(newFrame(newHeader(FrameType.RESPONSE, 1, 0, 0), new Uint8Array(97).fill(i))));
      assert.ok(dec.decode(buf) !== undefined);
    }
    assert.ok(got.payload.every((b) => b === 0xaa));
    // The payload is a view, not a copy.
    assert.ok(got.payload.byteLength < got.payload.buffer.byteLength);
  });
});

function fullHello(): Hello {
  return {
    minVersion: 1,
    maxVersion: 1,
    limits: {
      maxFrame: 1 << 20,
      maxMessage: 1 << 20,
      maxInFlight: 100,
      initialStreamCredit: 1 << 18,
      connectionCredit: 1 << 22,
    },
    compression: [1],
    codecs: [0, 1, 2],
    auth: enc.encode('token'),
    services: [newService('chart.Chart', 0x0123_4567_89ab_cdefn)],
    agent: 'gatewire-ts/0.1',
    uses: [],
  };
}

describe('control tables', () => {
  it('round-trip a full HELLO', () => {
    const h = fullHello();
    assert.deepEqual(decodeHello(encodeHello(h)), h);
  });

  it('round-trip HELLO_ACK, ErrorInfo and GoAway', () => {
    const ack = {
      version: 1,
      errorCode: 0x8001,
      message: 'nope',
      limits: emptyAdvertisedLimits(),
      compression: [],
      codecs: [3],
      services: [newService('a', 0xffff_ffff_ffff_ffffn), newService('b')],
      agent: undefined,
      uses: [newService('c', 1n)],
    };
    assert.deepEqual(decodeHelloAck(encodeHelloAck(ack)), ack);
    const e = { message: 'boom', details: Uint8Array.of(1, 2) };
    assert.deepEqual(decodeErrorInfo(encodeErrorInfo(e)), e);
    assert.deepEqual(decodeGoAway(encodeGoAway({ message: 'bye' })), { message: 'bye' });
  });

  it('encodes empty optional tables to no bytes', () => {
    assert.equal(encodeErrorInfo({}).length, 0);
    assert.equal(encodeGoAway({}).length, 0);
    assert.deepEqual(decodeErrorInfo(new Uint8Array(0)), { message: undefined, details: undefined });
    assert.deepEqual(decodeGoAway(new Uint8Array(0)), { message: undefined });
  });

  it('rejects empty and garbage payloads', () => {
    assert.throws(() => decodeHello(new Uint8Array(0)), ControlMissingError);
    assert.throws(() => decodeHelloAck(new Uint8Array(0)), ControlMissingError);
    assert.throws(() => decodeHello(new Uint8Array(12).fill(0xff)), ControlInvalidError);
    assert.throws(() => decodeHelloAck(Uint8Array.of(1, 0, 0)), ControlInvalidError);
  });

  it('rejects an empty version range', () => {
    const h = { ...fullHello(), minVersion: 3, maxVersion: 2 };
    assert.throws(() => decodeHello(encodeHello(h)), (e) => e instanceof EmptyVersionRangeError && e.min === 3);
  });

  it('keeps a leading byte-order mark, as Rust does', () => {
    const h = { ...fullHello(), agent: '\ufeffagent' };
    assert.equal(decodeHello(encodeHello(h)).agent, '\ufeffagent');
  });

  it('rejects overlong UTF-8, encoded surrogates and a missing NUL', () => {
    const bytes = encodeHello({ ...fullHello(), agent: 'abc' });
    const at = bytes.findIndex((_, i) => bytes[i] === 0x61 && bytes[i + 1] === 0x62 && bytes[i + 2] === 0x63);
    assert.ok(at > 0);
    const overlong = bytes.slice();
    overlong.set([0xc0, 0x80], at);
    assert.throws(() => decodeHello(overlong), ControlInvalidError);
    const surrogate = bytes.slice();
    surrogate.set([0xed, 0xa0, 0x80], at);
    assert.throws(() => decodeHello(surrogate), ControlInvalidError);
    const noNul = bytes.slice();
    noNul[at + 3] = 0x64;
    assert.throws(() => decodeHello(noNul), ControlInvalidError);
  });

  it('rejects an unaligned root table', () => {
    const bytes = encodeGoAway({ message: 'restart' });
    const view = new DataView(bytes.buffer);
    view.setUint32(0, view.getUint32(0, true) + 1, true);
    assert.throws(() => decodeGoAway(bytes), ControlInvalidError);
  });

  it('bounds the work of a table shared by many offsets (apparent size)', () => {
    // One Service table named by 1,000 vector entries: tiny on the wire, a
    // lot of verification work. The 4x apparent-size bound rejects it.
    const n = 1000;
    const parts: number[] = [];
    const u32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
    const u16 = (v: number): number[] => [v & 0xff, v >>> 8];
    // root offset -> Hello table at 12; Hello vtable at 4: [len 8, size 8, services@4 -> field 6... ]
    // Layout: 0 root | 4 hello vtable (8 bytes: len, size, min, max... we use services at vt 16 so len 18)
    const helloVt = [...u16(18), ...u16(8), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, ...u16(4)];
    parts.push(...u32(0)); // root placeholder
    const vtAt = parts.length;
    parts.push(...helloVt);
    while (parts.length % 4 !== 0) parts.push(0);
    const tableAt = parts.length;
    parts.push(...u32(tableAt - vtAt)); // soffset
    const fieldAt = parts.length;
    parts.push(0, 0, 0, 0); // services offset placeholder
    const vecAt = parts.length;
    parts.push(...u32(n));
    const elemsAt = parts.length;
    for (let i = 0; i < n; i++) parts.push(0, 0, 0, 0);
    const svcVtAt = parts.length;
    parts.push(...u16(6), ...u16(8), ...u16(4));
    while (parts.length % 4 !== 0) parts.push(0);
    const svcAt = parts.length;
    parts.push(...u32(svcAt - svcVtAt));
    const nameFieldAt = parts.length;
    parts.push(0, 0, 0, 0);
    const strAt = parts.length;
    parts.push(...u32(1), 0x78, 0, 0, 0);
    const bytes = Uint8Array.from(parts);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, tableAt, true);
    view.setUint32(fieldAt, vecAt - fieldAt, true);
    for (let i = 0; i < n; i++) {
      const at = elemsAt + 4 * i;
      view.setUint32(at, svcAt - at, true);
    }
    view.setUint32(nameFieldAt, strAt - nameFieldAt, true);
    assert.throws(() => decodeHello(bytes), (e) => e instanceof ControlInvalidError && /apparent size/.test(e.reason));
    // The same sharing with few entries is valid.
    const small = bytes.slice();
    new DataView(small.buffer).setUint32(vecAt, 2, true);
    assert.equal(decodeHello(small).services.length, 2);
  });
});

describe('limits', () => {
  it('defaults are valid', () => {
    validateLimits(defaultLimits());
    validateTimeouts(defaultTimeouts());
  });

  it('names the value out of range', () => {
    assert.throws(() => validateLimits({ ...defaultLimits(), maxFrame: MAX_FRAME_CEILING + 1 }), (e) => e instanceof InvalidLimitError && e.limit === 'maxFrame');
    assert.throws(() => validateLimits({ ...defaultLimits(), initialStreamCredit: 0 }), (e) => e instanceof InvalidLimitError && e.limit === 'initialStreamCredit');
    assert.throws(() => validateLimits({ ...defaultLimits(), maxInFlight: 1.5 }), (e) => e instanceof InvalidLimitError && e.limit === 'maxInFlight');
    assert.throws(() => validateTimeouts({ ...defaultTimeouts(), drain: -1 }), (e) => e instanceof InvalidLimitError && e.limit === 'drain');
    validateTimeouts({ ...defaultTimeouts(), keepaliveInterval: null, idle: null });
    assert.throws(() => validateTimeouts({ ...defaultTimeouts(), handshake: null as unknown as number }), InvalidLimitError);
  });
});

describe('errors and codes', () => {
  it('preserves unknown codes', () => {
    assert.equal(errorCodeName(0x1234), undefined);
    assert.equal(errorCodeLabel(0x1234), '0x1234');
    assert.equal(displayErrorCode(ErrorCode.REFUSED), 'REFUSED (0x0005)');
    assert.ok(isApplicationCode(0x8001));
    assert.ok(!isApplicationCode(ErrorCode.INTERNAL));
    const e = new RemoteCloseError(0x1234, undefined);
    assert.equal(e.wireCode, 0x1234);
    assert.equal(e.code, 'connection.remote');
  });

  it('gives every error a stable code under one root', () => {
    const e = new FrameTooLargeError(2, 1);
    assert.ok(e instanceof GatewireError && e instanceof Error);
    assert.equal(e.code, 'frame.too_large');
    assert.equal(e.name, 'FrameTooLargeError');
    assert.equal(e.message, 'frame length 2 exceeds limit 1');
  });

  it('truncates reasons at a character boundary', () => {
    assert.equal(truncateReason('short'), 'short');
    const long = 'é'.repeat(200); // 400 bytes
    const t = truncateReason(long);
    assert.equal(enc.encode(t).length, 256);
    const odd = 'a' + 'é'.repeat(200);
    assert.equal(enc.encode(truncateReason(odd)).length, 255);
  });
});

describe('the core is runtime-agnostic', () => {
  const here = dirname(fileURLToPath(import.meta.url));
  // build-test/test -> package root
  const src = join(here, '..', '..', 'src');
  const files = (dir: string, prefix = ''): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? files(join(dir, e.name), `${prefix}${e.name}/`) : [`${prefix}${e.name}`],
    );
  const nodeApi = [/from\s+['"]node:/, /from\s+['"]ws['"]/, /require\(/, /\bBuffer\b/, /\bprocess\./];
  const hostApi = [/\bsetTimeout\b/, /\bDate\.now\b/, /\bperformance\b/, /\bWebSocket\b/, /\bAbortController\b/];
  const core = ['wire.ts', 'frame.ts', 'codec.ts', 'control.ts', 'limits.ts', 'errors.ts', 'connection.ts', 'index.ts'];

  it('uses no Node-only API outside src/node/', () => {
    const browserSafe = files(src).filter((f) => !f.startsWith('node/'));
    assert.ok(browserSafe.includes('peer.ts') && browserSafe.includes('transports/websocket.ts'));
    for (const name of browserSafe) {
      const text = readFileSync(join(src, name), 'utf8');
      for (const banned of nodeApi) {
        assert.ok(!banned.test(text), `${name} uses ${banned}`);
      }
    }
  });

  it('the sans-IO core reads no clock and starts no timer', () => {
    for (const name of core) {
      const text = readFileSync(join(src, name), 'utf8').replace(/^\s*(\*|\/\/).*$/gm, '');
      for (const banned of [...nodeApi, ...hostApi]) {
        assert.ok(!banned.test(text), `${name} uses ${banned}`);
      }
    }
  });
});
