/**
 * Interop with the Python binding (`python -m gatewire.interop`, run with the
 * project venv), both directions, on every transport: the TypeScript script
 * against `gatewire.interop serve`, and `gatewire.interop client` against a
 * TypeScript server of the same service.
 *
 * The interpreter is `$GATEWIRE_PYTHON`, or `target/tools/venv/bin/python`
 * (created by `cargo xtask test`). A missing interpreter fails the tests: it
 * is never a reason to skip them.
 */

import assert from 'node:assert/strict';
import { spawn, type ChildProcess, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { connect, serve, type Server } from '../src/node/index.js';
import { callbacks, EventInbox, repoRoot, SCRIPT_CHECKS, script, service, socketDir } from './interop.js';

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;
const CLIENT_TIMEOUT_MS = 90_000;

/** The venv interpreter; throws a message saying how to create it when missing. */
function venvPython(): string {
  const root = repoRoot();
  const hint =
    `run \`cargo xtask test\`, or from ${root}: ` +
    "`python3 -m venv target/tools/venv && target/tools/venv/bin/pip install -e 'bindings/python[test]'` " +
    '(or set $GATEWIRE_PYTHON to an interpreter with gatewire installed)';
  const env = process.env['GATEWIRE_PYTHON'];
  if (env !== undefined && env !== '') {
    if (!existsSync(env)) {
      throw new Error(`$GATEWIRE_PYTHON (${env}) does not exist: ${hint}`);
    }
    return env;
  }
  const python = join(root, 'target', 'tools', 'venv', 'bin', 'python');
  if (!existsSync(python)) {
    throw new Error(`the Python venv is missing (${python}): ${hint}`);
  }
  return python;
}

/** Every child started here, so the `after` hooks can kill stragglers. */
const children = new Set<ChildProcess>();

function track<T extends ChildProcess>(child: T): T {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

function killAll(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
    }
  }
  children.clear();
}

const pythonEnv = { ...process.env, PYTHONUNBUFFERED: '1', PYTHONDONTWRITEBYTECODE: '1' };

interface PythonServer {
  readonly endpoints: string[];
  /** Closes its stdin and waits (bounded) for it to exit; resolves with the exit code and stderr. */
  stop(): Promise<{ code: number | null; stderr: string }>;
}

/** Starts `python -m gatewire.interop serve URL...` and waits (bounded) for its `listening` lines. */
function servePython(urls: string[]): Promise<PythonServer> {
  const child: ChildProcessWithoutNullStreams = track(
    spawn(venvPython(), ['-m', 'gatewire.interop', 'serve', ...urls], { stdio: 'pipe', env: pythonEnv }),
  );
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  return new Promise<PythonServer>((resolveServer, reject) => {
    const endpoints: string[] = [];
    let buf = '';
    let started = false;
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`could not start ${venvPython()}: ${e.message}`));
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`gatewire.interop serve did not start within ${START_TIMEOUT_MS} ms: ${stderr}`));
    }, START_TIMEOUT_MS);
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const line of lines) {
        if (line.startsWith('listening ')) {
          endpoints.push(line.slice('listening '.length).trim());
        }
      }
      if (!started && endpoints.length === urls.length) {
        started = true;
        clearTimeout(timer);
        resolveServer({
          endpoints,
          stop: async () => {
            child.stdin.end();
            const kill = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
            try {
              return { code: await exited, stderr };
            } finally {
              clearTimeout(kill);
            }
          },
        });
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      if (!started) {
        reject(new Error(`gatewire.interop serve exited (${code}) before listening: ${stderr}`));
      }
    });
  });
}

/** Runs `python -m gatewire.interop client URL` (bounded); resolves with its exit code and output. */
function runPythonClient(url: string): Promise<{ code: number | null; output: string }> {
  return new Promise((res, rej) => {
    const child = track(
      spawn(venvPython(), ['-m', 'gatewire.interop', 'client', url], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: pythonEnv,
      }),
    );
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const kill = setTimeout(() => {
      output += `\n(killed after ${CLIENT_TIMEOUT_MS} ms)`;
      child.kill('SIGKILL');
    }, CLIENT_TIMEOUT_MS);
    child.once('error', (e) => {
      clearTimeout(kill);
      rej(e);
    });
    child.once('exit', (code) => {
      clearTimeout(kill);
      res({ code, output });
    });
  });
}

const SCHEMES = ['tcp', 'unix', 'ws'];

describe('TypeScript client -> Python gatewire.interop serve', { timeout: 180_000 }, () => {
  let server: PythonServer | undefined;
  let sockets: { dir: string; cleanup: () => void } | undefined;

  before(async () => {
    sockets = socketDir();
    server = await servePython(['tcp://127.0.0.1:0', `unix://${sockets.dir}/s.sock`, 'ws://127.0.0.1:0/gw']);
  });

  after(async () => {
    try {
      if (server !== undefined) {
        const { code, stderr } = await server.stop();
        assert.equal(code, 0, `gatewire.interop serve exits cleanly when its stdin closes: ${stderr}`);
      }
    } finally {
      killAll();
      sockets?.cleanup();
    }
  });

  for (const [i, scheme] of SCHEMES.entries()) {
    it(`runs the interop script over ${scheme}`, { timeout: 60_000 }, async () => {
      assert.ok(server !== undefined);
      const url = server.endpoints[i] as string;
      assert.ok(url.startsWith(`${scheme}://`), url);
      const inbox = new EventInbox();
      const conn = await connect(url, { router: callbacks(inbox) });
      try {
        assert.match(conn.peer?.agent ?? '', /^gatewire-python\//);
        assert.equal(conn.peer?.compression, false, 'we never offer zstd, so it is never negotiated');
        const passed = await script(conn, inbox);
        assert.deepEqual(passed, SCRIPT_CHECKS);
      } finally {
        await conn.close();
      }
      assert.equal(await conn.closed, undefined, 'graceful close');
    });
  }
});

describe('Python gatewire.interop client -> TypeScript server', { timeout: 180_000 }, () => {
  let server: Server | undefined;
  let sockets: { dir: string; cleanup: () => void } | undefined;

  before(async () => {
    venvPython(); // fail early, with the message saying how to create the venv
    sockets = socketDir();
    server = await serve(['tcp://127.0.0.1:0', `unix://${sockets.dir}/s.sock`, 'ws://127.0.0.1:0/gw'], service());
  });

  after(async () => {
    killAll();
    try {
      await server?.close();
    } finally {
      sockets?.cleanup();
    }
  });

  for (const [i, scheme] of SCHEMES.entries()) {
    it(`passes gatewire.interop client over ${scheme}`, { timeout: CLIENT_TIMEOUT_MS + 10_000 }, async () => {
      assert.ok(server !== undefined);
      const url = server.endpoints[i] as string;
      assert.ok(url.startsWith(`${scheme}://`), url);
      const { code, output } = await runPythonClient(url);
      assert.equal(code, 0, output);
      assert.equal(output.trim(), 'ok');
    });
  }
});
