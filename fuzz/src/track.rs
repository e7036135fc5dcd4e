//! Bookkeeping of what one connection was asked to do and what it reported,
//! with the invariants its events must keep.

use std::collections::{BTreeMap, BTreeSet};

use gatewire_proto::{CallId, Connection, Event, Frame};

use crate::DRAIN_LIMIT;

/// A call or stream this side opened.
#[derive(Clone, Copy, Debug, Default)]
pub struct Issued {
    /// Opened with `open_stream` rather than `send_request`.
    pub stream: bool,
    /// `cancel` succeeded on it: no event may follow.
    pub cancelled: bool,
    /// `Response` and `CallFailed` events seen.
    pub outcomes: u32,
    /// A `StreamData` with `end` was seen.
    pub recv_ended: bool,
}

/// A call or stream the peer opened, as reported by `Request` or
/// `StreamOpened`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Incoming {
    /// A stream rather than a unary call.
    pub stream: bool,
    /// `Cancelled` events seen.
    pub cancelled: u32,
    /// The peer's half ended.
    pub ended: bool,
}

/// Event kinds seen, for the seed generator to tell what a run reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seen {
    /// `HelloReceived`.
    pub hello: u32,
    /// `Connected`.
    pub connected: u32,
    /// `Request`.
    pub requests: u32,
    /// `Response`.
    pub responses: u32,
    /// `CallFailed`.
    pub failed: u32,
    /// `Event`.
    pub events: u32,
    /// `StreamOpened`.
    pub streams: u32,
    /// `StreamData`.
    pub stream_data: u32,
    /// `Cancelled`.
    pub cancelled: u32,
    /// `Writable`.
    pub writable: u32,
    /// `Pong`.
    pub pongs: u32,
    /// `GoAway`.
    pub goaways: u32,
    /// `Closed` with no error.
    pub closed_clean: u32,
    /// `Closed` with an error.
    pub closed_error: u32,
}

/// What one side was asked to do and what it reported.
#[derive(Debug, Default)]
pub struct Track {
    /// Name used in assertion messages.
    pub name: &'static str,
    /// `Closed` was reported.
    pub closed: bool,
    /// Calls and streams opened by this side, by id.
    pub issued: BTreeMap<CallId, Issued>,
    /// Calls and streams the peer opened, by id.
    pub incoming: BTreeMap<CallId, Incoming>,
    /// Tokens returned by `ping` and not yet answered.
    pub pings: BTreeSet<u64>,
    /// Counts per event kind.
    pub seen: Seen,
}

impl Track {
    /// A tracker whose assertion messages name `name`.
    pub fn new(name: &'static str) -> Self {
        Self { name, ..Self::default() }
    }

    /// Records one event and checks it against what came before.
    pub fn on_event(&mut self, event: &Event) {
        let name = self.name;
        assert!(!self.closed, "{name}: event after Closed: {event:?}");
        match event {
            Event::HelloReceived(_) => {
                self.seen.hello += 1;
                assert!(self.seen.hello == 1, "{name}: second HelloReceived");
            }
            Event::Connected(_) => {
                self.seen.connected += 1;
                assert!(self.seen.connected == 1, "{name}: second Connected");
            }
            Event::Request { id, .. } => {
                self.seen.requests += 1;
                let fresh = self.incoming.insert(*id, Incoming::default()).is_none();
                assert!(fresh, "{name}: id {id} opened twice by the peer");
            }
            Event::StreamOpened { id, end, .. } => {
                self.seen.streams += 1;
                let fresh = self.incoming.insert(*id, Incoming { stream: true, cancelled: 0, ended: *end }).is_none();
                assert!(fresh, "{name}: id {id} opened twice by the peer");
            }
            Event::Response { id, .. } => {
                self.seen.responses += 1;
                let call = self.outcome(*id, event);
                assert!(!call.stream, "{name}: Response on stream {id}");
            }
            Event::CallFailed { id, .. } => {
                self.seen.failed += 1;
                self.outcome(*id, event);
            }
            Event::StreamData { id, end, .. } => {
                self.seen.stream_data += 1;
                if let Some(call) = self.issued.get_mut(id) {
                    assert!(call.stream, "{name}: StreamData on unary call {id}");
                    assert!(!call.cancelled, "{name}: StreamData on {id} after cancel");
                    assert!(call.outcomes == 0, "{name}: StreamData on {id} after CallFailed");
                    assert!(!call.recv_ended, "{name}: StreamData on {id} after its end");
                    call.recv_ended = *end;
                } else if let Some(call) = self.incoming.get_mut(id) {
                    assert!(call.stream, "{name}: StreamData on unary call {id}");
                    assert!(call.cancelled == 0, "{name}: StreamData on {id} after Cancelled");
                    assert!(!call.ended, "{name}: StreamData on {id} after its end");
                    call.ended = *end;
                } else {
                    // A stream whose `StreamOpened` was never delivered (it
                    // was dropped before being polled) gets no later event.
                    panic!("{name}: StreamData on unknown id {id}");
                }
            }
            Event::Cancelled { id, .. } => {
                self.seen.cancelled += 1;
                let call = self.incoming.get_mut(id);
                let call = call.unwrap_or_else(|| panic!("{name}: Cancelled for {id}, never delivered"));
                call.cancelled += 1;
                assert!(call.cancelled == 1, "{name}: second Cancelled for {id}");
            }
            Event::Pong { token, .. } => {
                self.seen.pongs += 1;
                assert!(self.pings.remove(token), "{name}: Pong for unknown or answered token {token}");
            }
            Event::Closed { error } => {
                if error.is_none() {
                    self.seen.closed_clean += 1;
                } else {
                    self.seen.closed_error += 1;
                }
                self.closed = true;
                // "Every call in flight has been reported before this event."
                for (id, call) in &self.issued {
                    if call.cancelled {
                        continue;
                    }
                    if call.stream && call.recv_ended {
                        assert!(call.outcomes <= 1, "{name}: stream {id}: {} outcomes", call.outcomes);
                    } else {
                        assert!(call.outcomes == 1, "{name}: call {id} closed with {} outcomes", call.outcomes);
                    }
                }
            }
            Event::Event { .. } => self.seen.events += 1,
            Event::Writable { .. } => self.seen.writable += 1,
            Event::GoAway { .. } => self.seen.goaways += 1,
            _ => {}
        }
    }

    fn outcome(&mut self, id: CallId, event: &Event) -> &mut Issued {
        let name = self.name;
        let call = self.issued.get_mut(&id);
        let call = call.unwrap_or_else(|| panic!("{name}: outcome for id {id} never issued: {event:?}"));
        assert!(!call.cancelled, "{name}: outcome for {id} after cancel: {event:?}");
        call.outcomes += 1;
        assert!(call.outcomes == 1, "{name}: second outcome for {id}: {event:?}");
        call
    }

    /// Checks the state a connection must be in, given the events seen so
    /// far (call after draining its events).
    pub fn check(&self, conn: &Connection) {
        let name = self.name;
        assert_eq!(conn.is_closed(), self.closed, "{name}: is_closed() disagrees with the Closed event");
        if self.closed {
            assert_eq!(conn.table_len(), 0, "{name}: call table not empty after close");
            assert_eq!(conn.calls_in_flight(), (0, 0), "{name}: calls in flight after close");
            assert_eq!(conn.queued_bytes(), 0, "{name}: bytes queued after close");
            assert_eq!(conn.poll_timeout(), None, "{name}: timer armed after close");
            assert!(!conn.wants_read(), "{name}: wants input after close");
            assert!(!conn.is_connected(), "{name}: connected after close");
        }
    }
}

/// Drains `poll_event`, recording each event; `on` sees each one too.
/// Returns how many there were.
pub fn drain_events(conn: &mut Connection, track: &mut Track, mut on: impl FnMut(&mut Connection, &Event)) -> usize {
    for n in 0..DRAIN_LIMIT {
        let Some(event) = conn.poll_event() else { return n };
        track.on_event(&event);
        on(conn, &event);
    }
    panic!("{}: poll_event never returned None", track.name);
}

/// Drains `poll_transmit` into `out` (or drops the frames when `out` is
/// `None`). Returns how many frames there were.
pub fn drain_transmit(conn: &mut Connection, name: &str, mut out: Option<&mut Vec<Frame>>) -> usize {
    for n in 0..DRAIN_LIMIT {
        let Some(frame) = conn.poll_transmit() else { return n };
        check_sent_frame(name, &frame);
        if let Some(out) = out.as_deref_mut() {
            out.push(frame);
        }
    }
    panic!("{name}: poll_transmit never returned None");
}

/// A frame a connection writes must be one it would accept itself: its
/// header passes validation and its length field matches its payload.
pub fn check_sent_frame(name: &str, frame: &Frame) {
    assert_eq!(frame.header.length as usize, frame.payload.len(), "{name}: length field disagrees with payload");
    assert_eq!(frame.header.validate(), Ok(()), "{name}: wrote an invalid frame {:?}", frame.header);
}
