//! The hand-rolled peers: a tokio-util `LengthDelimitedCodec` echo and a bare
//! tokio-tungstenite WebSocket echo. Neither has request ids: the server
//! answers in order, so the client matches replies to callers first in,
//! first out.
//!
//! Both servers handle one connection in one task: read a message, `feed`
//! its reply, keep feeding while more messages are already readable, then
//! `flush` once. The client's writer task does the same with the calls
//! queued by its callers. The reply to a message whose first byte is the
//! [`Op::Sink`] tag is [`ACK`]; any other message is echoed.

use std::io;

use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::codec::{Framed, FramedRead, FramedWrite, LengthDelimitedCodec};

use crate::{ACK, BoxError, MAX_MESSAGE, Op, Rpc};

/// Calls queued between the callers and the writer task.
const QUEUE: usize = 1024;

/// The default codec (4-byte big-endian length) with room for 16 MiB.
fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().max_frame_length(MAX_MESSAGE).new_codec()
}

/// tungstenite's defaults with room for 16 MiB messages.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE)).max_frame_size(Some(MAX_MESSAGE))
}

fn reply(message: Bytes) -> Bytes {
    if message.first() == Some(&Op::Sink.tag()) { Bytes::from_static(ACK) } else { message }
}

// ------------------------------------------------------------------ servers

/// Serves the framed echo on `host:port`; returns the bound address.
pub(crate) async fn serve_framed(addr: &str) -> io::Result<String> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(echo(Framed::new(stream, codec()), |m: BytesMut| Some(reply(m.freeze())), |b| b));
        }
    });
    Ok(local.to_string())
}

/// Serves the WebSocket echo on `host:port`; returns the `ws://` URL.
pub(crate) async fn serve_ws(addr: &str) -> io::Result<String> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                if let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(ws_config())).await {
                    echo(ws, ws_binary, WsMessage::Binary).await;
                }
            });
        }
    });
    Ok(format!("ws://{local}/"))
}

fn ws_binary(message: WsMessage) -> Option<Bytes> {
    match message {
        WsMessage::Binary(b) => Some(reply(b)),
        _ => None,
    }
}

/// One connection of an echo server: batches replies while input is ready.
async fn echo<T, In, Out, E>(mut io: T, answer: fn(In) -> Option<Bytes>, wrap: fn(Bytes) -> Out)
where
    T: Stream<Item = Result<In, E>> + Sink<Out> + Unpin,
{
    while let Some(Ok(message)) = io.next().await {
        if let Some(out) = answer(message)
            && io.feed(wrap(out)).await.is_err()
        {
            return;
        }
        while let Some(Some(Ok(message))) = io.next().now_or_never() {
            if let Some(out) = answer(message)
                && io.feed(wrap(out)).await.is_err()
            {
                return;
            }
        }
        if io.flush().await.is_err() {
            return;
        }
    }
}

// ------------------------------------------------------------------- client

type Call = (Bytes, oneshot::Sender<Bytes>);

/// A pipelining client: callers queue (message, reply slot) pairs; a writer
/// task sends them in order, flushing when the queue runs dry; a reader
/// task hands replies to the slots in the same order.
#[derive(Clone)]
pub(crate) struct Client {
    calls: mpsc::Sender<Call>,
}

impl Client {
    /// Connects to the framed echo at `host:port`.
    pub(crate) async fn connect_framed(addr: &str) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        Ok(Self::start(
            FramedWrite::new(w, codec()),
            FramedRead::new(r, codec()),
            |b| b,
            |m: BytesMut| Some(m.freeze()),
        ))
    }

    /// Connects to the WebSocket echo at `url`.
    pub(crate) async fn connect_ws(url: &str) -> Result<Self, BoxError> {
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(ws_config()), true).await?;
        let (sink, stream) = ws.split();
        let binary = |m: WsMessage| match m {
            WsMessage::Binary(b) => Some(b),
            _ => None,
        };
        Ok(Self::start(sink, stream, WsMessage::Binary, binary))
    }

    fn start<W, R, Out, In, E>(sink: W, stream: R, wrap: fn(Bytes) -> Out, unwrap: fn(In) -> Option<Bytes>) -> Self
    where
        W: Sink<Out> + Unpin + Send + 'static,
        R: Stream<Item = Result<In, E>> + Unpin + Send + 'static,
        Out: Send + 'static,
        In: Send + 'static,
        E: Send + 'static,
    {
        let (calls, rx) = mpsc::channel(QUEUE);
        let (pending_tx, pending_rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(sink, rx, pending_tx, wrap));
        tokio::spawn(read_loop(stream, pending_rx, unwrap));
        Self { calls }
    }
}

async fn write_loop<W, Out>(
    mut sink: W,
    mut calls: mpsc::Receiver<Call>,
    pending: mpsc::UnboundedSender<oneshot::Sender<Bytes>>,
    wrap: fn(Bytes) -> Out,
) where
    W: Sink<Out> + Unpin,
{
    while let Some((message, slot)) = calls.recv().await {
        // The slot is queued before its message leaves, so the reader
        // always finds it.
        let _ = pending.send(slot);
        if sink.feed(wrap(message)).await.is_err() {
            return;
        }
        while let Ok((message, slot)) = calls.try_recv() {
            let _ = pending.send(slot);
            if sink.feed(wrap(message)).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

async fn read_loop<R, In, E>(
    mut stream: R,
    mut pending: mpsc::UnboundedReceiver<oneshot::Sender<Bytes>>,
    unwrap: fn(In) -> Option<Bytes>,
) where
    R: Stream<Item = Result<In, E>> + Unpin,
{
    while let Some(Ok(message)) = stream.next().await {
        let Some(reply) = unwrap(message) else { continue };
        let Some(slot) = pending.recv().await else { return };
        let _ = slot.send(reply);
    }
}

impl Rpc for Client {
    async fn call(&mut self, _op: Op, payload: Bytes) -> Result<usize, BoxError> {
        // The op travels as the payload's first byte: the server looks at it.
        let (tx, rx) = oneshot::channel();
        self.calls.send((payload, tx)).await.map_err(|_| "connection closed")?;
        Ok(rx.await.map_err(|_| "connection closed")?.len())
    }
}
