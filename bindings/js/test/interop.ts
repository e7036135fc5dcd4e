/**
 * The interop service and script (the same ones as the Rust reference peer,
 * `crates/gatewire-interop/src/main.rs`), and helpers to run that peer.
 *
 * | method | kind | behaviour |
 * |---|---|---|
 * | 1 | unary | echoes the request (body and codec) |
 * | 2 | stream | echoes every message, then ends when the caller ends |
 * | 3 | server stream | request: u32 LE `n`; replies `n` messages, each the u32 LE index |
 * | 4 | unary | calls method 100 on the caller with the request and returns its reply |
 * | 5 | unary | fails with code 0x8001, message "requested error" |
 * | 6 | unary | request: u32 LE milliseconds; sleeps that long, then echoes |
 * | 7 | event | sent back to the caller as event 8 with the same body |
 * | 100 | unary (served by the client) | the client's callback: echoes with "client:" prepended |
 */

import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { ErrorCode, Router, Status, type Connection, type Message } from '../src/index.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

/** `n` as four little-endian bytes. */
export function u32le(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
}

/** The first four bytes of a message as a little-endian u32. */
export function u32Of(m: Message): number {
  if (m.body.length < 4) {
    throw Status.invalidArgument('u32 expected');
  }
  return new DataView(m.body.buffer, m.body.byteOffset, 4).getUint32(0, true);
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
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

/** The interop service. */
export function service(): Router {
  return new Router()
    .unary(1, (_ctx, m) => m)
    .stream(2, async (_ctx, _first, rx, tx) => {
      for await (const m of rx) {
        await tx.send(m);
      }
    })
    .stream(3, async (_ctx, first, _rx, tx) => {
      const n = u32Of(first);
      for (let i = 0; i < n; i++) {
        await tx.send(u32le(i));
      }
    })
    .unary(4, (ctx, m) => ctx.connection.call(100, m))
    .unary(5, () => {
      throw new Status(0x8001, 'requested error');
    })
    .unary(
      6,
      (ctx, m) =>
        new Promise<Message>((res, rej) => {
          const t = setTimeout(() => res(m), u32Of(m));
          ctx.signal.addEventListener('abort', () => {
            clearTimeout(t);
            rej(ctx.signal.reason);
          });
        }),
    )
    .event(7, async (ctx, m) => {
      try {
        await ctx.connection.emit(8, m);
      } catch {
        // The caller went away.
      }
    });
}

/** Events of method 8, as the client's callback router receives them. */
export class EventInbox {
  readonly #items: Message[] = [];
  readonly #waiters: ((m: Message) => void)[] = [];

  push(m: Message): void {
    const w = this.#waiters.shift();
    if (w !== undefined) {
      w(m);
    } else {
      this.#items.push(m);
    }
  }

  next(timeoutMs: number): Promise<Message> {
    const m = this.#items.shift();
    if (m !== undefined) {
      return Promise.resolve(m);
    }
    return new Promise<Message>((res, rej) => {
      const t = setTimeout(() => rej(new Error('event 8 never came')), timeoutMs);
      this.#waiters.push((x) => {
        clearTimeout(t);
        res(x);
      });
    });
  }
}

/** The client's side of the service: the callback, and event 8 into `inbox`. */
export function callbacks(inbox: EventInbox): Router {
  return new Router()
    .unary(100, (_ctx, m) => {
      const body = new Uint8Array(7 + m.body.length);
      body.set(enc.encode('client:'));
      body.set(m.body, 7);
      return { codec: m.codec, body };
    })
    .event(8, (_ctx, m) => inbox.push(m));
}

function check(ok: boolean, what: string): void {
  if (!ok) {
    throw new Error(`interop check failed: ${what}`);
  }
}

/** The interop script, the same checks as the Rust `script` fn; returns the checks passed. */
export async function script(conn: Connection, inbox: EventInbox): Promise<string[]> {
  const passed: string[] = [];
  const pass = (ok: boolean, what: string): void => {
    check(ok, what);
    passed.push(what);
  };
  let r = await conn.call(1, enc.encode('hello'));
  pass(dec.decode(r.body) === 'hello', 'echo');
  const big = new Uint8Array(300_000).fill(0x42);
  r = await conn.call(1, big);
  pass(equal(r.body, big), 'large echo');

  const { tx, rx } = await conn.openStream(2, new Uint8Array(0));
  for (let i = 0; i < 100; i++) {
    await tx.send(u32le(i));
  }
  await tx.finish();
  let n = 0;
  for await (const m of rx) {
    check(equal(m.body, u32le(n)), 'stream echo order');
    n += 1;
  }
  pass(n === 100, 'stream echo count');

  const srx = await conn.serverStream(3, u32le(1000));
  n = 0;
  for await (const m of srx) {
    check(equal(m.body, u32le(n)), 'server stream order');
    n += 1;
  }
  pass(n === 1000, 'server stream count');

  r = await conn.call(4, enc.encode('ping'));
  pass(dec.decode(r.body) === 'client:ping', 'callback');

  const err5 = await conn.call(5, new Uint8Array(0)).then(
    () => undefined,
    (e: unknown) => e,
  );
  pass(
    err5 instanceof Error &&
      'wireCode' in err5 &&
      err5.wireCode === 0x8001 &&
      'detail' in err5 &&
      err5.detail === 'requested error',
    'error code and message',
  );

  const err6 = await conn.call(6, u32le(10_000), { timeoutMs: 100 }).then(
    () => undefined,
    (e: unknown) => e,
  );
  pass(err6 instanceof Error && 'isTimeout' in err6 && err6.isTimeout === true, 'deadline');

  const err99 = await conn.call(99, new Uint8Array(0)).then(
    () => undefined,
    (e: unknown) => e,
  );
  pass(err99 instanceof Error && 'wireCode' in err99 && err99.wireCode === ErrorCode.UNKNOWN_METHOD, 'unknown method');

  await conn.emit(7, enc.encode('event'));
  const back = await inbox.next(10_000);
  pass(dec.decode(back.body) === 'event', 'event round trip');
  return passed;
}

/** The names of the script's checks, in order. */
export const SCRIPT_CHECKS = [
  'echo',
  'large echo',
  'stream echo count',
  'server stream count',
  'callback',
  'error code and message',
  'deadline',
  'unknown method',
  'event round trip',
];

// ----- the Rust reference peer ---------------------------------------------------------

/** The repository root (the nearest ancestor with `crates/gatewire-interop`). */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'crates', 'gatewire-interop', 'Cargo.toml'))) {
      return dir;
    }
    const up = dirname(dir);
    if (up === dir) {
      throw new Error('repository root not found (crates/gatewire-interop)');
    }
    dir = up;
  }
}

/** The package root (`bindings/js`). */
export function packageRoot(): string {
  return join(repoRoot(), 'bindings', 'js');
}

let peerPath: string | undefined;

/**
 * The `interop-peer` binary: `$GATEWIRE_INTEROP_PEER` as it is, or
 * `target/debug/interop-peer` (under `$CARGO_TARGET_DIR` if set), brought
 * up to date with `cargo build -p gatewire-interop` (a no-op when fresh; a
 * binary that exists is used as it is when cargo is not installed).
 */
export function interopPeer(): string {
  if (peerPath !== undefined) {
    return peerPath;
  }
  const env = process.env['GATEWIRE_INTEROP_PEER'];
  if (env !== undefined && env !== '') {
    peerPath = env;
    return env;
  }
  const root = repoRoot();
  const target = process.env['CARGO_TARGET_DIR'] ?? join(root, 'target');
  const bin = resolve(root, target, 'debug', 'interop-peer');
  const r = spawnSync('cargo', ['build', '--quiet', '-p', 'gatewire-interop'], { cwd: root, stdio: 'inherit' });
  const noCargo = (r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
  if (!existsSync(bin) || (r.status !== 0 && !noCargo)) {
    throw new Error(`cargo build -p gatewire-interop failed (${r.error?.message ?? `exit ${r.status}`})`);
  }
  peerPath = bin;
  return bin;
}

/** A private directory for Unix sockets (mode 0700), removed by `cleanup`. */
export function socketDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'gw-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A peer process serving until `stop`. */
export interface PeerServer {
  /** The endpoints it listens on, as it printed them. */
  readonly endpoints: string[];
  /** Closes its stdin and waits (bounded) for it to exit; resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** Starts `command args`, which prints `listening URL` once per URL in `args`, and waits for those lines. */
export function startServing(command: string, args: string[], env?: NodeJS.ProcessEnv): Promise<PeerServer> {
  const expected = args.filter((a) => a.includes('://')).length;
  const child: ChildProcessWithoutNullStreams = spawn(command, args, { stdio: 'pipe', env: env ?? process.env });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  return new Promise<PeerServer>((resolvePeer, reject) => {
    const endpoints: string[] = [];
    let buf = '';
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error(`${command} did not start: ${stderr}`));
    }, 30_000);
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const line of lines) {
        if (line.startsWith('listening ')) {
          endpoints.push(line.slice('listening '.length).trim());
        }
      }
      if (endpoints.length === expected) {
        clearTimeout(timer);
        resolvePeer({
          endpoints,
          stop: () => {
            child.stdin.end();
            const kill = setTimeout(() => child.kill(), 10_000);
            return exited.finally(() => clearTimeout(kill));
          },
        });
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${command} exited (${code}) before listening: ${stderr}`));
    });
  });
}

/** Starts `interop-peer serve ARGS...` (options and URLs) and waits for its `listening` lines. */
export function servePeer(args: string[]): Promise<PeerServer> {
  return startServing(interopPeer(), ['serve', ...args]);
}

/** Runs `interop-peer client URL`; resolves with its exit code and output. */
export function runPeerClient(url: string): Promise<{ code: number | null; output: string }> {
  return new Promise((res) => {
    const child = spawn(interopPeer(), ['client', url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const kill = setTimeout(() => child.kill(), 90_000);
    child.once('exit', (code) => {
      clearTimeout(kill);
      res({ code, output });
    });
  });
}
