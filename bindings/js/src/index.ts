/**
 * gatewire for JavaScript and TypeScript: the runtime-agnostic sans-IO core,
 * the promise-based driver around it, and the WebSocket transport. This
 * entry point is browser-safe; Node transports (TCP, Unix sockets, the `ws`
 * package) and the server live in `gatewire/node`.
 *
 * ```ts
 * import { connect, Router } from 'gatewire';
 * const router = new Router().unary(100, (_ctx, req) => req); // the peer may call us
 * const conn = await connect('wss://gateway.example/rpc', { router });
 * const reply = await conn.call(1, new TextEncoder().encode('hello'), { timeoutMs: 1000 });
 * for await (const m of await conn.serverStream(3, request)) { ... }
 * await conn.close();
 * ```
 *
 * The core:
 *
 * This package implements the same wire rules as the Rust `gatewire-proto`
 * crate (the single source of truth) and passes the same golden vectors
 * (`tests/vectors/`). It performs **no** I/O: it has no sockets, reads no
 * clock, starts no timer and never awaits, and it uses no Node-only API, so
 * it runs unchanged in browsers, Node, Deno and Bun. A runtime feeds it bytes
 * and the current time (milliseconds from any origin) and carries out what it
 * asks for; transports live outside this core.
 *
 * Layers:
 *
 * - `wire` / `frame`: the 16-byte header, frame types, flags, codecs, error
 *   codes, and the rules that need no connection state.
 * - `codec`: whole frames over a byte stream, with zero-copy payloads.
 * - `control`: the FlatBuffers control tables, verified before use.
 * - `services`: derived method ids, type hashes and the acceptor's
 *   compatibility check of service descriptors (§10).
 * - `connection`: the connection state machine — handshake, calls, events,
 *   streams with credit, fragmentation, keepalive, cancel and two-phase
 *   shutdown.
 * - `errors`: one error tree rooted at {@link GatewireError}.
 *
 * Driving a connection: inputs are `handle*` methods, application commands
 * are plain methods (`sendRequest`, `cancel`, `grantCredit`, `close`...),
 * outputs are `poll*` methods. After any input or command, drain
 * `pollTransmit()` until `undefined` (write the frames), then `pollEvent()`
 * until `undefined` (deliver them), then arm a timer for `pollTimeout()` and
 * call `handleTimeout(now)` when it fires.
 *
 * @module
 */

export * from './wire.js';
export * from './errors.js';
export {
  decodeHeader,
  encodeHeader,
  HEADER_LEN,
  headerToBytes,
  MAX_FRAME_CEILING,
  newHeader,
  PING_PAYLOAD_LEN,
  U32_MAX,
  validateHeader,
  type Header,
} from './frame.js';
export {
  decodeExact,
  encodedLen,
  encodeFrame,
  FrameDecoder,
  frameToBytes,
  framesToBytes,
  newFrame,
  ReadBuffer,
  RESERVE_STEP,
  type Frame,
} from './codec.js';
export {
  cloneService,
  decodeErrorInfo,
  decodeGoAway,
  decodeHello,
  decodeHelloAck,
  decodeServiceList,
  emptyAdvertisedLimits,
  encodeErrorInfo,
  encodeGoAway,
  encodeHello,
  encodeHelloAck,
  encodeServiceList,
  MAX_DEPTH,
  MAX_TABLES,
  MethodKind,
  newService,
  verifierOptions,
  type AdvertisedLimits,
  type ErrorInfo,
  type GoAwayInfo,
  type Hello,
  type HelloAck,
  type MethodDesc,
  type Service,
  type ServiceList,
  type Shape,
  type VerifierOptions,
} from './control.js';
export {
  /** The acceptor's compatibility check (`gatewire/services`' `check`). */
  check as checkServices,
  fnv1a32,
  fnv1a64,
  LIST_SERVICES,
  methodId,
  REAUTHENTICATE,
  RESERVED_METHODS,
  typeHash,
} from './services.js';
export {
  defaultLimits,
  defaultTimeouts,
  MAX_WINDOW,
  MIN_FRAME,
  validateLimits,
  validateTimeouts,
  type Limits,
  type Timeouts,
} from './limits.js';
export {
  bodyLength,
  COMPRESSION_ZSTD,
  compressedMessage,
  /** The core state machine (also `gatewire/connection`'s `Connection`); the driver's {@link Connection} wraps it. */
  Connection as CoreConnection,
  connectionConfig,
  MAX_ENDED_HERE,
  MAX_PENDING_EVENTS,
  MAX_REASON_LEN,
  MAX_USER_PINGS,
  maxFragments,
  MIN_FRAGMENT,
  flatbuffersMessage,
  message,
  moveBody,
  PROTOCOL_VERSION,
  rawMessage,
  truncateReason,
  type ConnectionConfig,
  type ConnectionEvent,
  type ConnectionOptions as CoreConnectionOptions,
  type Message,
  type PeerInfo,
  type Role,
} from './connection.js';

// ----- the driver ------------------------------------------------------------------

export {
  acceptConnection,
  AGENT,
  connect,
  Connection,
  RecvStream,
  SendStream,
  startConnection,
  toMessage,
  type AcceptOptions,
  type AuthorizeRequest,
  type AuthRequest,
  type CallContext,
  type CallOptions,
  type ConnectionOptions,
  type ConnectOptions,
  type Dialer,
  type DialOptions,
  type Payload,
  type SendOptions,
  type Stats,
  type StreamOptions,
  type StreamPair,
} from './peer.js';
export { Router, type EventHandler, type Reply, type StreamHandler, type UnaryHandler } from './router.js';
export {
  AbortedError,
  ConfigError,
  ConnectionClosedError,
  DeadlineError,
  fromConnectionError,
  LocalError,
  RefusedCallError,
  RemoteError,
  RpcError,
  Status,
  TransportError,
  type RpcErrorKind,
} from './rpc-errors.js';
export { EndpointError, formatAuthority, formatEndpoint, parseEndpoint, type Endpoint } from './endpoint.js';
export { MAX_BATCH, type Framing, type Transport, type TransportEvents, type TransportInfo } from './transport.js';
export {
  dialWebSocket,
  SUBPROTOCOL,
  WebSocketTransport,
  type WebSocketConstructor,
  type WebSocketDialOptions,
  type WebSocketLike,
} from './transports/websocket.js';
export { memoryPair, MemoryTransport } from './transports/memory.js';
export type { AbortControllerLike, AbortSignalLike } from './runtime.js';
/** What code generated by `gatewire gen --lang ts` uses (`gatewire/codegen`). */
export * as codegen from './codegen.js';
