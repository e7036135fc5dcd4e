//! Runs every file in `tests/vectors/` against the Rust core, as the Python
//! and TypeScript packages do.

use bytes::BytesMut;
use gatewire_proto::{Frame, FrameDecoder};
use gatewire_vectors::interp::{Mode, run};
use gatewire_vectors::json::{decode_control, frame_error_json, raw_frame_json};
use gatewire_vectors::model::{ControlFile, ConversationFile, FrameFile};
use gatewire_vectors::vectors_dir;

fn load<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = vectors_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Decodes `bytes` fed in chunks of `chunk` bytes.
fn decode(bytes: &[u8], max: u32, chunk: usize) -> (Vec<Frame>, Option<gatewire_proto::FrameError>) {
    let mut dec = FrameDecoder::new(max);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    let err = dec.decode_eof(&buf).err();
    (frames, err)
}

#[test]
fn frames() {
    let file: FrameFile = load("frames.json");
    assert!(file.cases.len() > 300);
    for case in &file.cases {
        let bytes = hex::decode(&case.hex).unwrap();
        // Whole, byte by byte, and split at every offset in two.
        let mut splits = vec![bytes.len().max(1), 1];
        splits.extend(2..bytes.len().min(40));
        for chunk in splits {
            let (frames, err) = decode(&bytes, case.max_frame, chunk);
            let frames: Vec<_> = frames.iter().map(raw_frame_json).collect();
            assert_eq!(frames, case.frames, "{} (chunk {chunk})", case.name);
            assert_eq!(err.map(|e| frame_error_json(&e)), case.error, "{} (chunk {chunk})", case.name);
        }
    }
}

#[test]
fn control() {
    let file: ControlFile = load("control.json");
    for case in &file.cases {
        let bytes = hex::decode(&case.hex).unwrap();
        let value = decode_control(&case.table, &bytes).unwrap();
        assert_eq!(value.is_none(), case.invalid, "{}", case.name);
        assert_eq!(value, case.value, "{}", case.name);
    }
}

#[test]
fn conversations() {
    let mut file: ConversationFile = load("conversations.json");
    for conv in &mut file.conversations {
        if let Err(e) = run(conv, Mode::Verify) {
            panic!("conversation {}: {e}", conv.name);
        }
    }
}

#[test]
fn services() {
    let file: gatewire_vectors::model::ServicesFile = load("services.json");
    for c in &file.method_ids {
        assert_eq!(gatewire_proto::services::method_id(&c.service, &c.method), c.id, "{}/{}", c.service, c.method);
    }
    for c in &file.hashes {
        assert_eq!(gatewire_proto::services::fnv1a64(c.text.as_bytes()).to_string(), c.fnv1a64, "{:?}", c.text);
    }
    for c in &file.checks {
        let list = |v| gatewire_vectors::json::services_from_json(v).unwrap();
        let got = gatewire_proto::services::check(
            &list(&c.server_offers),
            &list(&c.server_uses),
            &list(&c.client_offers),
            &list(&c.client_uses),
        );
        assert_eq!(got.err().map(|e| e.0), c.error, "{}", c.name);
    }
}

#[test]
fn files_are_fresh() {
    for (name, contents) in gatewire_vectors::render().unwrap() {
        let on_disk = std::fs::read_to_string(vectors_dir().join(name)).unwrap_or_default();
        assert!(on_disk == contents, "tests/vectors/{name} is stale: run `cargo xtask vectors` and review the diff");
    }
}
