/**
 * Services (`docs/PROTOCOL.md` §10): hashes against a `bigint` reference,
 * descriptor round trips, the compatibility check's properties, the core's
 * refusal before the application is asked, the driver's `offers`/`uses`
 * options and built-in LIST_SERVICES, and the same against the Rust
 * reference peer.
 */

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';

import fc from 'fast-check';

import {
  acceptConnection,
  checkServices,
  Codec,
  connect as connectTransport,
  Connection,
  ConnectionClosedError,
  CoreConnection,
  decodeHello,
  decodeServiceList,
  encodeHello,
  encodeServiceList,
  ErrorCode,
  fnv1a32,
  fnv1a64,
  frameToBytes,
  IncompatibleError,
  LIST_SERVICES,
  memoryPair,
  MethodKind,
  methodId,
  newService,
  RefusedError,
  RemoteError,
  RESERVED_METHODS,
  Router,
  typeHash,
  type AcceptOptions,
  type ConnectionEvent,
  type ConnectOptions,
  type CoreConnectionOptions,
  type Hello,
  type MethodDesc,
  type Service,
  type Shape,
} from '../src/index.js';
import { check as servicesCheck } from '../src/services.js';
import { connect, serve, type Server } from '../src/node/index.js';
import { interopPeer, runPeerClient, servePeer, service, type PeerServer } from './interop.js';

const enc = new TextEncoder();

/** `chart.Chart` as `crates/gatewire-vectors` builds it. */
function chart(extra: [string, number][] = [], extraSlots: string[] = []): Service {
  const method = (name: string, kind: number, request: string, response: string): MethodDesc => ({
    name,
    id: methodId('chart.Chart', name),
    kind,
    request: typeHash(request),
    response: typeHash(response),
  });
  const methods = [
    method('SetTitle', MethodKind.UNARY, 'chart.Title', 'chart.Empty'),
    method('Points', MethodKind.SERVER_STREAMING, 'chart.Empty', 'chart.Point'),
    ...extra.map(([n, k]) => method(n, k, 'chart.Title', 'chart.Empty')),
  ];
  const point = [fnv1a64('float64'), fnv1a64('float64'), ...extraSlots.map((t) => fnv1a64(t))];
  const shape = (name: string, slots: bigint[]): Shape => ({ name, type: typeHash(name), fixed: false, slots });
  return {
    name: 'chart.Chart',
    fingerprint: BigInt(1 + 100 * methods.length + point.length),
    methods,
    shapes: [shape('chart.Title', [fnv1a64('string')]), shape('chart.Point', point), shape('chart.Empty', [])],
  };
}

function changedChart(): Service {
  const base = chart();
  const [first, ...rest] = base.methods;
  assert.ok(first !== undefined);
  return { ...base, fingerprint: base.fingerprint ^ 1n, methods: [{ ...first, kind: MethodKind.CLIENT_STREAMING }, ...rest] };
}

const MISMATCH =
  'chart.Chart.SetTitle (method 3c553084): the client calls it as client streaming, the server serves it as unary';
const UI = newService('ui.Page', 7n);
const SET_TITLE = methodId('chart.Chart', 'SetTitle');

function fnv64Reference(bytes: Uint8Array): bigint {
  let h = 0xcbf29ce484222325n;
  for (const b of bytes) {
    h = ((h ^ BigInt(b)) * 0x100000001b3n) & 0xffff_ffff_ffff_ffffn;
  }
  return h;
}

function fnv32Reference(bytes: Uint8Array): number {
  let h = 0x811c9dc5n;
  for (const b of bytes) {
    h = ((h ^ BigInt(b)) * 0x01000193n) & 0xffff_ffffn;
  }
  return Number(h);
}

function outcome(f: () => void): string | undefined {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof IncompatibleError, String(e));
    assert.equal(e.wireCode, ErrorCode.INCOMPATIBLE);
    return e.message;
  }
  return undefined;
}

describe('service hashes', () => {
  it('match the FNV-1a reference values', () => {
    assert.equal(fnv1a32(''), 0x811c9dc5);
    assert.equal(fnv1a32('a'), 0xe40c292c);
    assert.equal(fnv1a64(''), 0xcbf29ce484222325n);
    assert.equal(fnv1a64('a'), 0xaf63dc4c8601ec8cn);
    assert.equal(methodId('chart.Chart', 'SetTitle'), 0x3c553084);
    assert.equal(LIST_SERVICES, RESERVED_METHODS);
    assert.equal(LIST_SERVICES, 0xffffff00);
  });

  it('split 32-bit FNV-1a 64 equals the bigint definition', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        assert.equal(fnv1a64(bytes), fnv64Reference(bytes));
        assert.equal(fnv1a32(bytes), fnv32Reference(bytes));
      }),
      { numRuns: 2000 },
    );
  });

  it('method ids hash the UTF-8 of service/method', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), fc.string({ unit: 'grapheme' }), (s, m) => {
        assert.equal(methodId(s, m), fnv32Reference(enc.encode(`${s}/${m}`)));
      }),
    );
  });
});

const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
// Names that cannot spell "client" or "server", so that the party names in a
// message are the only ones.
const word = fc.string({ unit: fc.constantFrom('a', 'b', 'x', 'y', '.', '_', 'é'), maxLength: 6 });
const methodArb: fc.Arbitrary<MethodDesc> = fc.record(
  { name: word, id: fc.nat({ max: 3 }), kind: fc.nat({ max: 5 }), request: fc.bigInt(0n, 2n), response: fc.bigInt(0n, 2n) },
  { noNullPrototype: true },
);
const shapeArb: fc.Arbitrary<Shape> = fc.record(
  { name: word, type: fc.bigInt(0n, 3n), fixed: fc.boolean(), slots: fc.array(fc.bigInt(0n, 2n), { maxLength: 3 }) },
  { noNullPrototype: true },
);
const smallServices: fc.Arbitrary<Service[]> = fc.array(
  fc.record(
    {
      name: word,
      fingerprint: fc.bigInt(0n, 3n),
      methods: fc.array(methodArb, { maxLength: 3 }),
      shapes: fc.array(shapeArb, { maxLength: 3 }),
    },
    { noNullPrototype: true },
  ),
  { maxLength: 3 },
);

describe('service descriptors', () => {
  it('round-trip in ServiceList, HELLO and HELLO_ACK', () => {
    const any: fc.Arbitrary<Service[]> = fc.array(
      fc.record(
        {
          name: fc.string({ unit: 'binary', maxLength: 12 }),
          fingerprint: u64,
          methods: fc.array(
            fc.record(
              { name: fc.string({ maxLength: 8 }), id: fc.nat({ max: 0xffff_ffff }), kind: fc.nat({ max: 255 }), request: u64, response: u64 },
              { noNullPrototype: true },
            ),
            { maxLength: 3 },
          ),
          shapes: fc.array(
            fc.record(
              { name: fc.string({ maxLength: 8 }), type: u64, fixed: fc.boolean(), slots: fc.array(u64, { maxLength: 4 }) },
              { noNullPrototype: true },
            ),
            { maxLength: 3 },
          ),
        },
        { noNullPrototype: true },
      ),
      { maxLength: 3 },
    );
    fc.assert(
      fc.property(any, any, (offers, uses) => {
        assert.deepStrictEqual(decodeServiceList(encodeServiceList({ offers, uses })), { offers, uses });
        const hello: Hello = {
          minVersion: 1,
          maxVersion: 1,
          limits: { maxFrame: 0, maxMessage: 0, maxInFlight: 0, initialStreamCredit: 0, connectionCredit: 0 },
          compression: [],
          codecs: [],
          auth: undefined,
          services: offers,
          agent: undefined,
          uses,
        };
        assert.deepStrictEqual(decodeHello(encodeHello(hello)), hello);
      }),
    );
  });

  it('rejects descriptors out of range when encoding', () => {
    const bad = (s: Partial<Service>): (() => Uint8Array) => () =>
      encodeServiceList({ offers: [{ ...newService('s'), ...s }], uses: [] });
    const m: MethodDesc = { name: 'm', id: 1, kind: 0, request: 0n, response: 0n };
    assert.throws(bad({ methods: [{ ...m, id: 2 ** 32 }] }), RangeError);
    assert.throws(bad({ methods: [{ ...m, kind: 256 }] }), RangeError);
    assert.throws(bad({ methods: [{ ...m, request: 1n << 64n }] }), RangeError);
    assert.throws(bad({ shapes: [{ name: 't', type: -1n, fixed: false, slots: [] }] }), RangeError);
    assert.throws(bad({ shapes: [{ name: 't', type: 0n, fixed: false, slots: [1n << 64n] }] }), RangeError);
  });
});

describe('the compatibility check', () => {
  it('finds every side compatible with itself', () => {
    fc.assert(
      fc.property(smallServices, (services) => {
        const unique = [...new Map(services.map((s) => [s.name, s])).values()];
        fc.pre(unique.every((s) => new Set(s.methods.map((m) => m.id)).size === s.methods.length));
        fc.pre(unique.every((s) => new Set(s.shapes.map((sh) => sh.type)).size === s.shapes.length));
        assert.equal(outcome(() => checkServices(unique, [], [], unique)), undefined);
        assert.equal(outcome(() => checkServices([], unique, unique, [])), undefined);
      }),
    );
  });

  it('gives the same verdict with the roles swapped', () => {
    // The party names swap; the kind names ("client streaming") do not.
    const swap = (m: string): string =>
      m.replace(/\b(client|server)\b(?! streaming)/g, (w) => (w === 'client' ? 'server' : 'client'));
    fc.assert(
      fc.property(smallServices, smallServices, (offers, uses) => {
        const a = outcome(() => servicesCheck(offers, [], [], uses));
        const b = outcome(() => servicesCheck([], uses, offers, []));
        if (a === undefined || b === undefined) {
          assert.equal(a, b);
        } else if (a.includes('not offered') || a.includes('calls it as')) {
          assert.equal(b, swap(a));
        } else {
          assert.equal(a, b);
        }
      }),
    );
  });

  it('accepts evolution both ways and names unknown kinds', () => {
    const evolved = chart([['Clear', MethodKind.EVENT]], ['string']);
    assert.equal(outcome(() => checkServices([chart()], [], [], [evolved])), undefined);
    assert.equal(outcome(() => checkServices([evolved], [], [], [chart()])), undefined);
    const a = { ...newService('x.X', 1n), methods: [{ name: 'M', id: 5, kind: 9, request: 0n, response: 0n }] };
    const b = { ...newService('x.X', 2n), methods: [{ name: 'M', id: 5, kind: MethodKind.EVENT, request: 0n, response: 0n }] };
    assert.equal(
      outcome(() => checkServices([b], [], [], [a])),
      'x.X.M (method 00000005): the client calls it as unknown kind, the server serves it as event',
    );
  });
});

/** Drives two core connections until quiet; the server accepts every HELLO. */
function drive(client: CoreConnection, server: CoreConnection): { client: ConnectionEvent[]; server: ConnectionEvent[] } {
  const events = { client: [] as ConnectionEvent[], server: [] as ConnectionEvent[] };
  for (let round = 0; round < 1000; round++) {
    let moved = false;
    for (const [from, to] of [
      [client, server],
      [server, client],
    ] as const) {
      for (let f = from.pollTransmit(); f !== undefined; f = from.pollTransmit()) {
        moved = true;
        to.handleBytes(0, frameToBytes(f));
      }
    }
    for (let e = client.pollEvent(); e !== undefined; e = client.pollEvent()) {
      events.client.push(e);
      moved = true;
    }
    for (let e = server.pollEvent(); e !== undefined; e = server.pollEvent()) {
      events.server.push(e);
      if (e.type === 'HelloReceived') {
        assert.fail('the application is asked only about compatible clients');
      }
      moved = true;
    }
    if (!moved) {
      return events;
    }
  }
  throw new Error('did not settle');
}

describe('the core handshake', () => {
  const opts = (role: 'client' | 'server', o: Partial<CoreConnectionOptions>): CoreConnectionOptions => ({ role, ...o });

  it('refuses an incompatible client before the application is asked', () => {
    const client = new CoreConnection(opts('client', { uses: [changedChart()] }), 0);
    const server = new CoreConnection(opts('server', { services: [chart()] }), 0);
    const events = drive(client, server);
    for (const [side, list] of [
      ['local', events.server],
      ['remote', events.client],
    ] as const) {
      const closed = list.find((e) => e.type === 'Closed');
      assert.ok(closed?.type === 'Closed' && closed.error instanceof RefusedError, side);
      assert.equal(closed.error.wireCode, ErrorCode.INCOMPATIBLE);
      assert.equal(closed.error.side, side);
      assert.equal(closed.error.reasonText, MISMATCH);
    }
  });
});

// ----- the driver ----------------------------------------------------------------

const opened: Connection[] = [];

afterEach(async () => {
  const all = opened.splice(0);
  for (const c of all) {
    c.abort();
  }
  await Promise.all(all.map((c) => c.closed));
});

async function pair(serverOptions: AcceptOptions, clientOptions: ConnectOptions): Promise<{ client: Connection; server: Connection }> {
  const [a, b] = memoryPair('stream');
  const accepted = acceptConnection(b, serverOptions).then((c) => (opened.push(c), c));
  accepted.catch(() => undefined);
  const client = await connectTransport(a, clientOptions);
  opened.push(client);
  return { client, server: await accepted };
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  assert.fail('expected a rejection');
}

function chartRouter(): Router {
  return new Router().unary(SET_TITLE, () => ({ codec: Codec.FLATBUFFERS, body: new Uint8Array(0) }));
}

describe('driver services', () => {
  it('a client using an incompatible service fails to connect with INCOMPATIBLE', async () => {
    const e = await rejection(pair({ router: chartRouter(), offers: [chart()] }, { uses: [changedChart()] }));
    assert.ok(e instanceof ConnectionClosedError, String(e));
    assert.equal(e.wireCode, ErrorCode.INCOMPATIBLE);
    assert.equal(e.detail, MISMATCH);
    const e2 = await rejection(pair({ uses: [UI] }, {}));
    assert.ok(e2 instanceof ConnectionClosedError);
    assert.equal(e2.detail, 'ui.Page: used by the server but not offered by the client');
  });

  it('an evolved client connects, and the peers learn what each offers and uses', async () => {
    const evolved = chart([['Clear', MethodKind.EVENT]], ['string']);
    const { client, server } = await pair({ router: chartRouter(), offers: [chart()] }, { uses: [evolved] });
    assert.deepStrictEqual(client.peer?.services, [chart()]);
    assert.deepStrictEqual(server.peer?.uses, [evolved]);
    const r = await client.call(SET_TITLE, new Uint8Array(0), { codec: Codec.FLATBUFFERS });
    assert.equal(r.codec, Codec.FLATBUFFERS);
  });

  it('LIST_SERVICES is answered by either side, whatever the router has', async () => {
    const router = chartRouter().unary(LIST_SERVICES, () => 'mine');
    const { client, server } = await pair(
      { router, offers: [chart()], uses: [UI] },
      { offers: [UI], uses: [chart()] },
    );
    const r = await client.call(LIST_SERVICES, new Uint8Array(0));
    assert.equal(r.codec, Codec.FLATBUFFERS);
    assert.deepStrictEqual(decodeServiceList(r.body), { offers: [chart()], uses: [UI] });
    const back = await server.call(LIST_SERVICES, new Uint8Array(0));
    assert.deepStrictEqual(decodeServiceList(back.body), { offers: [UI], uses: [chart()] });
    const e = await rejection(client.call(LIST_SERVICES + 0x80, new Uint8Array(0)));
    assert.ok(e instanceof RemoteError && e.wireCode === ErrorCode.UNKNOWN_METHOD);
  });

  it('the former `services` option still offers', async () => {
    const { client } = await pair({ services: [chart()] }, { uses: [chart()] });
    const r = await client.call(LIST_SERVICES, new Uint8Array(0));
    assert.deepStrictEqual(decodeServiceList(r.body).offers, [chart()]);
  });
});

describe('services against the Rust interop-peer', { timeout: 180_000 }, () => {
  let peer: PeerServer;
  let server: Server;

  before(async () => {
    interopPeer();
    peer = await servePeer(['tcp://127.0.0.1:0']);
    server = await serve(['tcp://127.0.0.1:0'], service(), { uses: [UI] });
  });

  after(async () => {
    await server.close();
    assert.equal(await peer.stop(), 0);
  });

  it('the Rust server refuses a TypeScript client using what it does not offer', async () => {
    const url = peer.endpoints[0] as string;
    const e = await rejection(connect(url, { uses: [chart()] }));
    assert.ok(e instanceof ConnectionClosedError, String(e));
    assert.equal(e.wireCode, ErrorCode.INCOMPATIBLE);
    assert.equal(e.detail, 'chart.Chart: used by the client but not offered by the server');
    // The Rust runtime answers LIST_SERVICES itself: it offers nothing.
    const conn = await connect(url, { offers: [UI] });
    const r = await conn.call(LIST_SERVICES, new Uint8Array(0));
    assert.deepStrictEqual(decodeServiceList(r.body), { offers: [], uses: [] });
    await conn.close();
  });

  it('a TypeScript server refuses a Rust client not offering what it uses', async () => {
    const { code, output } = await runPeerClient(server.endpoints[0] as string);
    assert.notEqual(code, 0, output);
    assert.match(output, /INCOMPATIBLE/);
    assert.ok(output.includes('ui.Page: used by the server but not offered by the client'), output);
  });
});
