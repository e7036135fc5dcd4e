/**
 * The driver against itself over an in-memory transport pair, with both
 * framings (byte stream and one frame per message): calls, streams with
 * credit backpressure, callbacks in both directions, deadlines, aborts,
 * graceful close, connection loss, keepalive, handshake refusal.
 */

import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';

import {
  AbortedError,
  acceptConnection,
  Codec,
  ConfigError,
  connect,
  Connection,
  ConnectionClosedError,
  DeadlineError,
  ErrorCode,
  formatEndpoint,
  LocalError,
  memoryPair,
  parseEndpoint,
  RefusedCallError,
  RemoteError,
  Router,
  RpcError,
  Status,
  TransportError,
  type AcceptOptions,
  type ConnectOptions,
  type Framing,
  type Message,
} from '../src/index.js';
import { callbacks, EventInbox, SCRIPT_CHECKS, script, service, u32le, u32Of } from './interop.js';

const dec = new TextDecoder();

interface Pair {
  client: Connection;
  server: Connection;
}

/** Every connection a test made; each test ends by aborting what it left open. */
const opened: Connection[] = [];

function track(c: Connection): Connection {
  opened.push(c);
  return c;
}

afterEach(async () => {
  const all = opened.splice(0);
  for (const c of all) {
    c.abort();
  }
  await Promise.all(all.map((c) => c.closed));
});

async function pair(
  framing: Framing,
  serverOptions: AcceptOptions = {},
  clientOptions: ConnectOptions = {},
): Promise<Pair> {
  const [a, b] = memoryPair(framing);
  const accepted = acceptConnection(b, { router: service(), ...serverOptions }).then(track);
  accepted.catch(() => undefined);
  const client = track(await connect(a, clientOptions));
  return { client, server: await accepted };
}

function resolvers<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => assert.fail('expected a rejection'),
    (e: unknown) => e,
  );
}

for (const framing of ['stream', 'message'] as const) {
  describe(`driver over an in-memory pair (${framing} framing)`, { timeout: 60_000 }, () => {
    it('runs the interop script against the TypeScript service', async () => {
      const inbox = new EventInbox();
      const { client, server } = await pair(framing, {}, { router: callbacks(inbox) });
      assert.deepEqual(await script(client, inbox), SCRIPT_CHECKS);
      await client.close();
      assert.equal(await client.closed, undefined);
      assert.equal(await server.closed, undefined);
      assert.equal(client.isClosed, true);
    });

    it('keeps codecs, takes strings and messages, reports the peer', async () => {
      const { client } = await pair(framing);
      assert.equal(client.peer?.agent, 'gatewire-js/0.1.0');
      assert.equal(client.peer?.compression, false);
      const r = await client.call(1, '{"a":1}', { codec: Codec.JSON });
      assert.equal(r.codec, Codec.JSON);
      assert.equal(dec.decode(r.body), '{"a":1}');
      const m: Message = { codec: Codec.FLATBUFFERS, body: new Uint8Array([1, 2, 3]) };
      const r2 = await client.call(1, m);
      assert.equal(r2.codec, Codec.FLATBUFFERS);
      assert.deepEqual([...r2.body], [1, 2, 3]);
      const s = client.stats();
      assert.ok(s.framesSent > 0 && s.bytesSent > 0 && s.bytesReceived > 0 && s.writes > 0);
      assert.equal(s.callsOut, 0);
      await client.close();
    });

    it('maps handler failures: Status, RpcError passed on, anything else INTERNAL', async () => {
      const router = new Router()
        .unary(10, () => {
          throw new Error('secret detail');
        })
        .unary(11, () => {
          throw new DeadlineError();
        })
        .unary(12, () => {
          throw new Status(ErrorCode.PERMISSION_DENIED, 'no', new Uint8Array([9]));
        })
        .unary(13, () => undefined as unknown as Message)
        .unary(14, () => 42 as unknown as Message)
        .unary(15, async () => {
          await Promise.resolve();
          throw new Status(ErrorCode.UNAVAILABLE, 'later');
        })
        .unary(16, () => Promise.resolve(new Uint8Array([1, 2])));
      const { client } = await pair(framing, { router });
      const e10 = await rejection(client.call(10, ''));
      assert.ok(e10 instanceof RemoteError);
      assert.equal(e10.wireCode, ErrorCode.INTERNAL);
      assert.equal(e10.detail, 'handler failed');
      assert.equal(e10.isRemote, true);
      const e11 = await rejection(client.call(11, ''));
      assert.ok(e11 instanceof RemoteError);
      assert.equal(e11.wireCode, ErrorCode.DEADLINE_EXCEEDED);
      assert.equal(e11.isTimeout, true);
      const e12 = await rejection(client.call(12, ''));
      assert.ok(e12 instanceof RemoteError);
      assert.equal(e12.wireCode, ErrorCode.PERMISSION_DENIED);
      assert.deepEqual([...(e12.details ?? [])], [9]);
      assert.equal((await client.call(13, 'x')).body.length, 0);
      // A reply that is no message is the handler's failure.
      const e14 = await rejection(client.call(14, ''));
      assert.ok(e14 instanceof RemoteError);
      assert.equal(e14.wireCode, ErrorCode.INTERNAL);
      const e15 = await rejection(client.call(15, ''));
      assert.ok(e15 instanceof RemoteError);
      assert.equal(e15.wireCode, ErrorCode.UNAVAILABLE);
      assert.equal(e15.detail, 'later');
      assert.deepEqual([...(await client.call(16, '')).body], [1, 2]);
      const e99 = await rejection(client.call(99, ''));
      assert.ok(e99 instanceof RemoteError);
      assert.equal(e99.code, 'rpc.remote');
      assert.equal(e99.wireCode, ErrorCode.UNKNOWN_METHOD);
      const eStream = await rejection((await client.serverStream(99)).next());
      assert.ok(eStream instanceof RemoteError);
      assert.equal(eStream.wireCode, ErrorCode.UNKNOWN_METHOD);
      await client.close();
    });

    it('a deadline stops the handler at the peer and fails the call here', async () => {
      let aborted: unknown;
      let deadline: number | undefined;
      const router = new Router().unary(
        6,
        (ctx) =>
          new Promise<Message>((_res, rej) => {
            deadline = ctx.deadline;
            ctx.signal.addEventListener('abort', () => {
              aborted = ctx.signal.reason;
              rej(ctx.signal.reason);
            });
          }),
      );
      const { client, server } = await pair(framing, { router });
      const started = performance.now();
      const e = await rejection(client.call(6, u32le(10_000), { timeoutMs: 50 }));
      const took = performance.now() - started;
      assert.ok(e instanceof DeadlineError, String(e));
      assert.equal(e.isTimeout, true);
      assert.equal(e.code, 'rpc.deadline');
      assert.ok(took >= 45 && took < 5_000, `took ${took} ms`);
      assert.ok(deadline !== undefined && deadline >= 40 && deadline <= 50, `deadline ${deadline}`);
      await sleep(20);
      assert.ok(aborted instanceof RemoteError);
      assert.equal(aborted.wireCode, ErrorCode.DEADLINE_EXCEEDED);
      assert.deepEqual(server.stats().callsIn, 0, 'the slot is released once the handler settles');
      await client.close();
    });

    it('an AbortSignal cancels the call at the peer', async () => {
      let handlerAborted = false;
      const entered = resolvers<void>();
      const router = new Router().unary(
        6,
        (ctx) =>
          new Promise<Message>((_res, rej) => {
            entered.resolve();
            ctx.signal.addEventListener('abort', () => {
              handlerAborted = true;
              rej(new Error('stopped'));
            });
          }),
      );
      const { client } = await pair(framing, { router });
      const ctrl = new AbortController();
      const call = client.call(6, '', { signal: ctrl.signal });
      await entered.promise;
      ctrl.abort('user gave up');
      const e = await rejection(call);
      assert.ok(e instanceof AbortedError);
      assert.equal(e.isCancelled, true);
      assert.equal(e.cause, 'user gave up');
      await sleep(20);
      assert.equal(handlerAborted, true);
      // An already aborted signal sends nothing.
      const e2 = await rejection(client.call(1, '', { signal: AbortSignal.abort() }));
      assert.ok(e2 instanceof AbortedError);
      assert.deepEqual(client.stats().callsOut, 0);
      await client.close();
      // Once closed, an aborted signal still says so first.
      const e3 = await rejection(client.call(1, '', { signal: AbortSignal.abort() }));
      assert.ok(e3 instanceof AbortedError);
    });

    it('a slow stream consumer slows its producer (credit), then gets everything in order', async () => {
      let produced = 0;
      const router = new Router().stream(3, async (_ctx, first, _rx, tx) => {
        const n = u32Of(first);
        for (let i = 0; i < n; i++) {
          await tx.send(new Uint8Array(512).fill(i & 0xff));
          produced += 1;
        }
      });
      const { client, server } = await pair(framing, { router }, { limits: { initialStreamCredit: 1024 } });
      const rx = await client.serverStream(3, u32le(200));
      await sleep(100);
      // 1 KiB of credit: two 512-byte messages in flight, one accepted and waiting.
      assert.ok(produced <= 4, `produced ${produced} before any was consumed`);
      assert.ok(server.stats().creditStalls > 0);
      let n = 0;
      for await (const m of rx) {
        assert.equal(m.body.length, 512);
        assert.equal(m.body[0], n & 0xff);
        n += 1;
      }
      assert.equal(n, 200);
      assert.equal(produced, 200);
      await client.close();
    });

    it('a sender waits for credit: a bidirectional stream with a small window', async () => {
      const { client } = await pair(framing, { limits: { initialStreamCredit: 1024 } });
      const { tx, rx } = await client.openStream(2);
      const total = 300;
      const sending = (async () => {
        for (let i = 0; i < total; i++) {
          await tx.send(new Uint8Array(300).fill(i & 0xff));
        }
        await tx.finish();
      })();
      let n = 0;
      for await (const m of rx) {
        assert.equal(m.body[0], n & 0xff);
        n += 1;
      }
      await sending;
      assert.equal(n, total);
      assert.ok(client.stats().creditStalls > 0, 'the sender had to wait for credit');
      assert.equal(tx.finished, true);
      await assert.rejects(tx.send('late'), (e: unknown) => e instanceof LocalError && e.wireCode === ErrorCode.STREAM_CLOSED);
      await client.close();
    });

    it('leaving a stream loop early cancels the stream at the peer', async () => {
      const cancelled = resolvers<unknown>();
      const router = new Router().stream(3, async (ctx, _first, _rx, tx) => {
        ctx.signal.addEventListener('abort', () => cancelled.resolve(ctx.signal.reason));
        for (let i = 0; ; i++) {
          await tx.send(u32le(i));
        }
      });
      const { client, server } = await pair(framing, { router });
      const rx = await client.serverStream(3);
      let n = 0;
      for await (const _m of rx) {
        if (++n === 5) {
          break;
        }
      }
      const reason = await cancelled.promise;
      assert.ok(reason instanceof RemoteError && reason.wireCode === ErrorCode.CANCELLED);
      await sleep(10);
      assert.deepEqual(server.stats().callsIn, 0);
      assert.equal(await rx.next(), undefined, 'a cancelled stream yields nothing more');
      await client.close();
    });

    it('sends wait for a call slot instead of failing (maxInFlight)', async () => {
      const router = new Router().unary(6, async (_ctx, m) => {
        await sleep(u32Of(m));
        return m;
      });
      const { client } = await pair(framing, { router, limits: { maxInFlight: 2 } });
      const calls = Array.from({ length: 8 }, () => client.call(6, u32le(20)));
      const replies = await Promise.all(calls);
      assert.equal(replies.length, 8);
      assert.ok(client.stats().creditStalls > 0, 'calls waited for a slot');
      await client.close();
    });

    it('graceful close lets calls in flight finish, then refuses new ones as retryable', async () => {
      const router = new Router().unary(6, async (_ctx, m) => {
        await sleep(u32Of(m));
        return m;
      });
      const { client, server } = await pair(framing, { router });
      const slow = client.call(6, u32le(100));
      await sleep(10);
      const closing = client.close();
      const late = await rejection(client.call(1, 'late'));
      assert.ok(late instanceof RefusedCallError, String(late));
      assert.equal(late.isRetryable, true);
      assert.equal(u32Of(await slow), 100, 'the call in flight completed');
      await closing;
      assert.equal(await client.closed, undefined);
      assert.equal(await server.closed, undefined);
      const after = await rejection(client.call(1, 'after'));
      assert.ok(after instanceof RefusedCallError);
      assert.equal(after.isRetryable, true);
    });

    it('connection loss fails every pending call, stream and ping at once', async () => {
      const [a, b] = memoryPair(framing);
      const router = new Router()
        .unary(6, () => new Promise<Message>(() => undefined))
        .stream(3, () => new Promise<void>(() => undefined));
      const accepted = acceptConnection(b, { router }).then(track);
      const client = track(await connect(a));
      await accepted;
      const calls = Array.from({ length: 10 }, () => rejection(client.call(6, '')));
      const rx = await client.serverStream(3);
      const streamNext = rejection(rx.next());
      await sleep(10);
      b.abort();
      const errors = await Promise.all([...calls, streamNext]);
      for (const e of errors) {
        assert.ok(e instanceof RpcError, String(e));
        assert.equal(e.isClosed, true, String(e));
      }
      const why = await client.closed;
      assert.ok(why instanceof TransportError, String(why));
      assert.equal(client.isClosed, true);
      const later = await rejection(client.call(1, ''));
      assert.ok(later instanceof RefusedCallError, 'nothing was sent: safe to retry elsewhere');
      await assert.rejects(client.ping(), (e: unknown) => e instanceof RpcError && e.isClosed);
    });

    it('the peer closing with an error closes us with its code', async () => {
      const { client, server } = await pair(framing);
      const pending = rejection(client.call(6, u32le(10_000)));
      await sleep(10);
      server.abort(ErrorCode.EXCESSIVE_LOAD, 'go away');
      const e = await pending;
      assert.ok(e instanceof ConnectionClosedError, String(e));
      assert.equal(e.wireCode, ErrorCode.EXCESSIVE_LOAD);
      assert.equal(e.isClosed, true);
      const why = await client.closed;
      assert.ok(why instanceof ConnectionClosedError);
      assert.equal(why.wireCode, ErrorCode.EXCESSIVE_LOAD);
      assert.equal(why.detail, 'go away');
    });

    it('keepalive: a silent peer is detected by the timers', async () => {
      const [a, b] = memoryPair(framing);
      const accepted = acceptConnection(b, {}).then(track);
      const client = track(await connect(a, { timeouts: { keepaliveInterval: 40, keepaliveTimeout: 40 } }));
      await accepted;
      // From now on the server end swallows everything it is asked to send.
      b.send = () => Promise.resolve();
      const started = performance.now();
      const why = await client.closed;
      const took = performance.now() - started;
      assert.ok(why instanceof ConnectionClosedError, String(why));
      assert.equal(why.wireCode, ErrorCode.TIMEOUT);
      assert.equal(why.isTimeout, true);
      assert.ok(took >= 20 && took < 5_000, `closed after ${took} ms`);
    });

    it('ping measures a round trip', async () => {
      const { client } = await pair(framing);
      const rtts = await Promise.all([client.ping(), client.ping(), client.ping()]);
      for (const rtt of rtts) {
        assert.ok(typeof rtt === 'number' && rtt >= 0);
      }
      await client.close();
    });

    it('events run one at a time per method, in order; unhandled ones are counted', async () => {
      const seen: number[] = [];
      let running = 0;
      let overlapped = false;
      const done = resolvers<void>();
      const router = new Router().event(20, async (_ctx, m) => {
        running += 1;
        overlapped ||= running > 1;
        await sleep(1);
        seen.push(u32Of(m));
        running -= 1;
        if (seen.length === 50) {
          done.resolve();
        }
      });
      const { client, server } = await pair(framing, { router });
      for (let i = 0; i < 50; i++) {
        await client.emit(20, u32le(i));
      }
      await client.emit(21, 'nobody listens');
      await done.promise;
      assert.deepEqual(
        seen,
        Array.from({ length: 50 }, (_, i) => i),
      );
      assert.equal(overlapped, false);
      assert.equal(server.stats().eventsDropped, 1);
      await client.close();
    });

    it('the server authenticates from the HELLO payload, and refuses with a code', async () => {
      const authenticate = ({ auth }: { auth: Uint8Array | undefined }): boolean =>
        auth !== undefined && dec.decode(auth) === 'letmein';
      const { client } = await pair(framing, { authenticate }, { auth: 'letmein' });
      assert.equal(dec.decode((await client.call(1, 'in')).body), 'in');
      await client.close();
      const e = await rejection(pair(framing, { authenticate }, { auth: 'wrong' }));
      assert.ok(e instanceof ConnectionClosedError, String(e));
      assert.equal(e.wireCode, ErrorCode.UNAUTHENTICATED);
      const e2 = await rejection(
        pair(
          framing,
          {
            authenticate: async () => {
              throw new Status(ErrorCode.PERMISSION_DENIED, 'not today');
            },
          },
          {},
        ),
      );
      assert.ok(e2 instanceof ConnectionClosedError);
      assert.equal(e2.wireCode, ErrorCode.PERMISSION_DENIED);
    });

    it('the server calls the client (router on both ends)', async () => {
      const [a, b] = memoryPair(framing);
      const accepted = acceptConnection(b, {}).then(track);
      const client = track(await connect(a, {
        router: new Router().unary(100, (ctx, m) => `page:${dec.decode(m.body)}:${ctx.method}`),
      }));
      const server = await accepted;
      const r = await server.call(100, 'status?');
      assert.equal(dec.decode(r.body), 'page:status?:100');
      const { rx } = await server.openStream(2);
      const e = await rejection(rx.next());
      assert.ok(e instanceof RemoteError && e.wireCode === ErrorCode.UNKNOWN_METHOD);
      await server.close();
      assert.equal(await client.closed, undefined);
    });
  });
}

describe('driver configuration', () => {
  it('refuses to offer zstd', async () => {
    const [a] = memoryPair('stream');
    await assert.rejects(connect(a, { compression: true }), (e: unknown) => e instanceof ConfigError);
    await assert.rejects(connect('ws://127.0.0.1:1/', { compression: true }), (e: unknown) => e instanceof ConfigError);
  });

  it('refuses bad limits and bad arguments', async () => {
    const [a] = memoryPair('stream');
    await assert.rejects(connect(a, { limits: { maxFrame: 10 } }), (e: unknown) => e instanceof ConfigError);
    const { client } = await pair('stream');
    await assert.rejects(client.call(1, '', { timeoutMs: -1 }), (e: unknown) => e instanceof LocalError);
    await assert.rejects(client.call(-1, ''), (e: unknown) => e instanceof LocalError);
    await assert.rejects(client.call(1, 42 as unknown as string), (e: unknown) => e instanceof LocalError);
    await assert.rejects(
      client.call(1, new Uint8Array(2 << 20)),
      (e: unknown) => e instanceof LocalError && e.wireCode === ErrorCode.TOO_LARGE,
    );
    await client.close();
  });

  it('the browser entry point dials only ws:// and wss://', async () => {
    await assert.rejects(connect('tcp://127.0.0.1:1'), (e: unknown) => e instanceof ConfigError);
    await assert.rejects(connect('nonsense'), (e: unknown) => e instanceof RpcError || e instanceof Error);
  });
});

describe('endpoints', () => {
  it('parse and print back as the Rust runtime does', () => {
    for (const s of [
      'tcp://127.0.0.1:4000',
      'tcp://[::1]:0',
      'tcp://my-host.example_1.com:65535',
      'unix:///tmp/gatewire/gw.sock',
      'ws://localhost:8080/',
      'ws://[::]:9/a/b?token=no',
      'tls://h:4443',
      'wss://[2001:db8::1]:443/rpc',
    ]) {
      assert.equal(formatEndpoint(parseEndpoint(s)), s);
    }
    assert.deepEqual(parseEndpoint('WS://h:1'), { scheme: 'ws', host: 'h', port: 1, path: '/' });
    assert.deepEqual(parseEndpoint('unix:///run/gw.sock'), { scheme: 'unix', path: '/run/gw.sock' });
  });

  it('refuse what the Rust runtime refuses', () => {
    for (const s of [
      '127.0.0.1:4000',
      'http://h:1',
      'tcp://h',
      'tcp://:1',
      'tcp://h:99999',
      'tcp://h:+1',
      'tcp://::1:4000',
      'tcp://user@h:1',
      'tcp://h:1/path',
      'ws://h:1/a#frag',
      'ws://h:1/a b',
      'unix://',
      'unix://relative.sock',
      'tcp://[h]:1',
    ]) {
      assert.throws(() => parseEndpoint(s), /invalid endpoint/, s);
    }
  });
});

