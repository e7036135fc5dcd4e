// The browser side of the browser test: plain ES modules, no bundler. The
// package is imported exactly as built (dist/), over the page's own origin.
import { connect, ErrorCode, Router } from '/dist/index.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

function u32le(n) {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
}

function equal(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const state = { served100: 0, events: [], waiters: [] };

// The page's own handlers: the gateway may call it (method 100) and send it events (8).
function callbacks() {
  return new Router()
    .unary(100, (_ctx, m) => {
      state.served100 += 1;
      const body = new Uint8Array(7 + m.body.length);
      body.set(enc.encode('client:'));
      body.set(m.body, 7);
      return { codec: m.codec, body };
    })
    .event(8, (_ctx, m) => {
      const w = state.waiters.shift();
      if (w) w(m);
      else state.events.push(m);
    });
}

function nextEvent(ms) {
  const m = state.events.shift();
  if (m) return Promise.resolve(m);
  return new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error('event 8 never came')), ms);
    state.waiters.push((x) => {
      clearTimeout(t);
      res(x);
    });
  });
}

// The interop script: the same checks as the Rust peer's `script`.
async function interop(url) {
  const passed = [];
  const pass = (ok, what) => {
    if (!ok) throw new Error(`interop check failed: ${what}`);
    passed.push(what);
  };
  const conn = await connect(url, { router: callbacks() });
  const agent = conn.peer?.agent;
  let r = await conn.call(1, enc.encode('hello'));
  pass(dec.decode(r.body) === 'hello', 'echo');
  const big = new Uint8Array(300_000).fill(0x42);
  r = await conn.call(1, big);
  pass(equal(r.body, big), 'large echo');

  const { tx, rx } = await conn.openStream(2, new Uint8Array(0));
  for (let i = 0; i < 100; i++) await tx.send(u32le(i));
  await tx.finish();
  let n = 0;
  for await (const m of rx) {
    if (!equal(m.body, u32le(n))) throw new Error('stream echo order');
    n += 1;
  }
  pass(n === 100, 'stream echo count');

  n = 0;
  for await (const m of await conn.serverStream(3, u32le(1000))) {
    if (!equal(m.body, u32le(n))) throw new Error('server stream order');
    n += 1;
  }
  pass(n === 1000, 'server stream count');

  r = await conn.call(4, enc.encode('ping'));
  pass(dec.decode(r.body) === 'client:ping', 'callback');

  const e5 = await conn.call(5, new Uint8Array(0)).then(() => undefined, (e) => e);
  pass(e5?.wireCode === 0x8001 && e5?.detail === 'requested error' && e5?.isRemote === true, 'error code and message');

  const e6 = await conn.call(6, u32le(10_000), { timeoutMs: 100 }).then(() => undefined, (e) => e);
  pass(e6?.isTimeout === true, 'deadline');

  const e99 = await conn.call(99, new Uint8Array(0)).then(() => undefined, (e) => e);
  pass(e99?.wireCode === ErrorCode.UNKNOWN_METHOD, 'unknown method');

  await conn.emit(7, enc.encode('event'));
  const back = await nextEvent(10_000);
  pass(dec.decode(back.body) === 'event', 'event round trip');

  const rtt = await conn.ping();
  await conn.close();
  const closed = await conn.closed;
  return {
    passed,
    agent,
    served100: state.served100,
    rtt,
    gracefulClose: closed === undefined,
    closeError: closed === undefined ? undefined : `${closed} (cause: ${closed.cause})`,
    userAgent: navigator.userAgent,
  };
}

// Connects and stays connected, so the test's gateway can call the page.
let held;
async function hold(url) {
  held = await connect(url, { router: callbacks() });
  return { agent: held.peer?.agent };
}

async function release() {
  await held?.close();
  return { served100: state.served100 };
}

window.gatewire = { interop, hold, release };
window.gatewireReady = true;
console.log('gatewire page ready');
