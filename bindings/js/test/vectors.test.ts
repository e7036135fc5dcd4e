/**
 * Runs every file in `tests/vectors/` against the TypeScript core, exactly as
 * `crates/gatewire-vectors/tests/vectors.rs` runs them against the Rust core.
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import {
  decodeErrorInfo,
  decodeGoAway,
  decodeHello,
  decodeHelloAck,
  decodeServiceList,
  encodeErrorInfo,
  encodeGoAway,
  encodeHello,
  encodeHelloAck,
  encodeServiceList,
  checkServices,
  fnv1a64,
  IncompatibleError,
  methodId,
  typeHash,
  FrameDecoder,
  FrameError,
  ReadBuffer,
  type Frame,
} from '../src/index.js';
import { run, type Conversation } from './interp.js';
import {
  errorInfoJson,
  frameErrorJson,
  goawayJson,
  helloAckJson,
  helloJson,
  hx,
  rawFrameJson,
  serviceListJson,
  servicesFromJson,
  unhex,
  vectorsDir,
  type ErrorJson,
  type Json,
} from './json.js';

function load<T>(name: string): T {
  return JSON.parse(readFileSync(join(vectorsDir(), name), 'utf8')) as T;
}

interface FrameCase {
  name: string;
  note: string;
  max_frame: number;
  hex: string;
  frames: Json[];
  error: ErrorJson | null;
}

interface ControlCase {
  name: string;
  note: string;
  table: 'Hello' | 'HelloAck' | 'ErrorInfo' | 'GoAway' | 'ServiceList';
  hex: string;
  value: Json;
  invalid: boolean;
}

/** Decodes `bytes` fed in the given pieces; returns the frames and the error that stopped decoding. */
function decodePieces(pieces: Uint8Array[], max: number): { frames: Frame[]; error: FrameError | undefined } {
  const dec = new FrameDecoder(max);
  const buf = new ReadBuffer();
  const frames: Frame[] = [];
  for (const piece of pieces) {
    buf.append(piece);
    for (;;) {
      let f: Frame | undefined;
      try {
        f = dec.decode(buf);
      } catch (e) {
        assert.ok(e instanceof FrameError, `decoder threw ${String(e)}`);
        return { frames, error: e };
      }
      if (f === undefined) {
        break;
      }
      frames.push(f);
    }
  }
  try {
    dec.decodeEof(buf);
  } catch (e) {
    assert.ok(e instanceof FrameError);
    return { frames, error: e };
  }
  return { frames, error: undefined };
}

function chunks(bytes: Uint8Array, size: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; at += size) {
    out.push(bytes.slice(at, at + size));
  }
  return out;
}

function check(c: FrameCase, pieces: Uint8Array[], how: string): void {
  const { frames, error } = decodePieces(pieces, c.max_frame);
  assert.deepStrictEqual(frames.map(rawFrameJson), c.frames, `${c.name} (${how})`);
  assert.deepStrictEqual(error === undefined ? null : frameErrorJson(error), c.error, `${c.name} (${how})`);
}

describe('frames.json', () => {
  const file = load<{ cases: FrameCase[] }>('frames.json');
  it('has the expected number of cases', () => {
    assert.ok(file.cases.length > 300, `${file.cases.length} cases`);
  });
  for (const c of file.cases) {
    it(c.name, () => {
      const bytes = unhex(c.hex);
      // Whole, byte by byte, and in chunks of 2..40 bytes (as the Rust runner).
      check(c, [bytes], 'whole');
      check(c, chunks(bytes, 1), 'byte by byte');
      for (let size = 2; size < Math.min(bytes.length, 40); size++) {
        check(c, chunks(bytes, size), `chunk ${size}`);
      }
      // Split in two at every offset.
      for (let at = 1; at < bytes.length; at++) {
        check(c, [bytes.slice(0, at), bytes.slice(at)], `split at ${at}`);
      }
    });
  }
});

describe('control.json', () => {
  const file = load<{ cases: ControlCase[] }>('control.json');
  for (const c of file.cases) {
    it(c.name, () => {
      const bytes = unhex(c.hex);
      let value: Json | undefined;
      let reencoded: Uint8Array | undefined;
      try {
        switch (c.table) {
          case 'Hello': {
            const v = decodeHello(bytes);
            value = helloJson(v);
            reencoded = encodeHello(v);
            break;
          }
          case 'HelloAck': {
            const v = decodeHelloAck(bytes);
            value = helloAckJson(v);
            reencoded = encodeHelloAck(v);
            break;
          }
          case 'ErrorInfo': {
            const v = decodeErrorInfo(bytes);
            value = errorInfoJson(v);
            reencoded = encodeErrorInfo(v);
            break;
          }
          case 'GoAway': {
            const v = decodeGoAway(bytes);
            value = goawayJson(v);
            reencoded = encodeGoAway(v);
            break;
          }
          case 'ServiceList': {
            const v = decodeServiceList(bytes);
            value = serviceListJson(v);
            reencoded = encodeServiceList(v);
            break;
          }
        }
      } catch (e) {
        assert.ok(e instanceof Error && 'code' in e, `decode threw a non-gatewire error: ${String(e)}`);
        value = undefined;
      }
      assert.equal(value === undefined, c.invalid, `${c.name}: invalid`);
      assert.deepStrictEqual(value ?? null, c.value, c.name);
      if (reencoded !== undefined) {
        // Not required by the vectors, but the encoder mirrors the Rust
        // builder: the same value must give the same bytes.
        assert.equal(hx(reencoded), c.hex, `${c.name}: re-encoding`);
      }
    });
  }
});

describe('conversations.json', () => {
  const file = load<{ conversations: Conversation[] }>('conversations.json');
  it('has conversations', () => {
    assert.ok(file.conversations.length > 0);
  });
  for (const conv of file.conversations) {
    it(conv.name, () => {
      run(conv);
    });
  }
});

interface ServicesFile {
  version: number;
  method_ids: { service: string; method: string; id: number }[];
  hashes: { text: string; fnv1a64: string }[];
  checks: {
    name: string;
    note: string;
    server_offers: Json;
    server_uses: Json;
    client_offers: Json;
    client_uses: Json;
    error: string | null;
  }[];
}

describe('services.json', () => {
  const file = load<ServicesFile>('services.json');
  it('has every kind of case', () => {
    assert.equal(file.version, 1);
    assert.ok(file.method_ids.length > 0 && file.hashes.length > 0);
    assert.ok(file.checks.some((c) => c.error === null) && file.checks.some((c) => c.error !== null));
  });
  for (const c of file.method_ids) {
    it(`method id ${c.service}/${c.method}`, () => {
      assert.equal(methodId(c.service, c.method), c.id);
    });
  }
  for (const c of file.hashes) {
    it(`fnv1a64 ${JSON.stringify(c.text)}`, () => {
      assert.equal(fnv1a64(c.text).toString(), c.fnv1a64);
      assert.equal(fnv1a64(new TextEncoder().encode(c.text)).toString(), c.fnv1a64);
      assert.equal(typeHash(c.text).toString(), c.fnv1a64);
    });
  }
  for (const c of file.checks) {
    it(`check ${c.name}`, () => {
      const run = (): void =>
        checkServices(
          servicesFromJson(c.server_offers),
          servicesFromJson(c.server_uses),
          servicesFromJson(c.client_offers),
          servicesFromJson(c.client_uses),
        );
      if (c.error === null) {
        run();
      } else {
        assert.throws(run, (e: unknown) => e instanceof IncompatibleError && e.message === c.error);
      }
    });
  }
});
