/**
 * Method ids, type hashes and the schema compatibility check of
 * `docs/PROTOCOL.md` §10. Mirrors the Rust `gatewire_proto::services`.
 *
 * A method id is the 32-bit FNV-1a hash of `service/method`. Type hashes,
 * slot hashes and fingerprints are 64-bit FNV-1a hashes (`bigint`, exact) of
 * the canonical strings of `docs/SCHEMA.md` §4. The acceptor of a connection
 * compares the services each side uses with the services the other side
 * offers and refuses the handshake with `INCOMPATIBLE` when they cannot work
 * together ({@link check}; the core runs it on every HELLO).
 *
 * @module
 */

import { utf8Encode, MethodKind, type MethodDesc, type Service, type Shape } from './control.js';
import { IncompatibleError } from './errors.js';

/** Method ids from `0xFFFF_FF00` up are reserved for built-in methods. */
export const RESERVED_METHODS = 0xffff_ff00;

/**
 * The built-in method answering with a `ServiceList` of what an endpoint
 * offers and uses (codec FLATBUFFERS). Its request is empty.
 */
export const LIST_SERVICES = 0xffff_ff00;

/**
 * The built-in method that re-authenticates a live connection: its request
 * is a new authentication payload, as in HELLO's `auth`; an empty response
 * means the server accepted it (`docs/PROTOCOL.md` §10.4).
 */
export const REAUTHENTICATE = 0xffff_ff01;

const FNV32_OFFSET = 0x811c_9dc5;
const FNV32_PRIME = 0x0100_0193;

function bytesOf(data: Uint8Array | string): Uint8Array {
  return typeof data === 'string' ? utf8Encode(data) : data;
}

/** 32-bit FNV-1a of `data` (a string is hashed as its UTF-8 bytes). */
export function fnv1a32(data: Uint8Array | string): number {
  let h = FNV32_OFFSET;
  for (const b of bytesOf(data)) {
    h = Math.imul(h ^ b, FNV32_PRIME);
  }
  return h >>> 0;
}

/**
 * 64-bit FNV-1a of `data` (a string is hashed as its UTF-8 bytes), exact.
 *
 * The state is kept as two 32-bit halves: the prime is `2^40 + 0x1b3`, so
 * `h × prime = h × 0x1b3 + (h << 40)` (mod 2^64), computed with 16-bit limbs
 * in doubles without loss.
 */
export function fnv1a64(data: Uint8Array | string): bigint {
  // The offset basis 0xcbf29ce484222325, split into halves.
  let hi = 0xcbf29ce4;
  let lo = 0x84222325;
  for (const b of bytesOf(data)) {
    lo ^= b;
    // lo × 0x1b3 and hi × 0x1b3, carrying from low to high.
    const loLo = (lo & 0xffff) * 0x1b3;
    const loHi = (lo >>> 16) * 0x1b3 + (loLo >>> 16);
    const newLo = ((loHi & 0xffff) << 16) | (loLo & 0xffff);
    const carry = Math.floor(loHi / 0x10000);
    // (h << 40) adds lo << 8 to the high half.
    const newHi = Math.imul(hi >>> 0, 0x1b3) + carry + ((lo << 8) >>> 0);
    hi = newHi >>> 0;
    lo = newLo >>> 0;
  }
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/**
 * The derived id of `method` in the fully qualified `service`: FNV-1a 32 of
 * the UTF-8 bytes of `service/method`. An id at or above
 * {@link RESERVED_METHODS} cannot be used; the schema must give the method
 * an explicit id.
 */
export function methodId(service: string, method: string): number {
  return fnv1a32(`${service}/${method}`);
}

/** The type hash of a fully qualified table or struct name: FNV-1a 64 of its UTF-8 bytes. */
export function typeHash(name: string): bigint {
  return fnv1a64(name);
}

type Party = 'client' | 'server';

/**
 * The acceptor's check (`docs/PROTOCOL.md` §10.3): every service one side
 * uses must be offered by the other and compatible with the offer.
 *
 * @throws {IncompatibleError} at the first difference; its `message` is the
 *   refusal message, identical in every implementation.
 */
export function check(
  serverOffers: readonly Service[],
  serverUses: readonly Service[],
  clientOffers: readonly Service[],
  clientUses: readonly Service[],
): void {
  checkDirection(clientUses, 'client', serverOffers);
  checkDirection(serverUses, 'server', clientOffers);
}

function checkDirection(uses: readonly Service[], user: Party, offers: readonly Service[]): void {
  const offerer: Party = user === 'client' ? 'server' : 'client';
  // The last offer of a name wins, as in the Rust map.
  const offered = new Map<string, Service>();
  for (const s of offers) {
    offered.set(s.name, s);
  }
  for (const used of uses) {
    const offer = offered.get(used.name);
    if (offer === undefined) {
      throw new IncompatibleError(`${used.name}: used by the ${user} but not offered by the ${offerer}`);
    }
    checkService(used, user, offer, offerer);
  }
}

const KIND_NAMES: ReadonlyMap<number, string> = new Map([
  [MethodKind.UNARY, 'unary'],
  [MethodKind.SERVER_STREAMING, 'server streaming'],
  [MethodKind.CLIENT_STREAMING, 'client streaming'],
  [MethodKind.BIDI_STREAMING, 'bidirectional streaming'],
  [MethodKind.EVENT, 'event'],
]);

function kindName(kind: number): string {
  return KIND_NAMES.get(kind) ?? 'unknown kind';
}

function hex(v: bigint | number, digits: number): string {
  return v.toString(16).padStart(digits, '0');
}

function described(s: Service): boolean {
  return s.methods.length > 0 || s.shapes.length > 0;
}

function checkService(a: Service, user: Party, b: Service, offerer: Party): void {
  if (a.fingerprint !== 0n && a.fingerprint === b.fingerprint) {
    return;
  }
  if (!described(a) || !described(b)) {
    if (a.fingerprint !== 0n && b.fingerprint !== 0n) {
      throw new IncompatibleError(
        `${a.name}: fingerprints differ (${hex(a.fingerprint, 16)}, ${hex(b.fingerprint, 16)}) ` +
          'and a descriptor is missing',
      );
    }
    return;
  }
  const methods = new Map<number, MethodDesc>();
  for (const m of b.methods) {
    methods.set(m.id, m);
  }
  for (const m of a.methods) {
    const o = methods.get(m.id);
    if (o === undefined) {
      continue;
    }
    let what: string;
    if (m.kind !== o.kind) {
      what = `the ${user} calls it as ${kindName(m.kind)}, the ${offerer} serves it as ${kindName(o.kind)}`;
    } else if (m.request !== o.request) {
      what = 'request types differ';
    } else if (m.response !== o.response) {
      what = 'response types differ';
    } else {
      continue;
    }
    throw new IncompatibleError(`${a.name}.${m.name} (method ${hex(m.id, 8)}): ${what}`);
  }
  const shapes = new Map<bigint, Shape>();
  for (const s of b.shapes) {
    shapes.set(s.type, s);
  }
  for (const s of a.shapes) {
    const o = shapes.get(s.type);
    if (o === undefined) {
      continue;
    }
    if (s.fixed !== o.fixed) {
      throw new IncompatibleError(`${a.name}: ${s.name} is a struct on one side and a table on the other`);
    }
    if (s.fixed && s.slots.length !== o.slots.length) {
      throw new IncompatibleError(`${a.name}: struct ${s.name} differs in size`);
    }
    const n = Math.min(s.slots.length, o.slots.length);
    for (let slot = 0; slot < n; slot++) {
      if (s.slots[slot] !== o.slots[slot]) {
        throw new IncompatibleError(`${a.name}: ${s.name} field ${slot} differs in type between client and server`);
      }
    }
  }
}
