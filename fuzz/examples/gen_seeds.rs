//! Writes the seed corpora under `fuzz/corpus/<target>/`.
//!
//! Run from `fuzz/`: `cargo +nightly run --example gen_seeds`. Seeds are
//! deterministic; each is run through its harness here, and the `connection`
//! seeds are checked to reach what they are named for.
//!
//! `connection` inputs are `arbitrary`-built; [`Enc`] writes the bytes that
//! `arbitrary` 1.x reads back into a given value (integers little-endian,
//! `bool` as one byte, `Option` and each `Vec` element behind a `bool`, an
//! enum variant as a `u32` scaled to the variant count). Every seed is parsed
//! back and compared, so a change in that encoding fails here, loudly.

use std::fs;
use std::path::{Path, PathBuf};

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use gatewire_fuzz::connection::{self, Body, Input, Knobs, Op, RawFrame, Report, Who};
use gatewire_proto::control::{ErrorInfo, GoAwayInfo, Hello};
use gatewire_proto::{Codec, Config, Connection, ErrorCode, Event, Frame, FrameType, Header, Instant, Message};

/// Bytes `arbitrary` reads back as `self`.
trait Enc {
    fn enc(&self, out: &mut Vec<u8>);
}

impl Enc for u8 {
    fn enc(&self, out: &mut Vec<u8>) {
        out.push(*self);
    }
}

impl Enc for u16 {
    fn enc(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Enc for u32 {
    fn enc(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Enc for bool {
    fn enc(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl<T: Enc> Enc for Option<T> {
    fn enc(&self, out: &mut Vec<u8>) {
        self.is_some().enc(out);
        if let Some(v) = self {
            v.enc(out);
        }
    }
}

impl<T: Enc, const N: usize> Enc for [T; N] {
    fn enc(&self, out: &mut Vec<u8>) {
        for v in self {
            v.enc(out);
        }
    }
}

impl<T: Enc> Enc for Vec<T> {
    fn enc(&self, out: &mut Vec<u8>) {
        for v in self {
            true.enc(out);
            v.enc(out);
        }
        false.enc(out);
    }
}

/// The `u32` that selects variant `index` of `count`.
fn variant(index: u32, count: u32, out: &mut Vec<u8>) {
    let x = ((u64::from(index) << 32).div_ceil(u64::from(count))) as u32;
    x.enc(out);
}

impl Enc for Who {
    fn enc(&self, out: &mut Vec<u8>) {
        variant(if *self == Self::Client { 0 } else { 1 }, 2, out);
    }
}

impl Enc for Knobs {
    fn enc(&self, out: &mut Vec<u8>) {
        self.frames.enc(out);
        self.buffered.enc(out);
        self.compression.enc(out);
        self.no_keepalive.enc(out);
        self.idle_ms.enc(out);
        self.max_frame.enc(out);
        self.max_message.enc(out);
        self.max_in_flight.enc(out);
        self.stream_credit.enc(out);
        self.connection_credit.enc(out);
        self.send_fragment.enc(out);
        self.max_send_queue.enc(out);
        self.max_pending_control.enc(out);
        self.budgets.enc(out);
        self.max_local_id.enc(out);
    }
}

impl Enc for Body {
    fn enc(&self, out: &mut Vec<u8>) {
        self.len.enc(out);
        self.fill.enc(out);
        self.codec.enc(out);
        self.compressed.enc(out);
    }
}

impl Enc for RawFrame {
    fn enc(&self, out: &mut Vec<u8>) {
        self.ty.enc(out);
        self.flags.enc(out);
        self.codec.enc(out);
        self.id.enc(out);
        self.arg.enc(out);
        self.payload.enc(out);
    }
}

const OP_VARIANTS: u32 = 22;

impl Enc for Op {
    fn enc(&self, out: &mut Vec<u8>) {
        let v = |i: u32, out: &mut Vec<u8>| variant(i, OP_VARIANTS, out);
        match self {
            Self::Request { who, method, body, deadline_ms } => {
                v(0, out);
                who.enc(out);
                method.enc(out);
                body.enc(out);
                deadline_ms.enc(out);
            }
            Self::Respond { who, pick, body } => {
                v(1, out);
                who.enc(out);
                pick.enc(out);
                body.enc(out);
            }
            Self::Fail { who, pick, code, info_len } => {
                v(2, out);
                who.enc(out);
                pick.enc(out);
                code.enc(out);
                info_len.enc(out);
            }
            Self::Cancel { who, pick } => {
                v(3, out);
                who.enc(out);
                pick.enc(out);
            }
            Self::OpenStream { who, method, body, deadline_ms, end } => {
                v(4, out);
                who.enc(out);
                method.enc(out);
                body.enc(out);
                deadline_ms.enc(out);
                end.enc(out);
            }
            Self::StreamData { who, pick, body, end } => {
                v(5, out);
                who.enc(out);
                pick.enc(out);
                body.enc(out);
                end.enc(out);
            }
            Self::Grant { who, pick, n } => {
                v(6, out);
                who.enc(out);
                pick.enc(out);
                n.enc(out);
            }
            Self::Finish { who, pick } => {
                v(7, out);
                who.enc(out);
                pick.enc(out);
            }
            Self::Event { who, method, body } => {
                v(8, out);
                who.enc(out);
                method.enc(out);
                body.enc(out);
            }
            Self::Ping { who } => {
                v(9, out);
                who.enc(out);
            }
            Self::Close { who, code, reason_len } => {
                v(10, out);
                who.enc(out);
                code.enc(out);
                reason_len.enc(out);
            }
            Self::Accept => v(11, out),
            Self::Refuse { code } => {
                v(12, out);
                code.enc(out);
            }
            Self::Advance { ms } => {
                v(13, out);
                ms.enc(out);
            }
            Self::AdvanceToTimeout => v(14, out),
            Self::Deliver { from, frames } => {
                v(15, out);
                from.enc(out);
                frames.enc(out);
            }
            Self::DeliverBytes { from, n } => {
                v(16, out);
                from.enc(out);
                n.enc(out);
            }
            Self::Drop { from } => {
                v(17, out);
                from.enc(out);
            }
            Self::Corrupt { from, at, xor } => {
                v(18, out);
                from.enc(out);
                at.enc(out);
                xor.enc(out);
            }
            Self::Inject { to, frame } => {
                v(19, out);
                to.enc(out);
                frame.enc(out);
            }
            Self::InjectBytes { to, bytes } => {
                v(20, out);
                to.enc(out);
                bytes.enc(out);
            }
            Self::Eof { who } => {
                v(21, out);
                who.enc(out);
            }
        }
    }
}

impl Enc for Input {
    fn enc(&self, out: &mut Vec<u8>) {
        self.client.enc(out);
        self.server.enc(out);
        self.auto_accept.enc(out);
        self.ops.enc(out);
    }
}

/// The bytes of `input`, checked to parse back into it.
fn encode_input(input: &Input) -> Vec<u8> {
    let mut out = Vec::new();
    input.enc(&mut out);
    let back = Input::arbitrary_take_rest(Unstructured::new(&out)).expect("seed parses");
    assert_eq!(&back, input, "arbitrary encoding changed: fix `Enc` in gen_seeds.rs");
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::write(dir.join(name), bytes).expect("write seed");
}

fn wire(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        f.encode_to(&mut out);
    }
    out
}

fn raw(body: &[u8]) -> Message {
    Message::new(Codec::RAW, Bytes::copy_from_slice(body))
}

/// Frames each side of a real exchange wrote: a handshake, a request
/// fragmented into CONTINUATIONs, its response, an event, a stream and a
/// graceful close.
fn transcripts() -> (Vec<Frame>, Vec<Frame>) {
    let mut cc = Config::client();
    // Valid for every `Limits::validate` so far, and above `MIN_FRAGMENT`
    // (the smallest non-final fragment a sender emits).
    cc.limits.send_fragment = 1024;
    let mut client = Connection::new(cc, Instant::ZERO);
    let mut server = Connection::new(Config::server(), Instant::ZERO);
    let (mut from_client, mut from_server) = (Vec::new(), Vec::new());
    let mut pump = |client: &mut Connection, server: &mut Connection| {
        for _ in 0..64 {
            let mut moved = false;
            while let Some(f) = client.poll_transmit() {
                server.handle_bytes(Instant::ZERO, &wire(std::slice::from_ref(&f)));
                from_client.push(f);
                moved = true;
            }
            while let Some(e) = server.poll_event() {
                if matches!(e, Event::HelloReceived(_)) {
                    server.accept().expect("accept");
                }
                if let Event::Request { id, .. } = e {
                    server.send_response(id, raw(b"pong")).expect("respond");
                }
                if let Event::StreamOpened { id, .. } = e {
                    server.send_stream_data(id, raw(b"item"), true).expect("stream data");
                }
                moved = true;
            }
            while let Some(f) = server.poll_transmit() {
                client.handle_bytes(Instant::ZERO, &wire(std::slice::from_ref(&f)));
                from_server.push(f);
                moved = true;
            }
            while client.poll_event().is_some() {
                moved = true;
            }
            if !moved {
                return;
            }
        }
    };
    pump(&mut client, &mut server);
    client.send_request(7, raw(&[0x5a; 2500]), Some(std::time::Duration::from_millis(1500))).expect("request");
    client.send_event(9, raw(b"tick")).expect("event");
    let sid = client.open_stream(11, raw(b"open"), None, false).expect("stream");
    pump(&mut client, &mut server);
    client.finish(sid).expect("finish");
    client.ping().expect("ping");
    pump(&mut client, &mut server);
    client.close(ErrorCode::NO_ERROR, Some("bye"));
    pump(&mut client, &mut server);
    assert!(from_client.iter().any(|f| f.header.ty == FrameType::CONTINUATION));
    (from_client, from_server)
}

fn frame(ty: FrameType, id: u32, arg: u32, payload: &[u8]) -> Frame {
    Frame::new(Header::new(ty, id, arg, 0), Bytes::copy_from_slice(payload))
}

fn frame_decoder_seeds(dir: &Path, client: &[Frame], server: &[Frame]) -> usize {
    // Layout: [limit index, chunk-size count, sizes..., stream...]
    let mut seeds: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut with = |name, limit: u8, cuts: &[u8], stream: &[u8]| {
        let mut s = vec![limit, cuts.len() as u8];
        s.extend_from_slice(cuts);
        s.extend_from_slice(stream);
        seeds.push((name, s));
    };
    let client_wire = wire(client);
    let server_wire = wire(server);
    with("client_transcript_bytewise", 9, &[], &client_wire);
    with("client_transcript_chunks", 9, &[1, 16, 7, 200], &client_wire);
    with("server_transcript_chunks", 7, &[3, 0, 17], &server_wire);
    let fragmented: Vec<Frame> = client
        .iter()
        .skip_while(|f| f.header.ty != FrameType::REQUEST)
        .take_while(|f| matches!(f.header.ty, FrameType::REQUEST | FrameType::CONTINUATION))
        .cloned()
        .collect();
    with("continuation_sequence", 8, &[5, 64], &wire(&fragmented));
    with("too_large_for_limit", 5, &[], &wire(&[frame(FrameType::RESPONSE, 1, 0, &[1; 100])]));
    let mut reserved = frame(FrameType::PING, 0, 0, &[0; 8]).header.to_bytes().to_vec();
    reserved[7] = 1;
    with("reserved_byte", 9, &[], &reserved);
    with("unknown_type", 9, &[], &Header::new(FrameType(0x20), 0, 0, 0).to_bytes());
    let mut ext = wire(&[frame(FrameType(0x80), 0, 0xffff_ffff, b"extension")]);
    ext.extend_from_slice(&wire(&[frame(FrameType::PING, 0, 0, &[7; 8])]));
    with("extension_then_ping", 9, &[2], &ext);
    let mut truncated = wire(&[frame(FrameType::EVENT, 1, 3, &[9; 40])]);
    truncated.truncate(30);
    with("truncated_body", 9, &[4], &truncated);
    with("huge_declared_length", 11, &[16], &Header::new(FrameType::RESPONSE, 1, 0, 0x00ff_ffff).to_bytes());
    let n = seeds.len();
    for (name, bytes) in seeds {
        gatewire_fuzz::frame_decoder::run(&bytes);
        write(dir, name, &bytes);
    }
    n
}

fn handshake_seeds(dir: &Path, client: &[Frame], server: &[Frame]) -> usize {
    let mut seeds: Vec<(&str, Vec<u8>)> = Vec::new();
    let hello = &client[0];
    assert_eq!(hello.header.ty, FrameType::HELLO);
    let ack = &server[0];
    assert_eq!(ack.header.ty, FrameType::HELLO_ACK);
    seeds.push(("hello_frame", wire(std::slice::from_ref(hello))));
    seeds.push(("hello_table", hello.payload.to_vec()));
    seeds.push(("hello_ack_frame", wire(std::slice::from_ref(ack))));
    seeds.push(("hello_ack_table", ack.payload.to_vec()));
    seeds.push(("client_transcript", wire(client)));
    seeds.push(("server_transcript", wire(server)));
    // A refusal and a HELLO with no version in common.
    let mut server_conn = Connection::new(Config::server(), Instant::ZERO);
    server_conn.handle_bytes(Instant::ZERO, &wire(std::slice::from_ref(hello)));
    while server_conn.poll_event().is_some() {}
    server_conn.refuse(ErrorCode::UNAUTHENTICATED, Some("who are you")).expect("refuse");
    let refusal: Vec<Frame> = std::iter::from_fn(|| server_conn.poll_transmit()).collect();
    seeds.push(("hello_ack_refusal", wire(&refusal)));
    let future = Hello { min_version: 2, max_version: 9, ..Hello::default() };
    seeds.push(("hello_future_version", wire(&[frame(FrameType::HELLO, 0, 0, &future.encode())])));
    let info = ErrorInfo { message: Some("boom".into()), details: Some(Bytes::from_static(&[1, 2, 3])) };
    seeds.push(("error_info_table", info.encode()));
    let goaway = GoAwayInfo { message: Some("maintenance".into()) };
    seeds.push(("goaway_table", goaway.encode()));
    // HELLOs that use the server's chart.Chart: as offered, and with a
    // method of another kind (refused by the compatibility check).
    let served = gatewire_fuzz::handshake::served_services();
    let uses = Hello { min_version: 1, max_version: 1, uses: served.clone(), ..Hello::default() };
    seeds.push(("hello_uses_chart", wire(&[frame(FrameType::HELLO, 0, 0, &uses.encode())])));
    let mut changed = served;
    changed[0].methods[0].kind = gatewire_proto::control::MethodKind::EVENT;
    changed[0].fingerprint = 2;
    let mismatch = Hello { min_version: 1, max_version: 1, uses: changed, ..Hello::default() };
    seeds.push(("hello_uses_changed_chart", wire(&[frame(FrameType::HELLO, 0, 0, &mismatch.encode())])));
    let mut early_goaway = wire(std::slice::from_ref(hello));
    early_goaway.extend_from_slice(&wire(&[frame(FrameType::GOAWAY, 0, 0, &goaway.encode())]));
    seeds.push(("hello_then_goaway", early_goaway));
    let n = seeds.len();
    for (name, bytes) in seeds {
        gatewire_fuzz::handshake::run(&bytes);
        write(dir, name, &bytes);
    }
    n
}

fn wrappers_seeds(dir: &Path) -> usize {
    use gatewire::codegen::Table;
    use gatewire_example_schemas::{chart, gateway};
    let tagged = |tag: u8, body: &[u8]| [&[tag][..], body].concat();
    let mut seeds: Vec<(&str, Vec<u8>)> = Vec::new();
    let text = b"a telemetry sample, a telemetry sample, a telemetry sample".repeat(8);
    let packed = gatewire::fuzzing::compress(raw(&text), 1);
    let declared = u16::try_from(text.len()).expect("short").to_le_bytes();
    seeds.push(("zstd_frame", tagged(0, &[&declared[..], &packed.body[..]].concat())));
    seeds.push(("zstd_short_declared", tagged(0, &[&[4, 0][..], &packed.body[..]].concat())));
    let points = chart::PointsT { chart: 3, xs: Some(vec![0.0, 1.0, 2.0]), ys: Some(vec![5.0, 6.0, 7.0]) };
    seeds.push(("fb_points", tagged(1, &points.to_message().body)));
    let sample = gateway::SampleT {
        seq: 9,
        time_ms: 90,
        temperature_c: 21.5,
        position: Some(gateway::Vec3T { x: 1.0, y: 2.0, z: 3.0 }),
    };
    seeds.push(("fb_sample", tagged(1, &sample.to_message().body)));
    let config =
        gateway::ConfigT { settings: Some(vec![gateway::SettingT { key: "mode".into(), value: Some("auto".into()) }]) };
    seeds.push(("fb_config", tagged(1, &config.to_message().body)));
    seeds.push(("auth_token", tagged(2, b"0123456789abcdef0123456789abcdef")));
    seeds.push(("auth_jwt_shape", tagged(2, b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln")));
    let list = gatewire_proto::control::ServiceList {
        offers: gatewire_fuzz::handshake::served_services(),
        uses: gatewire_fuzz::handshake::served_services(),
    };
    seeds.push(("service_list", tagged(3, &list.encode())));
    let n = seeds.len();
    for (name, bytes) in seeds {
        gatewire_fuzz::wrappers::run(&bytes);
        write(dir, name, &bytes);
    }
    n
}

fn body(len: u16, fill: u8) -> Body {
    Body { len, fill, codec: 0, compressed: None }
}

fn deliver_all() -> [Op; 2] {
    [Op::Deliver { from: Who::Client, frames: 0 }, Op::Deliver { from: Who::Server, frames: 0 }]
}

/// What a `connection` seed must reach.
type Goal = fn(&Report) -> bool;

fn connection_seeds(dir: &Path) -> usize {
    use Who::{Client, Server};
    let connect = || {
        let mut ops = vec![Op::Deliver { from: Client, frames: 0 }];
        ops.extend(deliver_all());
        ops
    };
    let mut seeds: Vec<(&str, Input, Goal)> = Vec::new();
    let base = |ops: Vec<Op>| Input { auto_accept: true, ops, ..Input::default() };

    seeds.push(("handshake", base(connect()), |r| r.client.connected == 1 && r.server.connected == 1));

    let mut ops = connect();
    ops.push(Op::Request { who: Client, method: 1, body: body(5, b'q'), deadline_ms: None });
    ops.extend(deliver_all());
    ops.push(Op::Respond { who: Server, pick: 0, body: body(4, b'r') });
    ops.extend(deliver_all());
    seeds.push(("unary_call", base(ops), |r| r.client.responses == 1 && r.server.requests == 1));

    let mut ops = connect();
    ops.push(Op::Request { who: Server, method: 2, body: body(10, 1), deadline_ms: None });
    ops.extend(deliver_all());
    ops.push(Op::Fail { who: Client, pick: 0, code: 0x8001, info_len: 12 });
    ops.extend(deliver_all());
    seeds.push(("error_reply", base(ops), |r| r.server.failed == 1 && r.client.requests == 1));

    let mut ops = connect();
    ops.push(Op::OpenStream { who: Client, method: 3, body: body(0, 0), deadline_ms: None, end: false });
    ops.extend(deliver_all());
    ops.push(Op::StreamData { who: Server, pick: 0, body: body(100, 2), end: false });
    ops.push(Op::StreamData { who: Client, pick: 0, body: body(50, 3), end: false });
    ops.extend(deliver_all());
    ops.push(Op::Grant { who: Client, pick: 0, n: 100 });
    ops.push(Op::Finish { who: Server, pick: 0 });
    ops.push(Op::Finish { who: Client, pick: 0 });
    ops.extend(deliver_all());
    ops.extend(deliver_all());
    seeds.push(("stream_both_halves", base(ops), |r| r.server.streams == 1 && r.client.stream_data == 2));

    let mut ops = connect();
    ops.push(Op::Event { who: Client, method: 4, body: body(2000, 4) });
    ops.extend(deliver_all());
    let knobs = Knobs { send_fragment: Some(200), ..Knobs::default() };
    let mut input = base(ops);
    input.client = knobs;
    seeds.push(("fragmented_event", input, |r| r.server.events == 1));

    let mut ops = connect();
    ops.push(Op::Request { who: Client, method: 5, body: body(1, 0), deadline_ms: Some(50) });
    ops.push(Op::Request { who: Client, method: 5, body: body(1, 1), deadline_ms: None });
    ops.extend(deliver_all());
    ops.push(Op::Cancel { who: Client, pick: 1 });
    ops.push(Op::Advance { ms: 60 });
    ops.extend(deliver_all());
    seeds.push(("cancel_and_deadline", base(ops), |r| r.client.failed == 1 && r.server.cancelled == 2));

    let mut ops = connect();
    ops.push(Op::Ping { who: Server });
    ops.extend(deliver_all());
    ops.push(Op::Request { who: Server, method: 6, body: body(3, 5), deadline_ms: None });
    ops.push(Op::Close { who: Client, code: None, reason_len: 4 });
    ops.extend(deliver_all());
    ops.extend(deliver_all());
    ops.push(Op::Respond { who: Client, pick: 0, body: body(2, 6) });
    ops.extend(deliver_all());
    ops.extend(deliver_all());
    seeds.push(("ping_then_graceful_close", base(ops), |r| {
        r.server.pongs == 1 && r.server.goaways >= 1 && r.server.responses == 1 && r.client.closed_clean == 1
    }));

    let mut ops = vec![Op::Deliver { from: Client, frames: 0 }, Op::Accept];
    ops.extend(deliver_all());
    ops.push(Op::Request { who: Client, method: 7, body: body(300, 7), deadline_ms: None });
    ops.extend(deliver_all());
    ops.push(Op::Respond { who: Server, pick: 0, body: body(300, 8) });
    ops.extend(deliver_all());
    let mut input = base(ops);
    input.auto_accept = false;
    input.client.frames = true;
    input.server.frames = true;
    seeds.push(("message_transport", input, |r| r.client.responses == 1));

    let mut ops = vec![Op::Deliver { from: Client, frames: 0 }];
    ops.push(Op::Refuse { code: 8 });
    ops.extend(deliver_all());
    let mut input = base(ops);
    input.auto_accept = false;
    seeds.push(("refused", input, |r| r.client.closed_error == 1 && r.server.closed_error == 1));

    let mut ops = connect();
    ops.push(Op::Request { who: Client, method: 8, body: body(40, 9), deadline_ms: None });
    ops.push(Op::DeliverBytes { from: Client, n: 10 });
    ops.push(Op::DeliverBytes { from: Client, n: 30 });
    ops.push(Op::Corrupt { from: Client, at: 3, xor: 0x40 });
    ops.extend(deliver_all());
    seeds.push(("partial_then_corrupt", base(ops), |r| !r.conforming));

    let mut ops = connect();
    let payload = 5u32.to_le_bytes().to_vec();
    ops.push(Op::Inject { to: Server, frame: RawFrame { ty: 3, flags: 1, codec: 0, id: 1, arg: 9, payload } });
    ops.push(Op::Inject { to: Server, frame: RawFrame { ty: 14, id: 1, payload: vec![1; 8], ..RawFrame::default() } });
    ops.push(Op::Drop { from: Server });
    ops.push(Op::InjectBytes { to: Client, bytes: vec![0, 0, 0, 0, 0x0b] });
    ops.push(Op::Eof { who: Client });
    ops.push(Op::AdvanceToTimeout);
    seeds.push(("inject_and_eof", base(ops), |r| r.server.requests == 1 && !r.conforming));

    let mut ops = connect();
    for i in 0..4 {
        ops.push(Op::OpenStream { who: Server, method: i, body: body(10, i), deadline_ms: None, end: i % 2 == 0 });
    }
    ops.extend(deliver_all());
    ops.push(Op::StreamData { who: Client, pick: 1, body: body(1800, 1), end: true });
    ops.push(Op::StreamData { who: Client, pick: 3, body: body(1800, 2), end: false });
    ops.extend(deliver_all());
    ops.extend(deliver_all());
    let mut input = base(ops);
    input.server.stream_credit = Some(1023);
    input.client.max_in_flight = Some(1);
    input.client.budgets = Some([20, 4, 40, 255, 10, 2]);
    seeds.push(("credit_and_refusal", input, |r| r.client.streams >= 1 && r.server.failed >= 1));

    let n = seeds.len();
    for (name, input, reached) in seeds {
        let bytes = encode_input(&input);
        let report = connection::run(&input);
        assert!(reached(&report), "seed {name} does not reach its goal: {report:#?}");
        write(dir, name, &bytes);
    }
    n
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let dir = |target: &str| {
        let dir = root.join(target);
        fs::create_dir_all(&dir).expect("create corpus dir");
        dir
    };
    let (client, server) = transcripts();
    let n = frame_decoder_seeds(&dir("frame_decoder"), &client, &server);
    println!("frame_decoder: {n} seeds");
    let n = handshake_seeds(&dir("handshake"), &client, &server);
    println!("handshake: {n} seeds");
    let n = connection_seeds(&dir("connection"));
    println!("connection: {n} seeds");
    let n = wrappers_seeds(&dir("wrappers"));
    println!("wrappers: {n} seeds");
}
