//! Two gatewire protocol cores wired back to back in memory, with a fake
//! clock: the sans-IO core needs no sockets, threads or async runtime to show
//! the whole protocol. `cargo xtask demo` runs this.

use std::time::Duration;

use bytes::Bytes;
use gatewire_proto::connection::{Config, Connection, Event, Message};
use gatewire_proto::control::ErrorInfo;
use gatewire_proto::{Codec, ErrorCode, Frame, FrameType, Instant};

struct Peer {
    name: &'static str,
    conn: Connection,
}

struct Demo {
    desktop: Peer,
    gateway: Peer,
    now: Instant,
    /// Frames and bytes on the wire.
    stats: (usize, usize),
}

fn describe(f: &Frame) -> String {
    let h = f.header;
    let ty = h.ty.name().unwrap_or("?");
    match h.ty {
        FrameType::REQUEST | FrameType::EVENT | FrameType::STREAM_OPEN => {
            format!("{ty} id={} method={} {} B", h.id, h.arg, f.payload.len())
        }
        FrameType::ERROR | FrameType::GOAWAY => format!("{ty} id={} code={}", h.id, ErrorCode(h.arg as u16)),
        FrameType::CREDIT => format!("{ty} id={} +{} B", h.id, h.arg),
        _ => format!("{ty} id={} {} B{}", h.id, f.payload.len(), if h.flags.0 & 1 == 1 { " (more)" } else { "" }),
    }
}

fn short(e: &Event) -> String {
    let body = |m: &Message| String::from_utf8_lossy(&m.body).chars().take(40).collect::<String>();
    match e {
        Event::HelloReceived(h) => format!("HELLO received from {:?}", h.agent.as_deref().unwrap_or("?")),
        Event::Connected(p) => {
            format!("connected: protocol v{}, peer accepts {} in flight", p.version, p.limits.max_in_flight)
        }
        Event::Request { id, method, message, deadline } => {
            format!(
                "request #{id} method {method}: {:?}{}",
                body(message),
                deadline.map(|d| format!(" (deadline {d:?})")).unwrap_or_default()
            )
        }
        Event::Response { id, message } => format!("response #{id}: {:?}", body(message)),
        Event::CallFailed { id, code, side, .. } => format!("call #{id} failed: {code} ({side:?})"),
        Event::Event { method, message } => format!("event method {method}: {:?}", body(message)),
        Event::StreamOpened { id, method, .. } => format!("stream #{id} opened, method {method}"),
        Event::StreamData { id, message, end } => {
            format!("stream #{id} data: {} B{}", message.body.len(), if *end { " (end)" } else { "" })
        }
        Event::Cancelled { id, code } => format!("call #{id} cancelled: {code}"),
        Event::Writable { id } => format!("writable again: {id:?}"),
        Event::Pong { rtt, .. } => format!("pong after {rtt:?}"),
        Event::GoAway { last_id, .. } => format!("peer going away, last id {last_id:#x}"),
        Event::Closed { error } => {
            format!("closed: {}", error.as_ref().map_or("gracefully".to_string(), ToString::to_string))
        }
        other => format!("{other:?}"),
    }
}

impl Demo {
    fn new() -> Self {
        let mut desktop = Config::client();
        desktop.agent = Some("desktop (demo)".into());
        desktop.limits.initial_stream_credit = 4096;
        let mut gateway = Config::server();
        gateway.agent = Some("gateway (demo)".into());
        let now = Instant::ZERO;
        Self {
            desktop: Peer { name: "desktop", conn: Connection::new(desktop, now) },
            gateway: Peer { name: "gateway", conn: Connection::new(gateway, now) },
            now,
            stats: (0, 0),
        }
    }

    /// Moves frames both ways and prints every frame and event until quiet.
    /// Returns the events each side saw.
    fn run(&mut self) -> (Vec<Event>, Vec<Event>) {
        let (mut d_events, mut g_events) = (Vec::new(), Vec::new());
        loop {
            let a = pump(&mut self.desktop, &mut self.gateway, &mut g_events, self.now, &mut self.stats);
            let b = pump(&mut self.gateway, &mut self.desktop, &mut d_events, self.now, &mut self.stats);
            if !a && !b {
                return (d_events, g_events);
            }
        }
    }
}

/// Writes `from`'s frames into `to` and delivers `to`'s events; `false` when
/// nothing moved.
fn pump(from: &mut Peer, to: &mut Peer, seen: &mut Vec<Event>, now: Instant, stats: &mut (usize, usize)) -> bool {
    let mut moved = false;
    while let Some(f) = from.conn.poll_transmit() {
        let mut wire = Vec::with_capacity(f.encoded_len());
        f.encode_to(&mut wire);
        stats.0 += 1;
        stats.1 += wire.len();
        println!("  {:>7} -> {:<7} {}", from.name, to.name, describe(&f));
        to.conn.handle_bytes(now, &wire);
        moved = true;
    }
    while let Some(e) = to.conn.poll_event() {
        println!("  {:>7}    event: {}", to.name, short(&e));
        if matches!(e, Event::HelloReceived(_)) {
            to.conn.accept().expect("a HELLO awaits an answer");
        }
        seen.push(e);
        moved = true;
    }
    moved
}

fn raw(s: &str) -> Message {
    Message::new(Codec::RAW, Bytes::copy_from_slice(s.as_bytes()))
}

fn main() {
    println!("gatewire sans-IO demo: two protocol cores in memory, fake clock\n");
    let mut d = Demo::new();

    println!("1. handshake");
    d.run();

    println!("\n2. the desktop calls the gateway, three calls in flight at once");
    for s in ["status", "config", "direction left"] {
        d.desktop.conn.send_request(1, raw(s), Some(Duration::from_secs(5))).expect("slot free");
    }
    let (_, g) = d.run();
    for e in g.iter().rev() {
        if let Event::Request { id, message, .. } = e {
            let reply = format!("ok: {}", String::from_utf8_lossy(&message.body));
            d.gateway.conn.send_response(*id, raw(&reply)).expect("call is live");
        }
    }
    d.run();

    println!("\n3. the gateway calls the desktop (either peer may call the other)");
    d.gateway.conn.send_request(7, raw("chart.create"), None).expect("slot free");
    let (dev, _) = d.run();
    if let Some(Event::Request { id, .. }) = dev.first() {
        d.desktop.conn.send_response(*id, raw("chart #1")).expect("call is live");
    }
    d.run();

    println!("\n4. a telemetry stream with credit backpressure (4 KiB window)");
    let sid = d.desktop.conn.open_stream(9, raw("subscribe"), None, true).expect("slot free");
    d.run();
    let mut sent = 0;
    let mut blocked = 0;
    while sent < 12 {
        match d.gateway.conn.send_stream_data(sid, Message::new(Codec::RAW, vec![0u8; 1500]), sent == 11) {
            Ok(()) => sent += 1,
            Err(_) => {
                blocked += 1;
                println!("  gateway    send blocked: the desktop has not granted credit yet");
                let (dev, _) = d.run();
                let consumed: usize = dev
                    .iter()
                    .map(|e| if let Event::StreamData { message, .. } = e { message.body.len() } else { 0 })
                    .sum();
                d.desktop.conn.grant_credit(sid, consumed as u32).expect("stream is live");
                d.run();
            }
        }
    }
    d.run();
    println!("  (12 messages of 1500 B through a 4 KiB window, sender blocked {blocked} times)");

    println!("\n5. a cancelled call and a call that misses its deadline");
    let c = d.desktop.conn.send_request(1, raw("slow query"), None).expect("slot free");
    d.run();
    d.desktop.conn.cancel(c).expect("call is ours");
    let (_, g) = d.run();
    for e in g {
        if let Event::Cancelled { id, .. } = e {
            d.gateway.conn.send_error(id, ErrorCode::CANCELLED, ErrorInfo::default()).expect("handler ends");
        }
    }
    d.desktop.conn.send_request(1, raw("slower query"), Some(Duration::from_millis(300))).expect("slot free");
    d.run();
    d.now = d.now + Duration::from_millis(300);
    d.desktop.conn.handle_timeout(d.now);
    d.gateway.conn.handle_timeout(d.now);
    let (_, g) = d.run();
    for e in g {
        if let Event::Cancelled { id, code } = e {
            // The handler stops; its slot is freed when it says so.
            d.gateway.conn.send_error(id, code, ErrorInfo::default()).expect("handler ends");
        }
    }
    d.run();

    println!("\n6. graceful shutdown by the gateway while a call is in flight");
    let last = d.desktop.conn.send_request(1, raw("last words"), None).expect("slot free");
    d.run();
    d.gateway.conn.close(ErrorCode::NO_ERROR, Some("restarting"));
    d.run();
    match d.desktop.conn.send_request(1, raw("too late"), None) {
        Ok(_) => println!("  desktop    a new call was accepted during shutdown (unexpected)"),
        Err(e) => println!("  desktop    new call refused locally: {e}"),
    }
    // Ids are the same on both ends: the gateway answers the call it holds.
    d.gateway.conn.send_response(last, raw("answered before closing")).expect("call is live");
    d.run();
    println!(
        "\n{} frames, {} bytes on the wire; desktop closed: {}, gateway closed: {}",
        d.stats.0,
        d.stats.1,
        d.desktop.conn.is_closed(),
        d.gateway.conn.is_closed(),
    );
}
