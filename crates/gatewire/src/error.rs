//! The public error type.

use std::fmt;
use std::io;

use gatewire_proto::ErrorCode;
use gatewire_proto::connection::{ConnectionError, SendError};

/// An error from a call, a stream or the connection.
///
/// The type is opaque: ask it questions ([`Error::code`], [`Error::is_timeout`],
/// [`Error::is_closed`], [`Error::is_remote`], [`Error::is_retryable`]...).
/// Its `Display` text is meant for people and may change.
#[derive(Clone)]
pub struct Error {
    kind: Kind,
    code: ErrorCode,
    message: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The peer answered with an error code.
    Remote,
    /// The call's deadline passed.
    Deadline,
    /// The connection ended (or was never established).
    Closed,
    /// The peer refused the call unprocessed (GOAWAY or concurrency limit).
    Refused,
    /// A local limit or check (message too large...).
    Local,
    /// Transport I/O.
    Io,
    /// Configuration or endpoint problem.
    Config,
}

impl Error {
    pub(crate) fn remote(code: ErrorCode, message: Option<String>) -> Self {
        let kind = if code == ErrorCode::REFUSED { Kind::Refused } else { Kind::Remote };
        Self { kind, code, message }
    }

    /// A call that never left because the connection ended first: safe to
    /// retry on another connection.
    pub(crate) fn unsent(closed: &Self) -> Self {
        let message = format!("not sent: {}", closed.message.as_deref().unwrap_or("connection closed"));
        Self { kind: Kind::Refused, code: ErrorCode::UNAVAILABLE, message: Some(message) }
    }

    pub(crate) fn deadline() -> Self {
        Self { kind: Kind::Deadline, code: ErrorCode::DEADLINE_EXCEEDED, message: None }
    }

    pub(crate) fn closed(code: ErrorCode, message: Option<String>) -> Self {
        Self { kind: Kind::Closed, code, message }
    }

    pub(crate) fn local(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { kind: Kind::Local, code, message: Some(message.into()) }
    }

    pub(crate) fn io(e: &io::Error) -> Self {
        Self { kind: Kind::Io, code: ErrorCode::UNAVAILABLE, message: Some(e.to_string()) }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self { kind: Kind::Config, code: ErrorCode::INTERNAL, message: Some(message.into()) }
    }

    pub(crate) fn from_connection(e: &ConnectionError) -> Self {
        // A refusal or an error GOAWAY carries the peer's reason: keep it.
        let message = match e {
            ConnectionError::Refused { message: Some(m), .. } | ConnectionError::Remote { message: Some(m), .. } => {
                format!("{e}: {m}")
            }
            _ => e.to_string(),
        };
        Self::closed(e.code(), Some(message))
    }

    pub(crate) fn from_send(e: SendError) -> Self {
        match e {
            SendError::TooLarge { len, max } => {
                Self::local(ErrorCode::TOO_LARGE, format!("message of {len} bytes exceeds the peer's limit {max}"))
            }
            SendError::Closing => {
                Self { kind: Kind::Refused, code: ErrorCode::UNAVAILABLE, message: Some(e.to_string()) }
            }
            SendError::Closed => Self::closed(ErrorCode::UNAVAILABLE, Some(e.to_string())),
            SendError::IdsExhausted => {
                Self { kind: Kind::Refused, code: ErrorCode::UNAVAILABLE, message: Some(e.to_string()) }
            }
            other => Self::local(ErrorCode::INTERNAL, other.to_string()),
        }
    }

    /// The wire code: the peer's code for a remote error, or the code that
    /// describes a local condition (`DEADLINE_EXCEEDED`, `UNAVAILABLE`...).
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// Human-readable detail, when there is any.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The call's deadline passed (here or at the peer).
    pub fn is_timeout(&self) -> bool {
        self.kind == Kind::Deadline || self.code == ErrorCode::DEADLINE_EXCEEDED || self.code == ErrorCode::TIMEOUT
    }

    /// The connection is gone; nothing more will succeed on it.
    pub fn is_closed(&self) -> bool {
        matches!(self.kind, Kind::Closed | Kind::Io)
    }

    /// The peer sent this error.
    pub fn is_remote(&self) -> bool {
        self.kind == Kind::Remote
    }

    /// The call was not processed and may be retried (on a new connection
    /// if this one is closing).
    pub fn is_retryable(&self) -> bool {
        self.kind == Kind::Refused
    }

    /// The call was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.code == ErrorCode::CANCELLED
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("code", &self.code)
            .field("message", &self.message)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            Kind::Remote => "peer returned",
            Kind::Deadline => "deadline exceeded",
            Kind::Closed => "connection closed",
            Kind::Refused => "refused, safe to retry",
            Kind::Local => "rejected locally",
            Kind::Io => "transport error",
            Kind::Config => "configuration error",
        };
        write!(f, "{what}: {}", self.code)?;
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Self::io(&e)
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error a handler returns: the code and message sent to the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Code sent in the ERROR frame (not `NO_ERROR`).
    pub code: ErrorCode,
    /// Message sent to the caller.
    pub message: Option<String>,
}

impl Status {
    /// A status with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: Some(message.into()) }
    }

    /// `INVALID_ARGUMENT`: the request could not be decoded or is invalid.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::INVALID_ARGUMENT, message)
    }

    /// `INTERNAL`: the handler failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::INTERNAL, message)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Status {}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        Self { code: if e.code == ErrorCode::NO_ERROR { ErrorCode::INTERNAL } else { e.code }, message: e.message }
    }
}
