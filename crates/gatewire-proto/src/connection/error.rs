//! Connection errors, split by who is at fault.

use alloc::string::String;

use super::{CallId, Side};
use crate::code::ErrorCode;
use crate::control::ControlError;
use crate::frame::{FrameError, FrameType};

/// A rule of `docs/PROTOCOL.md` that the peer broke (beyond the header rules
/// of [`FrameError`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// A frame type that is not allowed in the current state.
    #[error("unexpected {0} frame")]
    UnexpectedFrame(FrameType),
    /// An id of the wrong parity for the frame type.
    #[error("{ty} with id {id} of the wrong parity")]
    WrongParity {
        /// Frame type.
        ty: FrameType,
        /// The id.
        id: CallId,
    },
    /// A new id not above the previous one.
    #[error("new id {id} is not above the last id {last}")]
    IdNotIncreasing {
        /// The id.
        id: CallId,
        /// The last id the peer opened.
        last: CallId,
    },
    /// A frame naming an id that was never opened.
    #[error("{ty} names id {id}, which was never opened")]
    UnopenedId {
        /// Frame type.
        ty: FrameType,
        /// The id.
        id: CallId,
    },
    /// A new message on an id whose previous message is still incomplete.
    #[error("new message on id {0} before its previous message completed")]
    InterleavedMessage(CallId),
    /// The first frame of a message is too short for its prelude.
    #[error("first frame too short for its {0} prelude")]
    ShortPrelude(&'static str),
    /// A compressed message although we did not offer compression.
    #[error("compressed message without negotiated compression")]
    CompressionNotNegotiated,
    /// The server chose a version the client did not offer.
    #[error("server chose version {0}, which was not offered")]
    VersionNotOffered(u16),
    /// The peer advertised a limit below the protocol minimum.
    #[error("advertised limit {0} below the protocol minimum")]
    InvalidPeerLimit(&'static str),
    /// A GOAWAY raised the last id of an earlier one.
    #[error("GOAWAY last id {last} above the previous {previous}")]
    GoAwayIncreased {
        /// New last id.
        last: CallId,
        /// Previous last id.
        previous: CallId,
    },
}

/// Why a connection ended (other than gracefully).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// Malformed bytes: a frame that breaks a header rule.
    #[error("malformed frame: {0}")]
    Malformed(#[from] FrameError),
    /// A control payload failed verification.
    #[error("malformed control payload: {0}")]
    Control(ControlError),
    /// The peer broke a protocol rule.
    #[error("protocol violation: {0}")]
    Violation(#[from] Violation),
    /// The peer exceeded one of our limits.
    #[error("limit {limit} exceeded: {value} > {max}")]
    LimitExceeded {
        /// The limit's field name in `Limits`.
        limit: &'static str,
        /// The value seen.
        value: u64,
        /// The limit.
        max: u64,
    },
    /// The peer sent beyond its connection credit or overflowed a window.
    #[error("flow control: {window}")]
    FlowControl {
        /// Which window.
        window: &'static str,
    },
    /// The peer spent a budget.
    #[error("budget for {0} exhausted")]
    Budget(&'static str),
    /// A timer expired: handshake, partial frame, keepalive or drain.
    #[error("{0} timeout")]
    Timeout(&'static str),
    /// The handshake was refused.
    #[error("handshake refused by {side:?} endpoint with {code}")]
    Refused {
        /// The refusal code.
        code: ErrorCode,
        /// Who refused.
        side: Side,
        /// The reason given.
        message: Option<String>,
    },
    /// The peer closed the connection with an error GOAWAY.
    #[error("peer closed the connection with {code}")]
    Remote {
        /// The peer's code.
        code: ErrorCode,
        /// The peer's reason.
        message: Option<String>,
    },
    /// We closed the connection with an error code.
    #[error("closed locally with {code}")]
    Local {
        /// Our code.
        code: ErrorCode,
        /// Our reason.
        message: Option<String>,
    },
    /// The transport ended before the connection was done.
    #[error("connection lost")]
    ConnectionLost,
}

impl ConnectionError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Malformed(e) => e.code(),
            Self::Control(_) | Self::Violation(_) => ErrorCode::PROTOCOL_VIOLATION,
            Self::LimitExceeded { limit, .. } => match *limit {
                "max_message" | "max_fragments" | "max_frame" => ErrorCode::TOO_LARGE,
                _ => ErrorCode::EXCESSIVE_LOAD,
            },
            Self::FlowControl { .. } => ErrorCode::FLOW_CONTROL,
            Self::Budget(_) => ErrorCode::EXCESSIVE_LOAD,
            Self::Timeout(_) => ErrorCode::TIMEOUT,
            Self::Refused { code, .. } | Self::Remote { code, .. } | Self::Local { code, .. } => *code,
            Self::ConnectionLost => ErrorCode::UNAVAILABLE,
        }
    }

    /// A short static reason for the GOAWAY we send.
    pub(super) fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed frame",
            Self::Control(_) => "malformed control payload",
            Self::Violation(_) => "protocol violation",
            Self::LimitExceeded { limit, .. } => limit,
            Self::FlowControl { window } => window,
            Self::Budget(what) => what,
            Self::Timeout(what) => what,
            Self::Refused { .. } | Self::Remote { .. } | Self::Local { .. } | Self::ConnectionLost => "closed",
        }
    }
}

/// A command the application should not have given (never caused by network
/// input).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The command does not fit the connection's state.
    #[error("invalid state: {0}")]
    InvalidState(&'static str),
    /// An argument is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// No live call or stream has this id (or it is not ours to act on).
    #[error("no call with id {0}")]
    UnknownCall(CallId),
}

/// Why a `send_*` or `open_*` command did not queue anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// Out of credit, call slots or send queue; retry after
    /// [`super::Event::Writable`]. Nothing changed.
    #[error("blocked: retry after a Writable event")]
    Blocked,
    /// The message exceeds the peer's limit.
    #[error("message of {len} bytes exceeds the peer's limit {max}")]
    TooLarge {
        /// Message size.
        len: u64,
        /// The peer's limit.
        max: u32,
    },
    /// A shutdown is under way: no new calls.
    #[error("the connection is shutting down")]
    Closing,
    /// The connection is closed.
    #[error("the connection is closed")]
    Closed,
    /// The id space is used up; open a new connection.
    #[error("call ids exhausted")]
    IdsExhausted,
    /// No live call or stream has this id.
    #[error("no call with id {0}")]
    UnknownCall(CallId),
    /// Misuse.
    #[error(transparent)]
    Api(ApiError),
}

impl From<ApiError> for SendError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}
