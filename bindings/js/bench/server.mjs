// @ts-check
/**
 * The Node servers of the benchmark, one kind per process:
 *
 *   node bench/server.mjs KIND DIR
 *
 * KIND is `gatewire`, `socketio`, `socketio-msgpack`, `ws` or `net`; DIR is
 * a private directory (mode 0700) for Unix sockets. Every server listens on
 * loopback ports chosen by the system, prints one line
 * `ready {"name": "url", ...}` on stdout, and exits when its stdin closes.
 *
 * Every kind serves the same two things: an echo of small messages, and a
 * bulk sink that takes one upload, holds it in one contiguous buffer and
 * acknowledges with its length in bytes. Where the library delivers the
 * upload in pieces (a bare `net` socket) the sink copies them into one
 * buffer that it keeps and reuses for the next upload; gatewire's sinks
 * move what they receive (the messages of a stream, or one message) into
 * such a buffer with `moveBody`, which copies each fragment once from the
 * pieces it arrived in; where the library assembles one buffer
 * itself (socket.io, `ws`) the sink holds that buffer.
 */

import { once } from 'node:events';
import * as http from 'node:http';
import * as net from 'node:net';
import { join } from 'node:path';

import { bodyLength, moveBody, serve, Router } from 'gatewire/node';
import { Server as SocketIoServer } from 'socket.io';
import msgpackParser from 'socket.io-msgpack-parser';
import { WebSocketServer } from 'ws';

import { BULK_LIMITS, readU32, u32 } from './common.mjs';

/** @typedef {Record<string, string>} Endpoints */

/**
 * One buffer per sink (the benchmark uploads one at a time), grown to the largest upload seen and reused: every
 * upload lands in one contiguous buffer without a fresh 8 MiB allocation
 * each time (socket.io and `ws` hand their sinks the one buffer they
 * assembled themselves).
 */
class Holder {
  /** @type {Uint8Array} */
  buf = new Uint8Array(0);

  /**
   * @param {number} size
   * @returns {Uint8Array} a buffer of exactly `size` bytes, the held one's start when it is large enough
   */
  get(size) {
    if (this.buf.length < size) {
      this.buf = new Uint8Array(size);
    }
    return this.buf.subarray(0, size);
  }
}

/** gatewire: method 1 echoes; stream 2 is the bulk sink (opening message: the size); method 3 takes the upload as one message. */
function gatewireRouter() {
  const sink = new Holder();
  return new Router()
    .unary(1, (_ctx, req) => req)
    .stream(2, async (_ctx, first, rx, tx) => {
      const buf = sink.get(readU32(first.body));
      let at = 0;
      for await (const m of rx) {
        at += moveBody(m, buf, at).length;
      }
      await tx.send(u32(at));
    })
    .unary(3, (_ctx, req) => u32(moveBody(req, sink.get(bodyLength(req))).length));
}

/**
 * @param {string} dir
 * @returns {Promise<Endpoints>}
 */
async function gatewire(dir) {
  const router = gatewireRouter();
  const plain = await serve(['tcp://127.0.0.1:0', `unix://${join(dir, 'gw.sock')}`, 'ws://127.0.0.1:0/gw'], router);
  const raised = await serve(
    ['tcp://127.0.0.1:0', `unix://${join(dir, 'gw-big.sock')}`, 'ws://127.0.0.1:0/gw'],
    router,
    { limits: BULK_LIMITS },
  );
  const [tcp = '', unix = '', ws = ''] = plain.endpoints;
  const [bigTcp = '', bigUnix = '', bigWs = ''] = raised.endpoints;
  return { tcp, unix, ws, bigTcp, bigUnix, bigWs };
}

/**
 * socket.io over WebSocket only, permessage-deflate off (engine.io's default
 * on the server; the Node client offers it unless told not to), and
 * `maxHttpBufferSize` raised from 1 MB so that the 8 MiB upload is accepted.
 *
 * @param {boolean} msgpack
 * @returns {Promise<Endpoints>}
 */
async function socketio(msgpack) {
  const httpServer = http.createServer();
  const io = new SocketIoServer(httpServer, {
    transports: ['websocket'],
    perMessageDeflate: false,
    maxHttpBufferSize: 16 << 20,
    serveClient: false,
    ...(msgpack ? { parser: msgpackParser } : {}),
  });
  io.on('connection', (socket) => {
    socket.on('echo', (/** @type {unknown} */ data, /** @type {(r: unknown) => void} */ ack) => ack(data));
    socket.on('bulk', (/** @type {ArrayBuffer | Uint8Array} */ data, /** @type {(r: number) => void} */ ack) =>
      ack(data.byteLength),
    );
  });
  httpServer.listen(0, '127.0.0.1');
  await once(httpServer, 'listening');
  return { ws: `http://127.0.0.1:${port(httpServer)}` };
}

/**
 * `ws`: `/echo` sends every message back; `/bulk` acknowledges each message with its length.
 *
 * @returns {Promise<Endpoints>}
 */
async function ws() {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 16 << 20 });
  wss.on('connection', (sock, req) => {
    const bulk = req.url === '/bulk';
    sock.on('message', (/** @type {Buffer} */ data, isBinary) => {
      sock.send(bulk ? u32(data.length) : data, { binary: isBinary });
    });
  });
  await once(wss, 'listening');
  const p = /** @type {import('node:net').AddressInfo} */ (wss.address()).port;
  return { ws: `ws://127.0.0.1:${p}` };
}

/**
 * Sends back every complete frame (u32 LE length, then the payload), all
 * the complete frames of one read in one write.
 *
 * @param {net.Socket} sock
 */
function netEcho(sock) {
  sock.setNoDelay(true);
  /** @type {Buffer | undefined} */
  let rest;
  sock.on('data', (/** @type {Buffer} */ chunk) => {
    const b = rest === undefined ? chunk : Buffer.concat([rest, chunk]);
    let at = 0;
    while (b.length - at >= 4 && b.length - at - 4 >= b.readUInt32LE(at)) {
      at += 4 + b.readUInt32LE(at);
    }
    if (at > 0) {
      sock.write(b.subarray(0, at));
    }
    rest = at < b.length ? b.subarray(at) : undefined;
  });
}

/**
 * Takes one frame at a time into a buffer of its announced size (the
 * sink's held buffer, as gatewire's) and answers its length (u32 LE).
 *
 * @param {net.Socket} sock
 */
function netSink(sock) {
  sock.setNoDelay(true);
  const head = Buffer.alloc(4);
  let headLen = 0;
  const sink = new Holder();
  /** @type {Uint8Array | undefined} */
  let body;
  let at = 0;
  sock.on('data', (/** @type {Buffer} */ chunk) => {
    let i = 0;
    while (i < chunk.length) {
      if (body === undefined) {
        const n = Math.min(4 - headLen, chunk.length - i);
        chunk.copy(head, headLen, i, i + n);
        headLen += n;
        i += n;
        if (headLen === 4) {
          body = sink.get(head.readUInt32LE(0));
          at = 0;
        }
      } else {
        const n = Math.min(body.length - at, chunk.length - i);
        body.set(chunk.subarray(i, i + n), at);
        at += n;
        i += n;
      }
      if (body !== undefined && at === body.length) {
        sock.write(u32(body.length));
        body = undefined;
        headLen = 0;
      }
    }
  });
}

/**
 * @param {net.Server | http.Server} server
 * @returns {number}
 */
function port(server) {
  return /** @type {import('node:net').AddressInfo} */ (server.address()).port;
}

/**
 * @param {(s: net.Socket) => void} handler
 * @param {string | number} at a Unix socket path, or 0 for a loopback TCP port
 * @returns {Promise<net.Server>}
 */
async function listen(handler, at) {
  const server = net.createServer({ noDelay: true }, handler);
  if (typeof at === 'string') {
    server.listen(at);
  } else {
    server.listen(at, '127.0.0.1');
  }
  await once(server, 'listening');
  return server;
}

/**
 * A bare `net` server: echo and sink, over TCP and a Unix socket.
 *
 * @param {string} dir
 * @returns {Promise<Endpoints>}
 */
async function bare(dir) {
  const tcp = await listen(netEcho, 0);
  const tcpBulk = await listen(netSink, 0);
  const unix = join(dir, 'net.sock');
  const unixBulk = join(dir, 'net-bulk.sock');
  await listen(netEcho, unix);
  await listen(netSink, unixBulk);
  return {
    tcp: `tcp://127.0.0.1:${port(tcp)}`,
    tcpBulk: `tcp://127.0.0.1:${port(tcpBulk)}`,
    unix: `unix://${unix}`,
    unixBulk: `unix://${unixBulk}`,
  };
}

/** @type {Record<string, (dir: string) => Promise<Endpoints>>} */
const KINDS = {
  gatewire,
  socketio: () => socketio(false),
  'socketio-msgpack': () => socketio(true),
  ws,
  net: bare,
};

const [kind = '', dir = ''] = process.argv.slice(2);
const start = KINDS[kind];
if (start === undefined || dir === '') {
  process.stderr.write(`usage: server.mjs ${Object.keys(KINDS).join('|')} DIR\n`);
  process.exit(2);
}
const endpoints = await start(dir);
process.stdout.write(`ready ${JSON.stringify(endpoints)}\n`);
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
