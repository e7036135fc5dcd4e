// @ts-check
/**
 * The TypeScript package's benchmark: gatewire's Node transports against
 * socket.io, a bare `ws` echo and a bare `net` echo, and the Node client
 * against the Rust interop peer, measured in one run.
 *
 *   npm run build && node bench/run.mjs [--quick] [--reps N] [--modes pinned,unpinned] [--only NAME,...] [--max-wait SECONDS]
 *
 * For each mode (both ends pinned to CPU 0 with `taskset -c 0`, then
 * unpinned) the runner starts every server, then runs repetitions
 * interleaved across configurations (A, B, A, B, ...), each a fresh client
 * process, and reports medians. Before each repetition it waits until no
 * compiler, linker or test runner is running (rustc, cargo, cc1, ld, tsc,
 * pytest) and other processes use less than a fifth of a CPU, and measures
 * again when that was not so during the measurement. JSON lines go to stdout, a summary
 * to stderr. Servers are stopped at the end, whatever happens.
 */

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { median } from './common.mjs';

const BENCH = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(BENCH, '../../..');

/** @typedef {'latency' | 'throughput' | 'bulk'} Shape */
/** @typedef {'pinned' | 'unpinned'} Mode */

/**
 * @typedef {object} Config
 * @property {string} name
 * @property {string} server a key of the server table
 * @property {string} peer the client adapter
 * @property {string} url the server's endpoint key for calls
 * @property {string} [bulkUrl] the endpoint key for the upload, where it is another
 * @property {Shape[]} shapes
 */

/** @type {Shape[]} */
const ALL = ['latency', 'throughput', 'bulk'];
/** @type {Shape[]} */
const CALLS = ['latency', 'throughput'];

/** @type {Config[]} */
const CONFIGS = [
  { name: 'gatewire/tcp', server: 'gatewire', peer: 'gatewire', url: 'tcp', shapes: ALL },
  { name: 'gatewire/unix', server: 'gatewire', peer: 'gatewire', url: 'unix', shapes: ALL },
  { name: 'gatewire/ws', server: 'gatewire', peer: 'gatewire', url: 'ws', shapes: ALL },
  { name: 'gatewire/tcp 1 msg', server: 'gatewire', peer: 'gatewire-message', url: 'bigTcp', shapes: ['bulk'] },
  { name: 'gatewire/unix 1 msg', server: 'gatewire', peer: 'gatewire-message', url: 'bigUnix', shapes: ['bulk'] },
  { name: 'gatewire/tcp window', server: 'gatewire', peer: 'gatewire-window', url: 'bigTcp', shapes: ['bulk'] },
  { name: 'gatewire/unix window', server: 'gatewire', peer: 'gatewire-window', url: 'bigUnix', shapes: ['bulk'] },
  { name: 'gatewire/ws window', server: 'gatewire', peer: 'gatewire-window', url: 'bigWs', shapes: ['bulk'] },
  { name: 'gatewire/ws 1 msg', server: 'gatewire', peer: 'gatewire-message', url: 'bigWs', shapes: ['bulk'] },
  { name: 'rust server/tcp', server: 'rust', peer: 'gatewire', url: 'tcp', shapes: CALLS },
  { name: 'rust server/unix', server: 'rust', peer: 'gatewire', url: 'unix', shapes: CALLS },
  { name: 'rust server/ws', server: 'rust', peer: 'gatewire', url: 'ws', shapes: CALLS },
  { name: 'socket.io string', server: 'socketio', peer: 'socketio-string', url: 'ws', shapes: CALLS },
  { name: 'socket.io Buffer', server: 'socketio', peer: 'socketio-buffer', url: 'ws', shapes: ALL },
  { name: 'socket.io msgpack', server: 'socketio-msgpack', peer: 'socketio-msgpack', url: 'ws', shapes: ['bulk'] },
  { name: 'ws echo', server: 'ws', peer: 'ws', url: 'ws', shapes: ALL },
  { name: 'net/tcp', server: 'net', peer: 'net', url: 'tcp', bulkUrl: 'tcpBulk', shapes: ALL },
  { name: 'net/unix', server: 'net', peer: 'net', url: 'unix', bulkUrl: 'unixBulk', shapes: ALL },
];

/** What `taskset`-style pinning prefixes to every command of a mode. */
const PIN = { pinned: ['taskset', '-c', '0'], unpinned: [] };

/** Processes whose CPU use would distort a timing. */
const BUSY_COMM = new Set(['rustc', 'cargo', 'cc1', 'cc1plus', 'ld', 'ld.bfd', 'ld.gold', 'ld.lld', 'tsc', 'pytest']);

// ----- options -------------------------------------------------------------------------

function options() {
  const args = process.argv.slice(2);
  /** @param {string} flag */
  const value = (flag) => {
    const i = args.indexOf(flag);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const quick = args.includes('--quick');
  const modes = /** @type {Mode[]} */ ((value('--modes') ?? 'pinned,unpinned').split(','));
  for (const m of modes) {
    if (m !== 'pinned' && m !== 'unpinned') {
      throw new Error(`unknown mode ${m}`);
    }
  }
  return {
    quick,
    modes,
    reps: Number(value('--reps') ?? (quick ? 1 : 5)),
    only: value('--only')?.split(','),
    maxWaitMs: Number(value('--max-wait') ?? 3600) * 1000,
    job: quick
      ? { latencyCalls: 200, throughputCalls: 2_000, window: 64, bulkBytes: 8 << 20, bulkUploads: 1, bulkWarmUp: 1 }
      : // 12 uploads before the 10 measured: pinned to one CPU, an upload's
        // time settles only after about a dozen, while V8 optimizes the hot
        // code on compiler threads that share that CPU (with 2, gatewire's
        // measured uploads over tcp took 13–31 ms, against mostly 7–11 after).
        { latencyCalls: 5_000, throughputCalls: 50_000, window: 64, bulkBytes: 8 << 20, bulkUploads: 10, bulkWarmUp: 12 },
  };
}

/** @param {string} line */
function log(line) {
  process.stderr.write(`${line}\n`);
}

/** @param {Record<string, unknown>} record */
function emit(record) {
  process.stdout.write(`${JSON.stringify(record)}\n`);
}

/**
 * The Rust interop peer: `$GATEWIRE_INTEROP_PEER`, else the release build
 * (`cargo build --release -p gatewire-interop`); a quick run also takes the
 * debug build the tests use.
 *
 * @param {boolean} quick
 */
function rustPeer(quick) {
  const fromEnv = process.env['GATEWIRE_INTEROP_PEER'];
  if (fromEnv !== undefined && fromEnv !== '') {
    return fromEnv;
  }
  const target = process.env['CARGO_TARGET_DIR'] ?? join(REPO, 'target');
  const builds = quick ? ['release', 'debug'] : ['release'];
  return builds.map((b) => join(target, b, 'interop-peer')).find((p) => existsSync(p));
}

// ----- waiting for a quiet machine ---------------------------------------------------

/**
 * @typedef {object} Proc
 * @property {string} name
 * @property {number} ticks CPU time used so far, in clock ticks
 * @property {boolean} build a compiler, linker or test runner
 * @property {boolean} kernel a kernel thread (they work for everyone, us included)
 */

/**
 * This process and its ancestors (`cargo xtask bench` is a cargo, and may
 * itself run under a wrapper such as `timeout`): never a build to wait for.
 *
 * @returns {Set<string>} pids
 */
function ancestors() {
  const pids = new Set();
  let pid = process.pid;
  while (pid > 1) {
    pids.add(String(pid));
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      pid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    } catch {
      break;
    }
  }
  return pids;
}

const ANCESTORS = ancestors();

/**
 * Every process, from one pass over /proc.
 *
 * @returns {Map<string, Proc>} by pid
 */
function processes() {
  /** @type {Map<string, Proc>} */
  const out = new Map();
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) {
      continue;
    }
    let stat;
    let argv;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    // Fields 14 and 15 of stat(5): utime and stime.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    // `tsc` and `pytest` run as `node .../tsc` and `python -m pytest`.
    const names = [comm, ...argv.slice(0, 3).map((a) => basename(a))];
    const pytestModule = argv.some((a, i) => a === '-m' && argv[i + 1] === 'pytest');
    const build = ANCESTORS.has(pid) ? undefined : pytestModule ? 'pytest' : names.find((n) => BUSY_COMM.has(n));
    out.set(pid, { name: build ?? comm, ticks, build: build !== undefined, kernel: argv.join('') === '' });
  }
  return out;
}

/** The builds running now, as `name (pid)`. */
function builds() {
  return [...processes()].filter(([, p]) => p.build).map(([pid, p]) => `${p.name} (${pid})`);
}

/** Clock ticks per second of /proc/PID/stat (USER_HZ). */
const TICKS = 100;
/** CPU that other processes may use while the machine counts as quiet: a fifth of one CPU. */
const QUIET_CPU = 0.2;
/** The window over which that CPU use is measured (ms). */
const LOAD_WINDOW_MS = 500;

/**
 * The processes other than ours that used CPU between two snapshots taken
 * `seconds` apart, busiest first, with the CPU they used in all.
 *
 * @param {Map<string, Proc>} before
 * @param {Map<string, Proc>} after
 * @param {number} seconds
 */
function usage(before, after, seconds) {
  const ours = new Set([...ANCESTORS, ...[...children].map((c) => String(c.pid))]);
  /** @type {{ pid: string, name: string, cpu: number }[]} */
  const users = [];
  for (const [pid, p] of after) {
    const cpu = (p.ticks - (before.get(pid)?.ticks ?? p.ticks)) / TICKS / seconds;
    if (!ours.has(pid) && !p.kernel && cpu > 0) {
      users.push({ pid, name: p.name, cpu });
    }
  }
  users.sort((a, b) => b.cpu - a.cpu);
  return { cpu: users.reduce((sum, u) => sum + u.cpu, 0), users };
}

/**
 * What keeps the machine busy over the next {@link LOAD_WINDOW_MS}: the
 * builds running, and the CPU other processes use.
 */
async function load() {
  const before = processes();
  await delay(LOAD_WINDOW_MS);
  const after = processes();
  const running = [...after].filter(([, p]) => p.build).map(([pid, p]) => ({ pid, name: p.name }));
  return { running, ...usage(before, after, LOAD_WINDOW_MS / 1000) };
}

/**
 * Waits until no build runs and other processes use less than
 * {@link QUIET_CPU}; says on stderr what it waits for (when that changes,
 * at most every 5 s, and every 30 s).
 *
 * @param {number} maxWaitMs
 * @returns {Promise<{ waited_ms: number, waited_for: string[] }>}
 */
async function waitQuiet(maxWaitMs) {
  const t0 = performance.now();
  /** @type {Set<string>} */
  const seen = new Set();
  let said = '';
  let saidAt = 0;
  for (;;) {
    const l = await load();
    const waited = performance.now() - t0;
    if (l.running.length === 0 && l.cpu < QUIET_CPU) {
      if (seen.size > 0) {
        log(`  quiet again after ${(waited / 1000).toFixed(1)} s`);
      }
      return { waited_ms: seen.size > 0 ? Math.round(waited) : 0, waited_for: [...seen].sort() };
    }
    const culprits = l.running.length > 0 ? l.running : l.users.slice(0, 3);
    culprits.forEach((p) => seen.add(p.name));
    const key = l.running.length > 0 ? [...new Set(l.running.map((p) => p.name))].sort().join() : 'cpu';
    const text =
      l.running.length > 0
        ? `${l.running.slice(0, 4).map((p) => `${p.name} (${p.pid})`).join(', ')} running`
        : `other processes use ${l.cpu.toFixed(2)} CPU: ${l.users.slice(0, 3).map((u) => `${u.name} (${u.pid}) ${Math.round(u.cpu * 100)}%`).join(', ')}`;
    if ((key !== said && waited - saidAt > 5_000) || waited - saidAt > 30_000 || said === '') {
      log(`  waiting (${(waited / 1000).toFixed(0)} s): ${text}`);
      said = key;
      saidAt = waited;
    }
    if (waited > maxWaitMs) {
      throw new Error(`the machine stayed busy for ${Math.round(waited / 1000)} s (${text})`);
    }
  }
}

// ----- processes -----------------------------------------------------------------------

/** @type {Set<import('node:child_process').ChildProcess>} */
const children = new Set();

/**
 * @param {string[]} cmd
 * @param {import('node:child_process').StdioOptions} stdio
 */
function start(cmd, stdio) {
  const [file = '', ...args] = cmd;
  const child = spawn(file, args, { stdio, cwd: BENCH });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/**
 * @typedef {object} RunningServer
 * @property {Record<string, string>} endpoints
 * @property {() => Promise<void>} stop
 */

/**
 * Starts a server and waits for its readiness: a `ready {json}` line, or
 * for the Rust peer one `listening URL` line per URL.
 *
 * @param {string[]} cmd
 * @param {number} listening how many `listening` lines to wait for (0: a `ready` line)
 * @returns {Promise<RunningServer>}
 */
async function startServer(cmd, listening) {
  const child = start(cmd, ['pipe', 'pipe', 'inherit']);
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) {
      return;
    }
    const exited = new Promise((r) => child.once('exit', r));
    child.stdin?.end();
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  };
  /** @type {Record<string, string>} */
  const endpoints = {};
  const lines = createInterface({ input: /** @type {import('node:stream').Readable} */ (child.stdout) });
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${cmd.join(' ')}: not ready within 15 s`)), 15_000);
    child.once('exit', (code) => reject(new Error(`${cmd.join(' ')} exited with ${code} before it was ready`)));
    let seen = 0;
    lines.on('line', (line) => {
      if (listening === 0 && line.startsWith('ready ')) {
        Object.assign(endpoints, JSON.parse(line.slice(6)));
      } else if (line.startsWith('listening ')) {
        const url = line.slice(10);
        endpoints[url.slice(0, url.indexOf(':'))] = url;
        seen += 1;
        if (seen < listening) {
          return;
        }
      } else {
        return;
      }
      clearTimeout(timer);
      resolve(undefined);
    });
  });
  try {
    await ready;
  } catch (e) {
    await stop();
    throw e;
  }
  return { endpoints, stop };
}

/**
 * Runs one client process and parses its JSON line.
 *
 * @param {string[]} pin
 * @param {Record<string, unknown>} job
 * @param {number} timeoutMs
 * @returns {Promise<Record<string, Record<string, number>>>}
 */
async function runClient(pin, job, timeoutMs) {
  const child = start([...pin, process.execPath, join(BENCH, 'client.mjs'), JSON.stringify(job)], [
    'ignore',
    'pipe',
    'pipe',
  ]);
  let out = '';
  let err = '';
  child.stdout?.on('data', (d) => (out += d));
  child.stderr?.on('data', (d) => (err += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise((r) => child.once('exit', (c, s) => r(c ?? s)));
  clearTimeout(timer);
  if (code !== 0) {
    throw new Error(`client exited with ${code}: ${err.trim().split('\n').slice(-3).join(' | ')}`);
  }
  return JSON.parse(out);
}

// ----- the run -----------------------------------------------------------------------------

/**
 * @typedef {object} Sample
 * @property {Record<string, Record<string, number>>} result
 * @property {{ waited_ms: number, waited_for: string[], discarded: number, busy_during: string[] }} quiet
 *   how long the runner waited for quiet before it, for what; measurements
 *   discarded because the machine was busy during them; what kept it busy
 *   during the last (kept after three tries)
 */

/**
 * One repetition on a quiet machine: waits for quiet, measures, and
 * measures again (up to twice) when a build ran or other processes used
 * {@link QUIET_CPU} or more meanwhile.
 *
 * @param {string[]} pin
 * @param {Record<string, unknown>} job
 * @param {ReturnType<typeof options>} o
 * @returns {Promise<Sample>}
 */
async function quietSample(pin, job, o) {
  let waited = 0;
  /** @type {Set<string>} */
  const waitedFor = new Set();
  for (let attempt = 1; ; attempt++) {
    const q = await waitQuiet(o.maxWaitMs);
    waited += q.waited_ms;
    q.waited_for.forEach((n) => waitedFor.add(n));
    const before = processes();
    const t0 = performance.now();
    const result = await runClient(pin, job, o.quick ? 60_000 : 300_000);
    const others = usage(before, processes(), (performance.now() - t0) / 1000);
    const during = [
      ...builds(),
      ...(others.cpu >= QUIET_CPU ? others.users.slice(0, 3).map((u) => `${u.name} (${u.pid}) ${Math.round(u.cpu * 100)}%`) : []),
    ];
    if (during.length === 0 || attempt === 3) {
      const quiet = { waited_ms: waited, waited_for: [...waitedFor], discarded: attempt - 1, busy_during: during };
      return { result, quiet };
    }
    log(`  busy during the measurement (${during.join(', ')}): measuring again`);
  }
}

/**
 * Starts every server the configurations need, in `mode`.
 *
 * @param {Mode} mode
 * @param {Config[]} configs
 * @param {string} dir
 * @param {string | undefined} rust
 * @returns {Promise<Map<string, RunningServer>>}
 */
async function startServers(mode, configs, dir, rust) {
  /** @type {Map<string, RunningServer>} */
  const servers = new Map();
  for (const kind of new Set(configs.map((c) => c.server))) {
    const sub = join(dir, `${mode}-${kind}`);
    mkdirSync(sub, { mode: 0o700 });
    const cmd =
      kind === 'rust'
        ? [/** @type {string} */ (rust), 'serve', 'tcp://127.0.0.1:0', `unix://${sub}/rust.sock`, 'ws://127.0.0.1:0/gw']
        : [process.execPath, join(BENCH, 'server.mjs'), kind, sub];
    servers.set(kind, await startServer([...PIN[mode], ...cmd], kind === 'rust' ? 3 : 0));
  }
  return servers;
}

/**
 * @param {ReturnType<typeof options>} o
 * @param {Config[]} configs
 * @param {string} dir
 * @param {string | undefined} rust
 */
async function measure(o, configs, dir, rust) {
  /** @type {Map<string, Sample[]>} keyed by `mode|config` */
  const samples = new Map();
  let failures = 0;
  for (const mode of o.modes) {
    log(`\n${mode}${mode === 'pinned' ? ' (client and server: taskset -c 0)' : ''}: starting servers`);
    const servers = await startServers(mode, configs, dir, rust);
    try {
      for (let rep = 1; rep <= o.reps; rep++) {
        for (const c of configs) {
          const ep = /** @type {RunningServer} */ (servers.get(c.server)).endpoints;
          const job = { ...o.job, peer: c.peer, url: ep[c.url], bulkUrl: c.bulkUrl && ep[c.bulkUrl], shapes: c.shapes };
          log(`[${mode} ${rep}/${o.reps}] ${c.name}`);
          try {
            const sample = await quietSample(PIN[mode], job, o);
            const key = `${mode}|${c.name}`;
            samples.set(key, [...(samples.get(key) ?? []), sample]);
            emit({ type: 'sample', mode, config: c.name, rep, ...sample.result, ...sample.quiet });
          } catch (e) {
            failures += 1;
            const error = e instanceof Error ? e.message : String(e);
            log(`  failed: ${error}`);
            emit({ type: 'error', mode, config: c.name, rep, error });
          }
        }
      }
    } finally {
      await Promise.all([...servers.values()].map((s) => s.stop()));
    }
  }
  return { samples, failures };
}

/**
 * @typedef {object} Summary
 * @property {number} [p50_us]
 * @property {number} [p99_us]
 * @property {number} [calls_per_s]
 * @property {number} [bulk_ms]
 */

/**
 * Medians over repetitions, one JSON line per mode, configuration and shape.
 *
 * @param {Map<string, Sample[]>} samples
 * @returns {Map<string, Summary>}
 */
function summarize(samples) {
  /** @type {Map<string, Summary>} */
  const out = new Map();
  for (const [key, list] of samples) {
    const [mode, config] = key.split('|');
    /** @type {Summary} */
    const s = {};
    /** @param {string} shape @param {string} field */
    const pick = (shape, field) => list.map((x) => x.result[shape]?.[field]).filter((v) => v !== undefined);
    const waited = list.map((x) => x.quiet.waited_ms);
    for (const [shape, fields] of /** @type {[string, [string, keyof Summary][]][]} */ ([
      ['latency', [['p50_us', 'p50_us'], ['p99_us', 'p99_us']]],
      ['throughput', [['calls_per_s', 'calls_per_s']]],
      ['bulk', [['ms', 'bulk_ms']]],
    ])) {
      if (pick(shape, fields[0]?.[0] ?? '').length === 0) {
        continue;
      }
      /** @type {Record<string, unknown>} */
      const line = { type: 'result', mode, config, shape, reps: list.length };
      for (const [field, name] of fields) {
        const values = pick(shape, field);
        s[name] = median(values);
        line[field] = s[name];
        line[`${field}_reps`] = values;
      }
      line['waited'] = waited.some((w) => w > 0);
      line['waited_ms'] = waited;
      line['discarded'] = list.reduce((n, x) => n + x.quiet.discarded, 0);
      line['disturbed'] = list.some((x) => x.quiet.busy_during.length > 0);
      emit(line);
    }
    out.set(key, s);
  }
  return out;
}

/**
 * @param {number | undefined} v
 * @param {number} digits
 */
function fmt(v, digits = 0) {
  return v === undefined ? '' : v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/**
 * @param {Map<string, Summary>} summary
 * @param {Mode[]} modes
 * @param {Config[]} configs
 * @param {number} reps
 */
function table(summary, modes, configs, reps) {
  for (const mode of modes) {
    log(`\n${mode}${mode === 'pinned' ? ' (taskset -c 0, both ends)' : ''}, median of ${reps}: 32 B calls, 8 MiB upload`);
    log(`${'configuration'.padEnd(22)}${'p50 µs'.padStart(9)}${'p99 µs'.padStart(9)}${'calls/s @64'.padStart(13)}${'8 MiB ms'.padStart(10)}`);
    for (const c of configs) {
      const s = summary.get(`${mode}|${c.name}`);
      if (s === undefined) {
        continue;
      }
      log(
        `${c.name.padEnd(22)}${fmt(s.p50_us, 1).padStart(9)}${fmt(s.p99_us, 1).padStart(9)}` +
          `${fmt(s.calls_per_s).padStart(13)}${fmt(s.bulk_ms, 1).padStart(10)}`,
      );
    }
  }
}

/**
 * The goals, as ratios of medians from this run, for each gatewire transport.
 *
 * @param {Map<string, Summary>} summary
 * @param {Mode[]} modes
 */
function goals(summary, modes) {
  /**
   * @param {Mode} mode
   * @param {string} config
   * @param {keyof Summary} field
   */
  const get = (mode, config, field) => summary.get(`${mode}|${config}`)?.[field];
  /** @type {{ goal: string, target: number, ratio: (m: Mode, t: string) => number | undefined }[]} */
  const list = [
    {
      goal: 'calls/s @64 ≥ 2× socket.io (string)',
      target: 2,
      ratio: (m, t) => div(get(m, `gatewire/${t}`, 'calls_per_s'), get(m, 'socket.io string', 'calls_per_s')),
    },
    {
      goal: 'calls/s @64 ≥ 2× socket.io (Buffer)',
      target: 2,
      ratio: (m, t) => div(get(m, `gatewire/${t}`, 'calls_per_s'), get(m, 'socket.io Buffer', 'calls_per_s')),
    },
    {
      goal: 'calls/s @64 ≥ 0.7× ws echo',
      target: 0.7,
      ratio: (m, t) => div(get(m, `gatewire/${t}`, 'calls_per_s'), get(m, 'ws echo', 'calls_per_s')),
    },
    {
      goal: '8 MiB upload ≥ 5× faster than socket.io msgpack',
      target: 5,
      ratio: (m, t) => div(get(m, 'socket.io msgpack', 'bulk_ms'), get(m, `gatewire/${t}`, 'bulk_ms')),
    },
  ];
  log('\ngoals: ratios of medians from this run (met/missed judged on the pinned figures)');
  log(`${'goal'.padEnd(50)}${'transport'.padEnd(11)}${'pinned'.padStart(16)}${'unpinned'.padStart(10)}`);
  for (const g of list) {
    for (const t of ['ws', 'tcp', 'unix']) {
      /** @type {Record<string, number | undefined>} */
      const r = {};
      for (const m of modes) {
        r[m] = g.ratio(m, t);
        const v = r[m];
        if (v !== undefined) {
          emit({ type: 'goal', mode: m, goal: g.goal, gatewire: t, ratio: v, target: g.target, met: v >= g.target });
        }
      }
      if (Object.values(r).every((v) => v === undefined)) {
        continue;
      }
      const p = r['pinned'];
      const verdict = p === undefined ? '' : p >= g.target ? ' met' : ' MISSED';
      log(
        `${g.goal.padEnd(50)}${t.padEnd(11)}${(p === undefined ? '' : `${p.toFixed(2)}×${verdict}`).padStart(16)}` +
          `${(r['unpinned'] === undefined ? '' : `${r['unpinned'].toFixed(2)}×`).padStart(10)}`,
      );
    }
  }
}

/**
 * @param {number | undefined} a
 * @param {number | undefined} b
 */
function div(a, b) {
  return a === undefined || b === undefined || b === 0 ? undefined : a / b;
}

async function main() {
  const o = options();
  const t0 = performance.now();
  const rust = rustPeer(o.quick);
  let configs = CONFIGS.filter((c) => o.only === undefined || o.only.some((x) => c.name.includes(x)));
  if (rust === undefined) {
    const skipped = configs.filter((c) => c.server === 'rust').map((c) => c.name);
    if (skipped.length > 0) {
      log('no interop-peer build found (cargo build --release -p gatewire-interop): the Rust server is skipped');
      emit({ type: 'skipped', configs: skipped, reason: 'interop-peer not built' });
    }
    configs = configs.filter((c) => c.server !== 'rust');
  }
  emit({
    type: 'run',
    node: process.version,
    cpus: cpus().length,
    quick: o.quick,
    reps: o.reps,
    modes: o.modes,
    ...o.job,
    rust_peer: rust,
    configs: configs.map((c) => c.name),
  });
  const dir = mkdtempSync(join(tmpdir(), 'gw-bench-'));
  let failures = 0;
  try {
    const m = await measure(o, configs, dir, rust);
    failures = m.failures;
    const summary = summarize(m.samples);
    table(summary, o.modes, configs, o.reps);
    goals(summary, o.modes);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const seconds = (performance.now() - t0) / 1000;
  emit({ type: 'done', seconds, failures });
  log(`\n${failures === 0 ? 'done' : `${failures} measurements FAILED`} in ${seconds.toFixed(0)} s`);
  return failures === 0 ? 0 : 1;
}

/** Stops every child still running (servers, a client). */
function killAll() {
  for (const c of children) {
    c.kill('SIGKILL');
  }
}

for (const signal of /** @type {const} */ (['SIGINT', 'SIGTERM'])) {
  process.once(signal, () => {
    killAll();
    process.exit(130);
  });
}
process.once('exit', killAll);

try {
  process.exitCode = await main();
} catch (e) {
  log(`error: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 2;
}
