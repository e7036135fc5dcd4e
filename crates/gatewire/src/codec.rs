//! Payload codecs, and the frame codec for tokio-util's `Framed`.

use bytes::BytesMut;
use gatewire_proto::{Codec, ErrorCode, Frame, FrameDecoder, FrameError, Message};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::codec::{Decoder, Encoder};

use crate::error::Status;

/// Encodes `value` with postcard (typed Rust ↔ Rust messages).
pub fn to_postcard<T: Serialize + ?Sized>(value: &T) -> Result<Message, Status> {
    postcard::to_allocvec(value)
        .map(|v| Message::new(Codec::POSTCARD, v))
        .map_err(|e| Status::internal(format!("postcard encoding failed: {e}")))
}

/// Decodes a postcard message; a wrong codec tag or invalid bytes give
/// `INVALID_ARGUMENT`.
pub fn from_postcard<T: DeserializeOwned>(message: &Message) -> Result<T, Status> {
    if message.codec != Codec::POSTCARD {
        return Err(Status::invalid_argument(format!("expected a postcard message, got codec {:?}", message.codec)));
    }
    postcard::from_bytes(&message.body).map_err(|e| Status::invalid_argument(format!("invalid postcard message: {e}")))
}

/// gatewire frames for tokio-util's `Framed`, for users who want raw frames
/// on a byte stream.
#[derive(Debug)]
pub struct FrameCodec {
    decoder: FrameDecoder,
}

impl FrameCodec {
    /// A codec accepting payloads up to `max_payload` bytes.
    pub fn new(max_payload: u32) -> Self {
        Self { decoder: FrameDecoder::new(max_payload) }
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(gatewire_proto::Limits::default().max_frame)
    }
}

/// A framing error or an I/O error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameCodecError {
    /// The bytes are not a valid frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The transport failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl FrameCodecError {
    /// The wire code for a framing error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Frame(e) => e.code(),
            Self::Io(_) => ErrorCode::UNAVAILABLE,
        }
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameCodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameCodecError> {
        Ok(self.decoder.decode(src)?)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameCodecError> {
        if let Some(f) = self.decoder.decode(src)? {
            return Ok(Some(f));
        }
        self.decoder.decode_eof(src)?;
        Ok(None)
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = FrameCodecError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameCodecError> {
        frame.header.validate()?;
        dst.reserve(frame.encoded_len());
        frame.encode_to(dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use gatewire_proto::{FrameType, Header};

    use super::*;

    #[test]
    fn postcard_round_trip_and_wrong_codec() {
        let m = to_postcard(&(1u32, "chart".to_string())).unwrap();
        assert_eq!(from_postcard::<(u32, String)>(&m).unwrap(), (1, "chart".into()));
        let raw = Message::raw(&b"x"[..]);
        assert_eq!(from_postcard::<u32>(&raw).unwrap_err().code, ErrorCode::INVALID_ARGUMENT);
    }

    #[test]
    fn framed_codec_round_trip() {
        let mut c = FrameCodec::default();
        let f = Frame::new(Header::new(FrameType::PING, 0, 0, 0), bytes::Bytes::from_static(&[1; 8]));
        let mut buf = BytesMut::new();
        c.encode(f.clone(), &mut buf).unwrap();
        assert_eq!(c.decode(&mut buf).unwrap(), Some(f));
        buf.extend_from_slice(&[1, 0]);
        assert!(c.decode_eof(&mut buf).is_err());
    }
}
