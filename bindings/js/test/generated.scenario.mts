/**
 * The tests of the generated TypeScript (run by `generated.test.ts`, which
 * compiles this file with `examples/schemas/ts`):
 *
 * - generated clients against the Rust reference server `example-peer`
 *   (crate `examples/schemas`, built with `cargo build -p
 *   gatewire-example-schemas` when missing) for every call kind, over tcp,
 *   unix and ws; the descriptors equal the Rust ones (LIST_SERVICES); a schema
 *   mismatch is refused at connect with INCOMPATIBLE;
 * - `Float64Array` views of received messages: in place when the body is
 *   8-byte aligned in its buffer, one copy when it is not;
 * - generated servers against generated clients, both directions of the
 *   chart scenario (the server calls the page's `Chart`, the page sends
 *   `Clicked` events);
 * - malformed payloads are INVALID_ARGUMENT, never another error.
 */

import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as flatbuffers from 'flatbuffers';
import {
  AbortedError,
  codegen as gc,
  connect,
  ConnectionClosedError,
  decodeServiceList,
  ErrorCode,
  flatbuffersMessage,
  LIST_SERVICES,
  LocalError,
  message,
  Codec,
  RemoteError,
  Router,
  serve,
  Status,
  type Connection,
  type Server,
  type Service,
} from 'gatewire/node';

import {
  Added,
  AddedT,
  ChartRef,
  ChartRefT,
  Clicked,
  ClickedT,
  CreateChart,
  CreateChartT,
  EmptyT,
  Points,
  PointsT,
  Probe,
  ProbeReplyT,
  ProbeT,
  SetTitle,
  SetTitleT,
  TitleT,
} from '../../../examples/schemas/ts/chart.js';
import {
  ChartClient,
  ChartEventsClient,
  ChartEventsService,
  ChartService,
  TABLES as CHART,
  type ChartEventsHandler,
  type ChartHandler,
} from '../../../examples/schemas/ts/chart_gatewire.js';
import {
  ChatMessage,
  ChatMessageT,
  Config,
  ConfigT,
  Dir,
  Direction,
  DirectionT,
  EmptyT as GatewayEmptyT,
  Health,
  SampleT,
  SettingT,
  StatusT,
  TelemetryRequest,
  TelemetryRequestT,
  Vec3T,
  type Empty as GatewayEmpty,
} from '../../../examples/schemas/ts/gateway.js';
import {
  GatewayClient,
  GatewayService,
  TABLES as GATEWAY,
  type GatewayHandler,
} from '../../../examples/schemas/ts/gateway_gatewire.js';

/** The example services' application error for an unknown chart. */
const NO_CHART = 0x8001;

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  assert.fail('expected a rejection');
}

// ----- the Rust reference server ---------------------------------------------------------------

function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'examples', 'schemas', 'Cargo.toml'))) {
      return dir;
    }
    const up = dirname(dir);
    if (up === dir) {
      throw new Error('repository root not found (examples/schemas)');
    }
    dir = up;
  }
}

/**
 * The `example-peer` binary: `$GATEWIRE_EXAMPLE_PEER` as it is, or
 * `target/debug/example-peer` brought up to date with cargo (a binary that
 * exists is used as it is when cargo is not installed).
 */
function examplePeer(): string {
  const env = process.env['GATEWIRE_EXAMPLE_PEER'];
  if (env !== undefined && env !== '') {
    return env;
  }
  const root = repoRoot();
  const target = process.env['CARGO_TARGET_DIR'] ?? join(root, 'target');
  const bin = resolve(root, target, 'debug', 'example-peer');
  const r = spawnSync('cargo', ['build', '--quiet', '-p', 'gatewire-example-schemas', '--bin', 'example-peer'], {
    cwd: root,
    stdio: 'inherit',
  });
  const noCargo = (r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
  if (!existsSync(bin) || (r.status !== 0 && !noCargo)) {
    throw new Error(`cargo build -p gatewire-example-schemas failed (${r.error?.message ?? `exit ${r.status}`})`);
  }
  return bin;
}

/** A running `example-peer serve`. */
class Peer {
  readonly endpoints: string[] = [];
  readonly #lines: string[] = [];
  readonly #waiters = new Set<() => void>();
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #exited: Promise<number | null>;

  private constructor(child: ChildProcessWithoutNullStreams) {
    this.#child = child;
    this.#exited = new Promise((res) => child.once('exit', (code) => res(code)));
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const line of lines) {
        if (line.startsWith('listening ')) {
          this.endpoints.push(line.slice('listening '.length).trim());
        } else {
          this.#lines.push(line.trim());
        }
      }
      for (const w of [...this.#waiters]) {
        w();
      }
    });
  }

  /** Starts `example-peer serve URL...` and waits for its endpoints. */
  static async start(urls: string[]): Promise<Peer> {
    const peer = new Peer(spawn(examplePeer(), ['serve', ...urls], { stdio: 'pipe' }));
    await peer.#until(() => peer.endpoints.length === urls.length, 'its endpoints');
    return peer;
  }

  #until(done: () => boolean, what: string): Promise<void> {
    return new Promise((res, rej) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        rej(new Error(`example-peer never printed ${what}`));
      }, 60_000);
      const check = (): void => {
        if (done()) {
          clearTimeout(timer);
          this.#waiters.delete(check);
          res();
        }
      };
      this.#waiters.add(check);
      check();
    });
  }

  /** Waits for the peer to print `line` (a `drive` report). */
  expectLine(line: string): Promise<void> {
    return this.#until(() => {
      const i = this.#lines.indexOf(line);
      if (i >= 0) {
        this.#lines.splice(i, 1);
      }
      return i >= 0;
    }, `"${line}"`);
  }

  /** Closes its stdin and waits for it to exit; resolves with the exit code. */
  stop(): Promise<number | null> {
    this.#child.stdin.end();
    const kill = setTimeout(() => this.#child.kill(), 10_000);
    return this.#exited.finally(() => clearTimeout(kill));
  }
}

// ----- implementations of the example services -------------------------------------------------

/** The page's charts, as `examples/schemas/src/impls.rs` keeps them: by key. */
class Page implements ChartHandler {
  readonly charts: { key: string; title: string; xs: number[]; ys: number[] }[] = [];

  #chart(id: number): { key: string; title: string; xs: number[]; ys: number[] } {
    const c = this.charts[id];
    if (c === undefined) {
      throw new Status(NO_CHART, `no chart ${id}`);
    }
    return c;
  }

  #add(p: Points): bigint {
    const xs = p.xsArray() ?? new Float64Array(0);
    const ys = p.ysArray() ?? new Float64Array(0);
    if (xs.length !== ys.length) {
      throw Status.invalidArgument('xs and ys differ in length');
    }
    const c = this.#chart(p.chart());
    c.xs.push(...xs);
    c.ys.push(...ys);
    return BigInt(c.xs.length);
  }

  create(_ctx: gc.CallContext, request: CreateChart): ChartRefT {
    const key = request.key() ?? '';
    let id = this.charts.findIndex((c) => c.key === key);
    if (id < 0) {
      id = this.charts.push({ key, title: request.title() ?? '', xs: [], ys: [] }) - 1;
    }
    return new ChartRefT(id);
  }

  setTitle(_ctx: gc.CallContext, request: SetTitle): EmptyT {
    this.#chart(request.chart()).title = request.title() ?? '';
    return new EmptyT();
  }

  getTitle(_ctx: gc.CallContext, request: ChartRef): TitleT {
    return new TitleT(this.#chart(request.id()).title);
  }

  addPoints(_ctx: gc.CallContext, request: Points): AddedT {
    return new AddedT(this.#add(request));
  }

  async streamPoints(_ctx: gc.CallContext, items: gc.Source<Points>): Promise<AddedT> {
    let total = 0n;
    for await (const batch of items) {
      total = this.#add(batch);
    }
    return new AddedT(total);
  }

  async snapshot(_ctx: gc.CallContext, request: ChartRef, items: gc.Sink<PointsT>): Promise<void> {
    const c = this.#chart(request.id());
    for (let i = 0; i < c.xs.length; i += 3) {
      await items.send(new PointsT(request.id(), c.xs.slice(i, i + 3), c.ys.slice(i, i + 3)));
    }
  }

  probe(_ctx: gc.CallContext, request: Probe): ProbeReplyT {
    return new ProbeReplyT(request.sentNs(), 1.5);
  }
}

/** The gateway of `impls.rs`: drive commands are recorded. */
class Gateway implements GatewayHandler {
  readonly drives: [Dir, number][] = [];
  #seq = 0n;

  getStatus(_ctx: gc.CallContext, _request: GatewayEmpty): StatusT {
    return new StatusT('gw-1', 42n, Health.Degraded, 1);
  }

  getConfig(_ctx: gc.CallContext, _request: GatewayEmpty): ConfigT {
    return new ConfigT([new SettingT('mode', 'auto')]);
  }

  setConfig(_ctx: gc.CallContext, request: Config): ConfigT {
    return request.unpack();
  }

  drive(_ctx: gc.CallContext, event: Direction): void {
    this.drives.push([event.dir(), event.speed()]);
  }

  async chat(_ctx: gc.CallContext, items: gc.Source<ChatMessage>, replies: gc.Sink<ChatMessageT>): Promise<void> {
    for await (const m of items) {
      await replies.send(new ChatMessageT('gateway', `re: ${m.text() ?? ''}`, 0n));
    }
  }

  async telemetry(_ctx: gc.CallContext, request: TelemetryRequest, items: gc.Sink<SampleT>): Promise<void> {
    for (let i = 0; i < request.count(); i++) {
      const seq = this.#seq++;
      await items.send(new SampleT(seq, seq * 10n, 21.5, new Vec3T(Number(seq), 0, -1)));
    }
  }
}

// ----- the checks every server passes ----------------------------------------------------------

async function exerciseChart(charts: ChartClient, key: string): Promise<void> {
  // Unary, with the refresh rule: the same key gives the same chart.
  const create = new CreateChartT(key, 'T0');
  const id = (await charts.create(create)).id();
  assert.equal((await charts.create(create)).id(), id);
  await charts.setTitle(new SetTitleT(id, 'Temperature'));
  assert.equal((await charts.getTitle(new ChartRefT(id))).title(), 'Temperature');
  const missing = await rejection(charts.getTitle(new ChartRefT(99)));
  assert.ok(missing instanceof RemoteError, String(missing));
  assert.deepEqual([missing.wireCode, missing.detail], [NO_CHART, 'no chart 99']);
  const added = await charts.addPoints(new PointsT(id, [0, 1], [5, 6]));
  assert.equal(added.total(), 2n);
  const probe = await charts.probe(new ProbeT(7n), { timeoutMs: 10_000 });
  assert.deepEqual([probe.sentNs(), probe.pageMs()], [7n, 1.5]);

  // Client streaming.
  const [sink, reply] = await charts.streamPoints();
  for (let i = 0; i < 4; i++) {
    const x = i + 2;
    await sink.send(new PointsT(id, [x], [x * 10]));
  }
  await sink.finish();
  assert.equal((await reply).total(), 6n);

  // Server streaming: float64 vectors as Float64Array views.
  const xs: number[] = [];
  const ys: number[] = [];
  for await (const batch of await charts.snapshot(new ChartRefT(id))) {
    const bx = batch.xsArray();
    const by = batch.ysArray();
    assert.ok(bx instanceof Float64Array && by instanceof Float64Array);
    xs.push(...bx);
    ys.push(...by);
  }
  assert.deepEqual(xs, [0, 1, 2, 3, 4, 5]);
  assert.deepEqual(ys, [5, 6, 20, 30, 40, 50]);
}

async function exerciseGateway(gateway: GatewayClient): Promise<void> {
  const status = await gateway.getStatus(new GatewayEmptyT());
  assert.deepEqual([status.name(), status.uptimeS(), status.health()], ['gw-1', 42n, Health.Degraded]);
  const config = (await gateway.getConfig(new GatewayEmptyT())).unpack();
  assert.deepEqual(
    config.settings.map((s) => [s.key, s.value]),
    [['mode', 'auto']],
  );
  const changed = await gateway.setConfig(new ConfigT([new SettingT('rate', '10'), new SettingT('x', null)]));
  assert.deepEqual(
    changed.unpack().settings.map((s) => [s.key, s.value]),
    [
      ['rate', '10'],
      ['x', null],
    ],
  );

  // Bidirectional streaming: each message gets its reply.
  const [out, replies] = await gateway.chat();
  for (const text of ['hello', 'status?']) {
    await out.send(new ChatMessageT('desk', text, 1n));
    const answer = await replies.next();
    assert.ok(answer !== undefined);
    assert.deepEqual([answer.from(), answer.text()], ['gateway', `re: ${text}`]);
  }
  await out.finish();
  assert.equal(await replies.next(), undefined);

  // Server streaming with a struct inside (sequence numbers go on across calls).
  const seen: [bigint, bigint, number, number | undefined][] = [];
  for await (const s of await gateway.telemetry(new TelemetryRequestT(1, 3))) {
    seen.push([s.seq(), s.timeMs(), s.temperatureC(), s.position()?.x()]);
  }
  assert.equal(seen.length, 3);
  const first = seen[0]?.[0] ?? 0n;
  assert.deepEqual(
    seen,
    [0n, 1n, 2n].map((i) => [first + i, (first + i) * 10n, 21.5, Number(first + i)]),
  );
}

// ----- against the Rust reference server -----------------------------------------------------

describe('generated TypeScript clients -> Rust example-peer', { timeout: 180_000 }, () => {
  let peer: Peer;
  let sockets: string;

  before(async () => {
    sockets = mkdtempSync(join(tmpdir(), 'gw-'));
    peer = await Peer.start(['tcp://127.0.0.1:0', `unix://${sockets}/s.sock`, 'ws://127.0.0.1:0/gw']);
  });

  after(async () => {
    const code = await peer.stop();
    rmSync(sockets, { recursive: true, force: true });
    assert.equal(code, 0, 'example-peer exits cleanly when its stdin closes');
  });

  for (const [i, scheme] of ['tcp', 'unix', 'ws'].entries()) {
    it(`every call kind over ${scheme}`, { timeout: 60_000 }, async () => {
      const url = peer.endpoints[i] as string;
      assert.ok(url.startsWith(`${scheme}://`), url);
      const conn = await connect(url, { uses: [ChartService.descriptor(), GatewayService.descriptor()] });
      await exerciseChart(new ChartClient(conn), `main-${scheme}`);
      const gateway = new GatewayClient(conn);
      await exerciseGateway(gateway);
      await gateway.drive(new DirectionT(Dir.Left, 0.5));
      await peer.expectLine('drive Left 0.5');
      await conn.close();
      assert.equal(await conn.closed, undefined);
    });
  }

  it('the descriptors equal the Rust ones', async () => {
    const conn = await connect(peer.endpoints[0] as string);
    const r = await conn.call(LIST_SERVICES, new Uint8Array(0));
    assert.deepStrictEqual(decodeServiceList(r.body).offers, [ChartService.descriptor(), GatewayService.descriptor()]);
    assert.equal(ChartService.descriptor().fingerprint, ChartService.FINGERPRINT);
    await conn.close();
  });

  it('a schema mismatch is refused at connect with INCOMPATIBLE', async () => {
    const changed: Service = ChartService.descriptor();
    const snapshot = changed.methods.find((m) => m.id === ChartService.SNAPSHOT);
    assert.ok(snapshot !== undefined);
    snapshot.kind = gc.MethodKind.UNARY;
    changed.fingerprint ^= 1n;
    const e = await rejection(connect(peer.endpoints[0] as string, { uses: [changed] }));
    assert.ok(e instanceof ConnectionClosedError, String(e));
    assert.equal(e.wireCode, ErrorCode.INCOMPATIBLE);
    const snapshotHex = ChartService.SNAPSHOT.toString(16).padStart(8, '0');
    assert.ok(
      (e.detail ?? '').endsWith(
        `chart.Chart.Snapshot (method ${snapshotHex}): the client calls it as unary, the server serves it as server streaming`,
      ),
      e.detail,
    );
  });

  it('a bad payload is INVALID_ARGUMENT; the deadline and the abort signal are forwarded', async () => {
    const conn = await connect(peer.endpoints[0] as string);
    const e = await rejection(conn.call(ChartService.GET_TITLE, 'not a table'));
    assert.ok(e instanceof RemoteError, String(e));
    assert.equal(e.wireCode, ErrorCode.INVALID_ARGUMENT);
    const charts = new ChartClient(conn);
    const aborted = new AbortController();
    aborted.abort();
    const a = await rejection(charts.probe(new ProbeT(1n), { signal: aborted.signal }));
    assert.ok(a instanceof AbortedError, String(a));
    const s = await rejection(charts.snapshot(new ChartRefT(0), { signal: aborted.signal }));
    assert.ok(s instanceof AbortedError, String(s));
    assert.equal((await charts.probe(new ProbeT(2n), { timeoutMs: 5_000 })).sentNs(), 2n);
    await conn.close();
  });
});

// ----- Float64Array views ----------------------------------------------------------------------

describe('Float64Array views of received messages', () => {
  const points = CHART['chart.Points'];
  const packed = points.pack(new PointsT(3, [1.5, 2.5, 3.5], [-1, -2, -3])).body;

  /** `packed` at byte `offset` of a fresh buffer. */
  function at(offset: number): Uint8Array {
    const buf = new Uint8Array(offset + packed.byteLength + 8);
    buf.set(packed, offset);
    return buf.subarray(offset, offset + packed.byteLength);
  }

  it('an 8-byte aligned body is read in place', () => {
    for (const offset of [0, 8, 16, 64]) {
      const body = at(offset);
      const view = points.reply(flatbuffersMessage(body));
      const xs = view.xsArray();
      assert.ok(xs instanceof Float64Array);
      assert.equal(xs.buffer, body.buffer, 'the same ArrayBuffer: no copy');
      assert.deepEqual([...xs], [1.5, 2.5, 3.5]);
      body[body.byteLength - 1] = 0; // the view reads the message itself
      assert.equal(view.chart(), 3);
    }
  });

  it('an unaligned body is copied once, then read in place', () => {
    for (const offset of [1, 3, 4, 12]) {
      const body = at(offset);
      const view = points.reply(flatbuffersMessage(body));
      const xs = view.xsArray();
      const ys = view.ysArray();
      assert.ok(xs instanceof Float64Array && ys instanceof Float64Array);
      assert.notEqual(xs.buffer, body.buffer);
      assert.equal(xs.buffer, ys.buffer, 'one copy for the whole message');
      assert.deepEqual([...xs, ...ys], [1.5, 2.5, 3.5, -1, -2, -3]);
    }
  });
});

// ----- generated servers against generated clients ----------------------------------------------

describe('generated TypeScript servers <-> clients', { timeout: 120_000 }, () => {
  let sockets: string;

  before(() => {
    sockets = mkdtempSync(join(tmpdir(), 'gw-'));
  });

  after(() => {
    rmSync(sockets, { recursive: true, force: true });
  });

  for (const scheme of ['tcp', 'unix', 'ws']) {
    const url = (): string =>
      scheme === 'tcp' ? 'tcp://127.0.0.1:0' : scheme === 'unix' ? `unix://${sockets}/${scheme}.sock` : 'ws://127.0.0.1:0/gw';

    it(`the chart scenario over ${scheme}: the server calls the page, the page sends clicks`, async () => {
      const clicks: [number, number, number][] = [];
      let clicked: () => void = () => {};
      const arrived = new Promise<void>((res) => (clicked = res));
      const events: ChartEventsHandler = {
        clicked(_ctx, event: Clicked): void {
          clicks.push([event.chart(), event.x(), event.y()]);
          clicked();
        },
      };
      const server: Server = await serve([url()], ChartEventsService.route(new Router(), events), {
        offers: [ChartEventsService.descriptor()],
        uses: [ChartService.descriptor()],
      });
      try {
        const page: Connection = await connect(server.endpoints[0] as string, {
          router: ChartService.route(new Router(), new Page()),
          offers: [ChartService.descriptor()],
          uses: [ChartEventsService.descriptor()],
        });
        while (server.connections().length === 0) {
          await new Promise((res) => setImmediate(res));
        }
        await exerciseChart(new ChartClient(server.connections()[0] as Connection), 'main');
        await new ChartEventsClient(page).clicked(new ClickedT(0, 1.5, -2));
        await arrived;
        assert.deepEqual(clicks, [[0, 1.5, -2]]);
        await page.close();
        // A page that does not offer Chart is refused.
        const e = await rejection(connect(server.endpoints[0] as string, { uses: [ChartEventsService.descriptor()] }));
        assert.ok(e instanceof ConnectionClosedError, String(e));
        assert.equal(e.wireCode, ErrorCode.INCOMPATIBLE);
        assert.equal(e.detail, 'chart.Chart: used by the server but not offered by the client');
      } finally {
        await server.close();
      }
    });

    it(`the gateway over ${scheme}`, async () => {
      const gateway = new Gateway();
      const server = await serve([url()], GatewayService.route(new Router(), gateway), {
        offers: [GatewayService.descriptor()],
      });
      try {
        const conn = await connect(server.endpoints[0] as string, { uses: [GatewayService.descriptor()] });
        const client = new GatewayClient(conn);
        await exerciseGateway(client);
        await client.drive(new DirectionT(Dir.Back, 2));
        await client.getStatus(new GatewayEmptyT()); // events of one connection arrive in order
        assert.deepEqual(gateway.drives, [[Dir.Back, 2]]);
        await conn.close();
      } finally {
        await server.close();
      }
    });
  }
});

// ----- malformed payloads ----------------------------------------------------------------------

describe('malformed payloads are INVALID_ARGUMENT', { timeout: 60_000 }, () => {
  it('a TypeScript server answers bad requests, openings and items with INVALID_ARGUMENT', async () => {
    const gateway = new Gateway();
    const server = await serve(['tcp://127.0.0.1:0'], GatewayService.route(new Router(), gateway));
    try {
      const conn = await connect(server.endpoints[0] as string);
      for (const body of ['not a table', new Uint8Array(0), new Uint8Array(64).fill(0xff)]) {
        const e = await rejection(conn.call(GatewayService.SET_CONFIG, body));
        assert.ok(e instanceof RemoteError, String(e));
        assert.equal(e.wireCode, ErrorCode.INVALID_ARGUMENT);
      }
      const rx = await conn.serverStream(GatewayService.TELEMETRY, new Uint8Array([1, 2]));
      const opening = await rejection(rx.next());
      assert.ok(opening instanceof RemoteError && opening.wireCode === ErrorCode.INVALID_ARGUMENT, String(opening));
      const { tx, rx: replies } = await conn.openStream(GatewayService.CHAT);
      await tx.send('garbage!');
      const item = await rejection(replies.next());
      assert.ok(item instanceof RemoteError && item.wireCode === ErrorCode.INVALID_ARGUMENT, String(item));
      // A bad event is dropped; the next one arrives.
      await conn.emit(GatewayService.DRIVE, new Uint8Array(3));
      await new GatewayClient(conn).drive(new DirectionT(Dir.Right, 1));
      await new GatewayClient(conn).getStatus(new GatewayEmptyT());
      assert.deepEqual(gateway.drives, [[Dir.Right, 1]]);
      await conn.close();
    } finally {
      await server.close();
    }
  });

  it('a bad reply is a local INVALID_ARGUMENT', async () => {
    const router = new Router()
      .unary(ChartService.GET_TITLE, () => flatbuffersMessage(new Uint8Array([4, 0, 0, 0, 1, 2, 3, 4])))
      .stream(ChartService.SNAPSHOT, async (_ctx, _first, _rx, tx) => {
        await tx.send(message(Codec.JSON, new Uint8Array([0x7b, 0x7d])));
      });
    const server = await serve(['tcp://127.0.0.1:0'], router);
    try {
      const conn = await connect(server.endpoints[0] as string);
      const charts = new ChartClient(conn);
      const e = await rejection(charts.getTitle(new ChartRefT(0)));
      assert.ok(e instanceof LocalError, String(e));
      assert.equal(e.wireCode, ErrorCode.INVALID_ARGUMENT);
      assert.ok(e.detail?.startsWith('invalid chart.Title message: '), e.detail);
      const items = await charts.snapshot(new ChartRefT(0));
      const bad = await rejection(items.next());
      assert.ok(bad instanceof LocalError, String(bad));
      assert.equal(bad.detail, 'invalid chart.Points message: expected a FlatBuffers message, got codec 3');
      items.cancel();
      // A client stream whose peer never replies.
      const [sink, reply] = await charts.streamPoints();
      await sink.finish();
      const none = await rejection(Promise.resolve(reply));
      assert.ok(none instanceof RemoteError && none.wireCode === ErrorCode.UNKNOWN_METHOD, String(none));
      await conn.close();
    } finally {
      await server.close();
    }
  });

  /** Builds a buffer with `fill`. */
  function build(fill: (b: flatbuffers.Builder) => flatbuffers.Offset): Uint8Array {
    const b = new flatbuffers.Builder(64);
    b.finish(fill(b));
    return b.asUint8Array().slice();
  }

  function reason(table: gc.Decoder<unknown>, body: Uint8Array): string {
    const r = table.unpack(flatbuffersMessage(body));
    assert.ok('error' in r, `accepted as a ${table.name}`);
    return r.error;
  }

  it('the verifier refuses what the Rust verifier refuses', () => {
    const create = CHART['chart.CreateChart'];
    const title = CHART['chart.Title'];
    // A required field missing (CreateChart.key).
    assert.match(
      reason(
        create,
        // flatc's own endCreateChart refuses to build it.
        build((b) => {
          b.startObject(2);
          return b.endObject();
        }),
      ),
      /required field 0 is missing/,
    );
    // A string that is not UTF-8, then one without its terminator.
    const bad = build((b) => {
      return titleWith(b, b.createString(new Uint8Array([0xff, 0xfe])));
    });
    assert.match(reason(title, bad), /not UTF-8/);
    const at = bad.indexOf(0xff);
    bad.set([0x6f, 0x6b], at);
    assert.equal(title.reply(flatbuffersMessage(bad)).title(), 'ok');
    bad[at + 2] = 1;
    assert.match(reason(title, bad), /no 0 terminator/);
    // Out of bounds, unaligned, the wrong codec.
    assert.equal(reason(title, new Uint8Array(0)), 'range 0..4 is outside the buffer of 0 bytes');
    assert.match(reason(title, new Uint8Array([0xfc, 0, 0, 0])), /outside the buffer/);
    assert.match(reason(title, new Uint8Array([2, 0, 0, 0, ...new Uint8Array(12)])), /not aligned/);
    const json = title.unpack(message(Codec.JSON, new Uint8Array([0x7b, 0x7d])));
    assert.ok('error' in json && /codec 3/.test(json.error));
    // The Rust-built replies of the other tests passed the same checks.
  });

  function titleWith(b: flatbuffers.Builder, s: flatbuffers.Offset): flatbuffers.Offset {
    b.startObject(1);
    b.addFieldOffset(0, s, 0);
    return b.endObject();
  }

  it('a shared subtable cannot amplify the work (apparent size)', () => {
    // 2,000 offsets to one setting with a 1 KiB key: 8 KiB that would read as 2 MiB.
    const body = build((b) => {
      const key = b.createString('k'.repeat(1024));
      b.startObject(2);
      b.addFieldOffset(0, key, 0);
      const setting = b.endObject();
      b.startVector(4, 2000, 4);
      for (let i = 0; i < 2000; i++) {
        b.addOffset(setting);
      }
      const settings = b.endVector();
      b.startObject(1);
      b.addFieldOffset(0, settings, 0);
      return b.endObject();
    });
    assert.ok(body.byteLength < 16 * 1024);
    assert.match(reason(GATEWAY['gateway.Config'], body), /apparent size/);
  });

  it('deep nesting is bounded', () => {
    const layouts: gc.Layouts = { 't.Node': [{ slot: 0, kind: gc.TABLE, table: 't.Node' }] };
    const body = build((b) => {
      let inner = 0;
      for (let i = 0; i < 100; i++) {
        b.startObject(1);
        if (i > 0) {
          b.addFieldOffset(0, inner, 0);
        }
        inner = b.endObject();
      }
      return inner;
    });
    assert.match(gc.verify(body, 't.Node', layouts) ?? '', /nested deeper than 64/);
  });

  it('random and mutated buffers are accepted or refused, nothing else', () => {
    const tables: gc.Decoder<unknown>[] = [
      GATEWAY['gateway.Config'],
      GATEWAY['gateway.Sample'],
      CHART['chart.Points'],
      CHART['chart.CreateChart'],
    ];
    const valid = GATEWAY['gateway.Config'].pack(new ConfigT([new SettingT('key', 'value')])).body.slice();
    let seed = 1;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let round = 0; round < 2000; round++) {
      const junk = new Uint8Array(random() % 96).map(() => random() & 0xff);
      const mutated = valid.slice();
      const flip = random() % mutated.length;
      mutated[flip] = (mutated[flip] ?? 0) ^ ((random() & 0xff) | 1);
      const cut = valid.subarray(0, random() % valid.length);
      for (const t of tables) {
        for (const body of [junk, mutated, cut]) {
          const r = t.unpack(flatbuffersMessage(body));
          assert.ok('view' in r || typeof r.error === 'string');
          try {
            t.request(flatbuffersMessage(body));
          } catch (e) {
            assert.ok(e instanceof Status && e.code === ErrorCode.INVALID_ARGUMENT, String(e));
          }
        }
      }
    }
  });

  it('sending checks the object-API class', () => {
    assert.throws(() => CHART['chart.Points'].pack(new TitleT('x') as unknown as PointsT), TypeError);
    assert.equal(CHART['chart.Added'].reply(CHART['chart.Added'].pack(new AddedT(5n))).total(), 5n);
    assert.ok(CHART['chart.Added'].reply(CHART['chart.Added'].pack(new AddedT(5n))) instanceof Added);
  });
});
