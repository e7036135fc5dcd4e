//! Frame header: layout, types, flags and the rules that need no connection
//! state.
//!
//! Every frame is a fixed 16-byte little-endian header followed by `length`
//! payload bytes (`docs/PROTOCOL.md` §3):
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +---------------------------------------------------------------+
//! |                   payload length (u32 LE)                     |  0
//! +---------------+---------------+---------------+---------------+
//! |     type      |     flags     |     codec     |  reserved (0) |  4
//! +---------------+---------------+---------------+---------------+
//! |                        id (u32 LE)                            |  8
//! +---------------------------------------------------------------+
//! |                        arg (u32 LE)                           | 12
//! +---------------------------------------------------------------+
//! |                   payload (length bytes) ...
//! ```
//!
//! [`Header::decode`] checks everything that can be checked from the header
//! alone — the length against the caller's limit first, before a byte of
//! payload is buffered — so a decoder never reserves memory for a frame it
//! will reject.

use core::fmt;

use crate::code::ErrorCode;

/// Size of the fixed frame header in bytes.
pub const HEADER_LEN: usize = 16;

/// Hard ceiling on a frame payload, whatever the configured limit:
/// 16 MiB − 1.
pub const MAX_FRAME_CEILING: u32 = (1 << 24) - 1;

/// Payload length of PING and PONG frames.
pub const PING_PAYLOAD_LEN: usize = 8;

/// A frame type byte (`docs/PROTOCOL.md` §3.2).
///
/// Types `0x80..=0xFF` are extensions: a receiver that does not know one
/// ignores the frame (and charges it to a budget). Any other unknown type is a
/// protocol violation.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FrameType(pub u8);

macro_rules! frame_types {
    ($($(#[$doc:meta])* $name:ident = $value:expr;)*) => {
        impl FrameType {
            $($(#[$doc])* pub const $name: Self = Self($value);)*

            /// The type's name, or `None` when this version does not define it.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

frame_types! {
    /// Opens the connection (client → server). Payload: `Hello` table.
    HELLO = 0x01;
    /// Accepts or refuses the connection (server → client). Payload:
    /// `HelloAck` table.
    HELLO_ACK = 0x02;
    /// Opens a unary call. `id`: new call id; `arg`: method id.
    REQUEST = 0x03;
    /// Completes a unary call. `id`: the call.
    RESPONSE = 0x04;
    /// Ends a call or stream with an error. `id`: the call; `arg`: error code.
    ERROR = 0x05;
    /// A one-way message. `id`: new id; `arg`: method id.
    EVENT = 0x06;
    /// Opens a stream. `id`: new stream id; `arg`: method id.
    STREAM_OPEN = 0x07;
    /// A message on an open stream. `id`: the stream.
    STREAM_DATA = 0x08;
    /// Grants credit. `id`: 0 for the connection or a stream; `arg`: bytes.
    CREDIT = 0x09;
    /// The caller abandons a call or stream. `id`: the call.
    CANCEL = 0x0A;
    /// Liveness probe; payload: 8 opaque bytes.
    PING = 0x0B;
    /// Answer to PING; payload: the PING's 8 bytes.
    PONG = 0x0C;
    /// Stop opening calls. `id`: last peer-initiated id that may be
    /// processed; `arg`: error code. Payload: optional `GoAway` table.
    GOAWAY = 0x0D;
    /// Next fragment of a message. `id`: the message's call or stream.
    CONTINUATION = 0x0E;
}

impl FrameType {
    /// First type byte of the ignorable extension range.
    pub const EXTENSION_MIN: u8 = 0x80;

    /// Whether the type is in the ignorable extension range.
    pub const fn is_extension(self) -> bool {
        self.0 >= Self::EXTENSION_MIN
    }

    /// Whether frames of this type start a message that may span several
    /// frames and carries a payload codec.
    pub const fn is_message(self) -> bool {
        matches!(self.0, 0x03 | 0x04 | 0x06 | 0x07 | 0x08)
    }

    /// Whether a frame of this type opens a new id.
    pub const fn opens_id(self) -> bool {
        matches!(self.0, 0x03 | 0x06 | 0x07)
    }

    /// The flags a frame of this type may carry.
    pub const fn allowed_flags(self) -> Flags {
        match self.0 {
            0x03 => Flags(Flags::MORE.0 | Flags::COMPRESSED.0 | Flags::DEADLINE.0),
            0x04 | 0x06 => Flags(Flags::MORE.0 | Flags::COMPRESSED.0),
            0x07 => Flags(Flags::MORE.0 | Flags::COMPRESSED.0 | Flags::DEADLINE.0 | Flags::END.0),
            0x08 => Flags(Flags::MORE.0 | Flags::COMPRESSED.0 | Flags::END.0),
            0x0E => Flags::MORE,
            0x80..=0xFF => Flags(0xFF),
            _ => Flags(0),
        }
    }
}

impl fmt::Debug for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "FrameType({:#04x})", self.0),
        }
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "frame type {:#04x}", self.0),
        }
    }
}

/// Frame flag bits (`docs/PROTOCOL.md` §3.3). Bits `0x10..=0x80` are reserved
/// and MUST be zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// More fragments of this message follow as CONTINUATION frames.
    pub const MORE: Self = Self(0x01);
    /// The message body is compressed; the first four payload bytes after any
    /// deadline give its decompressed size.
    pub const COMPRESSED: Self = Self(0x02);
    /// The sender's half of the stream ends with this message.
    pub const END: Self = Self(0x04);
    /// The first four payload bytes are a relative deadline in milliseconds.
    pub const DEADLINE: Self = Self(0x08);
    /// No flag.
    pub const NONE: Self = Self(0);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of both sets.
    #[must_use]
    pub const fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// `self` with the bits of `other` cleared.
    #[must_use]
    pub const fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flags({:#04x})", self.0)
    }
}

/// The payload codec tag of a message (`docs/PROTOCOL.md` §5.3). Unknown
/// values are preserved for the application to judge.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Codec(pub u8);

impl Codec {
    /// Opaque bytes.
    pub const RAW: Self = Self(0);
    /// A FlatBuffers buffer.
    pub const FLATBUFFERS: Self = Self(1);
    /// postcard (serde), for Rust ↔ Rust messages.
    pub const POSTCARD: Self = Self(2);
    /// UTF-8 JSON.
    pub const JSON: Self = Self(3);
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("RAW"),
            1 => f.write_str("FLATBUFFERS"),
            2 => f.write_str("POSTCARD"),
            3 => f.write_str("JSON"),
            other => write!(f, "Codec({other})"),
        }
    }
}

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// Payload length in bytes, not counting the header.
    pub length: u32,
    /// Frame type.
    pub ty: FrameType,
    /// Flag bits.
    pub flags: Flags,
    /// Payload codec (message frames only; zero elsewhere).
    pub codec: Codec,
    /// Call or stream id; 0 for connection-level frames.
    pub id: u32,
    /// Type-specific argument: method id, error code or credit.
    pub arg: u32,
}

/// A frame that breaks a rule visible in the header alone. Every variant is
/// fatal to the connection (`docs/PROTOCOL.md` §3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The payload length exceeds the receiver's limit.
    #[error("frame length {len} exceeds limit {max}")]
    TooLarge {
        /// Declared payload length.
        len: u32,
        /// The limit in force.
        max: u32,
    },
    /// The reserved header byte is not zero.
    #[error("reserved header byte is {0:#04x}, must be zero")]
    ReservedByte(u8),
    /// A type outside the defined and extension ranges.
    #[error("unknown frame type {0:#04x}")]
    UnknownType(u8),
    /// A flag bit that the frame type does not allow.
    #[error("flags {flags:#04x} not allowed on {ty}")]
    InvalidFlags {
        /// Frame type.
        ty: FrameType,
        /// Offending flags byte.
        flags: u8,
    },
    /// A codec byte on a frame that carries no message.
    #[error("codec {codec} not allowed on {ty}")]
    UnexpectedCodec {
        /// Frame type.
        ty: FrameType,
        /// Offending codec byte.
        codec: u8,
    },
    /// The id is zero where a call is required, or non-zero on a
    /// connection-level frame.
    #[error("id {id} not allowed on {ty}")]
    InvalidId {
        /// Frame type.
        ty: FrameType,
        /// Offending id.
        id: u32,
    },
    /// A non-zero `arg` where the type defines none, a zero credit, an ERROR
    /// with code `NO_ERROR`, or an error code above `u16::MAX`.
    #[error("arg {arg} not allowed on {ty}")]
    InvalidArg {
        /// Frame type.
        ty: FrameType,
        /// Offending arg.
        arg: u32,
    },
    /// The stream or message ended inside a frame.
    #[error("frame truncated: {have} of {need} bytes")]
    Truncated {
        /// Bytes present.
        have: u64,
        /// Bytes the frame needs.
        need: u64,
    },
    /// A payload length the frame type does not allow.
    #[error("payload of {len} bytes not allowed on {ty}")]
    InvalidLength {
        /// Frame type.
        ty: FrameType,
        /// Declared length.
        len: u32,
    },
}

impl FrameError {
    /// The wire code a GOAWAY reports for this error.
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::TooLarge { .. } => ErrorCode::TOO_LARGE,
            _ => ErrorCode::PROTOCOL_VIOLATION,
        }
    }
}

/// The caller's buffer is too small; `required` bytes are needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("buffer of {available} bytes is too small, {required} required")]
pub struct InsufficientSize {
    /// Bytes needed.
    pub required: usize,
    /// Bytes offered.
    pub available: usize,
}

impl Header {
    /// A header with no flags, codec 0 and the given fields.
    pub const fn new(ty: FrameType, id: u32, arg: u32, length: u32) -> Self {
        Self { length, ty, flags: Flags::NONE, codec: Codec::RAW, id, arg }
    }

    /// Writes the 16 header bytes into `buf`.
    pub fn encode(&self, buf: &mut [u8]) -> Result<(), InsufficientSize> {
        let Some(out) = buf.get_mut(..HEADER_LEN) else {
            return Err(InsufficientSize { required: HEADER_LEN, available: buf.len() });
        };
        out.copy_from_slice(&self.to_bytes());
        Ok(())
    }

    /// The 16 header bytes.
    #[inline]
    pub const fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let l = self.length.to_le_bytes();
        let i = self.id.to_le_bytes();
        let a = self.arg.to_le_bytes();
        [
            l[0],
            l[1],
            l[2],
            l[3],
            self.ty.0,
            self.flags.0,
            self.codec.0,
            0,
            i[0],
            i[1],
            i[2],
            i[3],
            a[0],
            a[1],
            a[2],
            a[3],
        ]
    }

    /// Decodes and validates a header.
    ///
    /// Returns `Ok(None)` when fewer than 16 bytes are given. The length is
    /// checked against `max_payload` (clamped to [`MAX_FRAME_CEILING`]) before
    /// anything else, so a caller can reject a frame before buffering its
    /// payload.
    #[inline]
    pub fn decode(buf: &[u8], max_payload: u32) -> Result<Option<Self>, FrameError> {
        let Some(bytes) = buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let word = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let header = Self {
            length: word(0),
            ty: FrameType(bytes[4]),
            flags: Flags(bytes[5]),
            codec: Codec(bytes[6]),
            id: word(8),
            arg: word(12),
        };
        let max = if max_payload > MAX_FRAME_CEILING { MAX_FRAME_CEILING } else { max_payload };
        if header.length > max {
            return Err(FrameError::TooLarge { len: header.length, max });
        }
        if bytes[7] != 0 {
            return Err(FrameError::ReservedByte(bytes[7]));
        }
        header.validate()?;
        Ok(Some(header))
    }

    /// Checks the per-type rules of `docs/PROTOCOL.md` §3.4 (everything but
    /// the length limit and the reserved byte).
    #[inline]
    pub fn validate(&self) -> Result<(), FrameError> {
        let ty = self.ty;
        if ty.name().is_none() && !ty.is_extension() {
            return Err(FrameError::UnknownType(ty.0));
        }
        if ty.is_extension() {
            return Ok(());
        }
        let allowed = ty.allowed_flags();
        if self.flags.without(allowed).0 != 0 {
            return Err(FrameError::InvalidFlags { ty, flags: self.flags.0 });
        }
        if !ty.is_message() && self.codec != Codec::RAW {
            return Err(FrameError::UnexpectedCodec { ty, codec: self.codec.0 });
        }
        let connection_level =
            matches!(ty, FrameType::HELLO | FrameType::HELLO_ACK | FrameType::PING | FrameType::PONG);
        // CREDIT may name the connection (0) or a stream; GOAWAY names a last id.
        let any_id = matches!(ty, FrameType::CREDIT | FrameType::GOAWAY);
        if !any_id && connection_level != (self.id == 0) {
            return Err(FrameError::InvalidId { ty, id: self.id });
        }
        let arg_ok = match ty {
            FrameType::REQUEST | FrameType::EVENT | FrameType::STREAM_OPEN => true,
            FrameType::ERROR => self.arg != 0 && self.arg <= u32::from(u16::MAX),
            FrameType::GOAWAY => self.arg <= u32::from(u16::MAX),
            FrameType::CREDIT => self.arg != 0,
            _ => self.arg == 0,
        };
        if !arg_ok {
            return Err(FrameError::InvalidArg { ty, arg: self.arg });
        }
        let len_ok = match ty {
            FrameType::PING | FrameType::PONG => self.length as usize == PING_PAYLOAD_LEN,
            FrameType::CREDIT | FrameType::CANCEL => self.length == 0,
            FrameType::CONTINUATION => self.length != 0,
            _ => true,
        };
        if !len_ok {
            return Err(FrameError::InvalidLength { ty, len: self.length });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = Header {
            length: 0x0001_0304,
            ty: FrameType::REQUEST,
            flags: Flags::MORE.with(Flags::DEADLINE),
            codec: Codec::POSTCARD,
            id: 7,
            arg: 0xdead_beef,
        };
        let bytes = h.to_bytes();
        assert_eq!(&bytes[..4], &[4, 3, 1, 0]);
        assert_eq!(Header::decode(&bytes, u32::MAX), Ok(Some(h)));
    }

    #[test]
    fn short_input_needs_more() {
        let bytes = Header::new(FrameType::PING, 0, 0, 8).to_bytes();
        for n in 0..HEADER_LEN {
            assert_eq!(Header::decode(&bytes[..n], 1024), Ok(None));
        }
    }

    #[test]
    fn length_checked_before_anything_else() {
        let mut bytes = Header::new(FrameType(0x42), 0, 0, 1025).to_bytes();
        bytes[7] = 1;
        assert_eq!(Header::decode(&bytes, 1024), Err(FrameError::TooLarge { len: 1025, max: 1024 }));
    }

    #[test]
    fn ceiling_applies_over_configured_limit() {
        let bytes = Header::new(FrameType::RESPONSE, 1, 0, MAX_FRAME_CEILING + 1).to_bytes();
        assert_eq!(
            Header::decode(&bytes, u32::MAX),
            Err(FrameError::TooLarge { len: MAX_FRAME_CEILING + 1, max: MAX_FRAME_CEILING })
        );
    }

    #[test]
    fn every_type_byte_has_a_defined_outcome() {
        for b in 0..=255u8 {
            let ty = FrameType(b);
            let h = Header::new(ty, 0, 0, 0);
            let r = h.validate();
            if ty.is_extension() {
                assert_eq!(r, Ok(()));
            } else if ty.name().is_none() {
                assert_eq!(r, Err(FrameError::UnknownType(b)));
            }
        }
    }

    #[test]
    fn reserved_flag_bits_are_rejected_on_every_type() {
        for b in 1..=0x0Eu8 {
            let ty = FrameType(b);
            for bit in 4..8 {
                let mut h = Header::new(ty, 1, 0, 0);
                h.flags = Flags(1 << bit);
                assert_eq!(h.validate(), Err(FrameError::InvalidFlags { ty, flags: 1 << bit }));
            }
        }
    }
}
