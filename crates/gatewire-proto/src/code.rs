//! Wire error codes.

use core::fmt;

/// An error code as carried on the wire by ERROR, GOAWAY and a refusing
/// HELLO_ACK (`docs/PROTOCOL.md` §7).
///
/// The code space is open: a value without a name here is preserved as it is,
/// never replaced by a default. Codes `0x8000..=0xFFFF` belong to
/// applications.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ErrorCode(pub u16);

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $value:expr;)*) => {
        impl ErrorCode {
            $($(#[$doc])* pub const $name: Self = Self($value);)*

            /// The code's name, or `None` for a code this version does not know.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

codes! {
    /// No error: a graceful GOAWAY.
    NO_ERROR = 0x0000;
    /// The peer broke a rule of the protocol.
    PROTOCOL_VIOLATION = 0x0001;
    /// The peer sent more than its credit, or a grant overflowed a window.
    FLOW_CONTROL = 0x0002;
    /// A frame or message exceeded a size limit.
    TOO_LARGE = 0x0003;
    /// No handler is registered for the method id.
    UNKNOWN_METHOD = 0x0004;
    /// The call was not processed and is safe to retry.
    REFUSED = 0x0005;
    /// The caller cancelled the call.
    CANCELLED = 0x0006;
    /// The call's deadline passed before it completed.
    DEADLINE_EXCEEDED = 0x0007;
    /// The peer did not authenticate, or its credentials were rejected.
    UNAUTHENTICATED = 0x0008;
    /// The authenticated peer may not call this method.
    PERMISSION_DENIED = 0x0009;
    /// The handler failed.
    INTERNAL = 0x000A;
    /// The peer spent a budget (pings, cancels, resets, tiny frames...).
    EXCESSIVE_LOAD = 0x000B;
    /// No protocol version, feature or schema in common.
    INCOMPATIBLE = 0x000C;
    /// The connection saw no progress in time (handshake, keepalive, idle,
    /// partial frame, drain).
    TIMEOUT = 0x000D;
    /// The endpoint is shutting down or cannot serve now.
    UNAVAILABLE = 0x000E;
    /// A frame named a stream whose receiving half is closed.
    STREAM_CLOSED = 0x000F;
    /// The peer's payload could not be decoded by the application.
    INVALID_ARGUMENT = 0x0010;
}

impl ErrorCode {
    /// First code of the application-defined range.
    pub const APPLICATION_MIN: u16 = 0x8000;

    /// Whether the code is in the application-defined range.
    pub const fn is_application(self) -> bool {
        self.0 >= Self::APPLICATION_MIN
    }
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "ErrorCode({:#06x})", self.0),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({:#06x})", self.0),
            None => write!(f, "{:#06x}", self.0),
        }
    }
}

impl From<u16> for ErrorCode {
    fn from(value: u16) -> Self {
        Self(value)
    }
}

impl From<ErrorCode> for u16 {
    fn from(value: ErrorCode) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_codes_are_preserved() {
        let code = ErrorCode(0x1234);
        assert_eq!(code.name(), None);
        assert_eq!(u16::from(code), 0x1234);
        assert_eq!(format!("{code:?}"), "ErrorCode(0x1234)");
    }

    #[test]
    fn names() {
        assert_eq!(ErrorCode::REFUSED.name(), Some("REFUSED"));
        assert_eq!(ErrorCode(0x8001).name(), None);
        assert!(ErrorCode(0x8001).is_application());
        assert!(!ErrorCode::INTERNAL.is_application());
    }
}
