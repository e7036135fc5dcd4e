//! Per-call state and outbound messages.

use alloc::vec::Vec;
use core::time::Duration;

use bytes::{Bytes, BytesMut};

use super::{CallId, Message, Side};
use crate::codec::Frame;
use crate::frame::{Codec, Flags, FrameType, Header};
use crate::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Unary,
    Stream,
    /// A one-way message being reassembled.
    Event,
}

/// A message arriving in several frames.
#[derive(Debug)]
pub(super) struct Assembly {
    pub(super) ty: FrameType,
    pub(super) flags: Flags,
    pub(super) codec: Codec,
    pub(super) method: u32,
    pub(super) deadline: Option<Duration>,
    pub(super) uncompressed: Option<u32>,
    pub(super) body: BytesMut,
    pub(super) fragments: u32,
    /// The message must be complete by then.
    pub(super) expires: Instant,
}

impl Assembly {
    pub(super) fn start(
        h: &Header,
        first: Bytes,
        deadline: Option<Duration>,
        uncompressed: Option<u32>,
        expires: Instant,
    ) -> Self {
        let mut body = BytesMut::with_capacity(first.len());
        body.extend_from_slice(&first);
        Self {
            ty: h.ty,
            flags: h.flags,
            codec: h.codec,
            method: h.arg,
            deadline,
            uncompressed,
            body,
            fragments: 1,
            expires,
        }
    }
}

/// One entry of the call table.
#[derive(Debug)]
pub(super) struct Call {
    pub(super) kind: Kind,
    pub(super) origin: Side,
    pub(super) method: u32,
    pub(super) deadline: Option<Instant>,
    /// Our half may still send.
    pub(super) send_open: bool,
    /// The peer's half may still send (for a call we opened: a response is
    /// still expected).
    pub(super) recv_open: bool,
    /// Credit the peer granted on this stream, minus bytes sent.
    pub(super) send_credit: i64,
    /// Bytes the peer may still send on this stream.
    pub(super) recv_credit: i64,
    /// Consumed bytes not yet granted back.
    pub(super) grant_pending: u32,
    /// Bytes credited back during reassembly, deducted from the
    /// application's next grants.
    pub(super) prepaid: u32,
    /// Stream bytes accepted by `send_stream_data` and not yet sent.
    pub(super) queued: u64,
    /// A send returned `Blocked`; report `Writable` when credit returns.
    pub(super) blocked: bool,
    /// The peer knows the id (our opening frame is out, or the peer opened).
    pub(super) opened: bool,
    /// Our queued messages on this id, by sequence number: they leave one
    /// after the other.
    pub(super) out_seqs: alloc::collections::VecDeque<u64>,
    pub(super) assembly: Option<Assembly>,
    /// The opening event was handed to the application.
    pub(super) delivered: bool,
    /// The peer cancelled (or the deadline passed); the handler may still run.
    pub(super) cancelled: bool,
    /// Counts against `max_in_flight` (peer-opened calls until the
    /// application answers).
    pub(super) slot: bool,
}

impl Call {
    pub(super) fn new(kind: Kind, origin: Side) -> Self {
        Self {
            kind,
            origin,
            method: 0,
            deadline: None,
            send_open: false,
            recv_open: origin == Side::Local,
            send_credit: 0,
            recv_credit: 0,
            grant_pending: 0,
            prepaid: 0,
            queued: 0,
            blocked: false,
            opened: origin == Side::Remote,
            out_seqs: alloc::collections::VecDeque::new(),
            assembly: None,
            delivered: false,
            cancelled: false,
            slot: false,
        }
    }
}

/// A message accepted for sending, cut into frames as credit allows.
#[derive(Debug)]
pub(super) struct OutMessage {
    pub(super) id: CallId,
    /// Order of acceptance.
    pub(super) seq: u64,
    ty: FrameType,
    arg: u32,
    flags: Flags,
    codec: Codec,
    prelude: Vec<u8>,
    body: Bytes,
    started: bool,
    /// Frames spend the stream's credit as well as the connection's.
    pub(super) stream_credit: bool,
}

impl OutMessage {
    pub(super) fn new(
        ty: FrameType,
        id: CallId,
        arg: u32,
        mut flags: Flags,
        mut prelude: Vec<u8>,
        message: Message,
        stream_credit: bool,
    ) -> Self {
        if let Some(n) = message.uncompressed_len {
            flags = flags.with(Flags::COMPRESSED);
            prelude.extend_from_slice(&n.to_le_bytes());
        }
        Self {
            id,
            seq: 0,
            ty,
            arg,
            flags,
            codec: message.codec,
            prelude,
            body: message.body,
            started: false,
            stream_credit,
        }
    }

    /// Payload bytes still to send.
    pub(super) fn remaining(&self) -> usize {
        let prelude = if self.started { 0 } else { self.prelude.len() };
        prelude + self.body.len()
    }

    /// Bytes the next frame needs at least.
    pub(super) fn min_frame(&self) -> usize {
        if self.started { 1 } else { self.prelude.len() }
    }

    /// Whether the first frame is out.
    pub(super) fn is_started(&self) -> bool {
        self.started
    }

    /// Whether this is a one-way message.
    pub(super) fn is_event(&self) -> bool {
        self.ty == FrameType::EVENT
    }

    /// An opening frame (REQUEST, EVENT, STREAM_OPEN) not yet sent.
    pub(super) fn is_unsent_open(&self) -> bool {
        !self.started && self.ty.opens_id()
    }

    pub(super) fn is_done(&self) -> bool {
        self.started && self.body.is_empty()
    }

    /// Cuts the next frame of at most `budget` payload bytes
    /// (`budget >= min_frame()`).
    pub(super) fn next_frame(&mut self, budget: usize) -> Frame {
        if self.started {
            let take = budget.min(self.body.len());
            let payload = self.body.split_to(take);
            let flags = if self.body.is_empty() { Flags::NONE } else { Flags::MORE };
            let mut h = Header::new(FrameType::CONTINUATION, self.id, 0, 0);
            h.flags = flags;
            return Frame::new(h, payload);
        }
        self.started = true;
        let take = budget.saturating_sub(self.prelude.len()).min(self.body.len());
        let payload = if self.prelude.is_empty() {
            self.body.split_to(take)
        } else {
            let mut p = BytesMut::with_capacity(self.prelude.len() + take);
            p.extend_from_slice(&self.prelude);
            p.extend_from_slice(&self.body.split_to(take));
            p.freeze()
        };
        let mut h = Header::new(self.ty, self.id, self.arg, 0);
        h.flags = if self.body.is_empty() { self.flags } else { self.flags.with(Flags::MORE) };
        h.codec = self.codec;
        Frame::new(h, payload)
    }
}
