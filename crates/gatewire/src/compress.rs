//! zstd per-message compression, with the output bounded by the declared
//! size (itself bounded by the message limit in the core).

use bytes::Bytes;
use gatewire_proto::{ErrorCode, Message};

use crate::error::Status;

/// Largest zstd window a decoder accepts: 2^23 bytes (8 MiB).
pub(crate) const WINDOW_LOG_MAX: u32 = 23;

/// Compresses `body` if that makes it smaller.
pub(crate) fn compress(message: Message, level: i32) -> Message {
    let Ok(len) = u32::try_from(message.body.len()) else { return message };
    match zstd::bulk::compress(&message.body, level) {
        Ok(c) if c.len() < message.body.len() => Message::compressed(message.codec, c, len),
        _ => message,
    }
}

/// The magic number that starts every (non-skippable) zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Decompresses a message whose body is compressed, producing exactly the
/// declared number of bytes or an error (`docs/PROTOCOL.md` §5.4): the body
/// must be exactly one zstd frame (no skippable frame, nothing after it),
/// with no dictionary and a window of at most 2^[`WINDOW_LOG_MAX`] bytes.
/// The output grows with what the frame actually produces and stops one
/// byte past the declared size (itself checked against the message limit);
/// nothing is allocated from a declared size.
pub(crate) fn decompress(message: Message) -> Result<Message, Status> {
    use std::io::Read;

    let Some(declared) = message.uncompressed_len else { return Ok(message) };
    let bad = |what: &str| Status::new(ErrorCode::PROTOCOL_VIOLATION, format!("compressed message: {what}"));
    let body = &message.body[..];
    if !body.starts_with(&ZSTD_MAGIC) {
        return Err(bad("not a zstd frame"));
    }
    // The streaming decoder enforces the window limit (the one-shot decoder
    // does not), and a frame that names a dictionary fails without one.
    let mut d = zstd::stream::read::Decoder::with_buffer(body).map_err(|_| bad("decoder unavailable"))?.single_frame();
    d.window_log_max(WINDOW_LOG_MAX).map_err(|_| bad("decoder setup"))?;
    let mut out = Vec::new();
    (&mut d).take(u64::from(declared) + 1).read_to_end(&mut out).map_err(|_| bad("invalid zstd frame"))?;
    if out.len() != declared as usize {
        return Err(bad(if out.len() > declared as usize { "larger than declared" } else { "shorter than declared" }));
    }
    if !d.finish().is_empty() {
        return Err(bad("data after the zstd frame"));
    }
    Ok(Message { codec: message.codec, body: Bytes::from(out), uncompressed_len: None })
}

#[cfg(test)]
mod tests {
    use gatewire_proto::Codec;

    use super::*;

    #[test]
    fn round_trip() {
        let m = Message::new(Codec::RAW, vec![7u8; 10_000]);
        let c = compress(m.clone(), 1);
        assert!(c.uncompressed_len == Some(10_000) && c.body.len() < 100);
        assert_eq!(decompress(c).unwrap(), m);
    }

    #[test]
    fn lies_about_the_size_are_rejected() {
        let c = compress(Message::new(Codec::RAW, vec![0u8; 10_000]), 1);
        let smaller = Message { uncompressed_len: Some(9_999), ..c.clone() };
        assert!(decompress(smaller).is_err());
        let larger = Message { uncompressed_len: Some(10_001), ..c.clone() };
        assert!(decompress(larger).is_err());
        let mut junk = c.body.to_vec();
        junk.extend_from_slice(b"trailing");
        assert!(decompress(Message { body: junk.into(), ..c }).is_err());
    }

    #[test]
    fn a_bomb_stops_at_the_declared_size() {
        // 64 MiB of zeros compresses to a few KiB; declaring 1 MiB must fail
        // without producing more than 1 MiB.
        let bomb = zstd::bulk::compress(&vec![0u8; 64 << 20], 3).unwrap();
        let m = Message::compressed(Codec::RAW, bomb, 1 << 20);
        assert!(decompress(m).is_err());
    }
}
