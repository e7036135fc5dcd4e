//! Streams: messages in order, with credit backpressure in both directions.
//!
//! A [`RecvStream`] returns credit to the peer as the application takes each
//! message, so a slow consumer slows its producer instead of growing memory;
//! a [`SendStream`] waits when the peer's credit is spent.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use gatewire_proto::connection::SendError;
use gatewire_proto::{ErrorCode, Message};

use crate::compress;
use crate::conn::{Shared, dispatch};
use crate::error::{Error, Result};

/// The sending half of a stream. Dropping it ends our half of the stream
/// (like [`SendStream::finish`]).
pub struct SendStream {
    shared: Arc<Shared>,
    id: u32,
    finished: bool,
}

impl std::fmt::Debug for SendStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendStream").field("id", &self.id).field("finished", &self.finished).finish()
    }
}

impl SendStream {
    pub(crate) fn new(shared: Arc<Shared>, id: u32) -> Self {
        Self { shared, id, finished: false }
    }

    /// The stream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    async fn send_inner(&mut self, message: Message, end: bool) -> Result<()> {
        if self.finished {
            return Err(Error::local(ErrorCode::STREAM_CLOSED, "the stream's sending half is finished"));
        }
        loop {
            let writable = {
                let inner = self.shared.lock();
                inner.streams.get(&self.id).map(|s| s.writable.clone())
            };
            let stream_room = writable.as_ref().map(|w| w.notified());
            let conn_room = self.shared.writable.notified();
            tokio::pin!(conn_room);
            conn_room.as_mut().enable();
            let stream_room = stream_room.map(Box::pin);
            let mut stream_room = stream_room;
            if let Some(n) = stream_room.as_mut() {
                n.as_mut().enable();
            }
            {
                let mut inner = self.shared.lock();
                if let Some(e) = inner.streams.get(&self.id).and_then(|s| s.error.clone()) {
                    return Err(e);
                }
                let message = self.shared.prepare(&inner, message.clone());
                match inner.core.send_stream_data(self.id, message, end) {
                    Ok(()) => {
                        if end {
                            self.finished = true;
                        }
                        dispatch(&self.shared, &mut inner);
                        drop(inner);
                        self.shared.wake_writer();
                        return Ok(());
                    }
                    Err(SendError::Blocked) => {
                        self.shared.counters.credit_stalls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(SendError::UnknownCall(_)) => {
                        return Err(Error::closed(ErrorCode::STREAM_CLOSED, Some("the stream has ended".into())));
                    }
                    Err(e) => return Err(Error::from_send(e)),
                }
            }
            match stream_room {
                Some(s) => {
                    tokio::select! {
                        () = s => {}
                        () = conn_room => {}
                    }
                }
                None => conn_room.await,
            }
        }
    }

    /// Sends a message, waiting while the peer's credit is spent.
    pub async fn send(&mut self, message: Message) -> Result<()> {
        self.send_inner(message, false).await
    }

    /// Sends a last message and ends our half of the stream.
    pub async fn send_last(&mut self, message: Message) -> Result<()> {
        self.send_inner(message, true).await
    }

    /// Ends our half of the stream.
    pub async fn finish(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        self.send_inner(Message::new(gatewire_proto::Codec::RAW, bytes::Bytes::new()), true).await
    }
}

impl Drop for SendStream {
    /// Ends our half of the stream, as [`SendStream::finish`] would.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut inner = self.shared.lock();
        if inner.core.finish(self.id).is_ok() {
            dispatch(&self.shared, &mut inner);
            drop(inner);
            self.shared.wake_writer();
        }
    }
}

/// The receiving half of a stream: a [`Stream`] of messages that ends when
/// the peer ends its half.
pub struct RecvStream {
    shared: Arc<Shared>,
    id: u32,
    /// We opened the stream: dropping this half early cancels it.
    opened_here: bool,
    done: bool,
}

impl std::fmt::Debug for RecvStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvStream").field("id", &self.id).field("done", &self.done).finish()
    }
}

impl RecvStream {
    pub(crate) fn new(shared: Arc<Shared>, id: u32, opened_here: bool) -> Self {
        Self { shared, id, opened_here, done: false }
    }

    /// The stream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The next message, `None` once the peer ended its half.
    pub async fn next(&mut self) -> Option<Result<Message>> {
        std::future::poll_fn(|cx| self.poll_message(cx)).await
    }

    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let mut inner = self.shared.lock();
        let Some(slot) = inner.streams.get_mut(&self.id) else {
            self.done = true;
            return Poll::Ready(None);
        };
        if let Some((message, credit)) = slot.queue.pop_front() {
            let _ = inner.core.grant_credit(self.id, credit);
            dispatch(&self.shared, &mut inner);
            drop(inner);
            self.shared.wake_writer();
            return Poll::Ready(Some(
                compress::decompress(message).map_err(|s| Error::local(s.code, s.message.unwrap_or_default())),
            ));
        }
        if slot.end {
            self.done = true;
            return Poll::Ready(None);
        }
        if let Some(e) = slot.error.clone() {
            self.done = true;
            return Poll::Ready(Some(Err(e)));
        }
        slot.recv_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Stream for RecvStream {
    type Item = Result<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_message(cx)
    }
}

impl Drop for RecvStream {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        if self.opened_here {
            let ended = inner.streams.get(&self.id).is_none_or(|s| s.end && s.queue.is_empty());
            if !ended {
                let _ = inner.core.cancel(self.id);
            }
            inner.streams.remove(&self.id);
            dispatch(&self.shared, &mut inner);
            drop(inner);
            self.shared.wake_writer();
        }
    }
}
