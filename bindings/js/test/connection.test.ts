/**
 * Connection tests on a deterministic in-memory pair with a fake clock: no
 * sockets, no sleeps.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  BlockedError,
  Codec,
  CoreConnection as Connection,
  decodeHello,
  decodeHelloAck,
  encodeHello,
  encodeHelloAck,
  ErrorCode,
  Flags,
  FrameType,
  frameToBytes,
  InvalidLimitError,
  InvalidPeerLimitViolation,
  InvalidStateError,
  LimitExceededError,
  MAX_WINDOW,
  maxFragments,
  message,
  MIN_FRAGMENT,
  newFrame,
  newHeader,
  ProtocolViolationError,
  RefusedError,
  SendUnknownCallError,
  type ConnectionEvent,
  type CoreConnectionOptions as ConnectionOptions,
  type Frame,
} from '../src/index.js';

class Pair {
  now = 0;
  readonly client: Connection;
  readonly server: Connection;
  readonly clientEvents: ConnectionEvent[] = [];
  readonly serverEvents: ConnectionEvent[] = [];
  /** Frames each side wrote, in order. */
  readonly clientSent: Frame[] = [];
  readonly serverSent: Frame[] = [];

  constructor(client: Partial<ConnectionOptions> = {}, server: Partial<ConnectionOptions> = {}, readonly framed = false) {
    this.client = new Connection({ ...client, role: 'client' }, 0);
    this.server = new Connection({ ...server, role: 'server' }, 0);
  }

  /** Moves frames and events until both sides are quiet. */
  drive(): void {
    for (let round = 0; round < 10_000; round++) {
      let moved = false;
      moved = this.#move(this.client, this.server, this.clientSent) || moved;
      moved = this.#move(this.server, this.client, this.serverSent) || moved;
      for (let e = this.client.pollEvent(); e !== undefined; e = this.client.pollEvent()) {
        this.clientEvents.push(e);
        moved = true;
      }
      for (let e = this.server.pollEvent(); e !== undefined; e = this.server.pollEvent()) {
        this.serverEvents.push(e);
        if (e.type === 'HelloReceived') {
          this.server.accept();
        }
        moved = true;
      }
      if (!moved) {
        return;
      }
    }
    throw new Error('pair did not settle');
  }

  #move(from: Connection, to: Connection, log: Frame[]): boolean {
    let moved = false;
    for (let f = from.pollTransmit(); f !== undefined; f = from.pollTransmit()) {
      log.push(f);
      moved = true;
      if (this.framed) {
        to.handleFrame(this.now, frameToBytes(f));
      } else {
        to.handleBytes(this.now, frameToBytes(f));
      }
    }
    return moved;
  }

  advance(ms: number): void {
    this.now += ms;
    this.client.handleTimeout(this.now);
    this.server.handleTimeout(this.now);
    this.drive();
  }

  take(side: 'client' | 'server'): ConnectionEvent[] {
    const list = side === 'client' ? this.clientEvents : this.serverEvents;
    return list.splice(0, list.length);
  }
}

const bytes = (n: number, fill = 7): Uint8Array => new Uint8Array(n).fill(fill);

describe('connection pair', () => {
  for (const framed of [false, true]) {
    it(`completes a handshake and a unary call (${framed ? 'message transport' : 'byte stream'})`, () => {
      const p = new Pair({}, {}, framed);
      p.drive();
      assert.ok(p.client.isConnected() && p.server.isConnected());
      assert.deepEqual(p.take('client').map((e) => e.type), ['Connected']);
      assert.deepEqual(p.take('server').map((e) => e.type), ['HelloReceived', 'Connected']);
      const id = p.client.sendRequest(9, message(Codec.JSON, bytes(10)), 1000);
      p.drive();
      const [req] = p.take('server');
      assert.ok(req !== undefined && req.type === 'Request');
      assert.equal(req.id, id);
      assert.equal(req.deadline, 1000);
      p.server.sendResponse(req.id, message(Codec.JSON, bytes(3, 1)));
      p.drive();
      const [resp] = p.take('client');
      assert.ok(resp !== undefined && resp.type === 'Response');
      assert.deepEqual([...resp.message.body], [1, 1, 1]);
      assert.equal(p.client.tableLen(), 0);
      assert.equal(p.server.tableLen(), 0);
    });
  }

  it('fragments a large message and reassembles it, compressed or not', () => {
    const p = new Pair({ compression: true, limits: { sendFragment: 1024 } }, { compression: true, limits: { maxFrame: 1024 } });
    p.drive();
    p.take('client');
    p.take('server');
    const body = Uint8Array.from({ length: 3000 }, (_, i) => i & 0xff);
    p.client.sendEvent(5, { codec: Codec.RAW, body, uncompressedLen: 9000 });
    p.client.sendRequest(6, message(Codec.RAW, body));
    p.drive();
    const events = p.take('server');
    const ev = events.find((e) => e.type === 'Event');
    const req = events.find((e) => e.type === 'Request');
    assert.ok(ev !== undefined && ev.type === 'Event' && req !== undefined && req.type === 'Request');
    assert.deepEqual(ev.message.body, body);
    assert.equal(ev.message.uncompressedLen, 9000);
    assert.deepEqual(req.message.body, body);
    assert.ok(p.clientSent.every((f) => f.payload.length <= 1024));
    assert.ok(p.clientSent.some((f) => f.header.type === FrameType.CONTINUATION));
  });

  it('blocks a stream past its credit and says when to retry', () => {
    const p = new Pair({}, { limits: { initialStreamCredit: 1024 } });
    p.drive();
    const id = p.client.openStream(1, message(Codec.RAW, new Uint8Array(0)));
    p.client.sendStreamData(id, message(Codec.RAW, bytes(1024)));
    assert.throws(() => p.client.sendStreamData(id, message(Codec.RAW, bytes(10))), BlockedError);
    p.drive();
    const data = p.take('server').filter((e) => e.type === 'StreamData');
    assert.equal(data.length, 1);
    p.server.grantCredit(id, 100);
    p.drive();
    assert.ok(p.take('client').some((e) => e.type === 'Writable' && e.id === id));
    p.client.sendStreamData(id, message(Codec.RAW, bytes(10)), true);
    p.drive();
    const last = p.take('server').find((e) => e.type === 'StreamData');
    assert.ok(last !== undefined && last.type === 'StreamData' && last.end);
  });

  it('preserves unknown error codes end to end', () => {
    const p = new Pair();
    p.drive();
    const id = p.client.sendRequest(1, message(Codec.RAW, bytes(1)));
    p.drive();
    p.server.sendError(id, 0x1234, { message: 'custom' });
    p.drive();
    const failed = p.take('client').find((e) => e.type === 'CallFailed');
    assert.ok(failed !== undefined && failed.type === 'CallFailed');
    assert.equal(failed.code, 0x1234);
    assert.equal(failed.info.message, 'custom');
    assert.equal(failed.side, 'remote');
  });

  it('shuts down gracefully', () => {
    const p = new Pair();
    p.drive();
    const id = p.client.sendRequest(1, message(Codec.RAW, bytes(1)));
    p.drive();
    p.client.close(ErrorCode.NO_ERROR);
    p.drive();
    assert.ok(!p.client.isClosed());
    p.server.sendResponse(id, message(Codec.RAW, bytes(1)));
    p.drive();
    assert.ok(p.client.isClosed() && p.server.isClosed());
    const closed = p.take('client').find((e) => e.type === 'Closed');
    assert.ok(closed !== undefined && closed.type === 'Closed' && closed.error === undefined);
  });

  it('pauses input while control replies are not written (PING flood)', () => {
    const p = new Pair();
    p.drive();
    const ping = frameToBytes(newFrame(newHeader(FrameType.PING, 0, 0, 0), bytes(8)));
    const flood = new Uint8Array(ping.length * 200);
    for (let i = 0; i < 200; i++) {
      flood.set(ping, i * ping.length);
    }
    // PINGs 5 s apart earn no strike; the queue still must not grow past the limit.
    p.server.handleBytes(p.now, flood);
    assert.equal(p.server.wantsRead(), false);
    let pongs = 0;
    for (let f = p.server.pollTransmit(); f !== undefined; f = p.server.pollTransmit()) {
      if (f.header.type === FrameType.PONG) {
        pongs += 1;
      }
    }
    // Strikes end the connection: GOAWAY(EXCESSIVE_LOAD) after 2 quick pings.
    assert.ok(p.server.isClosed());
    assert.ok(pongs <= 64);
  });

  it('refuses misuse with typed errors and keeps state', () => {
    const p = new Pair();
    assert.throws(() => p.client.sendRequest(1, message(Codec.RAW, bytes(1))), InvalidStateError);
    assert.throws(() => p.client.ping(), InvalidStateError);
    p.drive();
    assert.throws(() => p.server.sendResponse(99, message(Codec.RAW, bytes(1))), SendUnknownCallError);
    assert.throws(() => new Connection({ role: 'client', limits: { maxFrame: 10 } }, 0), InvalidLimitError);
    assert.equal(p.client.tableLen(), 0);
  });

  it('times out a call at its deadline on both sides', () => {
    const p = new Pair();
    p.drive();
    p.take('client');
    p.take('server');
    const id = p.client.sendRequest(1, message(Codec.RAW, bytes(1)), 50);
    p.drive();
    assert.equal(p.client.pollTimeout(), 50);
    p.advance(50);
    const failed = p.take('client').find((e) => e.type === 'CallFailed');
    assert.ok(failed !== undefined && failed.type === 'CallFailed' && failed.code === ErrorCode.DEADLINE_EXCEEDED);
    assert.ok(p.take('server').some((e) => e.type === 'Cancelled' && e.id === id));
  });

  it('ends the connection on a fragmented message past max_message', () => {
    const p = new Pair({ limits: { sendFragment: 1024 } }, { limits: { maxMessage: 1024, maxFrame: 1024 } });
    p.drive();
    // The client learned the server's 1 KiB limit: sending more is refused locally.
    assert.throws(() => p.client.sendRequest(1, message(Codec.RAW, bytes(1025))), /exceeds the peer's limit/);
    // A hostile peer that ignores it is stopped by the receiver.
    const first = newHeader(FrameType.REQUEST, 1, 1, 0);
    first.flags = 0x01;
    const wire = [
      frameToBytes(newFrame(first, bytes(600))),
      frameToBytes(newFrame(newHeader(FrameType.CONTINUATION, 1, 0, 0), bytes(600))),
    ];
    for (const w of wire) {
      p.server.handleBytes(p.now, w);
    }
    assert.ok(p.server.isClosed());
    const err = p.server.closeError();
    assert.ok(err instanceof LimitExceededError && err.limit === 'max_message');
  });
});

describe('derived fragment limit, minimum windows, skipped events, GOAWAY clamp, grant remainder', () => {
  it('derives the fragment limit from max_message', () => {
    assert.equal(MIN_FRAGMENT, 256);
    assert.equal(maxFragments(1024), 6);
    assert.equal(maxFragments(1 << 20), 4098);
    const p = new Pair({}, { limits: { maxMessage: 1024 } });
    p.drive();
    const first = newHeader(FrameType.REQUEST, 1, 1, 0);
    first.flags = Flags.MORE;
    p.server.handleBytes(p.now, frameToBytes(newFrame(first, bytes(16))));
    const more = newHeader(FrameType.CONTINUATION, 1, 0, 0);
    more.flags = Flags.MORE;
    // Fragments 2..6 are within the limit (and within max_message).
    for (let i = 2; i <= 6; i++) {
      p.server.handleBytes(p.now, frameToBytes(newFrame(more, bytes(1))));
      assert.ok(!p.server.isClosed(), `closed at fragment ${i}`);
    }
    p.server.handleBytes(p.now, frameToBytes(newFrame(more, bytes(1))));
    assert.ok(p.server.isClosed());
    const err = p.server.closeError();
    assert.ok(err instanceof LimitExceededError && err.limit === 'max_fragments', String(err));
    assert.equal(err.value, 7);
    assert.equal(err.max, 6);
    assert.equal(err.wireCode, ErrorCode.TOO_LARGE);
  });

  it('requires windows of at least 1 KiB, configured and advertised', () => {
    for (const limits of [{ initialStreamCredit: 1023 }, { connectionCredit: 1023 }]) {
      assert.throws(() => new Connection({ role: 'client', limits }, 0), InvalidLimitError);
    }
    new Connection({ role: 'client', limits: { initialStreamCredit: 1024, connectionCredit: 1024 } }, 0);
    for (const [field, name] of [
      ['initialStreamCredit', 'initial_stream_credit'],
      ['connectionCredit', 'connection_credit'],
    ] as const) {
      // A server refuses a HELLO advertising less.
      const client = new Connection({ role: 'client' }, 0);
      const server = new Connection({ role: 'server' }, 0);
      const hello = client.pollTransmit();
      assert.ok(hello !== undefined && hello.header.type === FrameType.HELLO);
      const h = decodeHello(hello.payload);
      const forged = encodeHello({ ...h, limits: { ...h.limits, [field]: 1000 } });
      server.handleBytes(0, frameToBytes(newFrame(hello.header, forged)));
      const refused = server.closeError();
      assert.ok(refused instanceof RefusedError && refused.side === 'local', String(refused));
      assert.equal(refused.wireCode, ErrorCode.INCOMPATIBLE);
      const refusal = server.pollTransmit();
      assert.ok(refusal !== undefined && refusal.header.type === FrameType.HELLO_ACK);
      assert.equal(decodeHelloAck(refusal.payload).errorCode, ErrorCode.INCOMPATIBLE);

      // A client treats a HELLO_ACK advertising less as a protocol violation.
      const c2 = new Connection({ role: 'client' }, 0);
      const s2 = new Connection({ role: 'server' }, 0);
      s2.handleBytes(0, frameToBytes(c2.pollTransmit() as Frame));
      assert.equal(s2.pollEvent()?.type, 'HelloReceived');
      s2.accept();
      const ackFrame = s2.pollTransmit();
      assert.ok(ackFrame !== undefined && ackFrame.header.type === FrameType.HELLO_ACK);
      const ack = decodeHelloAck(ackFrame.payload);
      const forgedAck = encodeHelloAck({ ...ack, limits: { ...ack.limits, [field]: 1023 } });
      c2.handleBytes(0, frameToBytes(newFrame(ackFrame.header, forgedAck)));
      assert.ok(c2.isClosed(), name);
      const err = c2.closeError();
      assert.ok(err instanceof ProtocolViolationError, String(err));
      assert.ok(err.violation instanceof InvalidPeerLimitViolation);
      assert.equal(err.violation.code, 'violation.invalid_peer_limit');
      assert.equal(err.violation.limit, name);
      assert.equal(err.wireCode, ErrorCode.PROTOCOL_VIOLATION);
    }
  });

  it('drops the queued events of a stream whose opening event was skipped', () => {
    const p = new Pair();
    p.drive();
    p.take('client');
    p.take('server');
    const id = p.client.openStream(1, message(Codec.RAW, bytes(1)));
    p.client.sendStreamData(id, message(Codec.RAW, bytes(5)));
    const wire: Frame[] = [];
    for (let f = p.client.pollTransmit(); f !== undefined; f = p.client.pollTransmit()) {
      wire.push(f);
    }
    p.client.cancel(id);
    for (let f = p.client.pollTransmit(); f !== undefined; f = p.client.pollTransmit()) {
      wire.push(f);
    }
    assert.deepEqual(
      wire.map((f) => f.header.type),
      [FrameType.STREAM_OPEN, FrameType.STREAM_DATA, FrameType.CANCEL],
    );
    // All of it arrives before the server's application polls.
    for (const f of wire) {
      p.server.handleBytes(p.now, frameToBytes(f));
    }
    const events: ConnectionEvent[] = [];
    for (let e = p.server.pollEvent(); e !== undefined; e = p.server.pollEvent()) {
      events.push(e);
    }
    assert.deepEqual(events, []);
    // The set is cleared once the queue is empty: a later stream is delivered.
    p.drive();
    const next = p.client.openStream(1, message(Codec.RAW, bytes(1)));
    p.client.sendStreamData(next, message(Codec.RAW, bytes(5)));
    p.drive();
    const types = p.take('server').map((e) => e.type);
    assert.deepEqual(types, ['StreamOpened', 'StreamData']);
  });

  it('never raises the GOAWAY last id', () => {
    const p = new Pair();
    p.drive();
    const id = p.client.sendRequest(1, message(Codec.RAW, bytes(1)));
    p.drive();
    p.server.close(ErrorCode.NO_ERROR);
    p.drive();
    const goaways = p.serverSent.filter((f) => f.header.type === FrameType.GOAWAY).map((f) => f.header.id);
    assert.deepEqual(goaways, [0xffff_ffff, id]);
    // A peer ignoring the GOAWAY opens a higher id: refused, but the id is seen.
    p.server.handleBytes(p.now, frameToBytes(newFrame(newHeader(FrameType.REQUEST, id + 2, 1, 0), bytes(16))));
    assert.ok(!p.server.isClosed());
    p.server.close(ErrorCode.INTERNAL);
    const last = p.server.pollTransmit();
    assert.ok(last !== undefined && last.header.type === FrameType.GOAWAY);
    assert.equal(last.header.id, id);
    assert.equal(last.header.arg, ErrorCode.INTERNAL);
  });

  it('cuts a frame short by credit only for MIN_FRAGMENT bytes, whatever small_frame_threshold says', () => {
    // The sender's threshold no longer matters: only MIN_FRAGMENT does.
    const p = new Pair({ limits: { smallFrameThreshold: 1 } }, { limits: { initialStreamCredit: 1024 } });
    p.drive();
    const id = p.client.openStream(1, message(Codec.RAW, new Uint8Array(0)));
    for (let i = 0; i < 3; i++) {
      p.client.sendStreamData(id, message(Codec.RAW, bytes(400)));
    }
    p.drive();
    const got = p
      .take('server')
      .filter((e) => e.type === 'StreamData')
      .reduce((n, e) => n + (e.type === 'StreamData' ? e.message.body.length : 0), 0);
    // The third message waits: 224 bytes of credit are under MIN_FRAGMENT.
    assert.equal(got, 800);
    assert.equal(p.client.streamSendCredit(id), 224);
    assert.equal(p.clientSent.filter((f) => f.header.type === FrameType.STREAM_DATA).length, 2);
  });

  it('keeps the part of a pending grant the window had no room for', () => {
    const p = new Pair({}, { limits: { initialStreamCredit: 1024 } });
    p.drive();
    const id = p.client.openStream(1, message(Codec.RAW, new Uint8Array(0)));
    p.drive();
    assert.equal(p.client.streamSendCredit(id), 1024);
    // Room for MAX_WINDOW − 1024 only: 1024 stays pending.
    p.server.grantCredit(id, MAX_WINDOW);
    p.drive();
    assert.equal(p.client.streamSendCredit(id), MAX_WINDOW);
    p.client.sendStreamData(id, message(Codec.RAW, bytes(2000)));
    p.drive();
    assert.equal(p.client.streamSendCredit(id), MAX_WINDOW - 2000);
    // 1 more byte is under the grant threshold (512) on its own; with the
    // kept 1024 it goes out.
    p.server.grantCredit(id, 1);
    p.drive();
    assert.equal(p.client.streamSendCredit(id), MAX_WINDOW - 2000 + 1025);
    assert.ok(p.client.isConnected() && p.server.isConnected());
  });
});
