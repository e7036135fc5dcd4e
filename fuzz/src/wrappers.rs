//! `wrappers`: the runtime's guards around third-party decoders, on
//! arbitrary bytes.
//!
//! The first byte picks the guard; the rest is its input:
//! - `0`: bounded zstd decompression (`gatewire::fuzzing::decompress`) with a
//!   declared size taken from the next two bytes. Success means exactly the
//!   declared size; compressing any input and decompressing it gives it back;
//! - `1`: `gatewire::codegen::Fb::decode` (the bounded FlatBuffers verifier)
//!   as each table of the example schemas; what verifies must read and
//!   unpack without panicking, and re-pack to a buffer that verifies;
//! - `2`: the authenticators (static tokens, HS256 JWTs) on an arbitrary
//!   HELLO `auth` payload: a typed refusal or an identity, never a panic;
//! - `3`: `ServiceList` decoding and the handshake's compatibility check on
//!   what decodes (it must not panic, and a service list is compatible with
//!   itself).

use bytes::Bytes;
use gatewire::auth::{JwtAuthenticator, TokenAuthenticator};
use gatewire::codegen::{Fb, Table};
use gatewire::transport::PeerInfo;
use gatewire::{Authenticator, Codec, Message};
use gatewire_example_schemas::{chart, gateway};
use gatewire_proto::control::ServiceList;

/// Runs the guard the first byte names.
pub fn run(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 4 {
        0 => zstd(rest),
        1 => flatbuffers(rest),
        2 => auth(rest),
        _ => services(rest),
    }
}

fn zstd(data: &[u8]) {
    if data.len() >= 2 {
        let declared = u32::from(u16::from_le_bytes([data[0], data[1]]));
        let message = Message::compressed(Codec::RAW, Bytes::copy_from_slice(&data[2..]), declared);
        if let Ok(out) = gatewire::fuzzing::decompress(message) {
            assert_eq!(out.body.len(), declared as usize, "decompressed size differs from the declared size");
            assert!(out.uncompressed_len.is_none());
        }
    }
    let plain = Message::raw(Bytes::copy_from_slice(data));
    let packed = gatewire::fuzzing::compress(plain.clone(), 1);
    let back = gatewire::fuzzing::decompress(packed).expect("our own compression decompresses");
    assert_eq!(back.body, plain.body, "compression does not round-trip");
}

fn table<T: Table>(data: &[u8]) {
    let Ok(fb) = Fb::<T>::decode(Message::flatbuffers(Bytes::copy_from_slice(data))) else { return };
    let owned = fb.unpack();
    let again = owned.to_message();
    Fb::<T>::decode(again).expect("a re-packed table verifies");
}

fn flatbuffers(data: &[u8]) {
    table::<chart::PointsT>(data);
    table::<chart::CreateChartT>(data);
    table::<chart::ProbeReplyT>(data);
    table::<gateway::ConfigT>(data);
    table::<gateway::SampleT>(data);
    table::<gateway::StatusT>(data);
    table::<gateway::ChatMessageT>(data);
}

fn auth(data: &[u8]) {
    static AUTHENTICATORS: std::sync::OnceLock<(TokenAuthenticator, JwtAuthenticator)> = std::sync::OnceLock::new();
    let (tokens, jwt) = AUTHENTICATORS.get_or_init(|| {
        let tokens = TokenAuthenticator::new().token("alice", "0123456789abcdef0123456789abcdef");
        let jwt = JwtAuthenticator::hs256(b"an hs256 secret of at least 32 bytes!!").expect("a valid secret");
        (tokens, jwt)
    });
    let peer = PeerInfo::default();
    for payload in [Some(data), None] {
        if let Ok(identity) = tokens.authenticate(payload, &peer) {
            assert_eq!(identity.subject(), "alice", "only the configured token is accepted");
        }
        let _ = jwt.authenticate(payload, &peer);
    }
}

fn services(data: &[u8]) {
    let Ok(list) = ServiceList::decode(data) else { return };
    assert_eq!(ServiceList::decode(&list.encode()).as_ref(), Ok(&list), "ServiceList does not round-trip");
    let _ = gatewire_proto::services::check(&list.offers, &list.uses, &list.offers, &list.uses);
    // One service per name, one method per id and one shape per type: the
    // check looks offers up by these keys.
    let mut unique: Vec<_> = list
        .offers
        .iter()
        .map(|s| (s.name.clone(), s.clone()))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_values()
        .collect();
    for s in &mut unique {
        let methods: std::collections::BTreeMap<_, _> = s.methods.drain(..).map(|m| (m.id, m)).collect();
        s.methods = methods.into_values().collect();
        let shapes: std::collections::BTreeMap<_, _> = s.shapes.drain(..).map(|sh| (sh.ty, sh)).collect();
        s.shapes = shapes.into_values().collect();
    }
    assert_eq!(
        gatewire_proto::services::check(&unique, &[], &[], &unique),
        Ok(()),
        "a service list is compatible with itself"
    );
}
