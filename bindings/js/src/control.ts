/**
 * Control payloads: the FlatBuffers tables of `schema/gatewire.fbs` as plain
 * values (`docs/PROTOCOL.md` §4 and §6).
 *
 * The five tables (and their `Limits`, `Service`, `Method` and `Shape`
 * children) are read and written by hand, with no runtime dependency:
 *
 * - **Decoding verifies first**, exactly as the Rust `flatbuffers` verifier
 *   does with the bounds of {@link verifierOptions}: every offset is
 *   bounds-checked and alignment-checked, table depth is at most 32, at most
 *   10,000 tables are visited, the bytes touched may not exceed four times
 *   the payload, strings are strict UTF-8 with a NUL terminator, and
 *   `Service.name` is required. Nothing is read from an unverified table.
 * - **Encoding** follows the Rust `FlatBufferBuilder` layout (same field
 *   order, alignment, default elision and vtable sharing), so both
 *   implementations produce the same bytes for the same value.
 *
 * @module
 */

import { ControlInvalidError, ControlMissingError, EmptyVersionRangeError } from './errors.js';
import { ErrorCode } from './wire.js';

/** Nesting depth a control table may reach. */
export const MAX_DEPTH = 32;
/** Tables a control payload may contain. */
export const MAX_TABLES = 10_000;

/** Verifier bounds. */
export interface VerifierOptions {
  /** Deepest table nesting. */
  maxDepth: number;
  /** Most tables visited. */
  maxTables: number;
  /** Most bytes the verifier may touch (counting repeats). */
  maxApparentSize: number;
  /** Accept strings without a NUL terminator. */
  ignoreMissingNullTerminator: boolean;
}

/**
 * The verifier bounds for a control payload of `len` bytes: depth 32, 10,000
 * tables and an apparent size of at most four times the payload (at least 64).
 */
export function verifierOptions(len: number): VerifierOptions {
  return {
    maxDepth: MAX_DEPTH,
    maxTables: MAX_TABLES,
    maxApparentSize: Math.max(len * 4, 64),
    ignoreMissingNullTerminator: false,
  };
}

/**
 * Receive limits as advertised in HELLO and HELLO_ACK. Zero means "not
 * stated": the protocol default applies.
 */
export interface AdvertisedLimits {
  /** Largest frame payload accepted, in bytes. */
  maxFrame: number;
  /** Largest message accepted, in bytes. */
  maxMessage: number;
  /** Calls and streams the peer may have open at once. */
  maxInFlight: number;
  /** Initial per-stream credit, in bytes. */
  initialStreamCredit: number;
  /** Initial connection credit, in bytes. */
  connectionCredit: number;
}

/** All-zero advertised limits ("not stated"). */
export function emptyAdvertisedLimits(): AdvertisedLimits {
  return { maxFrame: 0, maxMessage: 0, maxInFlight: 0, initialStreamCredit: 0, connectionCredit: 0 };
}

/**
 * How a method is called (`docs/SCHEMA.md` §2): a `ubyte`. The names are
 * the known kinds; any other value is kept as it is.
 */
export const MethodKind = {
  /** REQUEST and one RESPONSE. */
  UNARY: 0,
  /** One request opens a stream; the callee sends the items. */
  SERVER_STREAMING: 1,
  /** The caller sends the items; the callee answers with one message. */
  CLIENT_STREAMING: 2,
  /** Both sides send items. */
  BIDI_STREAMING: 3,
  /** A one-way EVENT. */
  EVENT: 4,
} as const;
/** A method kind: one of {@link MethodKind} or an unknown `u8`. */
export type MethodKind = number;

/** One method of a service descriptor (`docs/PROTOCOL.md` §10.2). */
export interface MethodDesc {
  /** The method's name within its service. */
  name: string;
  /** The method id (`u32`). */
  id: number;
  /** The call kind (`u8`). */
  kind: MethodKind;
  /** Type hash of the request, opening or event table (`u64`). */
  request: bigint;
  /** Type hash of the response or stream item table (`u64`). */
  response: bigint;
}

/**
 * The wire shape of a table or struct: one hash per field slot, in field-id
 * order (`docs/PROTOCOL.md` §10.2).
 */
export interface Shape {
  /** Fully qualified type name. */
  name: string;
  /** Type hash of the table or struct (`u64`). */
  type: bigint;
  /** A struct: the slots must match exactly. A table may gain slots. */
  fixed: boolean;
  /** One hash (`u64`) per field slot. */
  slots: bigint[];
}

/**
 * A service an endpoint offers or uses: its name, fingerprint and descriptor
 * (`docs/PROTOCOL.md` §10). Build one known only by name with
 * {@link newService}; generated code builds described ones.
 */
export interface Service {
  /** Fully qualified service name. */
  name: string;
  /** Hash of the service's canonical description (`u64`); `0n` means unknown. */
  fingerprint: bigint;
  /** The service's methods. Empty: no descriptor, only the fingerprint. */
  methods: MethodDesc[];
  /** The shapes of the tables and structs its methods reach. */
  shapes: Shape[];
}

/** A service known only by name and fingerprint (Rust `Service::new`). */
export function newService(name: string, fingerprint: bigint = 0n): Service {
  return { name, fingerprint, methods: [], shapes: [] };
}

/** A deep copy of a service. */
export function cloneService(s: Service): Service {
  return {
    name: s.name,
    fingerprint: s.fingerprint,
    methods: s.methods.map((m) => ({ ...m })),
    shapes: s.shapes.map((sh) => ({ ...sh, slots: sh.slots.slice() })),
  };
}

/** The answer of the built-in method `LIST_SERVICES` (`docs/PROTOCOL.md` §10.4). */
export interface ServiceList {
  /** Services the endpoint serves. */
  offers: Service[];
  /** Services the endpoint calls on its peer. */
  uses: Service[];
}

/** The HELLO table. */
export interface Hello {
  /** Lowest protocol version the client speaks (`u16`). */
  minVersion: number;
  /** Highest protocol version the client speaks (`u16`). */
  maxVersion: number;
  /** The client's receive limits. */
  limits: AdvertisedLimits;
  /** Compression algorithms the client decodes (bytes). */
  compression: number[];
  /** Payload codecs the client understands (bytes). */
  codecs: number[];
  /** Opaque authentication payload. */
  auth?: Uint8Array | undefined;
  /** Services the client offers. */
  services: Service[];
  /** Implementation name, for logs. */
  agent?: string | undefined;
  /** Services the client uses. */
  uses: Service[];
}

/** The HELLO_ACK table. */
export interface HelloAck {
  /** The version chosen; meaningless when refused. */
  version: number;
  /** `NO_ERROR` to accept; anything else refuses. */
  errorCode: ErrorCode;
  /** Human-readable reason for a refusal. */
  message?: string | undefined;
  /** The server's receive limits. */
  limits: AdvertisedLimits;
  /** Compression algorithms the server decodes. */
  compression: number[];
  /** Payload codecs the server understands. */
  codecs: number[];
  /** Services the server offers. */
  services: Service[];
  /** Implementation name, for logs. */
  agent?: string | undefined;
  /** Services the server uses. */
  uses: Service[];
}

/** The optional detail of an ERROR frame. */
export interface ErrorInfo {
  /** Human-readable message. */
  message?: string | undefined;
  /** Opaque application detail. */
  details?: Uint8Array | undefined;
}

/** The optional detail of a GOAWAY frame. */
export interface GoAwayInfo {
  /** Human-readable reason. */
  message?: string | undefined;
}

// ----- UTF-8 ---------------------------------------------------------------

interface Utf8Decoder {
  decode(input: Uint8Array): string;
}
interface Utf8Encoder {
  encode(input: string): Uint8Array;
}
interface TextCodecs {
  TextDecoder: new (label: string, options: { fatal: boolean; ignoreBOM: boolean }) => Utf8Decoder;
  TextEncoder: new () => Utf8Encoder;
}

// TextDecoder and TextEncoder exist in every browser, Node, Deno and Bun; they
// are reached through globalThis so the core needs no DOM or Node typings.
const textCodecs = globalThis as unknown as TextCodecs;
/** Strict: invalid UTF-8 throws, and a leading BOM is kept as Rust keeps it. */
const utf8Decoder = new textCodecs.TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const utf8Encoder = new textCodecs.TextEncoder();

/** UTF-8 bytes of `s` (a lone surrogate becomes U+FFFD). */
export function utf8Encode(s: string): Uint8Array {
  return utf8Encoder.encode(s);
}

/**
 * Strict UTF-8 decoding.
 *
 * @throws {TypeError} on invalid UTF-8.
 */
export function utf8Decode(b: Uint8Array): string {
  return utf8Decoder.decode(b);
}

// ----- the schema ------------------------------------------------------------

type FieldKind =
  | { readonly kind: 'u8' }
  | { readonly kind: 'bool' }
  | { readonly kind: 'u16' }
  | { readonly kind: 'u32' }
  | { readonly kind: 'u64' }
  | { readonly kind: 'string' }
  | { readonly kind: 'bytes' }
  | { readonly kind: 'u64s' }
  | { readonly kind: 'table'; readonly table: TableDef }
  | { readonly kind: 'tables'; readonly table: TableDef };

interface FieldDef {
  readonly name: string;
  /** vtable offset: 4 + 2 × field index. */
  readonly vt: number;
  readonly type: FieldKind;
  readonly required: boolean;
}

interface TableDef {
  readonly name: string;
  readonly fields: readonly FieldDef[];
}

const U8: FieldKind = { kind: 'u8' };
const BOOL: FieldKind = { kind: 'bool' };
const U16: FieldKind = { kind: 'u16' };
const U32: FieldKind = { kind: 'u32' };
const U64: FieldKind = { kind: 'u64' };
const STRING: FieldKind = { kind: 'string' };
const BYTES: FieldKind = { kind: 'bytes' };
const U64S: FieldKind = { kind: 'u64s' };

function field(name: string, index: number, type: FieldKind, required = false): FieldDef {
  return { name, vt: 4 + 2 * index, type, required };
}

const LIMITS: TableDef = {
  name: 'Limits',
  fields: [
    field('max_frame', 0, U32),
    field('max_message', 1, U32),
    field('max_in_flight', 2, U32),
    field('initial_stream_credit', 3, U32),
    field('connection_credit', 4, U32),
  ],
};

const METHOD: TableDef = {
  name: 'Method',
  fields: [
    field('name', 0, STRING),
    field('id', 1, U32),
    field('kind', 2, U8),
    field('request', 3, U64),
    field('response', 4, U64),
  ],
};

const SHAPE: TableDef = {
  name: 'Shape',
  fields: [field('name', 0, STRING), field('type', 1, U64), field('fixed', 2, BOOL), field('slots', 3, U64S)],
};

const SERVICE: TableDef = {
  name: 'Service',
  fields: [
    field('name', 0, STRING, true),
    field('fingerprint', 1, U64),
    field('methods', 2, { kind: 'tables', table: METHOD }),
    field('shapes', 3, { kind: 'tables', table: SHAPE }),
  ],
};

const SERVICE_LIST: TableDef = {
  name: 'ServiceList',
  fields: [
    field('offers', 0, { kind: 'tables', table: SERVICE }),
    field('uses', 1, { kind: 'tables', table: SERVICE }),
  ],
};

const HELLO: TableDef = {
  name: 'Hello',
  fields: [
    field('min_version', 0, U16),
    field('max_version', 1, U16),
    field('limits', 2, { kind: 'table', table: LIMITS }),
    field('compression', 3, BYTES),
    field('codecs', 4, BYTES),
    field('auth', 5, BYTES),
    field('services', 6, { kind: 'tables', table: SERVICE }),
    field('agent', 7, STRING),
    field('uses', 8, { kind: 'tables', table: SERVICE }),
  ],
};

const HELLO_ACK: TableDef = {
  name: 'HelloAck',
  fields: [
    field('version', 0, U16),
    field('error_code', 1, U16),
    field('message', 2, STRING),
    field('limits', 3, { kind: 'table', table: LIMITS }),
    field('compression', 4, BYTES),
    field('codecs', 5, BYTES),
    field('services', 6, { kind: 'tables', table: SERVICE }),
    field('agent', 7, STRING),
    field('uses', 8, { kind: 'tables', table: SERVICE }),
  ],
};

const ERROR_INFO: TableDef = {
  name: 'ErrorInfo',
  fields: [field('message', 0, STRING), field('details', 1, BYTES)],
};

const GOAWAY: TableDef = {
  name: 'GoAway',
  fields: [field('message', 0, STRING)],
};

// vtable offsets used by the readers and writers below.
const VT = {
  limits: { maxFrame: 4, maxMessage: 6, maxInFlight: 8, initialStreamCredit: 10, connectionCredit: 12 },
  method: { name: 4, id: 6, kind: 8, request: 10, response: 12 },
  shape: { name: 4, type: 6, fixed: 8, slots: 10 },
  service: { name: 4, fingerprint: 6, methods: 8, shapes: 10 },
  serviceList: { offers: 4, uses: 6 },
  hello: {
    minVersion: 4,
    maxVersion: 6,
    limits: 8,
    compression: 10,
    codecs: 12,
    auth: 14,
    services: 16,
    agent: 18,
    uses: 20,
  },
  helloAck: {
    version: 4,
    errorCode: 6,
    message: 8,
    limits: 10,
    compression: 12,
    codecs: 14,
    services: 16,
    agent: 18,
    uses: 20,
  },
  errorInfo: { message: 4, details: 6 },
  goAway: { message: 4 },
} as const;

// ----- the verifier ------------------------------------------------------------

/**
 * A port of the Rust `flatbuffers::Verifier`: same checks, same bounds and
 * the same accounting of the apparent size.
 */
class Verifier {
  readonly #buf: Uint8Array;
  readonly #view: DataView;
  readonly #opts: VerifierOptions;
  readonly #table: string;
  #depth = 0;
  #numTables = 0;
  #apparentSize = 0;

  constructor(buf: Uint8Array, opts: VerifierOptions, table: string) {
    this.#buf = buf;
    this.#view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.#opts = opts;
    this.#table = table;
  }

  #fail(reason: string): never {
    throw new ControlInvalidError(this.#table, reason);
  }

  #isAligned(pos: number, align: number): void {
    if (pos % align !== 0) {
      this.#fail(`value of ${align} bytes at position ${pos} is unaligned`);
    }
  }

  #rangeInBuffer(pos: number, size: number): void {
    const end = pos + size;
    if (end > this.#buf.length) {
      this.#fail(`range [${pos}, ${end}) is out of bounds`);
    }
    this.#apparentSize += size;
    if (this.#apparentSize > this.#opts.maxApparentSize) {
      this.#fail('apparent size too large');
    }
  }

  /** A scalar of `size` bytes (aligned to its size) at `pos`. */
  #inBuffer(pos: number, size: number): void {
    this.#isAligned(pos, size);
    this.#rangeInBuffer(pos, size);
  }

  #getU16(pos: number): number {
    this.#inBuffer(pos, 2);
    return this.#view.getUint16(pos, true);
  }

  #getUOffset(pos: number): number {
    this.#inBuffer(pos, 4);
    return this.#view.getUint32(pos, true);
  }

  #derefSOffset(pos: number): number {
    this.#inBuffer(pos, 4);
    const offset = this.#view.getInt32(pos, true);
    // Rust: `pos - offset` for a positive offset, `pos + |offset|` otherwise.
    const derefed = pos - offset;
    if (derefed < 0 || derefed >= this.#buf.length) {
      this.#fail(`signed offset at position ${pos} has value ${offset} which points out of bounds`);
    }
    return derefed;
  }

  /** Verifies the root offset at position 0 and the table it names. */
  root(def: TableDef): void {
    const offset = this.#getUOffset(0);
    this.#visitTable(def, offset);
  }

  #visitTable(def: TableDef, pos: number): void {
    const vtable = this.#derefSOffset(pos);
    const vtableLen = this.#getU16(vtable);
    this.#isAligned(vtable + vtableLen, 2);
    this.#rangeInBuffer(vtable, vtableLen);
    this.#numTables += 1;
    if (this.#numTables > this.#opts.maxTables) {
      this.#fail('too many tables');
    }
    this.#depth += 1;
    if (this.#depth > this.#opts.maxDepth) {
      this.#fail('nested table depth limit reached');
    }
    for (const f of def.fields) {
      let fieldPos: number | undefined;
      if (f.vt < vtableLen) {
        const fieldOffset = this.#getU16(vtable + f.vt);
        if (fieldOffset > 0) {
          fieldPos = pos + fieldOffset;
        }
      }
      if (fieldPos === undefined) {
        if (f.required) {
          this.#fail(`missing required field \`${f.name}\` in ${def.name}`);
        }
        continue;
      }
      this.#visitField(f.type, fieldPos);
    }
    this.#depth -= 1;
  }

  #visitField(type: FieldKind, pos: number): void {
    switch (type.kind) {
      case 'u8':
      case 'bool':
        this.#inBuffer(pos, 1);
        return;
      case 'u16':
        this.#inBuffer(pos, 2);
        return;
      case 'u32':
        this.#inBuffer(pos, 4);
        return;
      case 'u64':
        this.#inBuffer(pos, 8);
        return;
      case 'string':
        this.#verifyString(pos + this.#getUOffset(pos));
        return;
      case 'bytes':
        this.#vectorRange(pos + this.#getUOffset(pos), 1);
        return;
      case 'u64s':
        this.#vectorRange(pos + this.#getUOffset(pos), 8);
        return;
      case 'table':
        this.#visitTable(type.table, pos + this.#getUOffset(pos));
        return;
      case 'tables': {
        const [start, end] = this.#vectorRange(pos + this.#getUOffset(pos), 4);
        for (let at = start; at < end; at += 4) {
          this.#visitTable(type.table, at + this.#getUOffset(at));
        }
        return;
      }
    }
  }

  #vectorRange(pos: number, elemSize: number): [number, number] {
    const len = this.#getUOffset(pos);
    const start = pos + 4;
    this.#isAligned(start, elemSize);
    const size = len * elemSize;
    this.#rangeInBuffer(start, size);
    return [start, start + size];
  }

  #verifyString(pos: number): void {
    const [start, end] = this.#vectorRange(pos, 1);
    const hasNullTerminator = end < this.#buf.length && this.#buf[end] === 0;
    try {
      utf8Decode(this.#buf.subarray(start, end));
    } catch {
      this.#fail(`invalid utf-8 in string at [${start}, ${end})`);
    }
    if (!this.#opts.ignoreMissingNullTerminator && !hasNullTerminator) {
      this.#fail(`string in range [${start}, ${end}) is missing its null terminator`);
    }
  }
}

function verify(buf: Uint8Array, def: TableDef): void {
  new Verifier(buf, verifierOptions(buf.length), def.name).root(def);
}

// ----- the reader (verified buffers only) -------------------------------------

/** A table position and its vtable, in a verified buffer. */
interface TableRef {
  readonly pos: number;
  readonly vtable: number;
  readonly vtableLen: number;
}

class Reader {
  readonly #buf: Uint8Array;
  readonly #view: DataView;

  constructor(buf: Uint8Array) {
    this.#buf = buf;
    this.#view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  root(): TableRef {
    return this.table(this.#view.getUint32(0, true));
  }

  table(pos: number): TableRef {
    const vtable = pos - this.#view.getInt32(pos, true);
    return { pos, vtable, vtableLen: this.#view.getUint16(vtable, true) };
  }

  #field(t: TableRef, vt: number): number | undefined {
    if (vt >= t.vtableLen) {
      return undefined;
    }
    const off = this.#view.getUint16(t.vtable + vt, true);
    return off === 0 ? undefined : t.pos + off;
  }

  #indirect(pos: number): number {
    return pos + this.#view.getUint32(pos, true);
  }

  u8(t: TableRef, vt: number): number {
    const at = this.#field(t, vt);
    return at === undefined ? 0 : this.#view.getUint8(at);
  }

  /** A bool: any non-zero byte is true, as Rust reads it. */
  bool(t: TableRef, vt: number): boolean {
    return this.u8(t, vt) !== 0;
  }

  u16(t: TableRef, vt: number): number {
    const at = this.#field(t, vt);
    return at === undefined ? 0 : this.#view.getUint16(at, true);
  }

  u32(t: TableRef, vt: number): number {
    const at = this.#field(t, vt);
    return at === undefined ? 0 : this.#view.getUint32(at, true);
  }

  u64(t: TableRef, vt: number): bigint {
    const at = this.#field(t, vt);
    return at === undefined ? 0n : this.#view.getBigUint64(at, true);
  }

  u64s(t: TableRef, vt: number): bigint[] {
    const at = this.#field(t, vt);
    if (at === undefined) {
      return [];
    }
    const v = this.#indirect(at);
    const len = this.#view.getUint32(v, true);
    const out: bigint[] = [];
    for (let i = 0; i < len; i++) {
      out.push(this.#view.getBigUint64(v + 4 + 8 * i, true));
    }
    return out;
  }

  bytes(t: TableRef, vt: number): Uint8Array | undefined {
    const at = this.#field(t, vt);
    if (at === undefined) {
      return undefined;
    }
    const v = this.#indirect(at);
    const len = this.#view.getUint32(v, true);
    // A copy, as Rust copies: a small value must not pin the receive buffer.
    return this.#buf.slice(v + 4, v + 4 + len);
  }

  string(t: TableRef, vt: number): string | undefined {
    const at = this.#field(t, vt);
    if (at === undefined) {
      return undefined;
    }
    const v = this.#indirect(at);
    const len = this.#view.getUint32(v, true);
    return utf8Decode(this.#buf.subarray(v + 4, v + 4 + len));
  }

  child(t: TableRef, vt: number): TableRef | undefined {
    const at = this.#field(t, vt);
    return at === undefined ? undefined : this.table(this.#indirect(at));
  }

  children(t: TableRef, vt: number): TableRef[] {
    const at = this.#field(t, vt);
    if (at === undefined) {
      return [];
    }
    const v = this.#indirect(at);
    const len = this.#view.getUint32(v, true);
    const out: TableRef[] = [];
    for (let i = 0; i < len; i++) {
      out.push(this.table(this.#indirect(v + 4 + 4 * i)));
    }
    return out;
  }
}

function readLimits(r: Reader, t: TableRef | undefined): AdvertisedLimits {
  if (t === undefined) {
    return emptyAdvertisedLimits();
  }
  const vt = VT.limits;
  return {
    maxFrame: r.u32(t, vt.maxFrame),
    maxMessage: r.u32(t, vt.maxMessage),
    maxInFlight: r.u32(t, vt.maxInFlight),
    initialStreamCredit: r.u32(t, vt.initialStreamCredit),
    connectionCredit: r.u32(t, vt.connectionCredit),
  };
}

function readServices(r: Reader, t: TableRef, vt: number): Service[] {
  return r.children(t, vt).map((s) => ({
    name: r.string(s, VT.service.name) ?? '',
    fingerprint: r.u64(s, VT.service.fingerprint),
    methods: r.children(s, VT.service.methods).map((m) => ({
      name: r.string(m, VT.method.name) ?? '',
      id: r.u32(m, VT.method.id),
      kind: r.u8(m, VT.method.kind),
      request: r.u64(m, VT.method.request),
      response: r.u64(m, VT.method.response),
    })),
    shapes: r.children(s, VT.service.shapes).map((sh) => ({
      name: r.string(sh, VT.shape.name) ?? '',
      type: r.u64(sh, VT.shape.type),
      fixed: r.bool(sh, VT.shape.fixed),
      slots: r.u64s(sh, VT.shape.slots),
    })),
  }));
}

function readByteList(r: Reader, t: TableRef, vt: number): number[] {
  const b = r.bytes(t, vt);
  return b === undefined ? [] : Array.from(b);
}

// ----- the builder ---------------------------------------------------------------

/**
 * A port of the Rust `flatbuffers::FlatBufferBuilder` (back-to-front, with
 * vtable sharing), limited to what the control tables need. Offsets are
 * "reverse" positions: bytes from the end of the buffer.
 */
class Builder {
  #buf = new Uint8Array(256);
  #view = new DataView(this.#buf.buffer);
  /** Bytes used, at the end of #buf. */
  #used = 0;
  #minAlign = 1;
  #fields: { off: number; vt: number }[] = [];
  #vtables: number[] = [];

  /** Forward index in #buf of the reverse position `rev`. */
  #at(rev: number): number {
    return this.#buf.length - rev;
  }

  #ensure(want: number): void {
    while (this.#buf.length - this.#used < want) {
      const size = Math.max(1, this.#buf.length * 2);
      const next = new Uint8Array(size);
      next.set(this.#buf.subarray(this.#at(this.#used)), size - this.#used);
      this.#buf = next;
      this.#view = new DataView(next.buffer);
    }
  }

  #makeSpace(want: number): number {
    this.#ensure(want);
    this.#used += want;
    return this.#used;
  }

  #align(len: number, alignment: number): void {
    this.#minAlign = Math.max(this.#minAlign, alignment);
    const pad = -(this.#used + len) & (alignment - 1);
    this.#makeSpace(pad);
  }

  #pushU8(v: number): number {
    this.#align(1, 1);
    this.#makeSpace(1);
    this.#view.setUint8(this.#at(this.#used), v);
    return this.#used;
  }

  #pushU16(v: number): number {
    this.#align(2, 2);
    this.#makeSpace(2);
    this.#view.setUint16(this.#at(this.#used), v, true);
    return this.#used;
  }

  #pushU32(v: number): number {
    this.#align(4, 4);
    this.#makeSpace(4);
    this.#view.setUint32(this.#at(this.#used), v, true);
    return this.#used;
  }

  #pushU64(v: bigint): number {
    this.#align(8, 8);
    this.#makeSpace(8);
    this.#view.setBigUint64(this.#at(this.#used), v, true);
    return this.#used;
  }

  /** Pushes a forward offset to the object at reverse position `target`. */
  #pushOffset(target: number): number {
    this.#align(4, 4);
    this.#makeSpace(4);
    this.#view.setUint32(this.#at(this.#used), this.#used - target, true);
    return this.#used;
  }

  slotU8(vt: number, v: number): void {
    if (v !== 0) {
      this.#fields.push({ off: this.#pushU8(v), vt });
    }
  }

  slotU16(vt: number, v: number): void {
    if (v !== 0) {
      this.#fields.push({ off: this.#pushU16(v), vt });
    }
  }

  slotU32(vt: number, v: number): void {
    if (v !== 0) {
      this.#fields.push({ off: this.#pushU32(v), vt });
    }
  }

  slotU64(vt: number, v: bigint): void {
    if (v !== 0n) {
      this.#fields.push({ off: this.#pushU64(v), vt });
    }
  }

  slotOffset(vt: number, target: number | undefined): void {
    if (target !== undefined) {
      this.#fields.push({ off: this.#pushOffset(target), vt });
    }
  }

  startTable(): number {
    return this.#used;
  }

  endTable(start: number): number {
    const object = this.#pushU32(0xf0f0f0f0);
    let maxVt = 0;
    for (const f of this.#fields) {
      maxVt = Math.max(maxVt, f.vt);
    }
    const vtableLen = this.#fields.length === 0 ? 4 : maxVt + 2;
    this.#makeSpace(vtableLen);
    const vtStart = this.#at(this.#used);
    this.#view.setUint16(vtStart, vtableLen, true);
    this.#view.setUint16(vtStart + 2, object - start, true);
    for (const f of this.#fields) {
      this.#view.setUint16(vtStart + f.vt, object - f.off, true);
    }
    const fresh = this.#buf.subarray(vtStart, vtStart + vtableLen);
    let vtableRev: number | undefined;
    for (const rev of this.#vtables) {
      const at = this.#at(rev);
      const len = this.#view.getUint16(at, true);
      if (len === vtableLen && equalBytes(fresh, this.#buf.subarray(at, at + len))) {
        vtableRev = rev;
        break;
      }
    }
    if (vtableRev === undefined) {
      vtableRev = this.#used;
      this.#vtables.push(vtableRev);
    } else {
      fresh.fill(0);
      this.#used -= vtableLen;
    }
    this.#view.setInt32(this.#at(object), vtableRev - object, true);
    this.#fields = [];
    return object;
  }

  createString(s: string): number {
    return this.createByteString(utf8Encode(s));
  }

  createByteString(data: Uint8Array): number {
    this.#align(data.length + 1, 4);
    this.#pushU8(0);
    this.#makeSpace(data.length);
    this.#buf.set(data, this.#at(this.#used));
    return this.#pushU32(data.length);
  }

  createBytes(data: Uint8Array | readonly number[]): number {
    this.#align(data.length, 4);
    this.#makeSpace(data.length);
    this.#buf.set(data, this.#at(this.#used));
    return this.#pushU32(data.length);
  }

  /** A `[uint64]` vector, laid out as Rust's `create_vector::<u64>`. */
  createU64s(values: readonly bigint[]): number {
    const size = values.length * 8;
    this.#align(size, 8);
    this.#makeSpace(size);
    const start = this.#at(this.#used);
    values.forEach((v, i) => {
      this.#view.setBigUint64(start + 8 * i, v, true);
    });
    return this.#pushU32(values.length);
  }

  createOffsets(targets: readonly number[]): number {
    const size = targets.length * 4;
    this.#align(size, 4);
    this.#makeSpace(size);
    const start = this.#at(this.#used);
    targets.forEach((target, i) => {
      this.#view.setUint32(start + 4 * i, this.#used - 4 * i - target, true);
    });
    return this.#pushU32(targets.length);
  }

  finish(root: number): Uint8Array {
    this.#vtables = [];
    this.#align(4, this.#minAlign);
    this.#pushOffset(root);
    return this.#buf.slice(this.#at(this.#used));
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) {
    return false;
  }
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) {
      return false;
    }
  }
  return true;
}

function checkInt(what: string, v: number, max: number): void {
  if (!Number.isInteger(v) || v < 0 || v > max) {
    throw new RangeError(`${what} ${v} is outside 0..=${max}`);
  }
}

function checkByteList(what: string, list: readonly number[]): void {
  for (const b of list) {
    checkInt(what, b, 0xff);
  }
}

function writeLimits(b: Builder, l: AdvertisedLimits): number {
  const vt = VT.limits;
  for (const [k, v] of Object.entries(l)) {
    checkInt(`limit ${k}`, v as number, 0xffff_ffff);
  }
  const start = b.startTable();
  b.slotU32(vt.connectionCredit, l.connectionCredit);
  b.slotU32(vt.initialStreamCredit, l.initialStreamCredit);
  b.slotU32(vt.maxInFlight, l.maxInFlight);
  b.slotU32(vt.maxMessage, l.maxMessage);
  b.slotU32(vt.maxFrame, l.maxFrame);
  return b.endTable(start);
}

function checkU64(what: string, v: bigint): void {
  if (typeof v !== 'bigint' || v < 0n || v > 0xffff_ffff_ffff_ffffn) {
    throw new RangeError(`${what} ${String(v)} is not a u64`);
  }
}

function writeMethod(b: Builder, m: MethodDesc): number {
  checkInt('method id', m.id, 0xffff_ffff);
  checkInt('method kind', m.kind, 0xff);
  checkU64('method request', m.request);
  checkU64('method response', m.response);
  const name = b.createString(m.name);
  const vt = VT.method;
  const start = b.startTable();
  b.slotU64(vt.response, m.response);
  b.slotU64(vt.request, m.request);
  b.slotU32(vt.id, m.id);
  b.slotOffset(vt.name, name);
  b.slotU8(vt.kind, m.kind);
  return b.endTable(start);
}

function writeShape(b: Builder, sh: Shape): number {
  checkU64('shape type', sh.type);
  for (const slot of sh.slots) {
    checkU64('shape slot', slot);
  }
  const name = b.createString(sh.name);
  const slots = b.createU64s(sh.slots);
  const vt = VT.shape;
  const start = b.startTable();
  b.slotU64(vt.type, sh.type);
  b.slotOffset(vt.slots, slots);
  b.slotOffset(vt.name, name);
  b.slotU8(vt.fixed, sh.fixed ? 1 : 0);
  return b.endTable(start);
}

function writeServices(b: Builder, services: readonly Service[]): number | undefined {
  if (services.length === 0) {
    return undefined;
  }
  // The same creation order as the Rust `services_to_fb`, for the same bytes.
  const items = services.map((s) => {
    checkU64('service fingerprint', s.fingerprint);
    const name = b.createString(s.name);
    const methods = s.methods.length === 0 ? undefined : b.createOffsets(s.methods.map((m) => writeMethod(b, m)));
    const shapes = s.shapes.length === 0 ? undefined : b.createOffsets(s.shapes.map((sh) => writeShape(b, sh)));
    const vt = VT.service;
    const start = b.startTable();
    b.slotU64(vt.fingerprint, s.fingerprint);
    b.slotOffset(vt.shapes, shapes);
    b.slotOffset(vt.methods, methods);
    b.slotOffset(vt.name, name);
    return b.endTable(start);
  });
  return b.createOffsets(items);
}

function writeByteList(b: Builder, what: string, list: readonly number[]): number | undefined {
  checkByteList(what, list);
  return list.length === 0 ? undefined : b.createBytes(list);
}

// ----- the tables ------------------------------------------------------------------

/** Serializes a HELLO table. */
export function encodeHello(h: Hello): Uint8Array {
  checkInt('min_version', h.minVersion, 0xffff);
  checkInt('max_version', h.maxVersion, 0xffff);
  const b = new Builder();
  const limits = writeLimits(b, h.limits);
  const compression = writeByteList(b, 'compression', h.compression);
  const codecs = writeByteList(b, 'codecs', h.codecs);
  const auth = h.auth === undefined ? undefined : b.createBytes(h.auth);
  const services = writeServices(b, h.services);
  const uses = writeServices(b, h.uses);
  const agent = h.agent === undefined ? undefined : b.createString(h.agent);
  const vt = VT.hello;
  const start = b.startTable();
  b.slotOffset(vt.uses, uses);
  b.slotOffset(vt.agent, agent);
  b.slotOffset(vt.services, services);
  b.slotOffset(vt.auth, auth);
  b.slotOffset(vt.codecs, codecs);
  b.slotOffset(vt.compression, compression);
  b.slotOffset(vt.limits, limits);
  b.slotU16(vt.maxVersion, h.maxVersion);
  b.slotU16(vt.minVersion, h.minVersion);
  return b.finish(b.endTable(start));
}

/**
 * Verifies and reads a HELLO table.
 *
 * @throws {ControlError} `ControlMissingError` for an empty payload,
 *   `ControlInvalidError` when verification fails, `EmptyVersionRangeError`
 *   when `minVersion > maxVersion`.
 */
export function decodeHello(buf: Uint8Array): Hello {
  if (buf.length === 0) {
    throw new ControlMissingError('Hello');
  }
  verify(buf, HELLO);
  const r = new Reader(buf);
  const t = r.root();
  const vt = VT.hello;
  const minVersion = r.u16(t, vt.minVersion);
  const maxVersion = r.u16(t, vt.maxVersion);
  if (minVersion > maxVersion) {
    throw new EmptyVersionRangeError(minVersion, maxVersion);
  }
  return {
    minVersion,
    maxVersion,
    limits: readLimits(r, r.child(t, vt.limits)),
    compression: readByteList(r, t, vt.compression),
    codecs: readByteList(r, t, vt.codecs),
    auth: r.bytes(t, vt.auth),
    services: readServices(r, t, vt.services),
    agent: r.string(t, vt.agent),
    uses: readServices(r, t, vt.uses),
  };
}

/** Serializes a HELLO_ACK table. */
export function encodeHelloAck(h: HelloAck): Uint8Array {
  checkInt('version', h.version, 0xffff);
  checkInt('error_code', h.errorCode, 0xffff);
  const b = new Builder();
  const message = h.message === undefined ? undefined : b.createString(h.message);
  const limits = writeLimits(b, h.limits);
  const compression = writeByteList(b, 'compression', h.compression);
  const codecs = writeByteList(b, 'codecs', h.codecs);
  const services = writeServices(b, h.services);
  const uses = writeServices(b, h.uses);
  const agent = h.agent === undefined ? undefined : b.createString(h.agent);
  const vt = VT.helloAck;
  const start = b.startTable();
  b.slotOffset(vt.uses, uses);
  b.slotOffset(vt.agent, agent);
  b.slotOffset(vt.services, services);
  b.slotOffset(vt.codecs, codecs);
  b.slotOffset(vt.compression, compression);
  b.slotOffset(vt.limits, limits);
  b.slotOffset(vt.message, message);
  b.slotU16(vt.errorCode, h.errorCode);
  b.slotU16(vt.version, h.version);
  return b.finish(b.endTable(start));
}

/**
 * Verifies and reads a HELLO_ACK table.
 *
 * @throws {ControlError} `ControlMissingError` for an empty payload,
 *   `ControlInvalidError` when verification fails.
 */
export function decodeHelloAck(buf: Uint8Array): HelloAck {
  if (buf.length === 0) {
    throw new ControlMissingError('HelloAck');
  }
  verify(buf, HELLO_ACK);
  const r = new Reader(buf);
  const t = r.root();
  const vt = VT.helloAck;
  return {
    version: r.u16(t, vt.version),
    errorCode: r.u16(t, vt.errorCode),
    message: r.string(t, vt.message),
    limits: readLimits(r, r.child(t, vt.limits)),
    compression: readByteList(r, t, vt.compression),
    codecs: readByteList(r, t, vt.codecs),
    services: readServices(r, t, vt.services),
    agent: r.string(t, vt.agent),
    uses: readServices(r, t, vt.uses),
  };
}

/** Serializes a ServiceList table (the answer of `LIST_SERVICES`). */
export function encodeServiceList(l: ServiceList): Uint8Array {
  const b = new Builder();
  const offers = writeServices(b, l.offers);
  const uses = writeServices(b, l.uses);
  const vt = VT.serviceList;
  const start = b.startTable();
  b.slotOffset(vt.uses, uses);
  b.slotOffset(vt.offers, offers);
  return b.finish(b.endTable(start));
}

/**
 * Verifies and reads a ServiceList table.
 *
 * @throws {ControlError} `ControlMissingError` for an empty payload,
 *   `ControlInvalidError` when verification fails.
 */
export function decodeServiceList(buf: Uint8Array): ServiceList {
  if (buf.length === 0) {
    throw new ControlMissingError('ServiceList');
  }
  verify(buf, SERVICE_LIST);
  const r = new Reader(buf);
  const t = r.root();
  return { offers: readServices(r, t, VT.serviceList.offers), uses: readServices(r, t, VT.serviceList.uses) };
}

/** Serializes an ErrorInfo table; an empty value encodes to no bytes at all. */
export function encodeErrorInfo(e: ErrorInfo): Uint8Array {
  if (e.message === undefined && e.details === undefined) {
    return new Uint8Array(0);
  }
  const b = new Builder();
  const message = e.message === undefined ? undefined : b.createString(e.message);
  const details = e.details === undefined ? undefined : b.createBytes(e.details);
  const vt = VT.errorInfo;
  const start = b.startTable();
  b.slotOffset(vt.details, details);
  b.slotOffset(vt.message, message);
  return b.finish(b.endTable(start));
}

/**
 * Verifies and reads an ErrorInfo table; an empty payload is an empty value.
 *
 * @throws {ControlInvalidError} when verification fails.
 */
export function decodeErrorInfo(buf: Uint8Array): ErrorInfo {
  if (buf.length === 0) {
    return { message: undefined, details: undefined };
  }
  verify(buf, ERROR_INFO);
  const r = new Reader(buf);
  const t = r.root();
  return { message: r.string(t, VT.errorInfo.message), details: r.bytes(t, VT.errorInfo.details) };
}

/** Serializes a GoAway table; an empty value encodes to no bytes at all. */
export function encodeGoAway(g: GoAwayInfo): Uint8Array {
  if (g.message === undefined) {
    return new Uint8Array(0);
  }
  const b = new Builder();
  const message = b.createString(g.message);
  const start = b.startTable();
  b.slotOffset(VT.goAway.message, message);
  return b.finish(b.endTable(start));
}

/**
 * Verifies and reads a GoAway table; an empty payload is an empty value.
 *
 * @throws {ControlInvalidError} when verification fails.
 */
export function decodeGoAway(buf: Uint8Array): GoAwayInfo {
  if (buf.length === 0) {
    return { message: undefined };
  }
  verify(buf, GOAWAY);
  const r = new Reader(buf);
  return { message: r.string(r.root(), VT.goAway.message) };
}
