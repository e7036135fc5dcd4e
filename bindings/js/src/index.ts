/**
 * gatewire for JavaScript and TypeScript: the runtime-agnostic sans-IO core.
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
  decodeErrorInfo,
  decodeGoAway,
  decodeHello,
  decodeHelloAck,
  emptyAdvertisedLimits,
  encodeErrorInfo,
  encodeGoAway,
  encodeHello,
  encodeHelloAck,
  MAX_DEPTH,
  MAX_TABLES,
  verifierOptions,
  type AdvertisedLimits,
  type ErrorInfo,
  type GoAwayInfo,
  type Hello,
  type HelloAck,
  type Service,
  type VerifierOptions,
} from './control.js';
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
  COMPRESSION_ZSTD,
  compressedMessage,
  Connection,
  connectionConfig,
  MAX_PENDING_EVENTS,
  MAX_REASON_LEN,
  MAX_USER_PINGS,
  maxFragments,
  MIN_FRAGMENT,
  flatbuffersMessage,
  message,
  PROTOCOL_VERSION,
  rawMessage,
  truncateReason,
  type ConnectionConfig,
  type ConnectionEvent,
  type ConnectionOptions,
  type Message,
  type PeerInfo,
  type Role,
} from './connection.js';
