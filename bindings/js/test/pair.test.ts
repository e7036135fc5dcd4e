/**
 * The desktop ↔ gateway demo end to end (`examples/gateway-pair/demo.py`):
 * the page built with tsc, the Python gateway on a Unix socket and a
 * WebSocket, the blocking Python client on the socket, and the page in
 * headless Chromium — 1,000,000 chart points with probes in flight, a click,
 * a reload that must not duplicate the charts, and a graceful shutdown.
 *
 * Needs the project venv (`$GATEWIRE_PYTHON`, or
 * `target/tools/venv/bin/python` with `pip install -e 'bindings/python[test]'`),
 * this package built (the `pretest` script does it) and Chromium
 * (`/usr/bin/chromium` or `$GATEWIRE_CHROMIUM`). Anything missing fails the
 * test with the setup step to run; it is never skipped.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

/** Seconds the demo may take in all (it bounds every step itself). */
const DEMO_TIMEOUT_S = 55;

function repositoryRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'examples', 'gateway-pair', 'demo.py'))) {
      return dir;
    }
    const up = dirname(dir);
    if (up === dir) {
      throw new Error('repository root not found (examples/gateway-pair/demo.py)');
    }
    dir = up;
  }
}

function python(root: string): string {
  const configured = process.env['GATEWIRE_PYTHON'];
  const path =
    configured !== undefined && configured !== '' ? configured : join(root, 'target', 'tools', 'venv', 'bin', 'python');
  if (!existsSync(path)) {
    throw new Error(
      `no Python at ${path}: from ${root} run \`python3 -m venv target/tools/venv && ` +
        "target/tools/venv/bin/pip install -e 'bindings/python[test]'` (or set $GATEWIRE_PYTHON)",
    );
  }
  return path;
}

/** Runs the demo; resolves with its exit code and output, killing it after the bound. */
function runDemo(root: string): Promise<{ code: number | null; output: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(
      python(root),
      [join(root, 'examples', 'gateway-pair', 'demo.py'), '--timeout', String(DEMO_TIMEOUT_S)],
      {
        cwd: root,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, PYTHONUNBUFFERED: '1', PYTHONDONTWRITEBYTECODE: '1' },
      },
    );
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const kill = setTimeout(() => {
      output += `\n(killed after ${DEMO_TIMEOUT_S + 10} s)`;
      child.kill('SIGKILL');
    }, (DEMO_TIMEOUT_S + 10) * 1000);
    child.once('error', (e) => {
      clearTimeout(kill);
      reject(e);
    });
    child.once('exit', (code) => {
      clearTimeout(kill);
      resolve({ code, output, ms: Date.now() - started });
    });
  });
}

describe('the desktop ↔ gateway demo (examples/gateway-pair)', { timeout: (DEMO_TIMEOUT_S + 20) * 1000 }, () => {
  it('runs end to end: CLI on the socket, 1M points to Chromium, a reload without duplicates', async () => {
    const root = repositoryRoot();
    const chromium = process.env['GATEWIRE_CHROMIUM'] ?? '/usr/bin/chromium';
    assert.ok(
      existsSync(chromium),
      `no Chromium at ${chromium}: apt-get update && apt-get install -y chromium (or set GATEWIRE_CHROMIUM)`,
    );
    const { code, output, ms } = await runDemo(root);
    assert.equal(code, 0, `demo.py failed (${ms} ms):\n${output}`);
    for (const expected of [
      /listening unix:\/\/\S+\/gw\.sock/,
      /listening ws:\/\/127\.0\.0\.1:\d+\/gw/,
      /cli\s+status: gw-1/,
      /cli\s+telemetry: 20 samples/,
      /Create 'main' -> chart 0; again -> chart 0 \(same chart\)/,
      /chart session done: 1,000,000 points \(16\.0 MB\)/,
      /desktop\s+StreamPoints: 1,000,000 points/,
      /clicked chart 'main' at x=/,
      /after the reload: 2 charts on 2 canvases/,
      /closed gracefully in/,
      /desktop\s+Connection closed gracefully/,
      /result\s+ok in/,
    ]) {
      assert.match(output, expected, `demo output lacks ${String(expected)}:\n${output}`);
    }
    assert.equal(output.match(/chart session done/g)?.length, 2, 'one chart session per page load');
    assert.doesNotMatch(output, /FAILED|Traceback|page error/, output);
  });
});
