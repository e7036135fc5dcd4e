/**
 * Limits and timeouts: every bound the core enforces, with its default
 * (mirroring `gatewire-proto`'s `limits.rs`; option names are the Rust field
 * names in camelCase).
 *
 * Each field's doc gives the default, the unit, what breaching it does on the
 * wire and the memory it can cost. "Unlimited" or "off" is `null`, never `0`.
 * Values are checked once by {@link validateLimits} and
 * {@link validateTimeouts}.
 *
 * @module
 */

import { InvalidLimitError } from './errors.js';
import { MAX_FRAME_CEILING, U32_MAX } from './frame.js';

/**
 * Smallest frame and message limit an endpoint may set or advertise: room
 * for a prelude and any reason string with its table.
 */
export const MIN_FRAME = 1024;

/** Largest credit a window may hold: 2^31 − 1. */
export const MAX_WINDOW = 0x7fff_ffff;

/** Size, count and budget limits of one connection. */
export interface Limits {
  /**
   * Largest frame payload we accept, advertised in the handshake. Default
   * 1 MiB; at least 1 KiB, at most 16 MiB − 1. A larger frame is GOAWAY(TOO_LARGE) before
   * any of its payload is buffered.
   */
  maxFrame: number;
  /**
   * Largest message we accept after reassembly and decompression,
   * advertised. Default 1 MiB. A larger message is GOAWAY(TOO_LARGE). Costs
   * up to this many bytes per message being reassembled.
   */
  maxMessage: number;
  /**
   * Calls and streams the peer may have open towards us at once (counting
   * handlers still running after a cancel), advertised. Default 100. The
   * excess is refused with ERROR(REFUSED), never queued.
   */
  maxInFlight: number;
  /**
   * Initial credit of each stream we receive on, in bytes, advertised.
   * Default 1 MiB; at least 1 KiB. Data beyond it is ERROR(FLOW_CONTROL) on the stream.
   */
  initialStreamCredit: number;
  /**
   * Connection credit, in bytes, advertised: message bytes the peer may send
   * that we have not yet delivered. Default 4 MiB; at least 1 KiB. Data beyond it is
   * GOAWAY(FLOW_CONTROL). Bounds the bytes buffered inside the core.
   */
  connectionCredit: number;
  /**
   * Largest HELLO or HELLO_ACK payload, in bytes; also the frame limit until
   * the handshake completes. Default 16 KiB; at least 1 KiB. GOAWAY(TOO_LARGE).
   */
  maxHandshake: number;
  /**
   * Size of the fragments we send, in bytes; capped by the peer's frame
   * limit. Default 64 KiB. Smaller values let control frames and small calls
   * overtake bulk transfers sooner.
   */
  sendFragment: number;
  /**
   * Bytes of accepted but unsent messages after which `send*` throws
   * `BlockedError` (a later `Writable` event says retry). Default 8 MiB.
   */
  maxSendQueue: number;
  /**
   * Control frames we may have queued (PONG, CREDIT, ERROR...) before we stop
   * reading input until they are written. Default 64.
   */
  maxPendingControl: number;
  /**
   * Peer CANCELs of calls not yet delivered to the application, net of calls
   * delivered. Default 20. GOAWAY(EXCESSIVE_LOAD).
   */
  earlyCancelBudget: number;
  /**
   * Calls and streams we had to end with an error because of something the
   * peer sent, net of calls completed. Default 1024. GOAWAY(EXCESSIVE_LOAD).
   */
  errorResetBudget: number;
  /**
   * Frames naming finished ids, and ignored extension frames, net of useful
   * frames. Default 1024. GOAWAY(EXCESSIVE_LOAD).
   */
  strayFrameBudget: number;
  /**
   * Non-final message frames shorter than this many bytes are charged
   * `smallFrameThreshold − len` against {@link Limits.smallFrameBudget}.
   * Default 256.
   */
  smallFrameThreshold: number;
  /**
   * Budget for small non-final frames, in bytes; frames at or above the
   * threshold refund their length. Default 25,600. GOAWAY(EXCESSIVE_LOAD).
   */
  smallFrameBudget: number;
  /**
   * CREDIT frames the peer may send per message frame we send, accumulated
   * up to ten times this value. Default 10. GOAWAY(EXCESSIVE_LOAD).
   */
  creditFramesPerData: number;
  /**
   * PINGs arriving sooner than {@link Timeouts.minPingInterval} after the
   * previous one, with no message sent in between, before
   * GOAWAY(EXCESSIVE_LOAD). Default 2.
   */
  maxPingStrikes: number;
  /**
   * Highest id we open before refusing new calls (`IdsExhaustedError`) so the
   * runtime can reconnect. Default 3/4 of the 32-bit id space.
   */
  maxLocalId: number;
}

/** The default limits. */
export function defaultLimits(): Limits {
  return {
    maxFrame: 1 << 20,
    maxMessage: 1 << 20,
    maxInFlight: 100,
    initialStreamCredit: 1 << 20,
    connectionCredit: 4 << 20,
    maxHandshake: 16 * 1024,
    sendFragment: 64 * 1024,
    maxSendQueue: 8 << 20,
    maxPendingControl: 64,
    earlyCancelBudget: 20,
    errorResetBudget: 1024,
    strayFrameBudget: 1024,
    smallFrameThreshold: 256,
    smallFrameBudget: 25_600,
    creditFramesPerData: 10,
    maxPingStrikes: 2,
    maxLocalId: 0xc000_0000,
  };
}

function check(name: string, value: unknown, min: number, max: number): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidLimitError(name, value, min, max);
  }
}

/**
 * Checks every value against its allowed range (and that it is an integer).
 *
 * @throws {InvalidLimitError} naming the first value out of range.
 */
export function validateLimits(l: Limits): void {
  const ceiling = MAX_FRAME_CEILING;
  check('maxFrame', l.maxFrame, MIN_FRAME, ceiling);
  check('maxMessage', l.maxMessage, MIN_FRAME, U32_MAX);
  check('maxInFlight', l.maxInFlight, 1, U32_MAX);
  check('initialStreamCredit', l.initialStreamCredit, MIN_FRAME, MAX_WINDOW);
  check('connectionCredit', l.connectionCredit, MIN_FRAME, MAX_WINDOW);
  check('maxHandshake', l.maxHandshake, MIN_FRAME, ceiling);
  check('sendFragment', l.sendFragment, MIN_FRAME, ceiling);
  check('maxSendQueue', l.maxSendQueue, 1, Number.MAX_SAFE_INTEGER);
  check('maxPendingControl', l.maxPendingControl, 4, U32_MAX);
  check('maxLocalId', l.maxLocalId, 2, U32_MAX);
  check('earlyCancelBudget', l.earlyCancelBudget, 1, U32_MAX);
  check('errorResetBudget', l.errorResetBudget, 1, U32_MAX);
  check('strayFrameBudget', l.strayFrameBudget, 1, U32_MAX);
  check('smallFrameBudget', l.smallFrameBudget, 1, U32_MAX);
  check('creditFramesPerData', l.creditFramesPerData, 1, U32_MAX);
  // Any u32 in Rust; here only the integer range needs checking.
  check('smallFrameThreshold', l.smallFrameThreshold, 0, U32_MAX);
  check('maxPingStrikes', l.maxPingStrikes, 0, U32_MAX);
}

/**
 * Timeouts of one connection, in milliseconds. Every deadline reaches the
 * runtime through `pollTimeout`.
 */
export interface Timeouts {
  /** From connection start to a completed handshake. Default 10 s. Expiry closes with GOAWAY(TIMEOUT). */
  handshake: number;
  /**
   * A frame whose first byte has arrived must complete within this time
   * (also a fragmented message). Default 30 s. Expiry closes with
   * GOAWAY(TIMEOUT).
   */
  partialFrame: number;
  /** Send a PING after this long without receiving anything. Default 20 s; `null` disables keepalive. */
  keepaliveInterval: number | null;
  /** Close with GOAWAY(TIMEOUT) when nothing arrives this long after a keepalive PING. Default 20 s. */
  keepaliveTimeout: number;
  /** Close gracefully after this long with no call or stream open and no frame exchanged. Default `null` (off). */
  idle: number | null;
  /** Peer PINGs closer together than this earn a strike. Default 5 s. */
  minPingInterval: number;
  /**
   * Between the first GOAWAY (last id = MAX) and the second of a graceful
   * shutdown, if the PING sent with the first is not answered. Default 5 s.
   */
  goawayGrace: number;
  /** Time allowed for calls in flight to finish after the final GOAWAY. Default 30 s. */
  drain: number;
}

/** The default timeouts. */
export function defaultTimeouts(): Timeouts {
  return {
    handshake: 10_000,
    partialFrame: 30_000,
    keepaliveInterval: 20_000,
    keepaliveTimeout: 20_000,
    idle: null,
    minPingInterval: 5_000,
    goawayGrace: 5_000,
    drain: 30_000,
  };
}

function checkDuration(name: string, value: unknown, optional: boolean): void {
  if (optional && value === null) {
    return;
  }
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > Number.MAX_SAFE_INTEGER) {
    throw new InvalidLimitError(name, value, 0, Number.MAX_SAFE_INTEGER);
  }
}

/**
 * Checks that every timeout is a finite, non-negative number of milliseconds
 * (or `null` where a timeout may be off).
 *
 * @throws {InvalidLimitError} naming the first bad value.
 */
export function validateTimeouts(t: Timeouts): void {
  checkDuration('handshake', t.handshake, false);
  checkDuration('partialFrame', t.partialFrame, false);
  checkDuration('keepaliveInterval', t.keepaliveInterval, true);
  checkDuration('keepaliveTimeout', t.keepaliveTimeout, false);
  checkDuration('idle', t.idle, true);
  checkDuration('minPingInterval', t.minPingInterval, false);
  checkDuration('goawayGrace', t.goawayGrace, false);
  checkDuration('drain', t.drain, false);
}
