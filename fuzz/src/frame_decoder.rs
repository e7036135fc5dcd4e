//! `frame_decoder`: [`FrameDecoder`], [`Frame::decode_exact`] and
//! [`Header::decode`] on arbitrary bytes.
//!
//! Input layout: byte 0 picks the payload limit from [`LIMITS`]; byte 1 gives
//! `k = byte % 16` chunk sizes that follow, one byte each (used in turn,
//! cycling; `k = 0` feeds one byte at a time). The rest is the byte stream.
//!
//! Invariants:
//! - decoding is independent of segmentation: the stream decoded whole and
//!   fed in chunks yields the same frames, the same error (or the same
//!   end-of-stream verdict), and errors are sticky;
//! - decoded frames re-encode (`encode_to`, `encode`) to exactly the bytes
//!   they came from, and respect the payload limit;
//! - `Header::decode` and `Frame::decode_exact` agree with the stream decoder;
//! - memory reserved follows the bytes received, not the length declared.

use bytes::{Bytes, BytesMut};
use gatewire_proto::codec::RESERVE_STEP;
use gatewire_proto::frame::MAX_FRAME_CEILING;
use gatewire_proto::{Frame, FrameDecoder, FrameError, HEADER_LEN, Header};

/// Payload limits byte 0 chooses from.
pub const LIMITS: [u32; 12] = [0, 1, 7, 8, 16, 64, 255, 1024, 65_535, 1 << 20, MAX_FRAME_CEILING, u32::MAX];

/// The end of a decode: the error that stopped it, or `decode_eof`'s verdict.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Failed(FrameError),
    Eof(Result<(), FrameError>),
}

/// Runs every check on one input.
pub fn run(data: &[u8]) {
    let Some((&limit_sel, rest)) = data.split_first() else { return };
    let Some((&k, rest)) = rest.split_first() else { return };
    let k = usize::from(k % 16).min(rest.len());
    let (cuts, stream) = rest.split_at(k);
    let max = LIMITS[usize::from(limit_sel) % LIMITS.len()];

    let (frames, end, consumed) = decode_whole(stream, max);
    let (chunked_frames, chunked_end) = decode_chunked(stream, cuts, max);
    assert_eq!(frames, chunked_frames, "frames depend on segmentation");
    assert_eq!(end, chunked_end, "final result depends on segmentation");

    // Re-encoding reproduces the consumed bytes exactly.
    let mut wire = Vec::with_capacity(consumed);
    for f in &frames {
        check_frame(f, max);
        let before = wire.len();
        f.encode_to(&mut wire);
        assert_eq!(wire.len() - before, f.encoded_len());
        let mut exact = vec![0u8; f.encoded_len()];
        assert_eq!(f.encode(&mut exact), Ok(f.encoded_len()));
        assert_eq!(exact, wire[before..]);
        let mut short = vec![0u8; f.encoded_len() - 1];
        assert!(f.encode(&mut short).is_err(), "encode into a short buffer succeeded");
    }
    assert_eq!(wire, stream[..consumed], "frames do not re-encode to their bytes");

    check_header(stream, max, frames.first(), &end);
    check_exact(stream, max, &frames, &end, consumed);
}

/// Decodes `stream` handed over in one piece.
fn decode_whole(stream: &[u8], max: u32) -> (Vec<Frame>, End, usize) {
    let mut dec = FrameDecoder::new(max);
    let mut buf = BytesMut::from(stream);
    let mut frames = Vec::new();
    loop {
        match dec.decode(&mut buf) {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => {
                check_reserve(&buf);
                let consumed: usize = frames.iter().map(Frame::encoded_len).sum();
                // Mid-body, the header is read and no longer in `buf`.
                let header_read = dec.is_mid_frame(&BytesMut::new());
                let pending = if header_read { HEADER_LEN } else { 0 } + buf.len();
                assert_eq!(consumed + pending, stream.len(), "bytes lost or duplicated");
                let eof = dec.decode_eof(&buf);
                match eof {
                    Err(FrameError::Truncated { have, need }) => {
                        assert!(have < need, "truncation with {have} of {need} bytes");
                        assert_eq!(have, pending as u64, "truncation reports {have} bytes");
                    }
                    Ok(()) => assert_eq!(pending, 0, "end of stream accepted mid-frame"),
                    Err(e) => panic!("decode_eof: unexpected {e}"),
                }
                // Nothing consumed by `Ok(None)`: asking again changes nothing.
                let left = buf.len();
                assert_eq!(dec.decode(&mut buf), Ok(None));
                assert_eq!(buf.len(), left);
                return (frames, End::Eof(eof), consumed);
            }
            Err(e) => {
                // Sticky: the same error again, from decode and decode_eof.
                assert_eq!(dec.decode(&mut buf), Err(e));
                assert_eq!(dec.decode_eof(&buf), Err(e));
                let consumed = frames.iter().map(Frame::encoded_len).sum();
                return (frames, End::Failed(e), consumed);
            }
        }
    }
}

/// Decodes `stream` handed over in chunks whose sizes cycle through `cuts`.
fn decode_chunked(stream: &[u8], cuts: &[u8], max: u32) -> (Vec<Frame>, End) {
    let mut dec = FrameDecoder::new(max);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    // A zero size hands the decoder no new bytes; sizes that are all zero
    // would never finish, so they mean one byte at a time.
    let sizes: Vec<usize> =
        if cuts.iter().all(|&c| c == 0) { vec![1] } else { cuts.iter().map(|&c| usize::from(c)).collect() };
    let mut at = 0;
    for turn in 0.. {
        let end = (at + sizes[turn % sizes.len()]).min(stream.len());
        buf.extend_from_slice(&stream[at..end]);
        at = end;
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => {
                    check_reserve(&buf);
                    break;
                }
                Err(e) => {
                    assert_eq!(dec.decode(&mut buf), Err(e), "error is not sticky");
                    return (frames, End::Failed(e));
                }
            }
        }
        if at == stream.len() {
            break;
        }
    }
    (frames, End::Eof(dec.decode_eof(&buf)))
}

/// Memory the buffer holds stays within a small factor of what arrived plus
/// one reserve step, whatever length a header declared.
fn check_reserve(buf: &BytesMut) {
    let bound = 2 * (buf.len() + HEADER_LEN + RESERVE_STEP) + 2 * RESERVE_STEP;
    assert!(buf.capacity() <= bound, "capacity {} for {} buffered bytes", buf.capacity(), buf.len());
}

fn check_frame(f: &Frame, max: u32) {
    assert_eq!(f.header.length as usize, f.payload.len(), "length field disagrees with payload");
    assert!(f.header.length <= max.min(MAX_FRAME_CEILING), "frame above the limit");
    assert_eq!(f.header.validate(), Ok(()), "decoded frame fails validation");
}

/// `Header::decode` on the input agrees with the stream decoder.
fn check_header(stream: &[u8], max: u32, first: Option<&Frame>, end: &End) {
    let decoded = Header::decode(stream, max);
    match (&decoded, first, end) {
        (Ok(None), None, _) => assert!(stream.len() < HEADER_LEN),
        (Ok(Some(h)), Some(f), _) => assert_eq!(*h, f.header),
        (Ok(Some(h)), None, End::Eof(_)) => {
            // A valid header whose payload has not all arrived.
            assert!(stream.len() < HEADER_LEN + h.length as usize);
        }
        (Err(e), None, End::Failed(e2)) => assert_eq!(e, e2),
        other => panic!("Header::decode disagrees with FrameDecoder: {other:?}"),
    }
    if let Ok(Some(h)) = decoded {
        assert_eq!(h.to_bytes(), stream[..HEADER_LEN], "header does not re-encode to its bytes");
        let mut out = [0u8; HEADER_LEN];
        assert_eq!(h.encode(&mut out), Ok(()));
        assert_eq!(out, h.to_bytes());
        assert!(h.encode(&mut out[..HEADER_LEN - 1]).is_err());
        assert_eq!(h.validate(), Ok(()));
        assert!(h.length <= max.min(MAX_FRAME_CEILING));
    }
    if stream.len() < HEADER_LEN {
        assert_eq!(decoded, Ok(None), "a short header is not `need more`");
    }
}

/// `Frame::decode_exact` on the whole input (one message of a
/// message-preserving transport) agrees with the stream decoder.
fn check_exact(stream: &[u8], max: u32, frames: &[Frame], end: &End, consumed: usize) {
    let exact = Frame::decode_exact(Bytes::copy_from_slice(stream), max);
    let single = frames.len() == 1 && consumed == stream.len();
    match &exact {
        Ok(f) => {
            assert!(single, "decode_exact accepted what the stream decoder split differently");
            assert_eq!(*f, frames[0]);
            let mut wire = Vec::new();
            f.encode_to(&mut wire);
            assert_eq!(wire, stream);
        }
        Err(FrameError::Truncated { have, need }) => {
            assert!(!single, "decode_exact rejected a single whole frame");
            assert_eq!(*have, stream.len() as u64);
            assert_ne!(have, need);
        }
        Err(e) => {
            // A header error: the stream decoder fails with it on frame one.
            assert!(frames.is_empty(), "decode_exact: {e} after a good first frame");
            assert_eq!(*end, End::Failed(*e));
        }
    }
}
