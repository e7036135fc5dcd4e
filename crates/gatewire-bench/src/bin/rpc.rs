//! Runtime benchmark: gatewire calls over TCP, Unix sockets and WebSocket,
//! against the floor (raw blocking sockets) and the peers a gatewire user
//! would otherwise pick: tokio-util's `LengthDelimitedCodec`, tarpc, tonic
//! and a bare tokio-tungstenite echo.
//!
//! ```text
//! cargo build --release -p gatewire-bench --bin rpc
//! taskset -c 0 target/release/rpc              # full run, both ends on CPU 0
//! target/release/rpc --quick                   # smoke test, well under 20 s
//! target/release/rpc --only gatewire,tarpc --case throughput --transport tcp
//! taskset -c 0 target/release/rpc --runtime current   # current-thread runtimes
//! ```
//!
//! # Structure
//!
//! Every server runs in a child process, `rpc --serve <peer> <addr>`, that
//! the parent starts by re-executing itself (`std::env::current_exe()`);
//! the child prints `ready <addr>` and serves until its stdin closes. The
//! parent is the client. Children inherit the parent's CPU affinity, so
//! `taskset -c 0 rpc` pins both ends to one CPU. Both sides run a
//! multi-threaded tokio runtime with as many workers as CPUs they may use
//! (`--workers` overrides; `--runtime current` gives both ends a
//! current-thread runtime instead), the same for every implementation.
//! Every measured loop runs in a spawned task, never in `block_on` itself.
//!
//! Each contender holds one connection for the whole run. Each case runs
//! every contender once untimed (warm-up), then `runs` times interleaved
//! (A, B, C, A, B, C, ...) so that drift in clock speed or in load from
//! other processes falls on all of them alike; the median run is reported.
//!
//! # Cases
//!
//! Small messages carry 64 bytes. A message's first byte is its operation
//! (`E` echo, `S` sink: the reply is one byte); gatewire, tarpc and tonic
//! also call a different method per operation, the echo servers (raw,
//! framed, ws_echo) look at the byte.
//!
//! - `latency`: sequential calls, one at a time, p50 and p99 of each run.
//! - `throughput`: `in_flight` tasks each calling in a loop on the shared
//!   connection for a fixed time; calls completed per second.
//! - `bulk_8mb`: an 8 MiB request answered with one byte, ms per round trip.
//!   For `raw` this is the streaming floor: 8 MiB written to a socket, one
//!   byte back.
//! - `bulk_8mb_echo`: the 8 MiB request echoed back (8 MiB each way).
//! - `ping_during_bulk`: one task echoes 8 MiB messages in a loop while a
//!   second task makes small calls on the same connection; p50 and p99 of
//!   the small calls (`bulk_per_s` says how many transfers went through
//!   meanwhile).
//!
//! Contenders: gatewire over `tcp`, `unix`, `ws`; `raw` over `tcp` and
//! `unix` (latency and bulk only: blocking sockets, one call at a time);
//! `framed`, `tarpc`, `tonic` over `tcp`; `ws_echo` over `ws`. See each
//! module for how the peer is configured.
//!
//! # Output
//!
//! One JSON line per figure on stdout:
//!
//! ```text
//! {"bench":"rpc","case":"latency","transport":"tcp","impl":"gatewire","in_flight":1,"unit":"us","p50":..,"p99":..,"median":..,"runs":[..],"runs_p99":[..],"mode":"full"}
//! {"bench":"rpc","case":"throughput","transport":"tcp","impl":"tarpc","in_flight":64,"unit":"calls/s","median":..,"runs":[..],"mode":"full"}
//! ```
//!
//! For the latency cases `runs` holds each run's p50 and `runs_p99` its
//! p99; `p50`, `p99` and `median` (= `p50`) are medians over the runs. For
//! the others `runs` holds each run's figure and `median` their median.
//! gatewire figures add `frames_per_write`, the client's frames per
//! transport write (from `Connection::stats`): how well it batches. Every
//! line names its `mode` and `runtime` (`multi/N` or `current`).
//! Then one line per ratio, with the goal where there is one:
//!
//! ```text
//! {"bench":"rpc","case":"throughput","transport":"tcp","in_flight":64,"ratio":"gatewire/tarpc","metric":"calls/s","value":..,"goal":">= 3","met":true,"mode":"full"}
//! {"bench":"rpc","case":"ping_during_bulk","transport":"tcp","in_flight":2,"metric":"p99_us","value":..,"goal":"<= 1000","met":true,"mode":"full"}
//! ```
//!
//! A readable table and the goals go to stderr.

// The modules live in `rpc/`; a crate root looks beside itself by default,
// where cargo would take each file for a binary of its own.
#[path = "rpc/gw.rs"]
mod gw;
#[path = "rpc/pipe.rs"]
mod pipe;
#[path = "rpc/raw.rs"]
mod raw;
#[path = "rpc/stats.rs"]
mod stats;
#[path = "rpc/tarpc_peer.rs"]
mod tarpc_peer;
#[path = "rpc/tonic_peer.rs"]
mod tonic_peer;

use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

use stats::{Sample, median, round_sig};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Size of the small messages.
const SMALL: usize = 64;
/// Size of the bulk messages.
const BULK: usize = 8 << 20;
/// Message limit on both ends of every implementation that has one.
pub(crate) const MAX_MESSAGE: usize = 16 << 20;
/// The reply to a sink call.
pub(crate) const ACK: &[u8] = b"k";
/// Throughput levels: calls in flight at once.
const IN_FLIGHT: [usize; 4] = [1, 16, 64, 256];

/// What the server does with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Reply with the message.
    Echo,
    /// Reply with [`ACK`].
    Sink,
}

impl Op {
    /// The first byte of every message of this operation.
    pub(crate) fn tag(self) -> u8 {
        match self {
            Self::Echo => b'E',
            Self::Sink => b'S',
        }
    }
}

/// A client of one implementation: one connection, shared by its clones.
pub(crate) trait Rpc: Clone + Send + 'static {
    /// Sends `payload` (whose first byte is `op`'s tag) and waits for the
    /// reply; returns the reply's length.
    fn call(&mut self, op: Op, payload: Bytes) -> impl Future<Output = Result<usize, BoxError>> + Send;
}

// -------------------------------------------------------------------- plan

#[derive(Clone, Copy)]
struct Plan {
    mode: &'static str,
    /// Timed runs per contender and figure, after one warm-up.
    runs: usize,
    latency_calls: usize,
    latency_warmup: usize,
    throughput_time: Duration,
    throughput_warmup: Duration,
    bulk_iters: usize,
    ping_time: Duration,
}

const FULL: Plan = Plan {
    mode: "full",
    runs: 5,
    latency_calls: 20_000,
    latency_warmup: 2_000,
    throughput_time: Duration::from_millis(1_000),
    throughput_warmup: Duration::from_millis(250),
    bulk_iters: 10,
    ping_time: Duration::from_millis(1_000),
};

const QUICK: Plan = Plan {
    mode: "quick",
    runs: 3,
    latency_calls: 300,
    latency_warmup: 50,
    throughput_time: Duration::from_millis(50),
    throughput_warmup: Duration::from_millis(20),
    bulk_iters: 1,
    ping_time: Duration::from_millis(60),
};

const CASES: [&str; 5] = ["latency", "throughput", "bulk_8mb", "bulk_8mb_echo", "ping_during_bulk"];

/// The implementations, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Impl {
    Gatewire,
    Raw,
    Framed,
    Tarpc,
    Tonic,
    WsEcho,
}

impl Impl {
    const ALL: [Self; 6] = [Self::Gatewire, Self::Raw, Self::Framed, Self::Tarpc, Self::Tonic, Self::WsEcho];

    fn name(self) -> &'static str {
        match self {
            Self::Gatewire => "gatewire",
            Self::Raw => "raw",
            Self::Framed => "framed",
            Self::Tarpc => "tarpc",
            Self::Tonic => "tonic",
            Self::WsEcho => "ws_echo",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.name() == name)
    }

    /// Transports this implementation is measured over, and the address its
    /// server binds for each.
    fn transports(self, sock: &dyn Fn(&str) -> PathBuf) -> Vec<(&'static str, String)> {
        let unix = |name: &str| format!("unix://{}", sock(name).display());
        match self {
            Self::Gatewire => vec![
                ("tcp", "tcp://127.0.0.1:0".into()),
                ("unix", unix("gatewire")),
                ("ws", "ws://127.0.0.1:0/bench".into()),
            ],
            Self::Raw => vec![("tcp", "tcp://127.0.0.1:0".into()), ("unix", unix("raw"))],
            Self::Framed | Self::Tarpc | Self::Tonic => vec![("tcp", "127.0.0.1:0".into())],
            Self::WsEcho => vec![("ws", "127.0.0.1:0".into())],
        }
    }
}

// ------------------------------------------------------------------- args

struct Args {
    plan: Plan,
    only: Vec<Impl>,
    cases: Vec<&'static str>,
    transports: Vec<String>,
    rt: RtConfig,
}

/// The runtime of each end (the same for every implementation).
#[derive(Clone, Copy, Debug)]
struct RtConfig {
    /// Worker threads of the multi-threaded runtime.
    workers: usize,
    /// A current-thread runtime instead (`--runtime current`).
    current_thread: bool,
}

impl RtConfig {
    fn default_workers() -> usize {
        std::thread::available_parallelism().map_or(1, usize::from)
    }

    fn build(self) -> std::io::Result<Runtime> {
        if self.current_thread {
            tokio::runtime::Builder::new_current_thread().enable_all().build()
        } else {
            tokio::runtime::Builder::new_multi_thread().worker_threads(self.workers).enable_all().build()
        }
    }

    /// The options that give a child the same runtime.
    fn args(self) -> [String; 4] {
        let flavor = if self.current_thread { "current" } else { "multi" };
        ["--workers".into(), self.workers.to_string(), "--runtime".into(), flavor.into()]
    }

    /// `multi/N` or `current`, for the JSON lines.
    fn label(self) -> String {
        if self.current_thread { "current".into() } else { format!("multi/{}", self.workers) }
    }

    fn describe(self) -> String {
        if self.current_thread {
            "current-thread runtime on each end".into()
        } else {
            format!("multi-thread runtime with {} worker(s) on each end", self.workers)
        }
    }

    /// Applies `--workers N` / `--runtime multi|current`; false if `flag` is
    /// neither.
    fn apply(&mut self, flag: &str, value: &str) -> Result<bool, String> {
        match flag {
            "--workers" => self.workers = value.parse::<usize>().map_err(|e| format!("--workers: {e}"))?.max(1),
            "--runtime" => {
                self.current_thread = match value {
                    "multi" => false,
                    "current" => true,
                    other => return Err(format!("--runtime: want multi or current, got {other:?}")),
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl Default for RtConfig {
    fn default() -> Self {
        Self { workers: Self::default_workers(), current_thread: false }
    }
}

const USAGE: &str = "\
usage: rpc [--quick] [--json] [--only IMPL,..] [--case CASE,..] [--transport T,..] [--runs N]
           [--workers N] [--runtime multi|current]
  --quick      tiny counts (smoke test, whole run well under 20 s)
  --json       one JSON line per figure on stdout (default and only format)
  --only       implementations: gatewire, raw, framed, tarpc, tonic, ws_echo
  --case       cases: latency, throughput, bulk_8mb, bulk_8mb_echo, ping_during_bulk
  --transport  transports: tcp, unix, ws
  --runs       timed runs per figure (default 5, quick 3)
  --workers    worker threads of each end's runtime (default: CPUs this process may use)
  --runtime    multi (default) or current: tokio runtime flavour of each end
internal: rpc --serve PEER ADDR [--workers N] [--runtime F] runs one server and prints `ready ADDR`";

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut plan = FULL;
    let mut runs = None;
    let mut only = Vec::new();
    let mut cases = Vec::new();
    let mut rt = RtConfig::default();
    let mut transports = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| it.next().cloned().ok_or_else(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "--quick" => plan = QUICK,
            "--json" => {}
            "--only" => {
                for name in value("--only")?.split(',') {
                    only.push(Impl::parse(name).ok_or_else(|| format!("unknown implementation {name:?}"))?);
                }
            }
            "--case" => {
                for name in value("--case")?.split(',') {
                    cases.push(*CASES.iter().find(|c| **c == name).ok_or_else(|| format!("unknown case {name:?}"))?);
                }
            }
            "--transport" => {
                for name in value("--transport")?.split(',') {
                    if !["tcp", "unix", "ws"].contains(&name) {
                        return Err(format!("unknown transport {name:?}"));
                    }
                    transports.push(name.to_owned());
                }
            }
            "--runs" => runs = Some(value("--runs")?.parse::<usize>().map_err(|e| format!("--runs: {e}"))?),
            flag @ ("--workers" | "--runtime") => {
                rt.apply(flag, &value(flag)?)?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if let Some(runs) = runs {
        plan.runs = runs.max(1);
    }
    if only.is_empty() {
        only = Impl::ALL.to_vec();
    }
    if cases.is_empty() {
        cases = CASES.to_vec();
    }
    Ok(Args { plan, only, cases, transports, rt })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if args.first().map(String::as_str) == Some("--serve") {
        return serve_main(&args[1..]);
    }
    let args = match parse_args(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rpc: {e} (try --help)");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rpc: {e}");
            ExitCode::FAILURE
        }
    }
}

// ----------------------------------------------------------------- servers

/// What a child keeps alive while it serves.
enum Keep {
    Nothing,
    Gatewire(#[allow(dead_code)] gatewire::Server),
}

async fn start_server(peer: &str, addr: &str) -> Result<(String, Keep), BoxError> {
    Ok(match peer {
        "gatewire" => {
            let (server, url) = gw::serve(addr).await?;
            (url, Keep::Gatewire(server))
        }
        "raw" => (raw::serve(addr)?, Keep::Nothing),
        "framed" => (pipe::serve_framed(addr).await?, Keep::Nothing),
        "ws_echo" => (pipe::serve_ws(addr).await?, Keep::Nothing),
        "tarpc" => (tarpc_peer::serve(addr).await?, Keep::Nothing),
        "tonic" => (tonic_peer::serve(addr)?, Keep::Nothing),
        other => return Err(format!("unknown peer {other:?}").into()),
    })
}

/// `rpc --serve PEER ADDR [--workers N] [--runtime F]`: serves until stdin
/// closes.
fn serve_main(args: &[String]) -> ExitCode {
    let (Some(peer), Some(addr)) = (args.first(), args.get(1)) else {
        eprintln!("rpc: --serve needs PEER and ADDR");
        return ExitCode::from(2);
    };
    let mut config = RtConfig::default();
    for pair in args[2..].chunks(2) {
        let applied = match pair {
            [flag, value] => config.apply(flag, value),
            _ => Ok(false),
        };
        if !matches!(applied, Ok(true)) {
            eprintln!("rpc --serve: bad options {pair:?}");
            return ExitCode::from(2);
        }
    }
    let rt = match config.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rpc --serve: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let served = rt.block_on(async {
        let (addr, keep) = start_server(peer, addr).await?;
        println!("ready {addr}");
        // Serve until the parent closes our stdin (or dies), driving the
        // runtime meanwhile (a current-thread runtime runs only in here).
        tokio::task::spawn_blocking(|| {
            let mut sink = [0u8; 64];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        })
        .await?;
        drop(keep);
        Ok::<(), BoxError>(())
    });
    if let Err(e) = served {
        eprintln!("rpc --serve {peer} {addr}: {e}");
        return ExitCode::FAILURE;
    }
    // Leave without waiting for connection tasks to wind down.
    std::process::exit(0)
}

/// The children, ended when dropped.
#[derive(Default)]
struct Children {
    children: Vec<(Child, Option<ChildStdin>)>,
    /// The private directory of the Unix sockets, removed at the end.
    socket_dir: Option<PathBuf>,
}

impl Children {
    fn spawn(&mut self, peer: &str, addr: &str, rt: RtConfig) -> Result<String, BoxError> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(["--serve", peer, addr])
            .args(rt.args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("child has no stdout")?;
        self.children.push((child, stdin));
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let ready = line.trim().strip_prefix("ready ").ok_or_else(|| format!("{peer} server did not start"))?;
        Ok(ready.to_owned())
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, stdin) in &mut self.children {
            drop(stdin.take());
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        for (child, _) in &mut self.children {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if let Some(dir) = &self.socket_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

// ------------------------------------------------------------- contenders

enum Client {
    Gatewire(gw::Client),
    Pipe(pipe::Client),
    Tarpc(tarpc_peer::Client),
    Tonic(tonic_peer::Client),
    Raw(raw::Client),
}

struct Contender {
    imp: Impl,
    transport: &'static str,
    client: Client,
}

/// One timed (or warm-up) run.
#[derive(Clone, Copy, Debug)]
enum Job {
    Latency { calls: usize },
    Throughput { tasks: usize, time: Duration },
    Bulk { iters: usize, op: Op },
    PingDuringBulk { time: Duration },
}

/// The messages, built once.
#[derive(Clone)]
struct Payloads {
    small: Bytes,
    sink: Bytes,
    echo: Bytes,
}

impl Payloads {
    fn new() -> Self {
        let bulk = |op: Op| -> Bytes {
            let mut v: Vec<u8> = (0..BULK).map(|i| (i % 251) as u8).collect();
            v[0] = op.tag();
            v.into()
        };
        Self { small: vec![Op::Echo.tag(); SMALL].into(), sink: bulk(Op::Sink), echo: bulk(Op::Echo) }
    }

    fn bulk(&self, op: Op) -> &Bytes {
        match op {
            Op::Echo => &self.echo,
            Op::Sink => &self.sink,
        }
    }
}

impl Contender {
    fn label(&self) -> String {
        format!("{}/{}", self.imp.name(), self.transport)
    }

    /// Blocking sockets serve one call at a time: latency and bulk only.
    fn takes(&self, job: &Job) -> bool {
        !matches!((&self.client, job), (Client::Raw(_), Job::Throughput { .. } | Job::PingDuringBulk { .. }))
    }

    fn run(&mut self, rt: &Runtime, job: Job, data: &Payloads) -> Result<Sample, BoxError> {
        let result = match &mut self.client {
            Client::Raw(c) => raw_job(c, job, data),
            Client::Gatewire(c) => {
                let before = c.stats();
                let sample = rt.block_on(spawn_job(c.clone(), job, data.clone()));
                let after = c.stats();
                let writes = after.writes.saturating_sub(before.writes);
                let frames = after.frames_sent.saturating_sub(before.frames_sent);
                sample.map(|s| Sample { frames_per_write: (writes > 0).then(|| frames as f64 / writes as f64), ..s })
            }
            Client::Pipe(c) => rt.block_on(spawn_job(c.clone(), job, data.clone())),
            Client::Tarpc(c) => rt.block_on(spawn_job(c.clone(), job, data.clone())),
            Client::Tonic(c) => rt.block_on(spawn_job(c.clone(), job, data.clone())),
        };
        result.map_err(|e| format!("{} {job:?}: {e}", self.label()).into())
    }
}

fn connect(rt: &Runtime, imp: Impl, transport: &'static str, addr: &str) -> Result<Contender, BoxError> {
    let client = match imp {
        Impl::Gatewire => Client::Gatewire(rt.block_on(gw::Client::connect(addr))?),
        Impl::Raw => Client::Raw(raw::Client::connect(addr)?),
        Impl::Framed => Client::Pipe(rt.block_on(pipe::Client::connect_framed(addr))?),
        Impl::WsEcho => Client::Pipe(rt.block_on(pipe::Client::connect_ws(addr))?),
        Impl::Tarpc => Client::Tarpc(rt.block_on(tarpc_peer::Client::connect(addr))?),
        Impl::Tonic => Client::Tonic(rt.block_on(tonic_peer::Client::connect(addr))?),
    };
    Ok(Contender { imp, transport, client })
}

// -------------------------------------------------------------------- jobs

fn expect_len(got: usize, want: usize) -> Result<(), BoxError> {
    if got == want { Ok(()) } else { Err(format!("reply of {got} bytes, expected {want}").into()) }
}

fn reply_len(op: Op) -> usize {
    match op {
        Op::Echo => BULK,
        Op::Sink => ACK.len(),
    }
}

/// Runs `job` in a task on the runtime's workers (not on the thread that
/// blocks on it), as a server's or an application's code would.
async fn spawn_job<C: Rpc>(client: C, job: Job, data: Payloads) -> Result<Sample, BoxError> {
    tokio::spawn(async move {
        match job {
            Job::Latency { calls } => latency(client, calls, data.small).await,
            Job::Throughput { tasks, time } => throughput(client, tasks, time, data.small).await,
            Job::Bulk { iters, op } => bulk(client, iters, op, data.bulk(op).clone()).await,
            Job::PingDuringBulk { time } => ping_during_bulk(client, time, data.small, data.echo).await,
        }
    })
    .await?
}

async fn latency<C: Rpc>(mut client: C, calls: usize, small: Bytes) -> Result<Sample, BoxError> {
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        let len = client.call(Op::Echo, small.clone()).await?;
        times.push(start.elapsed());
        expect_len(len, SMALL)?;
    }
    Ok(Sample::latencies(&mut times))
}

async fn throughput<C: Rpc>(client: C, tasks: usize, time: Duration, small: Bytes) -> Result<Sample, BoxError> {
    let start = Instant::now();
    let deadline = start + time;
    let mut set = JoinSet::new();
    for _ in 0..tasks {
        let mut client = client.clone();
        let small = small.clone();
        set.spawn(async move {
            let mut calls = 0u64;
            while Instant::now() < deadline {
                expect_len(client.call(Op::Echo, small.clone()).await?, SMALL)?;
                calls += 1;
            }
            Ok::<u64, BoxError>(calls)
        });
    }
    let mut calls = 0;
    while let Some(r) = set.join_next().await {
        calls += r??;
    }
    Ok(Sample::rate(calls, start.elapsed()))
}

async fn bulk<C: Rpc>(mut client: C, iters: usize, op: Op, payload: Bytes) -> Result<Sample, BoxError> {
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        let len = client.call(op, payload.clone()).await?;
        times.push(start.elapsed());
        expect_len(len, reply_len(op))?;
    }
    Ok(Sample::mean_ms(&times))
}

async fn ping_during_bulk<C: Rpc>(client: C, time: Duration, small: Bytes, big: Bytes) -> Result<Sample, BoxError> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut bulk_client = client.clone();
    let bulk_stop = stop.clone();
    let started = Instant::now();
    let transfers = tokio::spawn(async move {
        let mut n = 0u32;
        while !bulk_stop.load(Ordering::Relaxed) {
            expect_len(bulk_client.call(Op::Echo, big.clone()).await?, BULK)?;
            n += 1;
        }
        Ok::<u32, BoxError>(n)
    });
    // Let the first transfer get going.
    tokio::time::sleep(Duration::from_millis(2)).await;
    let mut client = client;
    let mut times = Vec::new();
    let start = Instant::now();
    while start.elapsed() < time {
        let t = Instant::now();
        let len = client.call(Op::Echo, small.clone()).await?;
        times.push(t.elapsed());
        expect_len(len, SMALL)?;
    }
    stop.store(true, Ordering::Relaxed);
    let transfers = transfers.await??;
    let mut sample = Sample::latencies(&mut times);
    sample.bulk_per_s = Some(f64::from(transfers) / started.elapsed().as_secs_f64());
    Ok(sample)
}

fn raw_job(client: &mut raw::Client, job: Job, data: &Payloads) -> Result<Sample, BoxError> {
    match job {
        Job::Latency { calls } => {
            let mut times = Vec::with_capacity(calls);
            for _ in 0..calls {
                let start = Instant::now();
                let len = client.call(Op::Echo, &data.small)?;
                times.push(start.elapsed());
                expect_len(len, SMALL)?;
            }
            Ok(Sample::latencies(&mut times))
        }
        Job::Bulk { iters, op } => {
            let mut times = Vec::with_capacity(iters);
            for _ in 0..iters {
                let start = Instant::now();
                let len = client.call(op, data.bulk(op))?;
                times.push(start.elapsed());
                expect_len(len, reply_len(op))?;
            }
            Ok(Sample::mean_ms(&times))
        }
        Job::Throughput { .. } | Job::PingDuringBulk { .. } => Err("not measured for raw".into()),
    }
}

// ----------------------------------------------------------------- figures

#[derive(Serialize, Clone)]
struct Figure {
    bench: &'static str,
    case: &'static str,
    transport: &'static str,
    #[serde(rename = "impl")]
    implementation: &'static str,
    in_flight: usize,
    unit: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    p50: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p99: Option<f64>,
    median: f64,
    runs: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    runs_p99: Option<Vec<f64>>,
    /// Calls each percentile was taken over (median over the runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    samples: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bulk_per_s: Option<f64>,
    /// gatewire only: frames per transport write on the client side.
    #[serde(skip_serializing_if = "Option::is_none")]
    frames_per_write: Option<f64>,
    mode: &'static str,
    runtime: String,
}

#[derive(Serialize)]
struct Ratio {
    bench: &'static str,
    case: &'static str,
    transport: &'static str,
    in_flight: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio: Option<String>,
    metric: &'static str,
    value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    goal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    met: Option<bool>,
    mode: &'static str,
    runtime: String,
}

/// The case's shape: what its figures are called and measured in.
struct CaseSpec {
    case: &'static str,
    in_flight: usize,
    unit: &'static str,
    /// The latency cases report p50/p99.
    percentiles: bool,
    reply_bytes: Option<usize>,
}

fn figure(plan: &Plan, rt: RtConfig, spec: &CaseSpec, c: &Contender, samples: &[Sample]) -> Figure {
    let sig = |x: f64| round_sig(x, 5);
    let runs: Vec<f64> = samples.iter().map(|s| sig(s.value)).collect();
    let runs_p99: Option<Vec<f64>> =
        spec.percentiles.then(|| samples.iter().map(|s| sig(s.p99.unwrap_or(f64::NAN))).collect());
    let m = sig(median(&runs));
    let bulk: Vec<f64> = samples.iter().filter_map(|s| s.bulk_per_s).collect();
    let counts: Vec<f64> = samples.iter().map(|s| s.count as f64).collect();
    let batching: Vec<f64> = samples.iter().filter_map(|s| s.frames_per_write).collect();
    Figure {
        bench: "rpc",
        case: spec.case,
        transport: c.transport,
        implementation: c.imp.name(),
        in_flight: spec.in_flight,
        unit: spec.unit,
        p50: spec.percentiles.then_some(m),
        p99: runs_p99.as_deref().map(|r| sig(median(r))),
        median: m,
        runs,
        runs_p99,
        samples: spec.percentiles.then(|| median(&counts) as usize),
        reply_bytes: spec.reply_bytes,
        bulk_per_s: (!bulk.is_empty()).then(|| round_sig(median(&bulk), 4)),
        frames_per_write: (!batching.is_empty()).then(|| round_sig(median(&batching), 3)),
        mode: plan.mode,
        runtime: rt.label(),
    }
}

fn print_figure(f: &Figure) {
    println!("{}", serde_json::to_string(f).expect("serializable"));
    let label = format!("{}/{}", f.implementation, f.transport);
    let lo = f.runs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = f.runs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    match (f.p50, f.p99) {
        (Some(p50), Some(p99)) => eprintln!(
            "{:<17} {label:<14} p50 {p50:>9.1} {u}  p99 {p99:>9.1} {u}{}",
            f.case,
            f.bulk_per_s.map(|b| format!("  ({b:.1} transfers/s alongside)")).unwrap_or_default(),
            u = f.unit
        ),
        _ => eprintln!(
            "{:<17} {label:<14} {:>4} in flight  median {} {}  (min {}, max {})",
            f.case,
            f.in_flight,
            human(f.median),
            f.unit,
            human(lo),
            human(hi)
        ),
    }
}

fn human(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.3}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.2}")
    }
}

/// Warms up every contender that takes `job`, then runs them interleaved.
fn measure(
    rt: &Runtime,
    args: &Args,
    spec: &CaseSpec,
    contenders: &mut [Contender],
    warmup: Job,
    job: Job,
    data: &Payloads,
) -> Result<Vec<Figure>, BoxError> {
    let mut chosen: Vec<&mut Contender> = contenders.iter_mut().filter(|c| c.takes(&job)).collect();
    for c in &mut chosen {
        c.run(rt, warmup, data)?;
    }
    let plan = &args.plan;
    let mut samples = vec![Vec::with_capacity(plan.runs); chosen.len()];
    for _ in 0..plan.runs {
        for (c, s) in chosen.iter_mut().zip(&mut samples) {
            s.push(c.run(rt, job, data)?);
        }
    }
    let figures: Vec<Figure> = chosen.iter().zip(&samples).map(|(c, s)| figure(plan, args.rt, spec, c, s)).collect();
    figures.iter().for_each(print_figure);
    Ok(figures)
}

// ---------------------------------------------------------------------- run

fn run(args: &Args) -> Result<(), BoxError> {
    let plan = args.plan;
    eprintln!(
        "rpc bench ({} mode: {} runs per figure, {} latency calls, {:?} per throughput run, {} bulk round trips, {:?} of pings; {})",
        plan.mode,
        plan.runs,
        plan.latency_calls,
        plan.throughput_time,
        plan.bulk_iters,
        plan.ping_time,
        args.rt.describe()
    );
    let rt = args.rt.build()?;
    let mut children = Children::default();
    // gatewire refuses sockets in a directory others can write to.
    let dir = std::env::temp_dir().join(format!("gatewire-bench-{}", std::process::id()));
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700).create(&dir)?;
    children.socket_dir = Some(dir.clone());
    let sock = |name: &str| dir.join(format!("{name}.sock"));
    let mut contenders = Vec::new();
    for imp in Impl::ALL.into_iter().filter(|i| args.only.contains(i)) {
        for (transport, bind) in imp.transports(&sock) {
            if !args.transports.is_empty() && !args.transports.iter().any(|t| t == transport) {
                continue;
            }
            let addr = children.spawn(imp.name(), &bind, args.rt)?;
            contenders.push(connect(&rt, imp, transport, &addr)?);
        }
    }
    let data = Payloads::new();
    let mut figures = Vec::new();
    for &case in &args.cases {
        match case {
            "latency" => {
                let spec = CaseSpec { case, in_flight: 1, unit: "us", percentiles: true, reply_bytes: None };
                let warm = Job::Latency { calls: plan.latency_warmup };
                let job = Job::Latency { calls: plan.latency_calls };
                figures.extend(measure(&rt, args, &spec, &mut contenders, warm, job, &data)?);
            }
            "throughput" => {
                for tasks in IN_FLIGHT {
                    let spec =
                        CaseSpec { case, in_flight: tasks, unit: "calls/s", percentiles: false, reply_bytes: None };
                    let warm = Job::Throughput { tasks, time: plan.throughput_warmup };
                    let job = Job::Throughput { tasks, time: plan.throughput_time };
                    figures.extend(measure(&rt, args, &spec, &mut contenders, warm, job, &data)?);
                }
            }
            "bulk_8mb" | "bulk_8mb_echo" => {
                let op = if case == "bulk_8mb" { Op::Sink } else { Op::Echo };
                let spec =
                    CaseSpec { case, in_flight: 1, unit: "ms", percentiles: false, reply_bytes: Some(reply_len(op)) };
                let warm = Job::Bulk { iters: 1, op };
                let job = Job::Bulk { iters: plan.bulk_iters, op };
                figures.extend(measure(&rt, args, &spec, &mut contenders, warm, job, &data)?);
            }
            "ping_during_bulk" => {
                let spec = CaseSpec { case, in_flight: 2, unit: "us", percentiles: true, reply_bytes: None };
                let warm = Job::PingDuringBulk { time: plan.ping_time / 4 };
                let job = Job::PingDuringBulk { time: plan.ping_time };
                figures.extend(measure(&rt, args, &spec, &mut contenders, warm, job, &data)?);
            }
            _ => unreachable!("cases are checked when parsed"),
        }
    }
    // Close the connections before the servers go.
    drop(contenders);
    rt.shutdown_timeout(Duration::from_secs(1));
    drop(children);
    summary(args, &figures);
    Ok(())
}

// ------------------------------------------------------------------ summary

#[derive(Clone, Copy)]
enum Metric {
    P50,
    P99,
    Median,
}

#[derive(Clone, Copy)]
enum Cmp {
    AtMost(f64),
    AtLeast(f64),
}

/// gatewire against `peer` on one figure (or gatewire alone, `peer` none).
struct GoalSpec {
    case: &'static str,
    transport: &'static str,
    in_flight: usize,
    peer: Option<Impl>,
    metric: Metric,
    goal: Option<Cmp>,
}

fn goal_specs() -> Vec<GoalSpec> {
    let g =
        |case, transport, in_flight, peer, metric, goal| GoalSpec { case, transport, in_flight, peer, metric, goal };
    let mut specs = vec![
        g("latency", "tcp", 1, Some(Impl::Raw), Metric::P50, Some(Cmp::AtMost(1.3))),
        g("latency", "tcp", 1, Some(Impl::Raw), Metric::P99, None),
        g("latency", "unix", 1, Some(Impl::Raw), Metric::P50, None),
        g("latency", "ws", 1, Some(Impl::WsEcho), Metric::P50, None),
        g("latency", "tcp", 1, Some(Impl::Framed), Metric::P50, None),
        g("latency", "tcp", 1, Some(Impl::Tarpc), Metric::P50, None),
        g("latency", "tcp", 1, Some(Impl::Tonic), Metric::P50, None),
    ];
    for n in IN_FLIGHT {
        let (framed, tarpc, tonic) = match n {
            64 => (Some(Cmp::AtLeast(0.5)), Some(Cmp::AtLeast(3.0)), Some(Cmp::AtLeast(15.0))),
            256 => (Some(Cmp::AtLeast(0.5)), Some(Cmp::AtLeast(4.0)), Some(Cmp::AtLeast(25.0))),
            _ => (None, None, None),
        };
        specs.push(g("throughput", "tcp", n, Some(Impl::Framed), Metric::Median, framed));
        specs.push(g("throughput", "tcp", n, Some(Impl::Tarpc), Metric::Median, tarpc));
        specs.push(g("throughput", "tcp", n, Some(Impl::Tonic), Metric::Median, tonic));
        specs.push(g("throughput", "ws", n, Some(Impl::WsEcho), Metric::Median, None));
    }
    for case in ["bulk_8mb", "bulk_8mb_echo"] {
        let floor = (case == "bulk_8mb").then_some(Cmp::AtMost(1.25));
        specs.push(g(case, "tcp", 1, Some(Impl::Raw), Metric::Median, floor));
        specs.push(g(case, "unix", 1, Some(Impl::Raw), Metric::Median, None));
        specs.push(g(case, "ws", 1, Some(Impl::WsEcho), Metric::Median, None));
        for peer in [Impl::Framed, Impl::Tarpc, Impl::Tonic] {
            specs.push(g(case, "tcp", 1, Some(peer), Metric::Median, None));
        }
    }
    for transport in ["tcp", "unix", "ws"] {
        specs.push(g("ping_during_bulk", transport, 2, None, Metric::P99, Some(Cmp::AtMost(1000.0))));
    }
    specs
}

fn find<'a>(figures: &'a [Figure], case: &str, transport: &str, imp: Impl, in_flight: usize) -> Option<&'a Figure> {
    figures.iter().find(|f| {
        f.case == case && f.transport == transport && f.implementation == imp.name() && f.in_flight == in_flight
    })
}

fn metric_of(f: &Figure, m: Metric) -> f64 {
    match m {
        Metric::P50 => f.p50.unwrap_or(f.median),
        Metric::P99 => f.p99.unwrap_or(f64::NAN),
        Metric::Median => f.median,
    }
}

fn summary(args: &Args, figures: &[Figure]) {
    let plan = &args.plan;
    // The table: one row per implementation and transport.
    eprintln!("\nsummary ({} mode; medians of {} runs)", plan.mode, plan.runs);
    let mut header = format!("{:<17}{:>10}{:>10}", "impl/transport", "lat p50", "lat p99");
    for n in IN_FLIGHT {
        header.push_str(&format!("{:>12}", format!("calls/s@{n}")));
    }
    header.push_str(&format!("{:>10}{:>11}{:>12}", "8MiB ms", "8MiB echo", "ping p99"));
    eprintln!("{header}   (latencies in us)");
    let mut rows: Vec<(Impl, &str)> = Vec::new();
    for f in figures {
        let key = (Impl::parse(f.implementation).expect("known"), f.transport);
        if !rows.contains(&key) {
            rows.push(key);
        }
    }
    let cell = |f: Option<&Figure>, m: Metric, width: usize| match f {
        Some(f) => format!("{:>width$}", human(metric_of(f, m))),
        None => format!("{:>width$}", "-"),
    };
    for (imp, transport) in rows {
        let mut line = format!("{:<17}", format!("{}/{transport}", imp.name()));
        let lat = find(figures, "latency", transport, imp, 1);
        line.push_str(&cell(lat, Metric::P50, 10));
        line.push_str(&cell(lat, Metric::P99, 10));
        for n in IN_FLIGHT {
            line.push_str(&cell(find(figures, "throughput", transport, imp, n), Metric::Median, 12));
        }
        line.push_str(&cell(find(figures, "bulk_8mb", transport, imp, 1), Metric::Median, 10));
        line.push_str(&cell(find(figures, "bulk_8mb_echo", transport, imp, 1), Metric::Median, 11));
        line.push_str(&cell(find(figures, "ping_during_bulk", transport, imp, 2), Metric::P99, 12));
        eprintln!("{line}");
    }

    eprintln!("\nratios (gatewire / peer; times: lower is better, calls/s: higher is better)");
    let (mut met, mut missed) = (0, 0);
    for s in goal_specs() {
        let Some(gw) = find(figures, s.case, s.transport, Impl::Gatewire, s.in_flight) else { continue };
        let mut value = metric_of(gw, s.metric);
        if let Some(peer) = s.peer {
            let Some(p) = find(figures, s.case, s.transport, peer, s.in_flight) else { continue };
            value /= metric_of(p, s.metric);
        }
        let value = round_sig(value, 4);
        let verdict = s.goal.map(|g| match g {
            Cmp::AtMost(x) => value <= x,
            Cmp::AtLeast(x) => value >= x,
        });
        let metric = match (s.metric, s.peer) {
            (Metric::P99, None) => "p99_us",
            (Metric::P50, _) => "p50",
            (Metric::P99, _) => "p99",
            (Metric::Median, _) => gw.unit,
        };
        let line = Ratio {
            bench: "rpc",
            case: s.case,
            transport: s.transport,
            in_flight: s.in_flight,
            ratio: s.peer.map(|p| format!("gatewire/{}", p.name())),
            metric,
            value,
            goal: s.goal.map(|g| match g {
                Cmp::AtMost(x) => format!("<= {x}"),
                Cmp::AtLeast(x) => format!(">= {x}"),
            }),
            met: verdict,
            mode: plan.mode,
            runtime: args.rt.label(),
        };
        println!("{}", serde_json::to_string(&line).expect("serializable"));
        let what = line.ratio.clone().unwrap_or_else(|| "gatewire".into());
        let status = match (verdict, &line.goal) {
            (Some(true), Some(g)) => {
                met += 1;
                format!("goal {g}: met")
            }
            (Some(false), Some(g)) => {
                missed += 1;
                format!("goal {g}: MISSED")
            }
            _ => String::new(),
        };
        eprintln!(
            "{:<17} {:<5} {:>4} in flight  {what:<17} {metric:<8} {value:>10}  {status}",
            s.case, s.transport, s.in_flight
        );
    }
    eprintln!("goals: {met} met, {missed} missed");
}
