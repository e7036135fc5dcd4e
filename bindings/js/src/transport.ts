/**
 * Transports: how frames travel between two endpoints (the TypeScript
 * counterpart of the Rust runtime's `transport` module).
 *
 * A transport says whether it keeps message boundaries:
 *
 * - `'stream'` (TCP, Unix sockets): frames travel back to back and
 *   `onData` delivers whatever bytes arrived;
 * - `'message'` (WebSocket): every frame is one binary message and `onData`
 *   delivers exactly one whole frame per call.
 *
 * ## Backpressure
 *
 * The driver calls {@link Transport.send} with one batch at a time (at most
 * {@link MAX_BATCH} bytes, plus one frame) and waits for the returned
 * promise before sending the next, so a transport never queues more than
 * one batch beyond its own buffer. Everything not yet handed to the
 * transport stays inside the protocol core, which bounds it
 * (`maxSendQueue`, then `send*` waits for a `Writable` event), and what the
 * peer has not yet consumed is bounded by the peer's credit. A transport
 * resolves `send` when it can take more: a Node socket once `write`
 * returned `true` or `'drain'` fired; a Node `ws` socket when the `send`
 * callbacks ran; a browser `WebSocket`, which has no completion signal, at
 * once — there the peer's connection credit is what bounds
 * `bufferedAmount` (nothing polls it).
 *
 * ## Input
 *
 * `pause`/`resume` are called when the protocol core stops and resumes
 * consuming input (too many control replies or undelivered events queued);
 * a transport that cannot pause (a browser `WebSocket`) leaves them out and
 * the driver holds what arrives.
 *
 * @module
 */

/** Whether a transport keeps message boundaries. */
export type Framing = 'stream' | 'message';

/** The driver gathers frames into one `send` until this many bytes. */
export const MAX_BATCH = 256 * 1024;

/** What a transport knows about the peer. */
export interface TransportInfo {
  /** A printable address: `127.0.0.1:4000`, a socket path, a URL. */
  readonly address?: string | undefined;
  /** Unix peer credentials, where the platform reports them. */
  readonly credentials?: { readonly uid: number; readonly gid: number; readonly pid?: number | undefined } | undefined;
}

/** Where a transport reports what happens to it. Each method is called only after {@link Transport.start}. */
export interface TransportEvents {
  /**
   * Input: bytes (`'stream'`) or exactly one whole frame (`'message'`). The
   * driver keeps the array: a transport must not reuse its memory, unless
   * it passes `release`. Then `data` is lent: the driver calls `release`
   * (at most once) when nothing refers to `data` any more, and the
   * transport may reuse its memory from then on, not before. `release` may
   * never be called (a view of `data` went to the application, or the
   * framing is `'message'`): the memory is then left to the garbage
   * collector.
   */
  onData(data: Uint8Array, release?: () => void): void;
  /** The peer ended its sending direction cleanly (EOF, a WebSocket close). */
  onClose(): void;
  /** The transport failed (reset, protocol error, text message...). Nothing more is delivered. */
  onError(error: Error): void;
}

/** An established byte or message channel. */
export interface Transport {
  /** Stream or message framing. */
  readonly framing: Framing;
  /** What is known about the peer. */
  readonly info: TransportInfo;
  /** Starts delivering input to `events`; called once, by the driver. */
  start(events: TransportEvents): void;
  /**
   * Writes `frames`: with `'stream'` framing, chunks of bytes to write back
   * to back; with `'message'` framing, exactly one frame per element, each
   * sent as one binary message. Resolves when the transport can take more;
   * rejects when it failed. The driver never calls `send` again before the
   * previous promise settled, and never modifies the arrays afterwards.
   */
  send(frames: readonly Uint8Array[]): Promise<void>;
  /** Stops delivering input until {@link Transport.resume} (optional). */
  pause?(): void;
  /** Resumes delivering input (optional). */
  resume?(): void;
  /**
   * Ends the connection gracefully once everything sent has been written
   * (TCP FIN, WebSocket close 1000), then releases it. Idempotent.
   */
  close(): void;
  /** Ends the connection at once, dropping anything unsent. Idempotent. */
  abort(): void;
}
