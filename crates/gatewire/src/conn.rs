//! The connection driver: two tasks per connection around the sans-IO core.
//!
//! The core (`gatewire_proto::Connection`) sits behind a mutex with the
//! tables that route its events (pending calls, streams, handlers). A reader
//! task feeds it bytes and fires its timers; a writer task drains its frames
//! in batches, so reading never waits for writing. Handles (`Connection`,
//! streams, call futures) lock briefly to give commands and never hold the
//! lock across an await.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::task::Waker;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::FutureExt;
use gatewire_proto::connection::{Config as CoreConfig, Connection as Core, Event, Role, SendError};
use gatewire_proto::control::{ErrorInfo, ServiceList};
use gatewire_proto::services::{LIST_SERVICES, REAUTHENTICATE};
use gatewire_proto::{ErrorCode, Instant as CoreInstant, Message};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, warn};

use crate::auth::{self, Identity};
use crate::compress;
use crate::config::Config;
use crate::error::{Error, Result, Status};
use crate::router::{CallContext, Router};
use crate::stream::{RecvStream, SendStream};
use crate::transport::{Framing, PeerInfo, Transport, TransportRead, TransportWrite, WriteBatch};

/// After the connection ends, input is drained this long at most while the
/// peer closes its side, so our last frames are not lost to a reset; a
/// write (or transport shutdown) still pending gets this long too.
const LINGER: Duration = Duration::from_secs(2);

/// Frames are gathered into one write until it holds this many bytes.
const MAX_BATCH: usize = 64 * 1024;

/// Counters of one connection.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) frames_sent: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) credit_stalls: AtomicU64,
    pub(crate) events_dropped: AtomicU64,
}

/// A snapshot of a connection's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Frames written.
    pub frames_sent: u64,
    /// Bytes written.
    pub bytes_sent: u64,
    /// Bytes read.
    pub bytes_received: u64,
    /// Transport writes (each carries a batch of frames).
    pub writes: u64,
    /// Sends that had to wait for credit, a call slot or queue room.
    pub credit_stalls: u64,
    /// One-way events dropped because their handler's queue was full.
    pub events_dropped: u64,
    /// Calls and streams we opened that are still open.
    pub calls_out: u32,
    /// Calls and streams the peer opened that are still open.
    pub calls_in: u32,
}

pub(crate) struct StreamSlot {
    /// Messages received and not yet taken, with the credit each returns.
    pub(crate) queue: VecDeque<(Message, u32)>,
    pub(crate) end: bool,
    pub(crate) error: Option<Error>,
    pub(crate) recv_waker: Option<Waker>,
    pub(crate) writable: Arc<Notify>,
}

impl StreamSlot {
    fn new(end: bool) -> Self {
        Self { queue: VecDeque::new(), end, error: None, recv_waker: None, writable: Arc::new(Notify::new()) }
    }

    fn wake(&mut self) {
        if let Some(w) = self.recv_waker.take() {
            w.wake();
        }
        self.writable.notify_waiters();
    }
}

pub(crate) struct Inner {
    pub(crate) core: Core,
    calls: HashMap<u32, oneshot::Sender<Result<Message>>>,
    pub(crate) streams: HashMap<u32, StreamSlot>,
    handlers: HashMap<u32, CancellationToken>,
    pings: HashMap<u64, oneshot::Sender<Duration>>,
    events: HashMap<u32, mpsc::Sender<Message>>,
    connected: Option<oneshot::Sender<Result<()>>>,
    close_error: Option<Error>,
}

pub(crate) struct Shared {
    inner: Mutex<Inner>,
    write_wake: Notify,
    read_wake: Notify,
    /// Connection-level room: call slots, send queue, or the end.
    pub(crate) writable: Notify,
    closed: watch::Sender<bool>,
    epoch: Instant,
    peer: PeerInfo,
    router: Router,
    config: Config,
    pub(crate) counters: Counters,
    /// Server: who the client authenticated as, set when its HELLO is
    /// accepted and replaced by each accepted re-authentication (auth.rs).
    /// Client: unset.
    identity: RwLock<Option<Arc<Identity>>>,
}

/// A gatewire connection. Cheap to clone; every clone drives the same
/// connection. Dropping the handles does not close the connection: call
/// [`Connection::close`] (or drop the server that accepted it).
#[derive(Clone)]
pub struct Connection {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("peer", &self.shared.peer).finish_non_exhaustive()
    }
}

impl Shared {
    /// The peer's current identity (server side).
    pub(crate) fn identity(&self) -> Option<Arc<Identity>> {
        self.identity.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set_identity(&self, identity: Identity) {
        *self.identity.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(identity));
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while the lock is held leaves consistent tables (no
        // user code runs under it), so a poisoned lock is used as is.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn now(&self) -> CoreInstant {
        CoreInstant::from_duration(Instant::now().saturating_duration_since(self.epoch))
    }

    pub(crate) fn wake_writer(&self) {
        self.write_wake.notify_one();
    }

    /// Compresses an outgoing message when both sides negotiated zstd and it
    /// is worth it.
    pub(crate) fn prepare(&self, inner: &Inner, message: Message) -> Message {
        match self.config.compression_threshold {
            Some(threshold)
                if message.uncompressed_len.is_none()
                    && message.body.len() >= threshold
                    && inner.core.peer().is_some_and(|p| p.compression) =>
            {
                compress::compress(message, self.config.compression_level)
            }
            _ => message,
        }
    }

    fn closed_error(&self, inner: &Inner) -> Error {
        inner
            .close_error
            .clone()
            .unwrap_or_else(|| Error::closed(ErrorCode::UNAVAILABLE, Some("connection closed".into())))
    }
}

impl Connection {
    /// Starts driving a connection over `transport`. Returns once the
    /// handshake completed (or failed).
    pub(crate) async fn start(
        transport: Box<dyn Transport>,
        role: Role,
        config: Config,
        router: Router,
    ) -> Result<Self> {
        let peer = transport.peer();
        let framing = transport.framing();
        let (reader, writer) = transport.split();
        let mut core_config = CoreConfig::new(role);
        core_config.limits = config.limits.clone();
        core_config.timeouts = config.timeouts.clone();
        core_config.compression = config.compression_threshold.is_some();
        core_config.agent = Some(concat!("gatewire-rust/", env!("CARGO_PKG_VERSION")).into());
        core_config.auth = config.auth.as_ref().map(|a| a.0.clone());
        core_config.services = config.services.clone();
        core_config.uses = config.uses.clone();
        let epoch = Instant::now();
        let (connected_tx, connected_rx) = oneshot::channel();
        let inner = Inner {
            core: Core::new(core_config, CoreInstant::ZERO),
            calls: HashMap::new(),
            streams: HashMap::new(),
            handlers: HashMap::new(),
            pings: HashMap::new(),
            events: HashMap::new(),
            connected: Some(connected_tx),
            close_error: None,
        };
        let shared = Arc::new(Shared {
            inner: Mutex::new(inner),
            write_wake: Notify::new(),
            read_wake: Notify::new(),
            writable: Notify::new(),
            closed: watch::channel(false).0,
            epoch,
            peer: peer.clone(),
            router,
            config,
            counters: Counters::default(),
            identity: RwLock::new(None),
        });
        let conn = Self { shared: shared.clone() };
        conn.start_event_handlers();
        let span = tracing::info_span!("gatewire.connection", peer = %peer, role = ?role);
        tokio::spawn(read_loop(shared.clone(), reader, framing).instrument(span.clone()));
        tokio::spawn(write_loop(shared.clone(), writer).instrument(span));
        match connected_rx.await {
            Ok(Ok(())) => Ok(conn),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::closed(ErrorCode::UNAVAILABLE, Some("connection ended during the handshake".into()))),
        }
    }

    fn start_event_handlers(&self) {
        let mut inner = self.shared.lock();
        for (&method, handler) in &self.shared.router.events {
            let (tx, mut rx) = mpsc::channel::<Message>(self.shared.config.event_queue);
            inner.events.insert(method, tx);
            let handler = handler.clone();
            let conn = self.clone();
            tokio::spawn(async move {
                while let Some(msg) = rx.recv().await {
                    let msg = match compress::decompress(msg) {
                        Ok(m) => m,
                        Err(e) => {
                            warn!(method, error = %e, "dropping an event that does not decompress");
                            continue;
                        }
                    };
                    let ctx = CallContext {
                        id: 0,
                        method,
                        deadline: None,
                        cancel: CancellationToken::new(),
                        connection: conn.clone(),
                    };
                    if std::panic::AssertUnwindSafe(handler(ctx, msg)).catch_unwind().await.is_err() {
                        warn!(method, "event handler panicked");
                    }
                }
            });
        }
    }

    /// What the transport knows about the peer.
    pub fn peer_info(&self) -> PeerInfo {
        self.shared.peer.clone()
    }

    /// Server side: who the client authenticated as (anonymous when no
    /// authenticator is configured), as of its latest re-authentication.
    /// Client side: `None`.
    pub fn identity(&self) -> Option<Arc<Identity>> {
        self.shared.identity()
    }

    /// Client side: re-authenticates this connection with a new payload (for
    /// instance a fresh JWT before the current one expires), without
    /// reconnecting. The server's authenticator checks it as in the
    /// handshake; it must name the same subject. On success calls run under
    /// the new identity (and expiry); on failure the connection keeps its
    /// identity and this returns the server's `UNAUTHENTICATED` error.
    pub async fn reauthenticate(&self, auth: impl Into<bytes::Bytes>) -> Result<()> {
        self.call(REAUTHENTICATE, Message::raw(auth.into())).await.map(drop)
    }

    /// Counters, and calls in flight in each direction.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let (calls_out, calls_in) = self.shared.lock().core.calls_in_flight();
        Stats {
            frames_sent: c.frames_sent.load(Ordering::Relaxed),
            bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
            bytes_received: c.bytes_received.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            credit_stalls: c.credit_stalls.load(Ordering::Relaxed),
            events_dropped: c.events_dropped.load(Ordering::Relaxed),
            calls_out,
            calls_in,
        }
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        *self.shared.closed.borrow()
    }

    /// Waits until the connection has ended; returns why, or `None` for a
    /// graceful end.
    pub async fn closed(&self) -> Option<Error> {
        let mut rx = self.shared.closed.subscribe();
        let _ = rx.wait_for(|c| *c).await;
        self.shared.lock().close_error.clone()
    }

    /// Runs `op` on the core, waiting for room when it reports `Blocked`.
    async fn with_room<T>(&self, mut op: impl FnMut(&Shared, &mut Inner) -> Result<T, SendError>) -> Result<T> {
        loop {
            let waiter = self.shared.writable.notified();
            tokio::pin!(waiter);
            waiter.as_mut().enable();
            {
                let mut inner = self.shared.lock();
                if inner.core.is_closed() {
                    // Nothing was sent: the call is safe to retry elsewhere.
                    return Err(Error::unsent(&self.shared.closed_error(&inner)));
                }
                match op(&self.shared, &mut inner) {
                    Ok(v) => {
                        drop(inner);
                        self.shared.wake_writer();
                        return Ok(v);
                    }
                    Err(SendError::Blocked) => {
                        self.shared.counters.credit_stalls.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => return Err(Error::from_send(e)),
                }
            }
            waiter.await;
        }
    }

    /// Calls `method` with `request` and waits for the response.
    ///
    /// Dropping the returned future cancels the call at the peer.
    pub async fn call(&self, method: u32, request: Message) -> Result<Message> {
        self.call_with(method, request, None).await
    }

    /// [`Connection::call`] with a deadline that travels to the peer, which
    /// stops its handler when it passes; the call then fails with
    /// `DEADLINE_EXCEEDED` ([`Error::is_timeout`]).
    pub async fn call_with(&self, method: u32, request: Message, deadline: Option<Duration>) -> Result<Message> {
        let (tx, rx) = oneshot::channel();
        let mut tx = Some(tx);
        let id = self
            .with_room(|shared, inner| {
                let message = shared.prepare(inner, request.clone());
                let id = inner.core.send_request(method, message, deadline)?;
                if let Some(tx) = tx.take() {
                    inner.calls.insert(id, tx);
                }
                Ok(id)
            })
            .await?;
        let guard = CancelOnDrop { shared: &self.shared, id: Some(id) };
        let result = rx.await;
        guard.disarm();
        match result {
            Ok(Ok(m)) => compress::decompress(m).map_err(|s| Error::local(s.code, s.message.unwrap_or_default())),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(self.shared.closed_error(&self.shared.lock())),
        }
    }

    /// Sends a one-way event.
    pub async fn emit(&self, method: u32, event: Message) -> Result<()> {
        self.with_room(|shared, inner| {
            let message = shared.prepare(inner, event.clone());
            inner.core.send_event(method, message)
        })
        .await
    }

    /// Opens a stream to `method` with an opening message. Use the
    /// [`SendStream`] to send (and `finish` to end our half) and the
    /// [`RecvStream`] to receive; dropping the `RecvStream` before the peer
    /// ended its half cancels the stream.
    pub async fn open_stream(&self, method: u32, opening: Message) -> Result<(SendStream, RecvStream)> {
        let id = self
            .with_room(|shared, inner| {
                let message = shared.prepare(inner, opening.clone());
                let id = inner.core.open_stream(method, message, None, false)?;
                inner.streams.insert(id, StreamSlot::new(false));
                Ok(id)
            })
            .await?;
        Ok((SendStream::new(self.shared.clone(), id), RecvStream::new(self.shared.clone(), id, true)))
    }

    /// Opens a stream that only the peer sends on (server streaming): the
    /// opening message is the request, and our half ends with it.
    pub async fn server_stream(&self, method: u32, request: Message) -> Result<RecvStream> {
        let id = self
            .with_room(|shared, inner| {
                let message = shared.prepare(inner, request.clone());
                let id = inner.core.open_stream(method, message, None, true)?;
                inner.streams.insert(id, StreamSlot::new(false));
                Ok(id)
            })
            .await?;
        Ok(RecvStream::new(self.shared.clone(), id, true))
    }

    /// Sends a PING and returns the round-trip time.
    pub async fn ping(&self) -> Result<Duration> {
        let rx = {
            let mut inner = self.shared.lock();
            let token = inner.core.ping().map_err(|e| Error::local(ErrorCode::UNAVAILABLE, e.to_string()))?;
            let (tx, rx) = oneshot::channel();
            inner.pings.insert(token, tx);
            rx
        };
        self.shared.wake_writer();
        rx.await.map_err(|_| self.shared.closed_error(&self.shared.lock()))
    }

    /// Shuts down gracefully: the peer is told to open nothing new, calls in
    /// flight in both directions finish (within the drain timeout), then
    /// the connection closes. Returns when it has.
    pub async fn close(&self) {
        self.shared.lock().core.close(ErrorCode::NO_ERROR, None);
        self.shared.wake_writer();
        self.shared.read_wake.notify_one();
        let _ = self.closed().await;
    }

    /// Closes at once with `code`; every call in flight fails.
    pub fn abort(&self, code: ErrorCode, reason: &str) {
        let mut inner = self.shared.lock();
        inner.core.close(if code == ErrorCode::NO_ERROR { ErrorCode::UNAVAILABLE } else { code }, Some(reason));
        dispatch(&self.shared, &mut inner);
        drop(inner);
        self.shared.wake_writer();
        self.shared.read_wake.notify_one();
    }
}

/// Cancels a call at the peer if the call future is dropped before its
/// answer arrived.
struct CancelOnDrop<'a> {
    shared: &'a Arc<Shared>,
    id: Option<u32>,
}

impl CancelOnDrop<'_> {
    fn disarm(mut self) {
        self.id = None;
    }
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            let mut inner = self.shared.lock();
            if inner.calls.remove(&id).is_some() {
                let _ = inner.core.cancel(id);
                dispatch(self.shared, &mut inner);
                drop(inner);
                self.shared.wake_writer();
            }
        }
    }
}

/// Routes every pending core event. Called with the lock held after anything
/// that can produce events.
pub(crate) fn dispatch(shared: &Arc<Shared>, inner: &mut Inner) {
    while let Some(event) = inner.core.poll_event() {
        match event {
            Event::HelloReceived(hello) => {
                // Authentication (auth.rs): the configured authenticator
                // decides from the HELLO's `auth` payload and the transport's
                // facts (TLS client certificate, Unix credentials). Without
                // one every client is accepted, anonymously. A refusal is a
                // HELLO_ACK with the code (UNAUTHENTICATED), then close.
                // Never log `hello`: its Debug shows the credential.
                let authenticator = shared.config.authenticator.as_deref();
                match auth::authenticate(authenticator, hello.auth.as_deref(), &shared.peer) {
                    Ok(identity) => {
                        shared.set_identity(identity);
                        let _ = inner.core.accept();
                    }
                    Err(status) => {
                        let _ = inner.core.refuse(status.code, status.message.as_deref());
                    }
                }
            }
            Event::Connected(peer) => {
                debug!(version = peer.version, agent = ?peer.agent, "connected");
                if let Some(tx) = inner.connected.take() {
                    let _ = tx.send(Ok(()));
                }
            }
            Event::Response { id, message } => {
                if let Some(tx) = inner.calls.remove(&id) {
                    let _ = tx.send(Ok(message));
                }
            }
            Event::CallFailed { id, code, info, side } => {
                let error = match (side, code) {
                    (_, ErrorCode::DEADLINE_EXCEEDED) => Error::deadline(),
                    (gatewire_proto::Side::Remote, _) => Error::remote(code, info.message),
                    (gatewire_proto::Side::Local, _) => {
                        inner.close_error.clone().unwrap_or_else(|| Error::closed(code, info.message))
                    }
                };
                if let Some(tx) = inner.calls.remove(&id) {
                    let _ = tx.send(Err(error));
                } else if let Some(slot) = inner.streams.get_mut(&id) {
                    slot.error = Some(error);
                    slot.wake();
                }
            }
            Event::Request { id, method, message, deadline } => {
                spawn_unary(shared, inner, id, method, message, deadline)
            }
            Event::StreamOpened { id, method, message, end, deadline } => {
                spawn_stream(shared, inner, id, method, message, end, deadline);
            }
            Event::StreamData { id, message, end } => {
                if let Some(slot) = inner.streams.get_mut(&id) {
                    // An empty raw message with END (`finish`) only ends the
                    // half; it is not a message of its own.
                    let bare_end = end && message.body.is_empty() && message.codec == gatewire_proto::Codec::RAW;
                    if !bare_end {
                        let credit = message.body.len() as u32 + if message.uncompressed_len.is_some() { 4 } else { 0 };
                        slot.queue.push_back((message, credit));
                    }
                    slot.end |= end;
                    slot.wake();
                }
            }
            Event::Event { method, .. }
                if auth::check_call(shared.identity().as_deref(), shared.config.authorizer.as_deref(), method)
                    .is_err() =>
            {
                // Events get no answer: one the authorizer denies is dropped.
                shared.counters.events_dropped.fetch_add(1, Ordering::Relaxed);
                debug!(method, "event denied by the authorizer");
            }
            Event::Event { method, message } => match inner.events.get(&method) {
                Some(tx) => {
                    if tx.try_send(message).is_err() {
                        shared.counters.events_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                None => {
                    shared.counters.events_dropped.fetch_add(1, Ordering::Relaxed);
                    debug!(method, "event without a handler dropped");
                }
            },
            Event::Cancelled { id, code } => {
                if let Some(token) = inner.handlers.get(&id) {
                    token.cancel();
                }
                if let Some(slot) = inner.streams.get_mut(&id) {
                    slot.error = Some(Error::remote(code, None));
                    slot.wake();
                }
            }
            Event::Writable { id: None } => shared.writable.notify_waiters(),
            Event::Writable { id: Some(id) } => {
                if let Some(slot) = inner.streams.get(&id) {
                    slot.writable.notify_waiters();
                }
            }
            Event::Pong { token, rtt } => {
                if let Some(tx) = inner.pings.remove(&token) {
                    let _ = tx.send(rtt);
                }
            }
            Event::GoAway { last_id, code, message } => {
                debug!(last_id, %code, ?message, "peer is going away");
                // Callers waiting for room learn that no new call may start.
                shared.writable.notify_waiters();
            }
            Event::Closed { error } => {
                let error = error.map(|e| Error::from_connection(&e));
                if let Some(e) = &error {
                    debug!(error = %e, "connection closed");
                }
                if inner.close_error.is_none() {
                    inner.close_error.clone_from(&error);
                }
                let err = shared.closed_error(inner);
                if let Some(tx) = inner.connected.take() {
                    let _ = tx.send(Err(err.clone()));
                }
                for (_, tx) in inner.calls.drain() {
                    let _ = tx.send(Err(err.clone()));
                }
                for slot in inner.streams.values_mut() {
                    if slot.error.is_none() && !slot.end {
                        slot.error = Some(err.clone());
                    }
                    slot.wake();
                }
                for token in inner.handlers.values() {
                    token.cancel();
                }
                inner.pings.clear();
                inner.events.clear();
                shared.writable.notify_waiters();
                shared.closed.send_replace(true);
                shared.read_wake.notify_one();
                shared.write_wake.notify_one();
            }
            other => debug!(?other, "unhandled event"),
        }
    }
}

fn deadline_instant(deadline: Option<Duration>) -> Option<Instant> {
    deadline.map(|d| Instant::now() + d)
}

/// Ends a handler's call in the core and routes what follows.
fn finish_handler(shared: &Arc<Shared>, id: u32, outcome: Option<std::result::Result<Message, Status>>) {
    let mut inner = shared.lock();
    inner.handlers.remove(&id);
    let result = match outcome {
        Some(Ok(m)) => {
            let m = shared.prepare(&inner, m);
            match inner.core.send_response(id, m) {
                Err(SendError::TooLarge { len, max }) => {
                    let info = ErrorInfo {
                        message: Some(format!("response of {len} bytes exceeds the limit {max}")),
                        details: None,
                    };
                    inner.core.send_error(id, ErrorCode::TOO_LARGE, info)
                }
                other => other,
            }
        }
        Some(Err(status)) => send_status(&mut inner, id, status),
        None => inner.core.send_error(id, ErrorCode::CANCELLED, ErrorInfo::default()),
    };
    if let Err(e) = result {
        debug!(id, error = %e, "handler result not sent");
    }
    dispatch(shared, &mut inner);
    drop(inner);
    shared.wake_writer();
}

/// Checks a call the peer opened before any handler sees it: the identity
/// and the authorizer first, then whether a handler exists. Returns the
/// context and cancel token of an admitted call; otherwise the call has been
/// answered with an error.
fn admit(
    shared: &Arc<Shared>,
    inner: &mut Inner,
    id: u32,
    method: u32,
    deadline: Option<Duration>,
    has_handler: bool,
) -> Option<(CallContext, CancellationToken)> {
    // Authorization (auth.rs): an expired identity or a denied method is
    // answered before the handler (or UNKNOWN_METHOD) is involved.
    let refusal = match auth::check_call(shared.identity().as_deref(), shared.config.authorizer.as_deref(), method) {
        Err(status) => Some(status),
        Ok(()) if !has_handler => {
            Some(Status::new(ErrorCode::UNKNOWN_METHOD, format!("no handler for method {method}")))
        }
        Ok(()) => None,
    };
    if let Some(status) = refusal {
        let _ = send_status(inner, id, status);
        return None;
    }
    let token = CancellationToken::new();
    inner.handlers.insert(id, token.clone());
    let ctx = CallContext {
        id,
        method,
        deadline: deadline_instant(deadline),
        cancel: token.clone(),
        connection: Connection { shared: shared.clone() },
    };
    Some((ctx, token))
}

/// Answers the built-in LIST_SERVICES (`docs/PROTOCOL.md` §10.4) with the
/// services this endpoint offers and uses, whatever handlers the router has.
/// The authorizer applies to it as to any method.
fn list_services(shared: &Arc<Shared>, inner: &mut Inner, id: u32) {
    let result =
        match auth::check_call(shared.identity().as_deref(), shared.config.authorizer.as_deref(), LIST_SERVICES) {
            Err(status) => send_status(inner, id, status),
            Ok(()) => {
                let list = ServiceList { offers: shared.config.services.clone(), uses: shared.config.uses.clone() };
                let message = Message::flatbuffers(list.encode());
                match inner.core.send_response(id, message) {
                    Err(SendError::TooLarge { len, max }) => {
                        let info = ErrorInfo {
                            message: Some(format!("response of {len} bytes exceeds the limit {max}")),
                            details: None,
                        };
                        inner.core.send_error(id, ErrorCode::TOO_LARGE, info)
                    }
                    other => other,
                }
            }
        };
    if let Err(e) = result {
        debug!(id, error = %e, "LIST_SERVICES answer not sent");
    }
}

/// Answers the built-in REAUTHENTICATE (`docs/PROTOCOL.md` §10.4): the
/// authenticator checks the new payload as in the handshake, and an identity
/// for the same subject replaces the current one. The call is allowed even
/// after the current identity expired: the credentials are checked anew.
fn reauthenticate(shared: &Arc<Shared>, inner: &mut Inner, id: u32, message: &Message) {
    let result = match shared.config.authenticator.as_deref() {
        None => Err(Status::new(ErrorCode::UNKNOWN_METHOD, "this endpoint does not authenticate")),
        Some(authenticator) => {
            auth::authenticate(Some(authenticator), Some(&message.body), &shared.peer).and_then(|identity| match shared
                .identity()
            {
                Some(current) if current.subject() != identity.subject() => {
                    Err(Status::new(ErrorCode::UNAUTHENTICATED, "re-authentication must name the same subject"))
                }
                _ => Ok(identity),
            })
        }
    };
    let sent = match result {
        Ok(identity) => {
            debug!(subject = identity.subject(), "re-authenticated");
            shared.set_identity(identity);
            inner.core.send_response(id, Message::raw(bytes::Bytes::new()))
        }
        Err(status) => send_status(inner, id, status),
    };
    if let Err(e) = sent {
        debug!(id, error = %e, "REAUTHENTICATE answer not sent");
    }
}

/// Ends a call the peer opened with a handler's error.
fn send_status(inner: &mut Inner, id: u32, status: Status) -> Result<(), SendError> {
    let code = if status.code == ErrorCode::NO_ERROR { ErrorCode::INTERNAL } else { status.code };
    inner.core.send_error(id, code, ErrorInfo { message: status.message, details: None })
}

/// Runs a handler until it finishes or its call is cancelled (`None`); a
/// panic becomes `INTERNAL`. The handler's future is dropped before this
/// returns, so a slot released afterwards is released after it unwound.
async fn run_handler<T>(
    token: CancellationToken,
    message: Message,
    handler: impl FnOnce(Message) -> crate::router::BoxFuture<Result<T, Status>>,
) -> Option<Result<T, Status>> {
    let message = match compress::decompress(message) {
        Ok(m) => m,
        Err(status) => return Some(Err(status)),
    };
    let fut = std::panic::AssertUnwindSafe(handler(message)).catch_unwind();
    tokio::select! {
        biased;
        () = token.cancelled() => None,
        r = fut => Some(r.unwrap_or_else(|_| Err(Status::internal("handler panicked")))),
    }
}

fn spawn_unary(
    shared: &Arc<Shared>,
    inner: &mut Inner,
    id: u32,
    method: u32,
    message: Message,
    deadline: Option<Duration>,
) {
    if method == LIST_SERVICES {
        list_services(shared, inner, id);
        return;
    }
    if method == REAUTHENTICATE {
        reauthenticate(shared, inner, id, &message);
        return;
    }
    let handler = shared.router.unary.get(&method).cloned();
    let Some((ctx, token)) = admit(shared, inner, id, method, deadline, handler.is_some()) else { return };
    let handler = handler.expect("admitted calls have a handler");
    let shared = shared.clone();
    let span = tracing::debug_span!("gatewire.call", id, method);
    tokio::spawn(
        async move {
            let outcome = run_handler(token, message, |m| handler(ctx, m)).await;
            finish_handler(&shared, id, outcome);
        }
        .instrument(span),
    );
}

#[allow(clippy::too_many_arguments)]
fn spawn_stream(
    shared: &Arc<Shared>,
    inner: &mut Inner,
    id: u32,
    method: u32,
    message: Message,
    end: bool,
    deadline: Option<Duration>,
) {
    let handler = shared.router.streams.get(&method).cloned();
    let Some((ctx, token)) = admit(shared, inner, id, method, deadline, handler.is_some()) else { return };
    let handler = handler.expect("admitted calls have a handler");
    inner.streams.insert(id, StreamSlot::new(end));
    let rx = RecvStream::new(shared.clone(), id, false);
    let tx = SendStream::new(shared.clone(), id);
    let shared = shared.clone();
    let span = tracing::debug_span!("gatewire.stream", id, method);
    tokio::spawn(
        async move {
            let outcome = run_handler(token, message, |m| handler(ctx, m, rx, tx)).await;
            let mut inner = shared.lock();
            inner.handlers.remove(&id);
            let result = match outcome {
                Some(Ok(())) => inner.core.finish(id),
                Some(Err(status)) => send_status(&mut inner, id, status),
                None => inner.core.send_error(id, ErrorCode::CANCELLED, ErrorInfo::default()),
            };
            if let Err(e) = result {
                debug!(id, error = %e, "stream end not sent");
            }
            inner.streams.remove(&id);
            dispatch(&shared, &mut inner);
            drop(inner);
            shared.wake_writer();
        }
        .instrument(span),
    );
}

async fn read_loop(shared: Arc<Shared>, mut reader: Box<dyn TransportRead>, framing: Framing) {
    enum Woke {
        Read(std::io::Result<usize>),
        Timer,
        Nudge,
    }
    // Byte streams are read straight into the core's receive buffer (taken
    // out while the read is pending, so no lock is held across it); message
    // transports read one whole frame at a time into `buf`.
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let sleep = tokio::time::sleep_until(Instant::now());
    tokio::pin!(sleep);
    let mut armed: Option<Instant> = None;
    loop {
        let (deadline, wants_read) = {
            let mut inner = shared.lock();
            if inner.core.is_closed() {
                break;
            }
            let wants_read = inner.core.wants_read();
            if wants_read && framing == Framing::Stream {
                buf = std::mem::take(inner.core.read_buf());
            }
            (inner.core.poll_timeout(), wants_read)
        };
        let at = deadline.map(|d| shared.epoch + d.as_duration());
        if at != armed {
            if let Some(at) = at {
                sleep.as_mut().reset(at);
            }
            armed = at;
        }
        let woke = tokio::select! {
            r = reader.read(&mut buf), if wants_read => Woke::Read(r),
            () = &mut sleep, if armed.is_some() => Woke::Timer,
            () = shared.read_wake.notified() => Woke::Nudge,
        };
        let mut inner = shared.lock();
        if wants_read && framing == Framing::Stream {
            *inner.core.read_buf() = std::mem::take(&mut buf);
        }
        let now = shared.now();
        match woke {
            Woke::Read(Ok(0)) => inner.core.handle_eof(now),
            Woke::Read(Ok(n)) => {
                shared.counters.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
                match framing {
                    Framing::Message => inner.core.handle_frame(now, buf.split().freeze()),
                    Framing::Stream => inner.core.handle_buffered(now),
                }
            }
            Woke::Read(Err(e)) => {
                debug!(error = %e, "read failed");
                if inner.close_error.is_none() {
                    inner.close_error = Some(Error::io(&e));
                }
                inner.core.handle_eof(now);
            }
            Woke::Timer => {
                armed = None;
                inner.core.handle_timeout(now);
            }
            Woke::Nudge => {}
        }
        dispatch(&shared, &mut inner);
        let send = inner.core.has_transmit() || inner.core.is_closed();
        drop(inner);
        if send {
            shared.wake_writer();
        }
    }
    // The connection is over. Keep reading (and discarding) until the peer
    // closes too, for a short while: dropping a socket with unread input
    // resets it, and the peer could lose the last frames we wrote.
    let linger = async {
        loop {
            buf.clear();
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, linger).await;
}

/// Resolves [`LINGER`] after the connection has ended. A write still
/// pending then is abandoned: a peer that stopped reading must not keep the
/// socket, and the writer task, alive once the connection is over.
async fn ended_and_lingered(shared: &Shared) {
    let mut closed = shared.closed.subscribe();
    let _ = closed.wait_for(|c| *c).await;
    tokio::time::sleep(LINGER).await;
}

async fn write_loop(shared: Arc<Shared>, mut writer: Box<dyn TransportWrite>) {
    let mut batch = WriteBatch::default();
    loop {
        let closed = {
            let mut inner = shared.lock();
            while let Some(frame) = inner.core.poll_transmit() {
                frame.encode_into(&mut batch.buf);
                batch.ends.push(batch.buf.len());
                if batch.buf.len() >= MAX_BATCH {
                    break;
                }
            }
            dispatch(&shared, &mut inner);
            inner.core.is_closed()
        };
        if batch.is_empty() {
            if closed {
                // A TLS close_notify or WebSocket close frame must be
                // written too: give a peer that does not read the linger.
                let _ = tokio::time::timeout(LINGER, writer.shutdown()).await;
                break;
            }
            shared.write_wake.notified().await;
            // Let the tasks woken with us queue their frames too, so they
            // leave in one write.
            tokio::task::yield_now().await;
            continue;
        }
        let c = &shared.counters;
        c.frames_sent.fetch_add(batch.ends.len() as u64, Ordering::Relaxed);
        c.bytes_sent.fetch_add(batch.buf.len() as u64, Ordering::Relaxed);
        c.writes.fetch_add(1, Ordering::Relaxed);
        let written = tokio::select! {
            r = writer.write(&batch) => r,
            () = ended_and_lingered(&shared) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the peer stopped reading after the connection ended",
            )),
        };
        if let Err(e) = written {
            debug!(error = %e, "write failed");
            let mut inner = shared.lock();
            if inner.close_error.is_none() {
                inner.close_error = Some(Error::io(&e));
            }
            let now = shared.now();
            inner.core.handle_eof(now);
            inner.core.close(ErrorCode::UNAVAILABLE, Some("write failed"));
            dispatch(&shared, &mut inner);
            break;
        }
        batch.clear();
        // Written control frames may let paused input resume.
        shared.read_wake.notify_one();
    }
    shared.read_wake.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_default_is_zero() {
        assert_eq!(Stats::default().frames_sent, 0);
    }
}
