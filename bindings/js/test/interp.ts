/**
 * Runs a conversation against two core connections and compares every step
 * with its recorded expectation: a mirror of
 * `crates/gatewire-vectors/src/interp.rs` in verify mode.
 */

import { isDeepStrictEqual } from 'node:util';

import {
  ApiError,
  BlockedError,
  ClosedError,
  ClosingError,
  CoreConnection as Connection,
  framesToBytes,
  IdsExhaustedError,
  InvalidArgumentError,
  InvalidStateError,
  MessageTooLargeError,
  SendError,
  SendUnknownCallError,
  UnknownCallError,
  type CoreConnectionOptions as ConnectionOptions,
  type Frame,
  type Limits,
  type Timeouts,
} from '../src/index.js';
import { eventJson, frameJson, parseCode, parseMessage, servicesFromJson, unhex, type Json } from './json.js';

/** Configuration overrides, as in the vector files. */
export interface ConfigJson {
  limits?: Record<string, number>;
  timeouts_ms?: Record<string, number | null>;
  compression?: boolean;
  /** Services offered, in the JSON form of the control vectors. */
  services?: Json[];
  /** Services used. */
  uses?: Json[];
}

/** One step of a conversation. */
export type Step =
  | { op: 'deliver'; from: SideName; frames: Json[] }
  | { op: 'drop'; side: SideName; frames: Json[] }
  | { op: 'events'; side: SideName; expect: Json[] }
  | { op: 'inject'; side: SideName; hex: string }
  | { op: 'advance'; ms: number }
  | { op: 'eof'; side: SideName }
  | { op: 'call'; side: SideName; command: string; args: Record<string, Json>; result: Json }
  | { op: 'check'; side: SideName; state: StateJson };

/** Which connection a step acts on. */
export type SideName = 'client' | 'server';

/** Observable connection state. */
export interface StateJson {
  connected: boolean;
  closed: boolean;
  in_flight: [number, number];
  table_len: number;
  timeout_ms: number | null;
}

/** One conversation. */
export interface Conversation {
  name: string;
  note: string;
  client: ConfigJson;
  server: ConfigJson;
  steps: Step[];
}

const LIMIT_NAMES: Record<string, keyof Limits> = {
  max_frame: 'maxFrame',
  max_message: 'maxMessage',
  max_in_flight: 'maxInFlight',
  initial_stream_credit: 'initialStreamCredit',
  connection_credit: 'connectionCredit',
  max_handshake: 'maxHandshake',
  send_fragment: 'sendFragment',
  max_send_queue: 'maxSendQueue',
  max_pending_control: 'maxPendingControl',
  early_cancel_budget: 'earlyCancelBudget',
  error_reset_budget: 'errorResetBudget',
  stray_frame_budget: 'strayFrameBudget',
  small_frame_threshold: 'smallFrameThreshold',
  small_frame_budget: 'smallFrameBudget',
  credit_frames_per_data: 'creditFramesPerData',
  max_ping_strikes: 'maxPingStrikes',
  max_local_id: 'maxLocalId',
};

const OPTIONAL_TIMEOUTS = new Set(['keepalive_interval', 'idle']);

const TIMEOUT_NAMES: Record<string, keyof Timeouts> = {
  handshake: 'handshake',
  partial_frame: 'partialFrame',
  keepalive_interval: 'keepaliveInterval',
  keepalive_timeout: 'keepaliveTimeout',
  idle: 'idle',
  min_ping_interval: 'minPingInterval',
  goaway_grace: 'goawayGrace',
  drain: 'drain',
};

/** Applies configuration overrides. */
export function config(server: boolean, j: ConfigJson): ConnectionOptions {
  const limits: Partial<Limits> = {};
  for (const [name, v] of Object.entries(j.limits ?? {})) {
    const key = LIMIT_NAMES[name];
    if (key === undefined) {
      throw new Error(`unknown limit ${name}`);
    }
    limits[key] = v;
  }
  const timeouts: Partial<Record<keyof Timeouts, number | null>> = {};
  for (const [name, v] of Object.entries(j.timeouts_ms ?? {})) {
    const key = TIMEOUT_NAMES[name];
    if (key === undefined) {
      throw new Error(`unknown timeout ${name}`);
    }
    if (v === null && !OPTIONAL_TIMEOUTS.has(name)) {
      throw new Error(`timeout ${name} cannot be off`);
    }
    timeouts[key] = v;
  }
  return {
    role: server ? 'server' : 'client',
    limits,
    timeouts: timeouts as Partial<Timeouts>,
    compression: j.compression ?? false,
    services: servicesFromJson(j.services ?? []),
    uses: servicesFromJson(j.uses ?? []),
  };
}

function sendErrorName(e: unknown): string {
  if (e instanceof BlockedError) return 'Blocked';
  if (e instanceof MessageTooLargeError) return 'TooLarge';
  if (e instanceof ClosingError) return 'Closing';
  if (e instanceof ClosedError) return 'Closed';
  if (e instanceof IdsExhaustedError) return 'IdsExhausted';
  if (e instanceof SendUnknownCallError) return 'UnknownCall';
  if (e instanceof SendError) return 'Other';
  return apiErrorName(e);
}

function apiErrorName(e: unknown): string {
  if (e instanceof InvalidStateError) return 'InvalidState';
  if (e instanceof InvalidArgumentError) return 'InvalidArgument';
  if (e instanceof UnknownCallError) return 'UnknownCall';
  if (e instanceof ApiError) return 'Other';
  throw e;
}

function argU32(args: Record<string, Json>, name: string): number {
  const v = args[name];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffff_ffff) {
    throw new Error(`missing integer argument ${name}`);
  }
  return v;
}

function optStr(args: Record<string, Json>, name: string): string | undefined {
  const v = args[name];
  return typeof v === 'string' ? v : undefined;
}

function reqStr(args: Record<string, Json>, name: string): string {
  const v = optStr(args, name);
  if (v === undefined) {
    throw new Error(`missing ${name}`);
  }
  return v;
}

function deadline(args: Record<string, Json>): number | undefined {
  const v = args['deadline_ms'];
  return typeof v === 'number' ? v : undefined;
}

function toJson(v: unknown): Json {
  if (v === undefined) return null;
  if (typeof v === 'bigint') return Number(v);
  return v as Json;
}

function ok(f: () => unknown): Json {
  try {
    return { ok: toJson(f()) };
  } catch (e) {
    return { error: sendErrorName(e) };
  }
}

function okApi(f: () => unknown): Json {
  try {
    return { ok: toJson(f()) };
  } catch (e) {
    return { error: apiErrorName(e) };
  }
}

function command(c: Connection, name: string, args: Record<string, Json>): Json {
  const bool = (k: string): boolean => args[k] === true;
  switch (name) {
    case 'accept':
      return okApi(() => c.accept());
    case 'refuse':
      return okApi(() => c.refuse(parseCode(reqStr(args, 'code')), optStr(args, 'message')));
    case 'send_request':
      return ok(() => c.sendRequest(argU32(args, 'method'), parseMessage(args['message']), deadline(args)));
    case 'send_event':
      return ok(() => c.sendEvent(argU32(args, 'method'), parseMessage(args['message'])));
    case 'open_stream':
      return ok(() => c.openStream(argU32(args, 'method'), parseMessage(args['message']), deadline(args), bool('end')));
    case 'send_response':
      return ok(() => c.sendResponse(argU32(args, 'id'), parseMessage(args['message'])));
    case 'send_error': {
      const code = parseCode(reqStr(args, 'code'));
      const info = { message: optStr(args, 'message'), details: undefined };
      return ok(() => c.sendError(argU32(args, 'id'), code, info));
    }
    case 'send_stream_data':
      return ok(() => c.sendStreamData(argU32(args, 'id'), parseMessage(args['message']), bool('end')));
    case 'finish':
      return ok(() => c.finish(argU32(args, 'id')));
    case 'grant_credit':
      return okApi(() => c.grantCredit(argU32(args, 'id'), argU32(args, 'n')));
    case 'cancel':
      return okApi(() => c.cancel(argU32(args, 'id')));
    case 'ping':
      return okApi(() => c.ping());
    case 'close':
      c.close(parseCode(reqStr(args, 'code')), optStr(args, 'message'));
      return { ok: null };
    default:
      throw new Error(`unknown command ${name}`);
  }
}

function drainFrames(c: Connection): Frame[] {
  const out: Frame[] = [];
  for (let f = c.pollTransmit(); f !== undefined; f = c.pollTransmit()) {
    out.push(f);
  }
  return out;
}

function state(c: Connection, start: number): StateJson {
  const [l, r] = c.callsInFlight();
  const t = c.pollTimeout();
  return {
    connected: c.isConnected(),
    closed: c.isClosed(),
    in_flight: [l, r],
    table_len: c.tableLen(),
    timeout_ms: t === undefined ? null : Math.floor(Math.max(0, t - start)),
  };
}

function compare(step: number, what: string, expected: unknown, actual: unknown): void {
  if (!isDeepStrictEqual(expected, actual)) {
    throw new Error(
      `step ${step} (${what}): expected ${JSON.stringify(expected, null, 1)}\n   got ${JSON.stringify(actual, null, 1)}`,
    );
  }
}

/** Runs `conv` and throws on the first difference from its expectations. */
export function run(conv: Conversation): void {
  const start = 0;
  const client = new Connection(config(false, conv.client), start);
  const server = new Connection(config(true, conv.server), start);
  let now = start;
  const conn = (s: SideName): Connection => (s === 'client' ? client : server);
  conv.steps.forEach((step, i) => {
    switch (step.op) {
      case 'deliver': {
        const sent = drainFrames(conn(step.from));
        const actual = sent.map(frameJson);
        const bytes = framesToBytes(sent);
        conn(step.from === 'client' ? 'server' : 'client').handleBytes(now, bytes);
        compare(i, 'deliver', step.frames, actual);
        break;
      }
      case 'drop':
        compare(i, 'drop', step.frames, drainFrames(conn(step.side)).map(frameJson));
        break;
      case 'events': {
        const c = conn(step.side);
        const actual: Json[] = [];
        for (let e = c.pollEvent(); e !== undefined; e = c.pollEvent()) {
          actual.push(eventJson(e));
        }
        compare(i, 'events', step.expect, actual);
        break;
      }
      case 'inject':
        conn(step.side).handleBytes(now, unhex(step.hex));
        break;
      case 'advance':
        now += step.ms;
        client.handleTimeout(now);
        server.handleTimeout(now);
        break;
      case 'eof':
        conn(step.side).handleEof(now);
        break;
      case 'call':
        compare(i, step.command, step.result, command(conn(step.side), step.command, step.args));
        break;
      case 'check':
        compare(i, 'check', step.state, state(conn(step.side), start));
        break;
    }
  });
}
