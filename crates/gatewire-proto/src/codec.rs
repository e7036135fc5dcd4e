//! Whole frames: encoding into caller-owned buffers and incremental decoding
//! from a byte stream.
//!
//! [`FrameDecoder::decode`] follows the tokio-util decoder contract:
//! `Ok(Some(frame))` when a frame is complete, `Ok(None)` when more bytes are
//! needed (nothing is consumed), `Err` when the stream is unusable. After an
//! error the decoder returns the same error forever: a framing error is fatal
//! and nothing after it is delivered.

use bytes::{Buf, Bytes, BytesMut};

use crate::frame::{FrameError, HEADER_LEN, Header, InsufficientSize};

/// At most this many bytes are reserved ahead of what has arrived, so memory
/// follows the bytes received rather than the length a peer declared.
pub const RESERVE_STEP: usize = 64 * 1024;

/// A frame: its header and a payload that is a zero-copy slice of the
/// receive buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The header; `header.length` equals `payload.len()`.
    pub header: Header,
    /// The payload bytes.
    pub payload: Bytes,
}

impl Frame {
    /// A frame with `header.length` set from the payload.
    ///
    /// # Panics
    ///
    /// When the payload is longer than `u32::MAX` bytes; callers keep
    /// payloads within the negotiated frame limit.
    #[inline]
    pub fn new(mut header: Header, payload: Bytes) -> Self {
        header.length = u32::try_from(payload.len()).expect("frame payload longer than u32::MAX");
        Self { header, payload }
    }

    /// Bytes this frame occupies on a byte stream.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Writes header and payload into `buf` and returns the bytes written.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, InsufficientSize> {
        let required = self.encoded_len();
        let Some(out) = buf.get_mut(..required) else {
            return Err(InsufficientSize { required, available: buf.len() });
        };
        out[..HEADER_LEN].copy_from_slice(&self.header.to_bytes());
        out[HEADER_LEN..].copy_from_slice(&self.payload);
        Ok(required)
    }

    /// Appends header and payload to `buf`.
    #[inline]
    pub fn encode_to(&self, buf: &mut impl bytes::BufMut) {
        buf.put_slice(&self.header.to_bytes());
        buf.put_slice(&self.payload);
    }

    /// Appends header and payload to `buf`, reserving once: the fast path
    /// for a write buffer.
    #[inline]
    pub fn encode_into(&self, buf: &mut BytesMut) {
        buf.reserve(self.encoded_len());
        buf.extend_from_slice(&self.header.to_bytes());
        buf.extend_from_slice(&self.payload);
    }

    /// Decodes exactly one frame from a message-preserving transport (one
    /// WebSocket binary message): trailing or missing bytes are an error.
    pub fn decode_exact(mut message: Bytes, max_payload: u32) -> Result<Self, FrameError> {
        let Some(header) = Header::decode(&message, max_payload)? else {
            return Err(FrameError::Truncated { have: message.len() as u64, need: HEADER_LEN as u64 });
        };
        let need = HEADER_LEN as u64 + u64::from(header.length);
        if message.len() as u64 != need {
            return Err(FrameError::Truncated { have: message.len() as u64, need });
        }
        let payload = message.split_off(HEADER_LEN);
        Ok(Self { header, payload })
    }
}

#[derive(Clone, Copy, Debug)]
enum State {
    Head,
    Body(Header),
    Failed(FrameError),
}

/// Incremental frame decoder for byte-stream transports.
#[derive(Clone, Debug)]
pub struct FrameDecoder {
    max_payload: u32,
    state: State,
}

impl FrameDecoder {
    /// A decoder that rejects payloads longer than `max_payload` bytes.
    pub const fn new(max_payload: u32) -> Self {
        Self { max_payload, state: State::Head }
    }

    /// The payload limit in force.
    pub const fn max_payload(&self) -> u32 {
        self.max_payload
    }

    /// Changes the payload limit for frames whose header has not been read.
    pub fn set_max_payload(&mut self, max_payload: u32) {
        self.max_payload = max_payload;
    }

    /// Whether a frame has started but not completed (bytes are buffered, or
    /// a header has been read).
    pub fn is_mid_frame(&self, buf: &BytesMut) -> bool {
        matches!(self.state, State::Body(_)) || !buf.is_empty()
    }

    /// Decodes the next frame from the front of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        loop {
            match self.state {
                State::Failed(e) => return Err(e),
                State::Head => match Header::decode(buf, self.max_payload) {
                    Ok(None) => {
                        buf.reserve(HEADER_LEN - buf.len());
                        return Ok(None);
                    }
                    Ok(Some(header)) => {
                        buf.advance(HEADER_LEN);
                        // Make room for the body in the existing allocation
                        // if that needs no new memory, so a large frame is
                        // not moved again as it arrives.
                        let _ = buf.try_reclaim(header.length as usize);
                        self.state = State::Body(header);
                    }
                    Err(e) => {
                        self.state = State::Failed(e);
                        return Err(e);
                    }
                },
                State::Body(header) => {
                    let len = header.length as usize;
                    if buf.len() < len {
                        let missing = len - buf.len();
                        buf.reserve(missing.min(RESERVE_STEP));
                        return Ok(None);
                    }
                    self.state = State::Head;
                    let payload = buf.split_to(len).freeze();
                    return Ok(Some(Frame { header, payload }));
                }
            }
        }
    }

    /// At end of stream: `Ok(())` when no partial frame is left,
    /// [`FrameError::Truncated`] otherwise.
    pub fn decode_eof(&mut self, buf: &BytesMut) -> Result<(), FrameError> {
        match self.state {
            State::Failed(e) => Err(e),
            State::Head if buf.is_empty() => Ok(()),
            State::Head => Err(FrameError::Truncated { have: buf.len() as u64, need: HEADER_LEN as u64 }),
            State::Body(h) => Err(FrameError::Truncated {
                have: (HEADER_LEN + buf.len()) as u64,
                need: HEADER_LEN as u64 + u64::from(h.length),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Codec, Flags, FrameType};

    fn sample() -> Frame {
        let mut h = Header::new(FrameType::RESPONSE, 3, 0, 0);
        h.codec = Codec::FLATBUFFERS;
        Frame::new(h, Bytes::from_static(b"hello"))
    }

    #[test]
    fn encode_reports_required_size() {
        let f = sample();
        let mut small = [0u8; 20];
        assert_eq!(f.encode(&mut small), Err(InsufficientSize { required: 21, available: 20 }));
        let mut buf = [0u8; 32];
        assert_eq!(f.encode(&mut buf), Ok(21));
    }

    #[test]
    fn decode_whole_and_byte_by_byte() {
        let f = sample();
        let mut wire = Vec::new();
        f.encode_to(&mut wire);
        f.encode_to(&mut wire);

        let mut dec = FrameDecoder::new(1024);
        let mut buf = BytesMut::from(&wire[..]);
        assert_eq!(dec.decode(&mut buf).unwrap(), Some(f.clone()));
        assert_eq!(dec.decode(&mut buf).unwrap(), Some(f.clone()));
        assert_eq!(dec.decode(&mut buf).unwrap(), None);

        let mut dec = FrameDecoder::new(1024);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in &wire {
            buf.extend_from_slice(&[*b]);
            while let Some(frame) = dec.decode(&mut buf).unwrap() {
                out.push(frame);
            }
        }
        assert_eq!(out, vec![f.clone(), f]);
        assert!(dec.decode_eof(&buf).is_ok());
    }

    #[test]
    fn error_is_sticky() {
        let mut wire = Header::new(FrameType(0x20), 0, 0, 0).to_bytes().to_vec();
        wire.extend_from_slice(&sample().header.to_bytes());
        let mut dec = FrameDecoder::new(1024);
        let mut buf = BytesMut::from(&wire[..]);
        let e = dec.decode(&mut buf).unwrap_err();
        assert_eq!(e, FrameError::UnknownType(0x20));
        assert_eq!(dec.decode(&mut buf), Err(e));
    }

    #[test]
    fn declared_length_is_not_reserved() {
        let header = Header::new(FrameType::RESPONSE, 1, 0, 1 << 20).to_bytes();
        let mut dec = FrameDecoder::new(1 << 20);
        let mut buf = BytesMut::from(&header[..]);
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        assert!(buf.capacity() <= HEADER_LEN + RESERVE_STEP, "capacity {}", buf.capacity());
    }

    #[test]
    fn eof_mid_frame_is_truncation() {
        let mut wire = Vec::new();
        sample().encode_to(&mut wire);
        for cut in 1..wire.len() {
            let mut dec = FrameDecoder::new(1024);
            let mut buf = BytesMut::from(&wire[..cut]);
            assert_eq!(dec.decode(&mut buf).unwrap(), None);
            assert!(matches!(dec.decode_eof(&buf), Err(FrameError::Truncated { .. })), "cut {cut}");
        }
    }

    #[test]
    fn exact_message_decoding() {
        let mut wire = Vec::new();
        sample().encode_to(&mut wire);
        assert_eq!(Frame::decode_exact(Bytes::from(wire.clone()), 1024).unwrap(), sample());
        wire.push(0);
        assert!(matches!(Frame::decode_exact(Bytes::from(wire), 1024), Err(FrameError::Truncated { .. })));
        let _ = Flags::NONE;
    }
}

#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;
    use crate::frame::{Codec, Flags, FrameType};

    /// Frames that pass the header rules, of every defined type.
    fn frame() -> impl Strategy<Value = Frame> {
        (1u8..=0x0E, any::<u8>(), any::<u32>(), any::<u32>(), proptest::collection::vec(any::<u8>(), 0..300)).prop_map(
            |(ty, codec, id, arg, mut payload)| {
                let ty = FrameType(ty);
                let mut h = Header::new(ty, id.max(1), arg, 0);
                h.flags = Flags(ty.allowed_flags().0 & codec);
                if ty.is_message() {
                    h.codec = Codec(codec);
                }
                match ty {
                    FrameType::HELLO | FrameType::HELLO_ACK | FrameType::PING | FrameType::PONG => h.id = 0,
                    _ => {}
                }
                match ty {
                    FrameType::ERROR => h.arg = (h.arg & 0xFFFF).max(1),
                    FrameType::GOAWAY => h.arg &= 0xFFFF,
                    FrameType::CREDIT => h.arg = h.arg.max(1),
                    FrameType::REQUEST | FrameType::EVENT | FrameType::STREAM_OPEN => {}
                    _ => h.arg = 0,
                }
                match ty {
                    FrameType::PING | FrameType::PONG => payload.resize(8, 0),
                    FrameType::CREDIT | FrameType::CANCEL => payload.clear(),
                    FrameType::CONTINUATION if payload.is_empty() => payload.push(0),
                    _ => {}
                }
                Frame::new(h, Bytes::from(payload))
            },
        )
    }

    fn decode_chunked(wire: &[u8], cuts: &[usize]) -> Result<Vec<Frame>, FrameError> {
        let mut dec = FrameDecoder::new(1024);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut start = 0;
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        points.sort_unstable();
        points.push(wire.len());
        for end in points {
            buf.extend_from_slice(&wire[start..end.max(start)]);
            start = end.max(start);
            while let Some(f) = dec.decode(&mut buf)? {
                out.push(f);
            }
        }
        dec.decode_eof(&buf)?;
        Ok(out)
    }

    proptest! {
        #[test]
        fn round_trip_any_split(frames in proptest::collection::vec(frame(), 0..20), cuts in proptest::collection::vec(any::<usize>(), 0..30)) {
            let mut wire = Vec::new();
            for f in &frames {
                f.header.validate().unwrap();
                f.encode_to(&mut wire);
            }
            prop_assert_eq!(decode_chunked(&wire, &[]).unwrap(), frames.clone());
            prop_assert_eq!(decode_chunked(&wire, &cuts).unwrap(), frames.clone());
            let byte_by_byte: Vec<usize> = (0..wire.len()).collect();
            prop_assert_eq!(decode_chunked(&wire, &byte_by_byte).unwrap(), frames);
        }

        #[test]
        fn arbitrary_bytes_decode_the_same_however_split(wire in proptest::collection::vec(any::<u8>(), 0..400), cuts in proptest::collection::vec(any::<usize>(), 0..30)) {
            let whole = decode_chunked(&wire, &[]);
            let split = decode_chunked(&wire, &cuts);
            prop_assert_eq!(whole, split);
        }
    }
}
