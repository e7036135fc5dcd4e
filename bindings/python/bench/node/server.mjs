// The Node peers of the chart scenario: each receives (x, y) float64 points
// from Python, ends with them in one Float64Array (x0, y0, x1, y1, ...) and
// acknowledges with [count, last x, last y]; each also answers a small ping
// on the same connection.
//
//   node server.mjs socketio   # socket.io: 'addPoints' (JSON), 'addPointsPacked' (MessagePack + zstd), 'echo'
//   node server.mjs raw        # TCP, frames of u8 type + u32 LE length: 1 = points, 2 = ping;
//                              # and a bare `ws` server: a binary message = points, a text one = ping
//   node server.mjs gatewire   # gatewire: stream 10 = points, unary 1 = echo; on tcp:// and ws://
//                              # with default limits, and on tcp:// with a 4 MiB stream credit
//
// Prints "ready URL..." once listening; exits when stdin closes.

import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const gatewireEntry = path.resolve(here, '../../../js/dist/node/index.js');

const TYPE_POINTS = 1;
const TYPE_PING = 2;
const GW_ECHO = 1;
const GW_POINTS = 10;

/** The acknowledgement: point count, last x, last y. */
function ack(points) {
  const n = points.length / 2;
  return [n, points[2 * n - 2], points[2 * n - 1]];
}

/** [[x, y], ...] into one Float64Array. */
function fromPairs(pairs) {
  const out = new Float64Array(pairs.length * 2);
  for (let i = 0; i < pairs.length; i++) {
    out[2 * i] = pairs[i][0];
    out[2 * i + 1] = pairs[i][1];
  }
  return out;
}

async function serveSocketIo() {
  const { Server } = await import('socket.io');
  const { decode } = await import('@msgpack/msgpack');
  const { decompress } = await import('fzstd');
  const httpServer = http.createServer();
  // Library defaults, except the message size limit (1 MB by default): the
  // thesis sends all the points in one message.
  const io = new Server(httpServer, { maxHttpBufferSize: 1e9 });
  io.on('connection', (socket) => {
    socket.on('addPoints', (data, reply) => reply(ack(fromPairs(data.param.data_points))));
    socket.on('addPointsPacked', (blob, reply) => {
      const data = decode(decompress(new Uint8Array(blob.buffer, blob.byteOffset, blob.byteLength)));
      reply(ack(fromPairs(data.param.data_points)));
    });
    socket.on('echo', (data, reply) => reply(data));
  });
  await new Promise((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
  return { urls: [`http://127.0.0.1:${httpServer.address().port}`], close: () => io.close() };
}

/**
 * The buffer each sink copies an upload into: kept and reused (grown when
 * an upload is larger), so that the sinks, gatewire's and the raw socket's
 * alike, do not allocate a new one per upload. The benchmark uploads one
 * at a time.
 */
let kept = new ArrayBuffer(0);

/** `n` bytes of the kept buffer. */
function sinkBuffer(n) {
  if (kept.byteLength < n) {
    kept = new ArrayBuffer(n);
  }
  return new Uint8Array(kept, 0, n);
}

function frame(type, body) {
  const header = Buffer.alloc(5);
  header.writeUInt8(type, 0);
  header.writeUInt32LE(body.byteLength, 1);
  return Buffer.concat([header, Buffer.from(body.buffer, body.byteOffset, body.byteLength)]);
}

async function serveRaw() {
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    let header = Buffer.alloc(0);
    let type = 0;
    let body = null;
    let filled = 0;
    socket.on('data', (chunk) => {
      let at = 0;
      while (at < chunk.length) {
        if (body === null) {
          const take = Math.min(5 - header.length, chunk.length - at);
          header = Buffer.concat([header, chunk.subarray(at, at + take)]);
          at += take;
          if (header.length < 5) {
            return;
          }
          type = header.readUInt8(0);
          const n = header.readUInt32LE(1);
          body = type === TYPE_POINTS ? sinkBuffer(n) : new Uint8Array(n);
          filled = 0;
          header = Buffer.alloc(0);
        }
        const take = Math.min(body.length - filled, chunk.length - at);
        body.set(chunk.subarray(at, at + take), filled);
        filled += take;
        at += take;
        if (filled === body.length) {
          if (type === TYPE_POINTS) {
            socket.write(frame(TYPE_POINTS, new Float64Array(ack(new Float64Array(body.buffer, 0, body.length / 8)))));
          } else {
            socket.write(frame(TYPE_PING, body));
          }
          body = null;
        }
      }
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const ws = await serveRawWebSocket();
  return {
    urls: [`tcp://127.0.0.1:${server.address().port}`, ...ws.urls],
    close: () => Promise.all([server.close(), ws.close()]),
  };
}

/** The WebSocket floor: `ws` (no compression), the
 * points as one binary message, copied into the kept buffer as the other
 * sinks do; a text message is a ping, echoed. */
async function serveRawWebSocket() {
  const { WebSocketServer } = await import('ws');
  const httpServer = http.createServer();
  // Library defaults, except the message size limit (100 MiB by default),
  // raised as the socket.io server's is: the points travel in one message.
  const wss = new WebSocketServer({ server: httpServer, maxPayload: 1e9 });
  wss.on('connection', (socket) => {
    socket.on('message', (data, isBinary) => {
      if (!isBinary) {
        socket.send(data, { binary: false });
        return;
      }
      const bytes = sinkBuffer(data.length);
      bytes.set(data);
      socket.send(new Float64Array(ack(new Float64Array(bytes.buffer, 0, bytes.length / 8))));
    });
  });
  await new Promise((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
  return {
    urls: [`ws://127.0.0.1:${httpServer.address().port}`],
    close: () =>
      new Promise((resolve) => {
        for (const client of wss.clients) {
          client.terminate();
        }
        wss.close(() => httpServer.close(resolve));
      }),
  };
}

async function serveGatewire() {
  const gw = await import(pathToFileURL(gatewireEntry).href);
  const router = new gw.Router()
    .unary(GW_ECHO, (_ctx, request) => request)
    .stream(GW_POINTS, async (_ctx, first, rx, tx) => {
      const total = Number(new DataView(first.body.buffer, first.body.byteOffset, 8).getBigUint64(0, true));
      const bytes = sinkBuffer(total);
      let filled = 0;
      for await (const m of rx) {
        // Each message's fragments are copied once, from the pieces they arrived in into `bytes`.
        filled += gw.moveBody(m, bytes, filled).length;
      }
      await tx.send(new Uint8Array(new Float64Array(ack(new Float64Array(bytes.buffer, 0, filled / 8))).buffer));
    });
  const server = await gw.serve(['tcp://127.0.0.1:0', 'ws://127.0.0.1:0/gw'], router);
  // The same service with a larger stream credit: the receiver lets 4 MiB
  // (the default connection credit) be in flight on one stream.
  const tuned = await gw.serve(['tcp://127.0.0.1:0'], router, { limits: { initialStreamCredit: 4 << 20 } });
  return {
    urls: [...server.endpoints, ...tuned.endpoints],
    close: () => Promise.all([server.close(), tuned.close()]),
  };
}

const kinds = { socketio: serveSocketIo, raw: serveRaw, gatewire: serveGatewire };
const start = kinds[process.argv[2]];
if (start === undefined) {
  console.error(`usage: node server.mjs ${Object.keys(kinds).join('|')}`);
  process.exit(2);
}
const server = await start();
process.stdout.write(`ready ${server.urls.join(' ')}\n`);
process.stdin.resume();
process.stdin.on('end', () => {
  server.close();
  process.exit(0);
});
