/**
 * The driver against itself over the Node transports: TCP, Unix sockets and
 * WebSocket (the `ws` package, and the browser-safe `WebSocket` transport
 * driven by `ws`'s standard-API class), plus what the listeners refuse.
 */

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, lstatSync, mkdirSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import WebSocket, { WebSocketServer } from 'ws';

import { connect as connectBrowser } from '../src/index.js';
import {
  ConfigError,
  connect,
  RpcError,
  Router,
  serve,
  TransportError,
  type Connection,
  type Message,
  type Server,
} from '../src/node/index.js';
import { callbacks, EventInbox, SCRIPT_CHECKS, script, service, socketDir, u32le, u32Of } from './interop.js';

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The slow consumer's stream credit: four of the producer's messages. */
const CONSUMER_CREDIT = 256 * 1024;

describe('driver against itself over Node transports', { timeout: 120_000 }, () => {
  let server: Server;
  let sockets: { dir: string; cleanup: () => void };
  let inFlight = 0;
  let maxInFlight = 0;

  before(async () => {
    sockets = socketDir();
    const router = service().stream(30, async (_ctx, first, _rx, tx) => {
      // 64 KiB messages; the consumer's credit (CONSUMER_CREDIT) bounds how far ahead we get.
      const n = u32Of(first);
      for (let i = 0; i < n; i++) {
        await tx.send(new Uint8Array(64 * 1024).fill(i & 0xff));
        inFlight += 1;
        maxInFlight = Math.max(maxInFlight, inFlight);
      }
    });
    server = await serve(['tcp://127.0.0.1:0', `unix://${sockets.dir}/s.sock`, 'ws://127.0.0.1:0/gw'], router);
  });

  after(async () => {
    await server.close();
    sockets.cleanup();
  });

  it('binds the real ports and reports them', () => {
    assert.equal(server.endpoints.length, 3);
    assert.match(server.endpoints[0] as string, /^tcp:\/\/127\.0\.0\.1:[1-9][0-9]*$/);
    assert.equal(server.endpoints[1], `unix://${sockets.dir}/s.sock`);
    assert.match(server.endpoints[2] as string, /^ws:\/\/127\.0\.0\.1:[1-9][0-9]*\/gw$/);
  });

  for (const [i, scheme] of ['tcp', 'unix', 'ws'].entries()) {
    it(`runs the interop script over ${scheme}`, async () => {
      const inbox = new EventInbox();
      const conn = await connect(server.endpoints[i] as string, { router: callbacks(inbox) });
      assert.deepEqual(await script(conn, inbox), SCRIPT_CHECKS);
      assert.equal(conn.peer?.agent, 'gatewire-js/0.1.0');
      await conn.close();
      assert.equal(await conn.closed, undefined);
    });

    it(`streams 8 MiB to a slow consumer within its credit over ${scheme}`, async () => {
      const conn = await connect(server.endpoints[i] as string, { limits: { initialStreamCredit: CONSUMER_CREDIT } });
      inFlight = 0;
      maxInFlight = 0;
      const rx = await conn.serverStream(30, u32le(128));
      let n = 0;
      for await (const m of rx) {
        assert.equal(m.body.length, 64 * 1024);
        assert.equal(m.body[m.body.length - 1], n & 0xff);
        inFlight -= 1;
        n += 1;
        if (n % 16 === 0) {
          await sleep(5);
        }
      }
      assert.equal(n, 128);
      // 256 KiB of stream credit = 4 messages, one more accepted and waiting,
      // and a message or two counted before the consumer saw them.
      assert.ok(maxInFlight <= 8, `producer got ${maxInFlight} messages ahead`);
      await conn.close();
    });
  }

  it('the browser WebSocket transport works against the Node server (ws as the WebSocket class)', async () => {
    const inbox = new EventInbox();
    const conn = await connectBrowser(server.endpoints[2] as string, {
      router: callbacks(inbox),
      WebSocket,
    });
    assert.equal(conn.transportInfo.address, server.endpoints[2]);
    assert.deepEqual(await script(conn, inbox), SCRIPT_CHECKS);
    await conn.close();
  });

  it('a server that goes away fails every pending call at once', async () => {
    const s = await serve('tcp://127.0.0.1:0', new Router().unary(6, () => new Promise<Message>(() => undefined)));
    const conn = await connect(s.endpoints[0] as string);
    const calls = Array.from({ length: 20 }, () =>
      conn.call(6, '').then(
        () => assert.fail('no answer expected'),
        (e: unknown) => e,
      ),
    );
    await sleep(20);
    await s.abort();
    for (const e of await Promise.all(calls)) {
      assert.ok(e instanceof RpcError && e.isClosed, String(e));
    }
    assert.ok((await conn.closed) instanceof RpcError);
  });

  it('server.close() closes its connections gracefully', async () => {
    const s = await serve('ws://127.0.0.1:0/', service());
    const conns: Connection[] = [];
    for (let i = 0; i < 3; i++) {
      conns.push(await connect(s.endpoints[0] as string));
    }
    assert.equal(s.connections().length, 3);
    const slow = conns[0]?.call(6, u32le(100));
    await sleep(10);
    await s.close();
    assert.equal(u32Of((await slow) as Message), 100, 'the call in flight finished');
    for (const c of conns) {
      assert.equal(await c.closed, undefined);
    }
    await assert.rejects(connect(s.endpoints[0] as string), (e: unknown) => e instanceof TransportError);
  });

  it('maxConnections closes connections beyond the limit', async () => {
    const s = await serve('tcp://127.0.0.1:0', service(), { maxConnections: 1 });
    const first = await connect(s.endpoints[0] as string);
    await assert.rejects(connect(s.endpoints[0] as string), (e: unknown) => e instanceof RpcError && e.isClosed);
    await first.close();
    await s.close();
  });
});

function upgrade(url: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
        ...headers,
      },
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve(res.statusCode ?? 0);
    });
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('WebSocket listener and transport rules', { timeout: 60_000 }, () => {
  let server: Server;
  let base: string;

  before(async () => {
    server = await serve('ws://127.0.0.1:0/rpc?ignored=1', service(), { wsOrigins: ['http://good.example'] });
    base = (server.endpoints[0] as string).replace('ws://', 'http://').replace('?ignored=1', '');
  });

  after(async () => {
    await server.close();
  });

  it('refuses before upgrading: path 404, subprotocol 400, Origin 403, plain HTTP 426', async () => {
    const proto = { 'Sec-WebSocket-Protocol': 'gatewire.v1' };
    assert.equal(await upgrade(base, proto), 101);
    assert.equal(await upgrade(`${base}?q=1`, proto), 101, 'the query is ignored when matching');
    assert.equal(await upgrade(base.replace('/rpc', '/other'), proto), 404);
    assert.equal(await upgrade(base, {}), 400);
    assert.equal(await upgrade(base, { 'Sec-WebSocket-Protocol': 'chat, superchat' }), 400);
    assert.equal(await upgrade(base, { ...proto, Origin: 'http://evil.example' }), 403);
    assert.equal(await upgrade(base, { ...proto, Origin: 'http://good.example' }), 101);
    const plain = await new Promise<number>((resolve) => {
      http.get(base, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
    });
    assert.equal(plain, 426);
  });

  it('a client that upgrades then sends text is dropped with 1003', async () => {
    const ws = new WebSocket(server.endpoints[0] as string, 'gatewire.v1');
    await new Promise((r) => ws.once('open', r));
    const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
    ws.send('hello');
    assert.equal(await closed, 1003);
  });

  it('our client refuses a server that sends text, or selects no subprotocol', async () => {
    const raw = new WebSocketServer({ port: 0, host: '127.0.0.1', handleProtocols: () => 'gatewire.v1' });
    raw.on('connection', (ws) => ws.send('not a frame'));
    await new Promise((r) => raw.once('listening', r));
    const port = (raw.address() as net.AddressInfo).port;
    await assert.rejects(connect(`ws://127.0.0.1:${port}/`), (e: unknown) => {
      assert.ok(e instanceof TransportError, String(e));
      assert.match(e.message, /text message/);
      return true;
    });
    await new Promise((r) => raw.close(r));
    const none = new WebSocketServer({ port: 0, host: '127.0.0.1', handleProtocols: () => false });
    await new Promise((r) => none.once('listening', r));
    const port2 = (none.address() as net.AddressInfo).port;
    await assert.rejects(connect(`ws://127.0.0.1:${port2}/`), (e: unknown) => {
      assert.ok(e instanceof TransportError, String(e));
      assert.match(e.message, /subprotocol/);
      return true;
    });
    await new Promise((r) => none.close(r));
  });

  it('incoming messages are capped at maxFrame + 16 bytes', async () => {
    const ws = new WebSocket(server.endpoints[0] as string, 'gatewire.v1');
    await new Promise((r) => ws.once('open', r));
    const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
    ws.send(new Uint8Array((1 << 20) + 17));
    assert.equal(await closed, 1009);
  });
});

describe('Unix socket binding', { timeout: 30_000 }, () => {
  it('refuses a shared directory, a non-socket and a live socket; replaces a stale one', async () => {
    const { dir, cleanup } = socketDir();
    try {
      const shared = join(dir, 'shared');
      mkdirSync(shared);
      chmodSync(shared, 0o777);
      await assert.rejects(serve(`unix://${shared}/s.sock`, service()), (e: unknown) => e instanceof ConfigError);
      const file = join(dir, 'file.sock');
      writeFileSync(file, 'x');
      await assert.rejects(serve(`unix://${file}`, service()), (e: unknown) => e instanceof ConfigError);
      const path = join(dir, 'nested', 'live.sock');
      const s = await serve(`unix://${path}`, service());
      await assert.rejects(serve(`unix://${path}`, service()), /in use/);
      // A stale socket: left behind by a server that was killed.
      const stalePath = join(dir, 'stale.sock');
      const killed = spawnSync(process.execPath, [
        '-e',
        `require('node:net').createServer().listen(${JSON.stringify(stalePath)}, () => process.kill(process.pid, 'SIGKILL'))`,
      ]);
      assert.equal(killed.signal, 'SIGKILL');
      assert.ok(lstatSync(stalePath).isSocket(), 'the killed server left its socket file');
      const again = await serve(`unix://${stalePath}`, service());
      const c = await connect(`unix://${stalePath}`);
      assert.equal(new TextDecoder().decode((await c.call(1, 'x')).body), 'x');
      await c.close();
      await again.close();
      await s.close();
    } finally {
      cleanup();
    }
  });
});
