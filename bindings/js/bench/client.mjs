// @ts-check
/**
 * One client of the benchmark: connects to one peer, warms up, measures the
 * shapes it is asked for and prints one JSON line on stdout.
 *
 *   node bench/client.mjs '{"peer": "gatewire", "url": "tcp://127.0.0.1:4000", "shapes": ["latency"], ...}'
 *
 * Shapes: `latency` (one 32-byte call at a time: p50, p99), `throughput`
 * (32-byte calls with `window` in flight: calls/s), `bulk` (an 8 MiB
 * Float64Array uploaded until the server acknowledges: ms per upload).
 */

import * as net from 'node:net';
import { performance } from 'node:perf_hooks';

import { connect } from 'gatewire/node';
import { io } from 'socket.io-client';
import msgpackParser from 'socket.io-msgpack-parser';
import WebSocket from 'ws';

import { BULK_LIMITS, CHUNK, median, quantile, readU32, u32 } from './common.mjs';

/**
 * @typedef {object} Client
 * @property {() => Promise<unknown>} call one 32-byte request, resolved by its reply
 * @property {(data: Float64Array) => Promise<number>} bulk uploads `data`; resolves with the bytes the server acknowledged
 * @property {() => Promise<void>} close
 *
 * @typedef {object} Job
 * @property {string} peer an adapter name
 * @property {string} url the echo endpoint
 * @property {string} [bulkUrl] the bulk endpoint, where it is another
 * @property {('latency' | 'throughput' | 'bulk')[]} shapes
 * @property {number} latencyCalls
 * @property {number} throughputCalls
 * @property {number} window calls in flight
 * @property {number} bulkBytes
 * @property {number} bulkUploads
 * @property {number} bulkWarmUp uploads before the measured ones
 */

const PAYLOAD = new Uint8Array(32).fill(0x61);

/** @param {Uint8Array} b */
function view(b) {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/** @param {Float64Array} data */
function bytesOf(data) {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * Replies of an ordered echo, matched to requests first in, first out.
 *
 * @returns {{ wait: () => Promise<Buffer>, settle: (reply: Buffer) => void }}
 */
function fifo() {
  /** @type {((reply: Buffer) => void)[]} */
  const waiting = [];
  return {
    wait: () => new Promise((resolve) => waiting.push(resolve)),
    settle: (reply) => waiting.shift()?.(reply),
  };
}

// ----- adapters ------------------------------------------------------------------------

/**
 * gatewire: `call(1)` echoes; the upload goes as 1 MiB messages on a stream
 * under the default limits (`stream`) or with 4 MiB of stream credit
 * (`window`), or as one message (`message`); the last two to a server
 * whose limits were raised likewise.
 *
 * @param {Job} job
 * @param {'stream' | 'window' | 'message'} upload
 * @returns {Promise<Client>}
 */
async function gatewire(job, upload) {
  const conn = await connect(job.url, upload === 'stream' ? {} : { limits: BULK_LIMITS });
  return {
    call: () => conn.call(1, PAYLOAD),
    bulk: async (data) => {
      const bytes = bytesOf(data);
      if (upload === 'message') {
        return readU32((await conn.call(3, bytes)).body);
      }
      const { tx, rx } = await conn.openStream(2, u32(bytes.length));
      for (let at = 0; at < bytes.length; at += CHUNK) {
        await tx.send(bytes.subarray(at, at + CHUNK));
      }
      await tx.finish();
      let acked = -1;
      for await (const m of rx) {
        acked = readU32(m.body);
      }
      return acked;
    },
    close: () => conn.close(),
  };
}

/**
 * socket.io over WebSocket (no long-polling first), emit with an
 * acknowledgement. `string` sends a 32-character string, `buffer` a 32-byte
 * Buffer; `msgpack` uses socket.io-msgpack-parser (the upload is the
 * Float64Array itself).
 *
 * @param {Job} job
 * @param {'string' | 'buffer' | 'msgpack'} kind
 * @returns {Promise<Client>}
 */
async function socketio(job, kind) {
  const socket = io(job.url, {
    transports: ['websocket'],
    // Typed as an object only, but `false` reaches `ws`, which then offers no extension.
    perMessageDeflate: /** @type {{ threshold: number }} */ (/** @type {unknown} */ (false)),
    reconnection: false,
    ...(kind === 'msgpack' ? { parser: msgpackParser } : {}),
  });
  await new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(undefined));
    socket.once('connect_error', reject);
  });
  const payload = kind === 'string' ? 'a'.repeat(32) : view(PAYLOAD);
  return {
    call: () => socket.emitWithAck('echo', payload),
    bulk: async (data) => socket.emitWithAck('bulk', kind === 'msgpack' ? data : view(bytesOf(data))),
    close: async () => {
      socket.disconnect();
    },
  };
}

/**
 * @param {string} url
 * @returns {Promise<WebSocket>}
 */
async function openWs(url) {
  const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 16 << 20 });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return ws;
}

/**
 * `ws`, binary messages: `/echo` for calls, `/bulk` for the upload.
 *
 * @param {Job} job
 * @returns {Promise<Client>}
 */
async function ws(job) {
  const echo = await openWs(`${job.url}/echo`);
  const bulk = await openWs(`${job.url}/bulk`);
  const calls = fifo();
  const acks = fifo();
  echo.on('message', calls.settle);
  bulk.on('message', acks.settle);
  return {
    call: () => {
      const reply = calls.wait();
      echo.send(PAYLOAD);
      return reply;
    },
    bulk: async (data) => {
      const ack = acks.wait();
      bulk.send(data);
      return readU32(await ack);
    },
    close: async () => {
      echo.close();
      bulk.close();
    },
  };
}

/**
 * @param {string} url `tcp://host:port` or `unix:///path`
 * @returns {Promise<net.Socket>}
 */
async function dial(url) {
  const u = new URL(url);
  const sock =
    u.protocol === 'unix:' ? net.connect({ path: u.pathname }) : net.connect({ host: u.hostname, port: Number(u.port) });
  sock.setNoDelay(true);
  await new Promise((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  return sock;
}

/**
 * Complete frames (u32 LE length, then the payload) out of a byte stream.
 *
 * @param {net.Socket} sock
 * @param {(frame: Buffer) => void} onFrame
 */
function frames(sock, onFrame) {
  /** @type {Buffer | undefined} */
  let rest;
  sock.on('data', (/** @type {Buffer} */ chunk) => {
    const b = rest === undefined ? chunk : Buffer.concat([rest, chunk]);
    let at = 0;
    while (b.length - at >= 4 && b.length - at - 4 >= b.readUInt32LE(at)) {
      const end = at + 4 + b.readUInt32LE(at);
      onFrame(b.subarray(at + 4, end));
      at = end;
    }
    rest = at < b.length ? b.subarray(at) : undefined;
  });
}

/**
 * A bare `net` socket with length-prefixed frames: one `write` per call.
 *
 * @param {Job} job
 * @returns {Promise<Client>}
 */
async function bare(job) {
  const echo = await dial(job.url);
  const bulk = await dial(job.bulkUrl ?? job.url);
  const calls = fifo();
  const acks = fifo();
  frames(echo, calls.settle);
  bulk.on('data', acks.settle);
  const frame = Buffer.concat([view(u32(PAYLOAD.length)), view(PAYLOAD)]);
  return {
    call: () => {
      const reply = calls.wait();
      echo.write(frame);
      return reply;
    },
    bulk: async (data) => {
      const ack = acks.wait();
      bulk.write(view(u32(data.byteLength)));
      bulk.write(view(bytesOf(data)));
      return readU32(await ack);
    },
    close: async () => {
      echo.end();
      bulk.end();
    },
  };
}

/** @type {Record<string, (job: Job) => Promise<Client>>} */
const ADAPTERS = {
  gatewire: (job) => gatewire(job, 'stream'),
  'gatewire-message': (job) => gatewire(job, 'message'),
  'gatewire-window': (job) => gatewire(job, 'window'),
  'socketio-string': (job) => socketio(job, 'string'),
  'socketio-buffer': (job) => socketio(job, 'buffer'),
  'socketio-msgpack': (job) => socketio(job, 'msgpack'),
  ws,
  net: bare,
};

// ----- measurement loops -------------------------------------------------------------

/**
 * One call at a time.
 *
 * @param {Client} client
 * @param {number} n
 */
async function latency(client, n) {
  const samples = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await client.call();
    samples[i] = performance.now() - t0;
  }
  samples.sort();
  return { p50_us: quantile(samples, 0.5) * 1000, p99_us: quantile(samples, 0.99) * 1000 };
}

/**
 * `window` callers, each issuing its next call when the previous one
 * returned, until `n` calls have been made.
 *
 * @param {Client} client
 * @param {number} n
 * @param {number} window
 */
async function throughput(client, n, window) {
  let issued = 0;
  const caller = async () => {
    while (issued < n) {
      issued += 1;
      await client.call();
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: window }, caller));
  return { calls_per_s: n / ((performance.now() - t0) / 1000) };
}

/**
 * `n` uploads of `data`, one after the other; the median time of one.
 *
 * @param {Client} client
 * @param {Float64Array} data
 * @param {number} n
 */
async function bulk(client, data, n) {
  /** @type {number[]} */
  const times = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const acked = await client.bulk(data);
    times.push(performance.now() - t0);
    if (acked !== data.byteLength) {
      throw new Error(`the server acknowledged ${acked} bytes of ${data.byteLength}`);
    }
  }
  return { ms: median(times) };
}

/** @param {Job} job */
async function run(job) {
  const adapter = ADAPTERS[job.peer];
  if (adapter === undefined) {
    throw new Error(`unknown peer ${job.peer}`);
  }
  const client = await adapter(job);
  /** @type {Record<string, unknown>} */
  const out = {};
  const warm = (/** @type {number} */ n) => Math.max(1, Math.floor(n / 5));
  if (job.shapes.includes('latency')) {
    await latency(client, warm(job.latencyCalls));
    out['latency'] = await latency(client, job.latencyCalls);
  }
  if (job.shapes.includes('throughput')) {
    await throughput(client, warm(job.throughputCalls), job.window);
    out['throughput'] = await throughput(client, job.throughputCalls, job.window);
  }
  if (job.shapes.includes('bulk')) {
    const data = new Float64Array(job.bulkBytes / 8).map((_, i) => i * 0.5);
    await bulk(client, data, job.bulkWarmUp);
    out['bulk'] = await bulk(client, data, job.bulkUploads);
  }
  await client.close();
  return out;
}

const job = /** @type {Job} */ (JSON.parse(process.argv[2] ?? '{}'));
process.stdout.write(`${JSON.stringify(await run(job))}\n`);
process.exit(0);
