/**
 * Property tests (fast-check): the codec under arbitrary splits, control
 * tables round-trip, and the fuzz rule — any input is accepted or rejected
 * with a documented error, never a crash.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import fc from 'fast-check';

import {
  allowedFlags,
  Codec,
  CoreConnection as Connection,
  ControlError,
  decodeErrorInfo,
  decodeGoAway,
  decodeHello,
  decodeHelloAck,
  encodeErrorInfo,
  encodeGoAway,
  encodeHello,
  encodeHelloAck,
  FrameDecoder,
  FrameError,
  FrameType,
  frameToBytes,
  isMessageType,
  newFrame,
  newHeader,
  ReadBuffer,
  validateHeader,
  type ConnectionEvent,
  type Frame,
  type Hello,
  type HelloAck,
  type MethodDesc,
  type Service,
  type Shape,
} from '../src/index.js';
import { frameErrorJson, rawFrameJson } from './json.js';

const RUNS = { numRuns: 300 };

/** Frames that pass the header rules, of every defined type (as the Rust proptest). */
const frameArb: fc.Arbitrary<Frame> = fc
  .tuple(
    fc.integer({ min: 1, max: 0x0e }),
    fc.integer({ min: 0, max: 255 }),
    fc.nat({ max: 0xffff_ffff }),
    fc.nat({ max: 0xffff_ffff }),
    fc.uint8Array({ maxLength: 300 }),
  )
  .map(([ty, codec, id, arg, payload]) => {
    const h = newHeader(ty, Math.max(id, 1), arg, 0);
    h.flags = allowedFlags(ty) & codec;
    if (isMessageType(ty)) {
      h.codec = codec;
    }
    if (ty === FrameType.HELLO || ty === FrameType.HELLO_ACK || ty === FrameType.PING || ty === FrameType.PONG) {
      h.id = 0;
    }
    switch (ty) {
      case FrameType.ERROR:
        // NO_ERROR (0) is not a valid ERROR code; fast-check often draws it.
        h.arg = Math.max(h.arg & 0xffff, 1);
        break;
      case FrameType.GOAWAY:
        h.arg &= 0xffff;
        break;
      case FrameType.CREDIT:
        h.arg = Math.max(h.arg, 1);
        break;
      case FrameType.REQUEST:
      case FrameType.EVENT:
      case FrameType.STREAM_OPEN:
        break;
      default:
        h.arg = 0;
    }
    let p = payload;
    if (ty === FrameType.PING || ty === FrameType.PONG) {
      p = new Uint8Array(8);
      p.set(payload.subarray(0, 8));
    } else if (ty === FrameType.CREDIT || ty === FrameType.CANCEL) {
      p = new Uint8Array(0);
    } else if (ty === FrameType.CONTINUATION && p.length === 0) {
      p = Uint8Array.of(0);
    }
    return newFrame(h, p);
  });

interface Outcome {
  frames: unknown[];
  error: unknown;
}

/** Decodes `wire` fed in the pieces given by `cuts` (offsets, taken modulo length + 1). */
function decodeChunked(wire: Uint8Array, cuts: readonly number[]): Outcome {
  const dec = new FrameDecoder(1024);
  const buf = new ReadBuffer();
  const frames: unknown[] = [];
  const points = cuts.map((c) => c % (wire.length + 1)).sort((a, b) => a - b);
  points.push(wire.length);
  let start = 0;
  try {
    for (const end of points) {
      const stop = Math.max(end, start);
      buf.append(wire.subarray(start, stop));
      start = stop;
      for (let f = dec.decode(buf); f !== undefined; f = dec.decode(buf)) {
        frames.push(rawFrameJson(f));
      }
    }
    dec.decodeEof(buf);
  } catch (e) {
    if (!(e instanceof FrameError)) {
      throw e;
    }
    return { frames, error: frameErrorJson(e) };
  }
  return { frames, error: null };
}

function concatAll(frames: readonly Frame[]): Uint8Array {
  const parts = frames.map(frameToBytes);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

describe('codec properties', () => {
  it('round-trips frames under any split', () => {
    fc.assert(
      fc.property(fc.array(frameArb, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 30 }), (frames, cuts) => {
        const wire = concatAll(frames);
        for (const f of frames) {
          validateHeader(f.header);
        }
        const expected = { frames: frames.map(rawFrameJson), error: null };
        assert.deepStrictEqual(decodeChunked(wire, []), expected);
        assert.deepStrictEqual(decodeChunked(wire, cuts), expected);
        const byteByByte = Array.from({ length: wire.length }, (_, i) => i);
        assert.deepStrictEqual(decodeChunked(wire, byteByByte), expected);
      }),
      RUNS,
    );
  });

  it('decodes arbitrary bytes the same however they are split', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.array(fc.nat(), { maxLength: 30 }), (wire, cuts) => {
        assert.deepStrictEqual(decodeChunked(wire, cuts), decodeChunked(wire, []));
      }),
      RUNS,
    );
  });
});

const u16 = fc.nat({ max: 0xffff });
const u32 = fc.nat({ max: 0xffff_ffff });
const text = fc.string({ unit: 'binary', maxLength: 40 });
const byteList = fc.array(fc.nat({ max: 255 }), { maxLength: 8 });
const limitsArb = fc.record({
  maxFrame: u32,
  maxMessage: u32,
  maxInFlight: u32,
  initialStreamCredit: u32,
  connectionCredit: u32,
}, { noNullPrototype: true });
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const methodArb: fc.Arbitrary<MethodDesc> = fc.record(
  { name: text, id: u32, kind: fc.nat({ max: 255 }), request: u64, response: u64 },
  { noNullPrototype: true },
);
const shapeArb: fc.Arbitrary<Shape> = fc.record(
  { name: text, type: u64, fixed: fc.boolean(), slots: fc.array(u64, { maxLength: 5 }) },
  { noNullPrototype: true },
);
const serviceArb: fc.Arbitrary<Service> = fc.record(
  {
    name: text,
    fingerprint: u64,
    methods: fc.array(methodArb, { maxLength: 3 }),
    shapes: fc.array(shapeArb, { maxLength: 3 }),
  },
  { noNullPrototype: true },
);
const helloArb: fc.Arbitrary<Hello> = fc
  .record({
    minVersion: u16,
    maxVersion: u16,
    limits: limitsArb,
    compression: byteList,
    codecs: byteList,
    auth: fc.option(fc.uint8Array({ maxLength: 40 }), { nil: undefined }),
    services: fc.array(serviceArb, { maxLength: 4 }),
    agent: fc.option(text, { nil: undefined }),
    uses: fc.array(serviceArb, { maxLength: 3 }),
  }, { noNullPrototype: true })
  .map((h) => (h.minVersion > h.maxVersion ? { ...h, minVersion: h.maxVersion, maxVersion: h.minVersion } : h));
const helloAckArb: fc.Arbitrary<HelloAck> = fc.record({
  version: u16,
  errorCode: u16,
  message: fc.option(text, { nil: undefined }),
  limits: limitsArb,
  compression: byteList,
  codecs: byteList,
  services: fc.array(serviceArb, { maxLength: 4 }),
  agent: fc.option(text, { nil: undefined }),
  uses: fc.array(serviceArb, { maxLength: 3 }),
}, { noNullPrototype: true });

function onlyControlErrors(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof ControlError)) {
      throw e;
    }
  }
}

describe('control table properties', () => {
  it('round-trips every table', () => {
    fc.assert(
      fc.property(helloArb, helloAckArb, fc.option(text, { nil: undefined }), fc.option(fc.uint8Array({ maxLength: 40 }), { nil: undefined }), (hello, ack, message, details) => {
        assert.deepStrictEqual(decodeHello(encodeHello(hello)), hello);
        assert.deepStrictEqual(decodeHelloAck(encodeHelloAck(ack)), ack);
        assert.deepStrictEqual(decodeErrorInfo(encodeErrorInfo({ message, details })), { message, details });
        assert.deepStrictEqual(decodeGoAway(encodeGoAway({ message })), { message });
      }),
      RUNS,
    );
  });

  it('accepts or rejects arbitrary and mutated payloads with a ControlError only', () => {
    fc.assert(
      fc.property(helloArb, fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { maxLength: 6 }), fc.uint8Array({ maxLength: 200 }), (hello, flips, garbage) => {
        const bytes = encodeHello(hello);
        for (const [at, v] of flips) {
          bytes[at % bytes.length] = v;
        }
        for (const input of [bytes, garbage, bytes.subarray(0, garbage.length % (bytes.length + 1))]) {
          onlyControlErrors(() => decodeHello(input));
          onlyControlErrors(() => decodeHelloAck(input));
          onlyControlErrors(() => decodeErrorInfo(input));
          onlyControlErrors(() => decodeGoAway(input));
        }
      }),
      RUNS,
    );
  });
});

function handshake(): { client: Connection; server: Connection } {
  const client = new Connection({ role: 'client' }, 0);
  const server = new Connection({ role: 'server' }, 0);
  for (let f = client.pollTransmit(); f !== undefined; f = client.pollTransmit()) {
    server.handleBytes(0, frameToBytes(f));
  }
  while (server.pollEvent() !== undefined) {
    // HelloReceived
  }
  server.accept();
  for (let f = server.pollTransmit(); f !== undefined; f = server.pollTransmit()) {
    client.handleBytes(0, frameToBytes(f));
  }
  while (server.pollEvent() !== undefined || client.pollEvent() !== undefined) {
    // Connected
  }
  return { client, server };
}

describe('connection fuzz rule', () => {
  it('never throws on hostile input, and reports the end exactly once', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(frameArb.map((f) => frameToBytes(f)), fc.uint8Array({ maxLength: 64 })), { maxLength: 30 }),
        fc.array(fc.nat({ max: 60_000 }), { maxLength: 5 }),
        (inputs, ticks) => {
          const { server } = handshake();
          const events: ConnectionEvent[] = [];
          let now = 0;
          inputs.forEach((input, i) => {
            server.handleBytes(now, input);
            const tick = ticks[i % Math.max(ticks.length, 1)];
            if (tick !== undefined) {
              now += tick;
              server.handleTimeout(now);
            }
            while (server.pollTransmit() !== undefined) {
              // written
            }
            for (let e = server.pollEvent(); e !== undefined; e = server.pollEvent()) {
              events.push(e);
              if (e.type === 'Request') {
                // Answering may throw only typed errors.
                try {
                  server.sendResponse(e.id, { codec: Codec.RAW, body: new Uint8Array(1) });
                } catch (err) {
                  assert.ok(err instanceof Error && 'code' in err, String(err));
                }
              }
            }
          });
          server.handleEof(now);
          while (server.pollTransmit() !== undefined) {
            // written
          }
          for (let e = server.pollEvent(); e !== undefined; e = server.pollEvent()) {
            events.push(e);
          }
          const closed = events.filter((e) => e.type === 'Closed');
          assert.ok(closed.length <= 1);
          if (server.isClosed()) {
            assert.equal(closed.length, 1);
            assert.equal(server.tableLen(), 0);
            assert.deepEqual(server.callsInFlight(), [0, 0]);
          }
        },
      ),
      RUNS,
    );
  });
});
