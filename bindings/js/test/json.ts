/**
 * Conversions between core values and their JSON form in the vectors: a
 * line-by-line mirror of `crates/gatewire-vectors/src/json.rs`.
 */

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  BudgetExhaustedError,
  ConnectionError,
  ConnectionLostError,
  ControlFailedError,
  decodeErrorInfo,
  decodeGoAway,
  decodeHello,
  decodeHelloAck,
  errorCodeName,
  FlowControlError,
  FrameError,
  FrameType,
  LimitExceededError,
  LocalCloseError,
  MalformedError,
  ProtocolViolationError,
  RefusedError,
  RemoteCloseError,
  TimeoutError,
  Violation,
  type AdvertisedLimits,
  type ConnectionEvent,
  type ErrorCode,
  type ErrorInfo,
  type Frame,
  type GoAwayInfo,
  type Hello,
  type HelloAck,
  type Message,
  type PeerInfo,
  type Service,
  type ServiceList,
  type Side,
} from '../src/index.js';

/** A JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** `tests/vectors/`: `$GATEWIRE_VECTORS`, or the nearest ancestor's `tests/vectors`. */
export function vectorsDir(): string {
  const env = process.env['GATEWIRE_VECTORS'];
  if (env !== undefined && env !== '') {
    return env;
  }
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'tests', 'vectors');
    if (existsSync(join(candidate, 'conversations.json'))) {
      return candidate;
    }
    const parent = dirname(dir);
    if (parent === dir) {
      throw new Error('tests/vectors not found; set GATEWIRE_VECTORS');
    }
    dir = parent;
  }
}

/** Lower-case hex. */
export function hx(b: Uint8Array): string {
  let s = '';
  for (const byte of b) {
    s += byte.toString(16).padStart(2, '0');
  }
  return s;
}

/** Parses lower- or upper-case hex. */
export function unhex(s: string): Uint8Array {
  if (s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) {
    throw new Error(`bad hex ${s.slice(0, 20)}`);
  }
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) {
    out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  }
  return out;
}

/** A code's name, or `0x` and four hex digits for an unnamed code. */
export function codeName(code: ErrorCode): string {
  return errorCodeName(code) ?? `0x${code.toString(16).padStart(4, '0')}`;
}

/** Parses {@link codeName} output. */
export function parseCode(s: string): ErrorCode {
  if (s.startsWith('0x')) {
    const v = parseInt(s.slice(2), 16);
    if (Number.isNaN(v) || v > 0xffff) {
      throw new Error(`bad code ${s}`);
    }
    return v;
  }
  for (let c = 0; c <= 0x20; c++) {
    if (errorCodeName(c) === s) {
      return c;
    }
  }
  throw new Error(`unknown code name ${s}`);
}

/** The kind string of a frame error. */
export function frameErrorKind(e: FrameError): string {
  return e.kind;
}

function violationKind(v: Violation): string {
  switch (v.code) {
    case 'violation.unexpected_frame':
    case 'violation.wrong_parity':
    case 'violation.id_not_increasing':
    case 'violation.unopened_id':
    case 'violation.interleaved_message':
    case 'violation.short_prelude':
    case 'violation.compression_not_negotiated':
    case 'violation.version_not_offered':
    case 'violation.goaway_increased':
    case 'violation.invalid_peer_limit':
      return v.code.slice('violation.'.length);
    default:
      // json.rs names no other variant.
      return 'other';
  }
}

/** An error outcome. */
export interface ErrorJson {
  code: string;
  kind: string;
}

/** The JSON form of a frame-level error. */
export function frameErrorJson(e: FrameError): ErrorJson {
  return { code: codeName(e.wireCode), kind: `malformed.${frameErrorKind(e)}` };
}

/** The JSON form of a connection error. */
export function connectionErrorJson(e: ConnectionError): ErrorJson {
  let kind: string;
  if (e instanceof MalformedError) {
    kind = `malformed.${frameErrorKind(e.error)}`;
  } else if (e instanceof ControlFailedError) {
    kind = 'control';
  } else if (e instanceof ProtocolViolationError) {
    kind = `violation.${violationKind(e.violation)}`;
  } else if (e instanceof LimitExceededError) {
    kind = `limit.${e.limit}`;
  } else if (e instanceof FlowControlError) {
    kind = 'flow_control';
  } else if (e instanceof BudgetExhaustedError) {
    kind = `budget.${e.budget.replaceAll(' ', '_')}`;
  } else if (e instanceof TimeoutError) {
    kind = `timeout.${e.timer.replaceAll(' ', '_')}`;
  } else if (e instanceof RefusedError) {
    kind = `refused.${e.side}`;
  } else if (e instanceof RemoteCloseError) {
    kind = 'remote';
  } else if (e instanceof LocalCloseError) {
    kind = 'local';
  } else if (e instanceof ConnectionLostError) {
    kind = 'connection_lost';
  } else {
    kind = 'other';
  }
  return { code: codeName(e.wireCode), kind };
}

function sideName(s: Side): string {
  return s;
}

/** A message's JSON form (`uncompressed_len` omitted when absent). */
export function messageJson(m: Message): Json {
  const out: { [key: string]: Json } = { codec: m.codec, body: hx(m.body) };
  if (m.uncompressedLen !== undefined) {
    out['uncompressed_len'] = m.uncompressedLen;
  }
  return out;
}

/** Parses a message. */
export function parseMessage(v: Json | undefined): Message {
  if (v === undefined || v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new Error('missing argument message');
  }
  const codec = v['codec'];
  const body = v['body'];
  const n = v['uncompressed_len'];
  if (typeof codec !== 'number' || typeof body !== 'string') {
    throw new Error('bad message');
  }
  return { codec, body: unhex(body), uncompressedLen: typeof n === 'number' ? n : undefined };
}

function limitsJson(l: AdvertisedLimits): Json {
  return {
    max_frame: l.maxFrame,
    max_message: l.maxMessage,
    max_in_flight: l.maxInFlight,
    initial_stream_credit: l.initialStreamCredit,
    connection_credit: l.connectionCredit,
  };
}

/** The JSON form of service descriptors: u64 hashes as decimal strings. */
export function servicesJson(s: readonly Service[]): Json {
  return s.map((x) => ({
    name: x.name,
    fingerprint: x.fingerprint.toString(),
    methods: x.methods.map((m) => ({
      name: m.name,
      id: m.id,
      kind: m.kind,
      request: m.request.toString(),
      response: m.response.toString(),
    })),
    shapes: x.shapes.map((sh) => ({
      name: sh.name,
      type: sh.type.toString(),
      fixed: sh.fixed,
      slots: sh.slots.map((v) => v.toString()),
    })),
  }));
}

function u64Of(v: Json | undefined, what: string): bigint {
  if (typeof v !== 'string' || !/^[0-9]+$/.test(v) || BigInt(v) > 0xffff_ffff_ffff_ffffn) {
    throw new Error(`${what} must be a decimal string`);
  }
  return BigInt(v);
}

function strOf(v: Json | undefined, what: string): string {
  if (typeof v !== 'string') {
    throw new Error(`missing ${what}`);
  }
  return v;
}

function intOf(v: Json | undefined, max: number, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw new Error(`bad ${what}`);
  }
  return v;
}

function listOf(v: Json | undefined, what: string): Json[] {
  if (!Array.isArray(v)) {
    throw new Error(`${what}: expected an array`);
  }
  return v;
}

function objOf(v: Json | undefined, what: string): { [key: string]: Json } {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new Error(`${what}: expected an object`);
  }
  return v;
}

/** Reads service descriptors in the form {@link servicesJson} writes. */
export function servicesFromJson(v: Json | undefined): Service[] {
  return listOf(v, 'services').map((x) => {
    const s = objOf(x, 'service');
    return {
      name: strOf(s['name'], 'service name'),
      fingerprint: u64Of(s['fingerprint'], 'fingerprint'),
      methods: listOf(s['methods'] ?? [], 'methods').map((y) => {
        const m = objOf(y, 'method');
        return {
          name: strOf(m['name'], 'method name'),
          id: intOf(m['id'], 0xffff_ffff, 'method id'),
          kind: intOf(m['kind'], 0xff, 'method kind'),
          request: u64Of(m['request'], 'request'),
          response: u64Of(m['response'], 'response'),
        };
      }),
      shapes: listOf(s['shapes'] ?? [], 'shapes').map((y) => {
        const sh = objOf(y, 'shape');
        const fixed = sh['fixed'];
        if (typeof fixed !== 'boolean') {
          throw new Error('shape: missing fixed');
        }
        return {
          name: strOf(sh['name'], 'shape name'),
          type: u64Of(sh['type'], 'type'),
          fixed,
          slots: listOf(sh['slots'], 'slots').map((z) => u64Of(z, 'slot')),
        };
      }),
    };
  });
}

/** The JSON form of a ServiceList table. */
export function serviceListJson(l: ServiceList): Json {
  return { offers: servicesJson(l.offers), uses: servicesJson(l.uses) };
}

/** The JSON form of a HELLO table. */
export function helloJson(h: Hello): Json {
  return {
    min_version: h.minVersion,
    max_version: h.maxVersion,
    limits: limitsJson(h.limits),
    compression: h.compression,
    codecs: h.codecs,
    auth: h.auth === undefined ? null : hx(h.auth),
    services: servicesJson(h.services),
    agent: h.agent ?? null,
    uses: servicesJson(h.uses),
  };
}

/** The JSON form of a HELLO_ACK table. */
export function helloAckJson(h: HelloAck): Json {
  return {
    version: h.version,
    error_code: codeName(h.errorCode),
    message: h.message ?? null,
    limits: limitsJson(h.limits),
    compression: h.compression,
    codecs: h.codecs,
    services: servicesJson(h.services),
    agent: h.agent ?? null,
    uses: servicesJson(h.uses),
  };
}

/** The JSON form of an ErrorInfo table. */
export function errorInfoJson(e: ErrorInfo): Json {
  return { message: e.message ?? null, details: e.details === undefined ? null : hx(e.details) };
}

/** The JSON form of a GoAway table. */
export function goawayJson(g: GoAwayInfo): Json {
  return { message: g.message ?? null };
}

function peerJson(p: PeerInfo): Json {
  return {
    version: p.version,
    limits: limitsJson(p.limits),
    compression: p.compression,
    codecs: p.codecs,
    services: servicesJson(p.services),
    agent: p.agent ?? null,
    uses: servicesJson(p.uses),
  };
}

/** A frame as it appears in a frame-decoding case: payload always in hex. */
export function rawFrameJson(f: Frame): { [key: string]: Json } {
  const h = f.header;
  return { type: h.type, flags: h.flags, codec: h.codec, id: h.id, arg: h.arg, payload: hx(f.payload) };
}

function attempt<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch {
    return undefined;
  }
}

/** A frame as it appears in a conversation: control tables decoded. */
export function frameJson(f: Frame): Json {
  const j = rawFrameJson(f);
  let control: Json | undefined;
  const p = f.payload;
  switch (f.header.type) {
    case FrameType.HELLO: {
      const h = attempt(() => decodeHello(p));
      control = h === undefined ? undefined : helloJson(h);
      break;
    }
    case FrameType.HELLO_ACK: {
      const h = attempt(() => decodeHelloAck(p));
      control = h === undefined ? undefined : helloAckJson(h);
      break;
    }
    case FrameType.ERROR: {
      const e = attempt(() => decodeErrorInfo(p));
      control = e === undefined ? undefined : errorInfoJson(e);
      break;
    }
    case FrameType.GOAWAY: {
      const g = attempt(() => decodeGoAway(p));
      control = g === undefined ? undefined : goawayJson(g);
      break;
    }
    default:
      control = undefined;
  }
  if (control !== undefined) {
    delete j['payload'];
    j['control'] = control;
  }
  return j;
}

function deadlineMs(d: number | undefined): Json {
  return d === undefined ? null : Math.floor(d);
}

function u64Json(v: bigint): Json {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new Error(`u64 ${v} does not fit a JSON number exactly`);
  }
  return Number(v);
}

/** The JSON form of an event. */
export function eventJson(e: ConnectionEvent): Json {
  switch (e.type) {
    case 'HelloReceived':
      return { type: 'HelloReceived', hello: helloJson(e.hello) };
    case 'Connected':
      return { type: 'Connected', peer: peerJson(e.peer) };
    case 'Request':
      return {
        type: 'Request',
        id: e.id,
        method: e.method,
        message: messageJson(e.message),
        deadline_ms: deadlineMs(e.deadline),
      };
    case 'Response':
      return { type: 'Response', id: e.id, message: messageJson(e.message) };
    case 'CallFailed':
      return {
        type: 'CallFailed',
        id: e.id,
        code: codeName(e.code),
        info: errorInfoJson(e.info),
        side: sideName(e.side),
      };
    case 'Event':
      return { type: 'Event', method: e.method, message: messageJson(e.message) };
    case 'StreamOpened':
      return {
        type: 'StreamOpened',
        id: e.id,
        method: e.method,
        message: messageJson(e.message),
        end: e.end,
        deadline_ms: deadlineMs(e.deadline),
      };
    case 'StreamData':
      return { type: 'StreamData', id: e.id, message: messageJson(e.message), end: e.end };
    case 'Cancelled':
      return { type: 'Cancelled', id: e.id, code: codeName(e.code) };
    case 'Writable':
      return { type: 'Writable', id: e.id ?? null };
    case 'Pong':
      return { type: 'Pong', token: u64Json(e.token), rtt_ms: Math.floor(e.rtt) };
    case 'GoAway':
      return { type: 'GoAway', last_id: e.lastId, code: codeName(e.code), message: e.message ?? null };
    case 'Closed':
      return { type: 'Closed', error: e.error === undefined ? null : (connectionErrorJson(e.error) as unknown as Json) };
  }
}
