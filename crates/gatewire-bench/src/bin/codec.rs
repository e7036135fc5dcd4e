//! Codec throughput: gatewire's `Frame::encode_into` / `FrameDecoder` against
//! tokio-util's `LengthDelimitedCodec` (4-byte little-endian length prefix,
//! same frame limit), and for bulk payloads against a plain `memcpy`.
//!
//! ```text
//! cargo build --release -p gatewire-bench --bin codec
//! taskset -c 0 target/release/codec            # full run
//! target/release/codec --quick                 # smoke test, well under 5 s
//! ```
//!
//! Output (`--json`, the default and only format): one JSON line per figure
//! on stdout —
//!
//! ```text
//! {"bench":"codec","case":"small_encode","impl":"gatewire","unit":"frames/s","median":...,"runs":[...],"mode":"full"}
//! {"bench":"codec","case":"small_encode","ratio":"gatewire/length_delimited","value":...,"mode":"full"}
//! ```
//!
//! and a readable summary on stderr. Every case runs its contenders in the
//! same process, one untimed warm-up each, then interleaved (A, B, A, B, ...)
//! so that drift in clock speed or in load from other processes falls on all
//! of them alike; the median run is reported. A ratio above 1 means gatewire
//! is faster.
//!
//! Cases:
//!
//! - `small_encode`: 64-byte payloads encoded into a reused `BytesMut`,
//!   cleared every [`CLEAR_EVERY`] frames for both codecs.
//! - `small_decode`: the same frames decoded from one pre-encoded buffer fed
//!   in [`READ_CHUNK`] pieces, as socket reads would arrive. gatewire frames
//!   carry a 16-byte header against the 4-byte prefix, so gatewire also
//!   copies 80 rather than 68 bytes per frame into the receive buffer.
//! - `bulk_8mb`: one 8 MiB payload encoded, then fed through the receive
//!   buffer and decoded; see [`bulk_gatewire`] for what each path copies.
//!   This case is memory-bound (nearly all its time is in `memmove`), so it
//!   is sensitive to where the allocator placed each buffer and to other
//!   load on the machine; compare it within one run, not across machines.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use gatewire_proto::codec::{Frame, FrameDecoder};
use gatewire_proto::frame::{FrameType, HEADER_LEN, Header, MAX_FRAME_CEILING};
use serde::Serialize;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// Payload size of the small cases.
const SMALL_PAYLOAD: usize = 64;
/// Frame limit of the small cases, for both codecs: gatewire's default
/// `Limits::max_frame` (1 MiB).
const SMALL_MAX: u32 = 1 << 20;
/// Payload size of the bulk case: 8 MiB, under the 16 MiB − 1 ceiling.
const BULK_PAYLOAD: usize = 8 * 1024 * 1024;
/// Frame limit of the bulk case, for both codecs: the protocol ceiling.
const BULK_MAX: u32 = 16 * 1024 * 1024 - 1;
const _: () = assert!(BULK_MAX == MAX_FRAME_CEILING && BULK_PAYLOAD <= BULK_MAX as usize);
/// The encode buffer is cleared every this many frames.
const CLEAR_EVERY: usize = 1024;
/// Size of one simulated socket read.
const READ_CHUNK: usize = 64 * 1024;
/// Length prefix of the tokio-util codec.
const LDC_HEAD: usize = 4;

const CASES: [&str; 3] = ["small_encode", "small_decode", "bulk_8mb"];

const GATEWIRE: &str = "gatewire";
const LDC: &str = "length_delimited";
const MEMCPY: &str = "memcpy";

static SMALL: [u8; SMALL_PAYLOAD] = [0xA5; SMALL_PAYLOAD];

/// Iteration counts of one mode.
#[derive(Clone, Copy)]
struct Plan {
    mode: &'static str,
    /// Timed runs per contender (after one untimed warm-up).
    runs: usize,
    /// Frames per run in the small cases.
    small_frames: usize,
    /// Encode + decode round trips per run in the bulk case.
    bulk_iters: usize,
}

const FULL: Plan = Plan { mode: "full", runs: 11, small_frames: 1_000_000, bulk_iters: 32 };
const QUICK: Plan = Plan { mode: "quick", runs: 7, small_frames: 10_000, bulk_iters: 1 };

#[derive(Serialize)]
struct Figure<'a> {
    bench: &'static str,
    case: &'static str,
    #[serde(rename = "impl")]
    implementation: &'static str,
    unit: &'static str,
    median: f64,
    runs: &'a [f64],
    mode: &'static str,
}

#[derive(Serialize)]
struct Ratio {
    bench: &'static str,
    case: &'static str,
    ratio: String,
    value: f64,
    mode: &'static str,
}

/// One implementation under test: a closure doing one timed run.
struct Contender<'a> {
    name: &'static str,
    run: Box<dyn FnMut() -> Duration + 'a>,
}

impl<'a> Contender<'a> {
    fn new(name: &'static str, run: impl FnMut() -> Duration + 'a) -> Self {
        Self { name, run: Box::new(run) }
    }
}

fn main() -> ExitCode {
    let mut plan = FULL;
    let mut only: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => plan = QUICK,
            "--json" => {}
            "--case" => match args.next() {
                Some(names) => only.extend(names.split(',').map(str::to_owned)),
                None => {
                    eprintln!("codec: --case needs a name");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                println!("usage: codec [--quick] [--json] [--case NAME[,NAME...]]");
                println!("  --quick  tiny iteration counts (smoke test)");
                println!("  --json   one JSON line per figure on stdout (default)");
                println!("  --case   run only these cases: {}", CASES.join(", "));
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("codec: unknown argument {other:?} (try --help)");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(unknown) = only.iter().find(|name| !CASES.contains(&name.as_str())) {
        eprintln!("codec: unknown case {unknown:?}; cases: {}", CASES.join(", "));
        return ExitCode::from(2);
    }
    eprintln!(
        "codec bench ({} mode: {} runs, {} small frames, {} bulk round trips per run)",
        plan.mode, plan.runs, plan.small_frames, plan.bulk_iters
    );
    let wanted = |case: &str| only.is_empty() || only.iter().any(|name| name == case);
    check_round_trips();
    if wanted("small_encode") {
        small_encode(plan);
    }
    if wanted("small_decode") {
        small_decode(plan);
    }
    if wanted("bulk_8mb") {
        bulk(plan);
    }
    ExitCode::SUCCESS
}

fn ldc(max: u32) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_offset(0)
        .length_field_length(LDC_HEAD)
        .length_adjustment(0)
        .num_skip(LDC_HEAD)
        .little_endian()
        .max_frame_length(max as usize)
        .new_codec()
}

fn gatewire_frame(payload: Bytes) -> Frame {
    Frame::new(Header::new(FrameType::STREAM_DATA, 1, 0, 0), payload)
}

/// Both codecs agree with themselves on what they write, so the figures are
/// of working code.
fn check_round_trips() {
    let payload = Bytes::from_static(&SMALL);
    let mut wire = BytesMut::new();
    gatewire_frame(payload.clone()).encode_to(&mut wire);
    assert_eq!(wire.len(), HEADER_LEN + SMALL_PAYLOAD);
    let frame = FrameDecoder::new(SMALL_MAX).decode(&mut wire).expect("valid frame").expect("whole frame");
    assert_eq!((frame.header.ty, frame.header.id, &frame.payload), (FrameType::STREAM_DATA, 1, &payload));

    let mut codec = ldc(SMALL_MAX);
    codec.encode(payload.clone(), &mut wire).expect("within limit");
    assert_eq!(&wire[..LDC_HEAD], &(SMALL_PAYLOAD as u32).to_le_bytes());
    let data = codec.decode(&mut wire).expect("valid frame").expect("whole frame");
    assert_eq!(&data[..], &payload[..]);
    assert!(wire.is_empty());
}

// ---------------------------------------------------------------- small_encode

fn small_encode(plan: Plan) {
    let n = plan.small_frames;
    let payload = Bytes::from_static(&SMALL);
    // Room for CLEAR_EVERY of the larger (gatewire) frames, so neither codec
    // reallocates once warm.
    let cap = CLEAR_EVERY * (HEADER_LEN + SMALL_PAYLOAD);
    let mut gw_buf = BytesMut::with_capacity(cap);
    let mut ldc_buf = BytesMut::with_capacity(cap);
    let mut codec = ldc(SMALL_MAX);
    let mut contenders = [
        Contender::new(GATEWIRE, || encode_small_gatewire(n, &payload, &mut gw_buf)),
        Contender::new(LDC, || encode_small_ldc(n, &payload, &mut codec, &mut ldc_buf)),
    ];
    let rates = measure(plan.runs, n as f64, &mut contenders);
    report(plan, "small_encode", "frames/s", &contenders, &rates, &[(GATEWIRE, LDC)]);
}

fn encode_small_gatewire(frames: usize, payload: &Bytes, buf: &mut BytesMut) -> Duration {
    buf.clear();
    let start = Instant::now();
    for i in 0..frames {
        if i % CLEAR_EVERY == 0 {
            buf.clear();
        }
        gatewire_frame(black_box(payload.clone())).encode_into(buf);
    }
    black_box(&*buf);
    start.elapsed()
}

fn encode_small_ldc(frames: usize, payload: &Bytes, codec: &mut LengthDelimitedCodec, buf: &mut BytesMut) -> Duration {
    buf.clear();
    let start = Instant::now();
    for i in 0..frames {
        if i % CLEAR_EVERY == 0 {
            buf.clear();
        }
        codec.encode(black_box(payload.clone()), buf).expect("within limit");
    }
    black_box(&*buf);
    start.elapsed()
}

// ---------------------------------------------------------------- small_decode

fn small_decode(plan: Plan) {
    let n = plan.small_frames;
    let payload = Bytes::from_static(&SMALL);
    let mut gw_wire = BytesMut::with_capacity(n * (HEADER_LEN + SMALL_PAYLOAD));
    let mut ldc_wire = BytesMut::with_capacity(n * (LDC_HEAD + SMALL_PAYLOAD));
    let mut codec = ldc(SMALL_MAX);
    for _ in 0..n {
        gatewire_frame(payload.clone()).encode_to(&mut gw_wire);
        codec.encode(payload.clone(), &mut ldc_wire).expect("within limit");
    }
    let (gw_wire, ldc_wire) = (gw_wire.freeze(), ldc_wire.freeze());
    let mut contenders = [
        Contender::new(GATEWIRE, || decode_small_gatewire(&gw_wire, n)),
        Contender::new(LDC, || decode_small_ldc(&ldc_wire, n)),
    ];
    let rates = measure(plan.runs, n as f64, &mut contenders);
    report(plan, "small_decode", "frames/s", &contenders, &rates, &[(GATEWIRE, LDC)]);
}

/// Each run starts a fresh decoder on a fresh 64 KiB receive buffer, like a
/// new connection; the buffer is allocated before the clock starts.
fn decode_small_gatewire(wire: &[u8], frames: usize) -> Duration {
    let mut dec = FrameDecoder::new(SMALL_MAX);
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut count = 0usize;
    let start = Instant::now();
    for chunk in wire.chunks(READ_CHUNK) {
        rbuf.extend_from_slice(chunk);
        while let Some(frame) = dec.decode(&mut rbuf).expect("valid stream") {
            black_box(frame);
            count += 1;
        }
    }
    let elapsed = start.elapsed();
    assert_eq!((count, rbuf.len()), (frames, 0));
    elapsed
}

fn decode_small_ldc(wire: &[u8], frames: usize) -> Duration {
    let mut codec = ldc(SMALL_MAX);
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut count = 0usize;
    let start = Instant::now();
    for chunk in wire.chunks(READ_CHUNK) {
        rbuf.extend_from_slice(chunk);
        while let Some(data) = codec.decode(&mut rbuf).expect("valid stream") {
            black_box(data);
            count += 1;
        }
    }
    let elapsed = start.elapsed();
    assert_eq!((count, rbuf.len()), (frames, 0));
    elapsed
}

// -------------------------------------------------------------------- bulk_8mb

fn bulk(plan: Plan) {
    let iters = plan.bulk_iters;
    let payload: Bytes = (0..BULK_PAYLOAD).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into();

    // Write and receive buffers live across iterations like a connection's:
    // after the first round trip both codecs reuse their allocations (the
    // decoded payload is dropped before the next read, so the receive buffer
    // reclaims its storage). Each starts at a typical 64 KiB.
    let mut gw_wbuf = BytesMut::with_capacity(HEADER_LEN + BULK_PAYLOAD);
    let mut gw_rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut gw_dec = FrameDecoder::new(BULK_MAX);
    let mut ldc_wbuf = BytesMut::with_capacity(LDC_HEAD + BULK_PAYLOAD);
    let mut ldc_rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut codec = ldc(BULK_MAX);
    let mut mid = vec![0u8; BULK_PAYLOAD];
    let mut out = vec![0u8; BULK_PAYLOAD];

    let mut contenders = [
        Contender::new(GATEWIRE, || bulk_gatewire(&payload, iters, &mut gw_wbuf, &mut gw_rbuf, &mut gw_dec)),
        Contender::new(LDC, || bulk_ldc(&payload, iters, &mut ldc_wbuf, &mut ldc_rbuf, &mut codec)),
        Contender::new(MEMCPY, || bulk_memcpy(&payload, iters, &mut mid, &mut out)),
    ];
    let rates = measure(plan.runs, (iters * BULK_PAYLOAD) as f64 / 1e9, &mut contenders);
    report(plan, "bulk_8mb", "GB/s", &contenders, &rates, &[(GATEWIRE, MEMCPY), (GATEWIRE, LDC)]);
}

/// One 8 MiB round trip per iteration. What each path copies:
///
/// - gatewire: (1) encode: `encode_into` writes the 16-byte header and copies
///   the 8 MiB payload into the write buffer; (2) transport: the wire bytes
///   are copied into the receive buffer in 64 KiB reads, as `read(2)` into a
///   `BytesMut` would; decode itself copies nothing — the payload is handed
///   out with `split_to` + `freeze` as a view of the receive buffer.
/// - length_delimited: the same two copies (4-byte prefix instead of 16
///   bytes); its decoder hands out `split_to` without `freeze`, also
///   zero-copy. It reserves the whole declared frame when it reads the
///   prefix, where gatewire grows the receive buffer at most
///   `RESERVE_STEP` (64 KiB) past what has arrived, so on the first (untimed
///   warm-up) frame gatewire's buffer grows by doubling, to 16 MiB. With
///   buffers reused across iterations neither reallocates once warm.
/// - memcpy: the payload copied into one preallocated 8 MiB buffer (the
///   encode copy), then out of it into another (the transport copy): the
///   floor for two copies, with no framing, no reads and no decoder.
///
/// Throughput counts payload bytes (8 MiB per iteration) for all three.
fn bulk_gatewire(
    payload: &Bytes,
    iters: usize,
    wbuf: &mut BytesMut,
    rbuf: &mut BytesMut,
    dec: &mut FrameDecoder,
) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        wbuf.clear();
        gatewire_frame(black_box(payload.clone())).encode_into(wbuf);
        let mut decoded = None;
        for chunk in wbuf.chunks(READ_CHUNK) {
            rbuf.extend_from_slice(chunk);
            if let Some(frame) = dec.decode(rbuf).expect("valid stream") {
                decoded = Some(frame);
            }
        }
        let frame = decoded.expect("one frame per round trip");
        assert_eq!(frame.payload.len(), BULK_PAYLOAD);
        black_box(frame);
    }
    let elapsed = start.elapsed();
    assert!(rbuf.is_empty());
    elapsed
}

fn bulk_ldc(
    payload: &Bytes,
    iters: usize,
    wbuf: &mut BytesMut,
    rbuf: &mut BytesMut,
    codec: &mut LengthDelimitedCodec,
) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        wbuf.clear();
        codec.encode(black_box(payload.clone()), wbuf).expect("within limit");
        let mut decoded = None;
        for chunk in wbuf.chunks(READ_CHUNK) {
            rbuf.extend_from_slice(chunk);
            if let Some(data) = codec.decode(rbuf).expect("valid stream") {
                decoded = Some(data);
            }
        }
        let data = decoded.expect("one frame per round trip");
        assert_eq!(data.len(), BULK_PAYLOAD);
        black_box(data);
    }
    let elapsed = start.elapsed();
    assert!(rbuf.is_empty());
    elapsed
}

fn bulk_memcpy(payload: &[u8], iters: usize, mid: &mut [u8], out: &mut [u8]) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        mid.copy_from_slice(black_box(payload));
        black_box(&mut *mid);
        out.copy_from_slice(mid);
        black_box(&mut *out);
    }
    start.elapsed()
}

// ------------------------------------------------------------------ harness

/// Runs every contender once untimed, then `runs` times each, interleaved.
/// Returns, per contender, `work / seconds` of each run in order.
fn measure(runs: usize, work: f64, contenders: &mut [Contender<'_>]) -> Vec<Vec<f64>> {
    for c in contenders.iter_mut() {
        black_box((c.run)());
    }
    let mut rates = vec![Vec::with_capacity(runs); contenders.len()];
    for _ in 0..runs {
        for (c, rates) in contenders.iter_mut().zip(&mut rates) {
            let elapsed = (c.run)();
            rates.push(work / elapsed.as_secs_f64().max(1e-9));
        }
    }
    rates
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) { (sorted[mid - 1] + sorted[mid]) / 2.0 } else { sorted[mid] }
}

/// Rounds to `digits` significant digits, so the JSON stays readable.
fn round_sig(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(digits - 1 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

fn report(
    plan: Plan,
    case: &'static str,
    unit: &'static str,
    contenders: &[Contender<'_>],
    rates: &[Vec<f64>],
    ratios: &[(&'static str, &'static str)],
) {
    let mut medians = Vec::with_capacity(contenders.len());
    for (c, runs) in contenders.iter().zip(rates) {
        let runs: Vec<f64> = runs.iter().map(|&r| round_sig(r, 6)).collect();
        let m = round_sig(median(&runs), 6);
        medians.push((c.name, m));
        let figure =
            Figure { bench: "codec", case, implementation: c.name, unit, median: m, runs: &runs, mode: plan.mode };
        println!("{}", serde_json::to_string(&figure).expect("serializable"));
        let spread = runs.iter().copied().fold(f64::INFINITY, f64::min)..=runs.iter().copied().fold(0.0, f64::max);
        eprintln!(
            "{case:<13} {:<17} median {} {unit}  (min {}, max {})",
            c.name,
            human(m),
            human(*spread.start()),
            human(*spread.end())
        );
    }
    let of = |name: &str| medians.iter().find(|(n, _)| *n == name).map(|&(_, m)| m).expect("known contender");
    for &(a, b) in ratios {
        let value = round_sig(of(a) / of(b), 4);
        let ratio = Ratio { bench: "codec", case, ratio: format!("{a}/{b}"), value, mode: plan.mode };
        println!("{}", serde_json::to_string(&ratio).expect("serializable"));
        eprintln!("{case:<13} {a}/{b} = {value}");
    }
}

fn human(x: f64) -> String {
    if x >= 1e6 { format!("{:.2}M", x / 1e6) } else { format!("{x:.3}") }
}
