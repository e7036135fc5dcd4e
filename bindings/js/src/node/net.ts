/**
 * Node byte-stream transports: TCP (`tcp://`), Unix-domain sockets
 * (`unix://`) over `node:net`, and TLS (`tls://`) over `node:tls`.
 *
 * Backpressure: `send` writes the batch and resolves when `write` returned
 * `true` (the socket's buffer is under its high-water mark) or, when it
 * returned `false`, on `'drain'`; so the socket holds at most its
 * high-water mark plus one batch. Input is paused with `socket.pause()`
 * while the protocol core is not consuming.
 *
 * Sockets are half-open capable: after the peer's FIN (or TLS
 * `close_notify`) the driver may still answer calls the peer completed (as
 * the Rust runtime does).
 *
 * Reading: TCP and Unix sockets read into 64 KiB blocks taken from a pool
 * shared by all sockets (Node's `onread` option) instead of a new buffer
 * per read. A block is lent to the driver and comes back to the pool once
 * the protocol core no longer refers to it: at once when the bytes were
 * copied (short reads, short frames); for a message reassembled from
 * several fragments, when the application reads its body or moves it
 * (`moveBody`); never when a view of it went to the application (it is
 * then left to the garbage collector). The pool keeps at most {@link READ_POOL_MAX} idle blocks
 * (2 MiB). TLS sockets, and accepted sockets on a Node whose sockets lack
 * the fields `onread` sets, read the usual way (a new buffer per read).
 *
 * @module
 */

import { lstatSync, mkdirSync, chmodSync, statSync, unlinkSync } from 'node:fs';
import * as net from 'node:net';
import { dirname } from 'node:path';
import * as tls from 'node:tls';

import { AbortedError, ConfigError, TransportError } from '../rpc-errors.js';
import type { AbortSignalLike } from '../runtime.js';
import type { Transport, TransportEvents } from '../transport.js';
import {
  ALPN,
  AlpnError,
  clientTlsOptions,
  sessionInfo,
  tlsErrorFrom,
  type NodeTransportInfo,
  type TlsClientOptions,
  type TlsInfo,
} from './tls.js';

/** How long a gracefully closed socket waits for the peer's FIN before it is destroyed (ms). */
const LINGER_MS = 2_000;

/** Size of `sockaddr_un.sun_path` on Linux, the terminating NUL included (104 elsewhere). */
export const SUN_PATH_LEN = process.platform === 'linux' ? 108 : 104;

function view(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** Size of the blocks sockets read into. */
export const READ_BLOCK = 64 * 1024;

/** Idle blocks the pool keeps; more are left to the garbage collector. */
export const READ_POOL_MAX = 32;

const readPool: Uint8Array[] = [];

/** A block to read into: an idle one from the pool, else a new one. */
function takeBlock(): Uint8Array {
  return readPool.pop() ?? new Uint8Array(READ_BLOCK);
}

/** Idle blocks in the pool (for tests). */
export function readPoolSize(): number {
  return readPool.length;
}

/** Where a socket reading into blocks delivers: the bytes read, lent until `release`. */
type ReadSink = (data: Uint8Array, release: () => void) => void;

/**
 * Node's `onread` option for one socket: reads go into blocks of the pool;
 * each read is handed to the bound sink (held until one is bound) with a
 * `release` that returns its block to the pool, once.
 */
export class BlockReads {
  #sink: ReadSink | undefined = undefined;
  #held: [Uint8Array, () => void][] = [];
  readonly onread = {
    buffer: takeBlock,
    callback: (n: number, block: Uint8Array): boolean => {
      let lent = true;
      const release = (): void => {
        if (lent) {
          lent = false;
          if (readPool.length < READ_POOL_MAX) {
            readPool.push(block);
          }
        }
      };
      const data = block.subarray(0, n);
      if (this.#sink === undefined) {
        this.#held.push([data, release]);
      } else {
        this.#sink(data, release);
      }
      // Pausing is left to `socket.pause()`.
      return true;
    },
  };

  /** Delivers reads to `sink` from now on, those held first. */
  bind(sink: ReadSink): void {
    this.#sink = sink;
    for (const [data, release] of this.#held.splice(0)) {
      sink(data, release);
    }
  }
}

/** The fields of a `net.Socket` that its `onread` option sets (Node internals). */
interface OnreadFields {
  handle: { useUserBuffer(b: Uint8Array): void };
  buffer: symbol;
  callback: symbol;
  generator: symbol;
}

function onreadFields(socket: net.Socket): OnreadFields | undefined {
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: unknown; reading?: unknown } })._handle;
  if (handle === undefined || handle === null || typeof handle.useUserBuffer !== 'function' || handle.reading !== false) {
    return undefined;
  }
  const own = Object.getOwnPropertySymbols(socket);
  const find = (name: string): symbol | undefined => own.find((k) => k.description === name);
  const buffer = find('kBuffer');
  const callback = find('kBufferCb');
  const generator = find('kBufferGen');
  const fields = socket as unknown as Record<symbol, unknown>;
  if (buffer === undefined || callback === undefined || generator === undefined) {
    return undefined;
  }
  if (fields[buffer] !== null || fields[callback] !== null || fields[generator] !== null) {
    return undefined;
  }
  return { handle: handle as OnreadFields['handle'], buffer, callback, generator };
}

/**
 * Makes an accepted socket, not yet reading (`pauseOnConnect`), read into
 * blocks of the pool as `onread` would have (Node takes that option only
 * for sockets it creates on `connect`): sets the same fields. Returns
 * `undefined`, changing nothing, when the socket does not have them.
 */
export function adoptBlockReads(socket: net.Socket): BlockReads | undefined {
  const f = onreadFields(socket);
  if (f === undefined) {
    return undefined;
  }
  const reads = new BlockReads();
  const first = takeBlock();
  const fields = socket as unknown as Record<symbol, unknown>;
  fields[f.buffer] = first;
  fields[f.generator] = reads.onread.buffer;
  fields[f.callback] = reads.onread.callback;
  f.handle.useUserBuffer(first);
  return reads;
}

/** An established TCP, Unix or TLS socket, as a `'stream'` transport. */
export class SocketTransport implements Transport {
  readonly framing = 'stream';
  readonly info: NodeTransportInfo;
  readonly socket: net.Socket;
  #events: TransportEvents | undefined = undefined;
  readonly #early: ((e: TransportEvents) => void)[] = [];
  #ended = false;
  #closing = false;
  #drain: { resolve: () => void; reject: (e: Error) => void } | undefined = undefined;
  #error: Error | undefined = undefined;

  /**
   * Wraps a connected socket; `address` is what `info.address` says, `tls`
   * the session facts of a TLS socket. `reads`: the socket reads into
   * blocks (`onread`); else it emits `'data'`. A socket accepted with
   * `pauseOnConnect` is resumed here.
   */
  constructor(socket: net.Socket, address: string, tls?: TlsInfo, reads?: BlockReads) {
    this.socket = socket;
    this.info = tls === undefined ? { address } : { address, tls };
    socket.setNoDelay?.(true);
    socket.on('data', (d: Buffer) => this.#emit((e) => e.onData(view(d))));
    reads?.bind((data, release) => this.#emit((e) => e.onData(data, release)));
    socket.on('end', () => this.#emit((e) => e.onClose()));
    socket.on('error', (err: Error) => {
      // A TLS alert (the peer refused our certificate...) is reported as such.
      const error = tls === undefined ? err : (tlsErrorFrom(err, 'TLS session failed') ?? err);
      this.#error = error;
      this.#emit((e) => e.onError(error));
    });
    socket.on('drain', () => {
      const d = this.#drain;
      this.#drain = undefined;
      d?.resolve();
    });
    socket.on('close', () => {
      const d = this.#drain;
      this.#drain = undefined;
      d?.reject(this.#error ?? new Error('socket closed'));
      // A close without FIN or error (destroyed): the input ended. Nothing
      // follows a close.
      this.#emit((e) => e.onClose());
      this.#ended = true;
    });
    if (socket.readableFlowing === false && !socket.destroyed) {
      socket.resume();
    }
  }

  #emit(f: (e: TransportEvents) => void): void {
    if (this.#ended) {
      return;
    }
    const events = this.#events;
    if (events === undefined) {
      this.#early.push(f);
      return;
    }
    f(events);
  }

  start(events: TransportEvents): void {
    this.#events = events;
    for (const f of this.#early.splice(0)) {
      f(events);
    }
  }

  send(frames: readonly Uint8Array[]): Promise<void> {
    const s = this.socket;
    if (s.destroyed || s.writableEnded) {
      return Promise.reject(this.#error ?? new Error('socket closed'));
    }
    let ok = true;
    if (frames.length === 1) {
      ok = s.write(frames[0] as Uint8Array);
    } else {
      s.cork();
      for (const f of frames) {
        ok = s.write(f);
      }
      s.uncork();
    }
    if (ok) {
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      this.#drain = { resolve, reject };
    });
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  close(): void {
    if (this.#closing) {
      return;
    }
    this.#closing = true;
    const s = this.socket;
    if (s.destroyed) {
      return;
    }
    // Keep reading (and discarding) so the peer's FIN is seen and no unread
    // data turns our close into a reset.
    s.resume();
    s.end();
    const timer = setTimeout(() => s.destroy(), LINGER_MS);
    timer.unref();
    s.once('close', () => clearTimeout(timer));
  }

  abort(): void {
    this.#closing = true;
    this.socket.destroy();
  }
}

/** Options of the Node dialers. */
export interface SocketDialOptions {
  /** Give up after this long (ms). Default 10 s. */
  timeoutMs?: number | undefined;
  /** Abandon the dial. */
  signal?: AbortSignalLike | undefined;
}

/**
 * Waits for `socket` to be ready (`'connect'`, or `'secureConnect'` for TLS)
 * and wraps it with `wrap`, which may refuse it by throwing.
 */
function dial(
  socket: net.Socket,
  address: string,
  options: SocketDialOptions,
  ready: 'connect' | 'secureConnect',
  wrap: () => SocketTransport,
): Promise<SocketTransport> {
  const signal = options.signal;
  return new Promise<SocketTransport>((resolve, reject) => {
    let settled = false;
    const finish = (error: Error | undefined): void => {
      if (settled) {
        return;
      }
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.off(ready, onReady);
      socket.off('error', onError);
      if (error !== undefined) {
        socket.destroy();
        reject(error);
        return;
      }
      try {
        resolve(wrap());
      } catch (e) {
        socket.destroy();
        reject(e);
      }
    };
    const onReady = (): void => finish(undefined);
    const onError = (e: Error): void =>
      finish(
        tlsErrorFrom(e, `TLS handshake with ${address} failed`) ??
          new TransportError(`connect to ${address} failed: ${e.message}`, e),
      );
    const onAbort = (): void => finish(new AbortedError(signal?.reason));
    const timer = setTimeout(
      () => finish(new TransportError(`connect to ${address} timed out`)),
      options.timeoutMs ?? 10_000,
    );
    socket.once(ready, onReady);
    socket.once('error', onError);
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted === true) {
      onAbort();
    }
  });
}

/** Connects to `host:port` over TCP (no Nagle delay). */
export function connectTcp(host: string, port: number, options: SocketDialOptions = {}): Promise<SocketTransport> {
  const reads = new BlockReads();
  const socket = net.connect({ host, port, allowHalfOpen: true, noDelay: true, onread: reads.onread });
  const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  return dial(socket, address, options, 'connect', () => new SocketTransport(socket, address, undefined, reads));
}

/**
 * Connects to `host:port` over TLS (`tls://`): verifies the server's
 * certificate for `host` (or `tls.serverName`) and requires ALPN
 * `gatewire/1`.
 *
 * @throws {CertificateVerifyError} the certificate did not verify ({@link HostnameMismatchError}: not for this name).
 * @throws {AlpnError} the server did not select `gatewire/1`.
 * @throws {TlsError} another TLS failure.
 * @throws {TransportError} the TCP connect failed or timed out.
 * @throws {ConfigError} a certificate file that cannot be read.
 */
export function connectTls(
  host: string,
  port: number,
  options: SocketDialOptions & { tls?: TlsClientOptions | undefined } = {},
): Promise<SocketTransport> {
  let socket: tls.TLSSocket;
  try {
    // `allowHalfOpen` and `noDelay` reach the socket, though the typings omit them.
    const connectOptions: tls.ConnectionOptions & { allowHalfOpen: boolean; noDelay: boolean } = {
      ...clientTlsOptions(options.tls ?? {}, host, ALPN),
      host,
      port,
      allowHalfOpen: true,
      noDelay: true,
    };
    socket = tls.connect(connectOptions);
  } catch (e) {
    return Promise.reject(e);
  }
  const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  return dial(socket, address, options, 'secureConnect', () => {
    const info = sessionInfo(socket, options.tls?.serverName ?? host);
    if (info.alpn !== ALPN) {
      throw new AlpnError(`TLS server ${address} did not select the ALPN protocol ${ALPN}`);
    }
    return new SocketTransport(socket, address, info);
  });
}

/** Checks that `path` fits in `sun_path`. */
export function checkSocketPath(path: string): void {
  const len = Buffer.byteLength(path);
  if (len >= SUN_PATH_LEN) {
    throw new ConfigError(`unix socket path ${path} is ${len} bytes; at most ${SUN_PATH_LEN - 1} fit`);
  }
}

/** Connects to the Unix socket at `path`. */
export function connectUnix(path: string, options: SocketDialOptions = {}): Promise<SocketTransport> {
  checkSocketPath(path);
  const reads = new BlockReads();
  const socket = net.connect({ path, allowHalfOpen: true, onread: reads.onread });
  return dial(socket, path, options, 'connect', () => new SocketTransport(socket, path, undefined, reads));
}

/** Probes whether something answers on the Unix socket at `path`. */
function probe(path: string): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const s = net.connect({ path });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Prepares `path` for binding, as the Rust runtime does: the path must fit;
 * a missing parent is created with mode `0700`; an existing parent must be a
 * directory writable by neither group nor others (so `/tmp` itself is
 * refused: use a private directory); a symbolic link or a non-socket at the
 * path is refused; a live socket there is `EADDRINUSE`; a stale one is
 * removed.
 */
export async function prepareUnixPath(path: string): Promise<void> {
  checkSocketPath(path);
  const parent = dirname(path);
  let st;
  try {
    st = statSync(parent);
  } catch {
    mkdirSync(parent, { recursive: true, mode: 0o700 });
    chmodSync(parent, 0o700);
    st = statSync(parent);
  }
  if (!st.isDirectory()) {
    throw new ConfigError(`${parent} is not a directory`);
  }
  if ((st.mode & 0o022) !== 0) {
    throw new ConfigError(
      `${parent} is writable by group or others; put the socket in a private directory (mode 0700)`,
    );
  }
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid && st.uid !== 0) {
    throw new ConfigError(`${parent} is owned by another user`);
  }
  let existing;
  try {
    existing = lstatSync(path);
  } catch {
    return;
  }
  if (existing.isSymbolicLink()) {
    throw new ConfigError(`${path} is a symbolic link`);
  }
  if (!existing.isSocket()) {
    throw new ConfigError(`${path} exists and is not a socket`);
  }
  if (await probe(path)) {
    const e = new Error(`${path} is in use`) as NodeJS.ErrnoException;
    e.code = 'EADDRINUSE';
    throw new ConfigError(e.message, e);
  }
  unlinkSync(path);
}
