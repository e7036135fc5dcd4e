/**
 * Lent input: arrays appended with a `release` callback are given back once
 * nothing refers to them, and never while a view of them is still held.
 * Every test overwrites an array with garbage the moment it is released,
 * as a transport reusing it would, and checks every payload and message
 * body handed out afterwards.
 */

import assert from 'node:assert/strict';
import * as net from 'node:net';
import { describe, it } from 'node:test';

import fc from 'fast-check';

import {
  bodyLength,
  Codec,
  CoreConnection as Connection,
  FrameDecoder,
  FrameType,
  framesToBytes,
  message,
  moveBody,
  newFrame,
  toMessage,
  type Message,
  newHeader,
  ReadBuffer,
  type ConnectionEvent,
  type Frame,
} from '../src/index.js';
import { discardBody } from '../src/connection.js';
import { adoptBlockReads, READ_BLOCK } from '../src/node/net.js';
import { connect, Router, serve } from '../src/node/index.js';
import { socketDir } from './interop.js';

const GARBAGE = 0xee;

/** Blocks of a simulated transport: reused once released, and scribbled over at release. */
class Pool {
  readonly #free: Uint8Array[] = [];
  lent = 0;
  released = 0;

  /** `chunk` copied into a block; the view and its `release`. */
  lend(chunk: Uint8Array): [Uint8Array, () => void] {
    const block = this.#free.pop() ?? new Uint8Array(Math.max(chunk.length, 64 * 1024));
    const big = block.length >= chunk.length ? block : new Uint8Array(chunk.length);
    big.set(chunk);
    this.lent += 1;
    let out = true;
    const release = (): void => {
      assert.ok(out, 'released twice');
      out = false;
      this.released += 1;
      big.fill(GARBAGE);
      this.#free.push(big);
    };
    return [big.subarray(0, chunk.length), release];
  }
}

/** `bytes` cut at the given points (sorted, deduplicated, inside the range). */
function cut(bytes: Uint8Array, points: number[]): Uint8Array[] {
  const at = [...new Set(points.map((p) => p % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let from = 0;
  for (const p of [...at, bytes.length]) {
    if (p > from) {
      out.push(bytes.subarray(from, p));
      from = p;
    }
  }
  return out;
}

function pattern(n: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed * 7) & 0xff);
}

function dataFrame(id: number, payload: Uint8Array): Frame {
  return newFrame(newHeader(FrameType.STREAM_DATA, id, 0, 0), payload);
}

describe('ReadBuffer and FrameDecoder with lent input', () => {
  it('never hands out a view of an array that is given back', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ len: fc.oneof(fc.nat(300), fc.integer({ min: 4000, max: 70_000 })), keep: fc.boolean() }), {
          minLength: 1,
          maxLength: 12,
        }),
        fc.array(fc.nat(), { maxLength: 40 }),
        (specs, points) => {
          const payloads = specs.map((s, i) => pattern(s.len, i));
          const wire = framesToBytes(payloads.map((p, i) => dataFrame(2 * i + 1, p)));
          const pool = new Pool();
          const buf = new ReadBuffer();
          const dec = new FrameDecoder(1 << 20);
          // What the reader holds: a copy (the frame was released), or the
          // views themselves (kept by the application, never released).
          const got: (readonly Uint8Array[])[] = [];
          for (const chunk of cut(wire, points)) {
            const [data, release] = pool.lend(chunk);
            buf.append(data, release);
            for (let f = dec.decode(buf); f !== undefined; f = dec.decode(buf)) {
              const spec = specs[got.length];
              assert.ok(spec !== undefined);
              if (spec.keep) {
                got.push(f.parts ?? [f.payload]);
              } else {
                got.push([f.payload.slice()]);
                f.release?.();
              }
            }
          }
          // Read only now, after every later array was lent, released and scribbled over.
          assert.equal(got.length, payloads.length);
          got.forEach((parts, i) => assert.deepEqual(parts.reduce(concat, new Uint8Array(0)), payloads[i]));
          assert.ok(buf.isEmpty());
        },
      ),
      { numRuns: 300 },
    );
  });

  it('gives every array back once all frames are copied and released', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.nat(200), fc.integer({ min: 4096, max: 40_000 })), { minLength: 1, maxLength: 10 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        (lens, points) => {
          const payloads = lens.map((n, i) => pattern(n, i));
          const wire = framesToBytes(payloads.map((p, i) => dataFrame(2 * i + 1, p)));
          const pool = new Pool();
          const buf = new ReadBuffer();
          const dec = new FrameDecoder(1 << 20);
          let i = 0;
          for (const chunk of cut(wire, points)) {
            const [data, release] = pool.lend(chunk);
            buf.append(data, release);
            for (let f = dec.decode(buf); f !== undefined; f = dec.decode(buf)) {
              assert.deepEqual(f.payload.slice(), payloads[i]);
              i += 1;
              f.release?.();
            }
          }
          assert.equal(i, payloads.length);
          assert.equal(pool.released, pool.lent);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('copies short takes and views out of lent arrays, and keeps them', () => {
    const pool = new Pool();
    const buf = new ReadBuffer();
    const [data, release] = pool.lend(pattern(10_000, 3));
    buf.append(data, release);
    const head = buf.take(100);
    const mid = buf.view();
    const rest = buf.takeParts(4000);
    buf.clear();
    // `takeParts` pinned the array: it is never given back...
    assert.equal(pool.released, 0);
    // ...and the copies never pointed into it.
    assert.notEqual(head.buffer, data.buffer);
    assert.notEqual(mid.buffer, data.buffer);
    assert.deepEqual(head, pattern(10_000, 3).subarray(0, 100));
    assert.deepEqual(rest[0], pattern(10_000, 3).subarray(100, 4100));
  });

  it('gives a short lent array back at once (copied) and a cleared one on clear', () => {
    const pool = new Pool();
    const buf = new ReadBuffer();
    const [small, releaseSmall] = pool.lend(pattern(100, 1));
    buf.append(small, releaseSmall);
    assert.equal(pool.released, 1);
    const [big, releaseBig] = pool.lend(pattern(20_000, 2));
    buf.append(big, releaseBig);
    assert.equal(pool.released, 1);
    assert.deepEqual(buf.take(100), pattern(100, 1));
    buf.clear();
    assert.equal(pool.released, 2);
  });
});

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

describe('Connection with lent input', () => {
  /**
   * A client sends messages (some fragmented) to a server whose input is
   * lent in arbitrary pieces from a pool that scribbles over what is given
   * back; the server's bodies must read as sent once everything arrived,
   * whether the application read each body at once, only at the end, or
   * moved it into a buffer of its own (at once or at the end).
   */
  it('reassembles messages out of reused arrays without corrupting any body', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.nat(500), fc.integer({ min: 5000, max: 150_000 })), { minLength: 1, maxLength: 6 }),
        fc.integer({ min: 1024, max: 64 * 1024 }),
        fc.array(fc.integer({ min: 1, max: 100_000 }), { minLength: 1, maxLength: 8 }),
        fc.array(fc.constantFrom('read', 'hold', 'move', 'move later'), { minLength: 1, maxLength: 6 }),
        (lens, fragment, reads, takes) => {
          const take = (i: number): string => takes[i % takes.length] as string;
          const total = lens.reduce((a, b) => a + b, 0);
          const target = new Uint8Array(total + 7);
          const offsets = lens.map((_, i) => 7 + lens.slice(0, i).reduce((a, b) => a + b, 0));
          const moved: Uint8Array[] = [];
          const takeBody = (e: ConnectionEvent, i: number): void => {
            assert.ok(e.type === 'Event');
            if (take(i).startsWith('move')) {
              const at = offsets[i] as number;
              const view = moveBody(e.message, target, at);
              assert.equal(view.length, lens[i]);
              assert.equal(view.buffer, target.buffer);
              assert.equal(view.byteOffset, at);
              moved[i] = view;
            } else {
              assert.equal(bodyLength(e.message), lens[i]);
              void e.message.body;
            }
          };
          const client = new Connection({ role: 'client', limits: { sendFragment: fragment } }, 0);
          const server = new Connection({ role: 'server' }, 0);
          const pool = new Pool();
          const serverEvents: ConnectionEvent[] = [];
          let r = 0;
          const drive = (): void => {
            for (let round = 0; round < 10_000; round++) {
              let moved = false;
              const out: Frame[] = [];
              for (let f = client.pollTransmit(); f !== undefined; f = client.pollTransmit()) {
                out.push(f);
              }
              if (out.length > 0) {
                moved = true;
                let wire = framesToBytes(out);
                while (wire.length > 0) {
                  const n = Math.min(wire.length, reads[r++ % reads.length] as number);
                  const [data, release] = pool.lend(wire.subarray(0, n));
                  server.handleBytes(0, data, release);
                  wire = wire.subarray(n);
                }
              }
              for (let f = server.pollTransmit(); f !== undefined; f = server.pollTransmit()) {
                client.handleBytes(0, framesToBytes([f]));
                moved = true;
              }
              for (let e = client.pollEvent(); e !== undefined; e = client.pollEvent()) {
                moved = true;
              }
              for (let e = server.pollEvent(); e !== undefined; e = server.pollEvent()) {
                if (e.type === 'HelloReceived') {
                  server.accept();
                } else if (e.type === 'Event') {
                  const i = serverEvents.push(e) - 1;
                  if (take(i) === 'read' || take(i) === 'move') {
                    takeBody(e, i);
                  }
                }
                moved = true;
              }
              if (!moved) {
                return;
              }
            }
            throw new Error('did not settle');
          };
          drive();
          const bodies = lens.map((n, i) => pattern(n, i));
          for (const [i, body] of bodies.entries()) {
            client.sendEvent(10 + i, message(Codec.RAW, body));
            drive();
          }
          assert.equal(serverEvents.length, bodies.length);
          serverEvents.forEach((e, i) => {
            if (take(i) === 'hold' || take(i) === 'move later') {
              takeBody(e, i);
            }
          });
          serverEvents.forEach((e, i) => {
            assert.ok(e.type === 'Event');
            assert.equal(e.method, 10 + i);
            assert.deepEqual(e.message.body, bodies[i]);
            if (take(i).startsWith('move')) {
              // The body now lies in the application's buffer.
              assert.equal(e.message.body, moved[i]);
              assert.deepEqual(moved[i], bodies[i]);
            }
          });
          if (lens.some((n) => n > fragment)) {
            // Reassembled messages gave their arrays back.
            assert.ok(pool.released > 0);
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('A reassembled body in lent input', () => {
  /** A server that received one 200,000-byte event in 16 KiB fragments, its input lent in 64 KiB reads. */
  function received(): { body: Uint8Array; event: ConnectionEvent; pool: Pool } {
    const client = new Connection({ role: 'client', limits: { sendFragment: 16 * 1024 } }, 0);
    const server = new Connection({ role: 'server' }, 0);
    const pool = new Pool();
    const body = pattern(200_000, 3);
    let event: ConnectionEvent | undefined;
    let connected = false;
    let sent = false;
    for (let round = 0; round < 100 && event === undefined; round++) {
      if (connected && !sent) {
        client.sendEvent(7, message(Codec.RAW, body));
        sent = true;
      }
      const out: Frame[] = [];
      for (let f = client.pollTransmit(); f !== undefined; f = client.pollTransmit()) {
        out.push(f);
      }
      const wire = framesToBytes(out);
      for (let at = 0; at < wire.length; at += 64 * 1024) {
        const [data, release] = pool.lend(wire.subarray(at, at + 64 * 1024));
        server.handleBytes(0, data, release);
      }
      for (let f = server.pollTransmit(); f !== undefined; f = server.pollTransmit()) {
        client.handleBytes(0, framesToBytes([f]));
      }
      for (let e = client.pollEvent(); e !== undefined; e = client.pollEvent()) {
        connected ||= e.type === 'Connected';
      }
      for (let e = server.pollEvent(); e !== undefined; e = server.pollEvent()) {
        if (e.type === 'HelloReceived') {
          server.accept();
        } else if (e.type === 'Event') {
          event = e;
        }
      }
    }
    assert.ok(event !== undefined);
    return { body, event, pool };
  }

  it("keeps its input until moved into the application's buffer, then gives all of it back", () => {
    const { body, event, pool } = received();
    assert.ok(event.type === 'Event');
    // The message still refers to the reads its fragments lie in.
    assert.ok(pool.released < pool.lent);
    assert.equal(bodyLength(event.message), body.length);
    const target = new Uint8Array(body.length + 10).fill(1);
    const view = moveBody(event.message, target, 10);
    assert.equal(pool.released, pool.lent);
    assert.deepEqual(target.subarray(0, 10), new Uint8Array(10).fill(1));
    assert.deepEqual(view, body);
    assert.equal(event.message.body, view);
  });

  it('keeps its input until read, then gives all of it back', () => {
    const { body, event, pool } = received();
    assert.ok(event.type === 'Event');
    assert.ok(pool.released < pool.lent);
    assert.deepEqual(event.message.body, body);
    assert.equal(pool.released, pool.lent);
    // Read once: the same array every time.
    assert.equal(event.message.body, event.message.body);
  });

  it('is left where it is when it does not fit', () => {
    const { body, event, pool } = received();
    assert.ok(event.type === 'Event');
    const target = new Uint8Array(body.length);
    assert.throws(() => moveBody(event.message, target, 1), RangeError);
    assert.throws(() => moveBody(event.message, new Uint8Array(body.length + 1), -1), RangeError);
    assert.throws(() => moveBody(event.message, new Uint8Array(body.length + 1), 0.5), RangeError);
    assert.ok(pool.released < pool.lent);
    assert.deepEqual(target, new Uint8Array(body.length));
    assert.deepEqual(moveBody(event.message, target), body);
  });

  it('moves a body again, after it was read, and after it was replaced', () => {
    const { body, event } = received();
    assert.ok(event.type === 'Event');
    const m = event.message;
    const read = m.body;
    assert.deepEqual(read, body);
    const a = new Uint8Array(body.length + 3);
    assert.deepEqual(moveBody(m, a, 3), body);
    // Moved again within the same buffer (overlapping), then elsewhere.
    assert.deepEqual(moveBody(m, a, 0), body);
    const b = new Uint8Array(body.length);
    assert.equal(moveBody(m, b), m.body);
    assert.deepEqual(b, body);
    m.body = pattern(5, 9);
    assert.equal(bodyLength(m), 5);
    const c = new Uint8Array(8).fill(1);
    const view = moveBody(m, c, 1);
    assert.deepEqual(view, pattern(5, 9));
    assert.deepEqual(c, Uint8Array.from([1, ...pattern(5, 9), 1, 1]));
  });

  it('is read by spreading, cloning and re-sending with another codec', () => {
    for (const copy of [
      (m: Message): Message => ({ ...m }),
      (m: Message): Message => structuredClone(m),
      (m: Message): Message => toMessage(m, Codec.FLATBUFFERS),
    ]) {
      const { body, event } = received();
      assert.ok(event.type === 'Event');
      const c = copy(event.message);
      assert.deepEqual(c.body, body);
      assert.ok(Object.keys(event.message).includes('body'));
      assert.ok(!Object.keys(event.message).includes('length'));
    }
  });

  it('refuses a target that is not a Uint8Array', () => {
    const { event } = received();
    assert.ok(event.type === 'Event');
    const wrong = new Float64Array(1 << 20) as unknown as Uint8Array;
    assert.throws(() => moveBody(event.message, wrong), TypeError);
  });

  it('gives its input back, unread, when discarded (as the driver does with messages it drops)', () => {
    const { event, pool } = received();
    assert.ok(event.type === 'Event');
    assert.ok(pool.released < pool.lent);
    discardBody(event.message);
    assert.equal(pool.released, pool.lent);
  });

  it('moves a body that arrived whole by copying it', () => {
    const m = message(Codec.RAW, pattern(100, 1));
    const target = new Uint8Array(120);
    const view = moveBody(m, target, 20);
    assert.equal(m.body, view);
    assert.deepEqual(view, pattern(100, 1));
    assert.throws(() => moveBody(m, target, 21), RangeError);
  });
});

describe('Node sockets reading into pooled blocks', () => {
  it('sets an accepted socket to read into blocks (this Node has the onread fields)', async () => {
    const accepted = new Promise<boolean>((resolve) => {
      const server = net.createServer({ pauseOnConnect: true }, (s) => {
        resolve(adoptBlockReads(s) !== undefined);
        s.destroy();
        server.close();
      });
      server.listen(0, '127.0.0.1', () => {
        const c = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
        c.on('error', () => undefined);
        c.on('close', () => undefined);
      });
    });
    assert.equal(await accepted, true);
  });

  it('delivers large streamed messages and small calls intact over tcp and unix', { timeout: 60_000 }, async () => {
    const sockets = socketDir();
    // Bodies read at once, moved into one buffer at once, and held unread
    // until all arrived (their pooled blocks stay lent meanwhile).
    const kept: (() => Uint8Array)[] = [];
    const router = new Router()
      .unary(1, (_ctx, req) => req)
      .stream(2, async (_ctx, _first, rx, tx) => {
        const into = new Uint8Array(12 << 20);
        let at = 0;
        for await (const m of rx) {
          // Not by `i % 3`, which picks the small bodies: every way meets large ones.
          const i = kept.length;
          switch ((i + Math.floor(i / 3)) % 3) {
            case 0: {
              const body = m.body;
              kept.push(() => body);
              break;
            }
            case 1: {
              const view = moveBody(m, into, at);
              at += view.length;
              kept.push(() => view);
              break;
            }
            default:
              kept.push(() => m.body);
          }
        }
        await tx.send(new Uint8Array([1]));
      });
    const server = await serve(['tcp://127.0.0.1:0', `unix://${sockets.dir}/lent.sock`], router);
    try {
      for (const endpoint of server.endpoints) {
        kept.length = 0;
        const conn = await connect(endpoint);
        const sent: Uint8Array[] = [];
        const { tx, rx } = await conn.openStream(2, new Uint8Array(0));
        const small: Promise<void>[] = [];
        for (let i = 0; i < 12; i++) {
          const body = pattern(i % 3 === 0 ? 300 + i : (1 << 20) - 17 * i, i);
          sent.push(body);
          await tx.send(body);
          const probe = pattern(40 + i, 100 + i);
          small.push(conn.call(1, probe).then((m) => assert.deepEqual(m.body, probe)));
        }
        await tx.finish();
        for await (const _ of rx) {
          // The acknowledgement.
        }
        await Promise.all(small);
        // Every body is checked after all were received: one overwritten by a later read would differ.
        assert.equal(kept.length, sent.length);
        kept.forEach((b, i) => assert.deepEqual(b(), sent[i]));
        await conn.close();
      }
    } finally {
      await server.close();
      sockets.cleanup();
    }
    assert.equal(READ_BLOCK, 64 * 1024);
  });
});
