//! Method ids, type hashes and the schema compatibility check of
//! `docs/PROTOCOL.md` §10.
//!
//! A method id is the 32-bit FNV-1a hash of `service/method`. Type hashes,
//! slot hashes and fingerprints are 64-bit FNV-1a hashes of the canonical
//! strings of `docs/SCHEMA.md` §4. The acceptor of a connection compares the
//! services each side uses with the services the other side offers and
//! refuses the handshake with `INCOMPATIBLE` when they cannot work together.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;

use crate::control::{MethodDesc, MethodKind, Service};

/// Method ids from `0xFFFF_FF00` up are reserved for built-in methods.
pub const RESERVED_METHODS: u32 = 0xFFFF_FF00;

/// The built-in method answering with a `ServiceList` of what an endpoint
/// offers and uses. Its request is empty.
pub const LIST_SERVICES: u32 = 0xFFFF_FF00;

/// The built-in method that re-authenticates a live connection: its request
/// is a new authentication payload, as in HELLO's `auth`; an empty response
/// means the server accepted it.
pub const REAUTHENTICATE: u32 = 0xFFFF_FF01;

const FNV32_OFFSET: u32 = 0x811c_9dc5;
const FNV32_PRIME: u32 = 0x0100_0193;
const FNV64_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV64_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 32-bit FNV-1a.
pub const fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h = FNV32_OFFSET;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u32;
        h = h.wrapping_mul(FNV32_PRIME);
        i += 1;
    }
    h
}

/// 64-bit FNV-1a.
pub const fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h = FNV64_OFFSET;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(FNV64_PRIME);
        i += 1;
    }
    h
}

/// The derived id of `method` in the fully qualified `service`: FNV-1a 32
/// of `service/method`. An id at or above [`RESERVED_METHODS`] cannot be
/// used; the schema must give the method an explicit id.
pub fn method_id(service: &str, method: &str) -> u32 {
    let mut h = FNV32_OFFSET;
    for b in service.bytes().chain(core::iter::once(b'/')).chain(method.bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(FNV32_PRIME);
    }
    h
}

/// The type hash of a fully qualified table or struct name.
pub fn type_hash(name: &str) -> u64 {
    fnv1a64(name.as_bytes())
}

/// Why two endpoints' services cannot work together. The text is the
/// refusal message of the handshake and is the same in every
/// implementation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Incompatible(pub String);

/// Which endpoint a service list belongs to, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Party {
    Client,
    Server,
}

impl Party {
    const fn name(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Server => "server",
        }
    }
}

/// The acceptor's check (`docs/PROTOCOL.md` §10.3): every service one side
/// uses and the other offers must be compatible, and every service one side
/// uses must be offered by the other.
pub fn check(
    server_offers: &[Service],
    server_uses: &[Service],
    client_offers: &[Service],
    client_uses: &[Service],
) -> Result<(), Incompatible> {
    check_direction(client_uses, Party::Client, server_offers)?;
    check_direction(server_uses, Party::Server, client_offers)
}

fn check_direction(uses: &[Service], user: Party, offers: &[Service]) -> Result<(), Incompatible> {
    let offerer = match user {
        Party::Client => Party::Server,
        Party::Server => Party::Client,
    };
    let offered: BTreeMap<&str, &Service> = offers.iter().map(|s| (s.name.as_str(), s)).collect();
    for used in uses {
        let Some(offer) = offered.get(used.name.as_str()) else {
            return Err(Incompatible(format!(
                "{}: used by the {} but not offered by the {}",
                used.name,
                user.name(),
                offerer.name()
            )));
        };
        check_service(used, user, offer, offerer)?;
    }
    Ok(())
}

fn kind_name(kind: MethodKind) -> &'static str {
    match kind {
        MethodKind::UNARY => "unary",
        MethodKind::SERVER_STREAMING => "server streaming",
        MethodKind::CLIENT_STREAMING => "client streaming",
        MethodKind::BIDI_STREAMING => "bidirectional streaming",
        MethodKind::EVENT => "event",
        _ => "unknown kind",
    }
}

fn check_service(a: &Service, user: Party, b: &Service, offerer: Party) -> Result<(), Incompatible> {
    if a.fingerprint != 0 && a.fingerprint == b.fingerprint {
        return Ok(());
    }
    let described = |s: &Service| !s.methods.is_empty() || !s.shapes.is_empty();
    if !described(a) || !described(b) {
        if a.fingerprint != 0 && b.fingerprint != 0 {
            return Err(Incompatible(format!(
                "{}: fingerprints differ ({:016x}, {:016x}) and a descriptor is missing",
                a.name, a.fingerprint, b.fingerprint
            )));
        }
        return Ok(());
    }
    let methods: BTreeMap<u32, &MethodDesc> = b.methods.iter().map(|m| (m.id, m)).collect();
    for m in &a.methods {
        let Some(o) = methods.get(&m.id) else { continue };
        let what = if m.kind != o.kind {
            format!(
                "the {} calls it as {}, the {} serves it as {}",
                user.name(),
                kind_name(m.kind),
                offerer.name(),
                kind_name(o.kind)
            )
        } else if m.request != o.request {
            String::from("request types differ")
        } else if m.response != o.response {
            String::from("response types differ")
        } else {
            continue;
        };
        return Err(Incompatible(format!("{}.{} (method {:08x}): {what}", a.name, m.name, m.id)));
    }
    let shapes: BTreeMap<u64, &crate::control::Shape> = b.shapes.iter().map(|s| (s.ty, s)).collect();
    for s in &a.shapes {
        let Some(o) = shapes.get(&s.ty) else { continue };
        if s.fixed != o.fixed {
            return Err(Incompatible(format!(
                "{}: {} is a struct on one side and a table on the other",
                a.name, s.name
            )));
        }
        if s.fixed && s.slots.len() != o.slots.len() {
            return Err(Incompatible(format!("{}: struct {} differs in size", a.name, s.name)));
        }
        if let Some(slot) = s.slots.iter().zip(&o.slots).position(|(x, y)| x != y) {
            return Err(Incompatible(format!(
                "{}: {} field {slot} differs in type between client and server",
                a.name, s.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use alloc::vec;

    use super::*;
    use crate::control::Shape;

    fn svc(methods: &[(u32, u8, u64, u64)], shapes: &[(u64, bool, &[u64])]) -> Service {
        Service {
            name: "chart.Chart".into(),
            fingerprint: 1 + methods.len() as u64 + shapes.iter().map(|s| s.2.len() as u64).sum::<u64>(),
            methods: methods
                .iter()
                .map(|&(id, kind, request, response)| MethodDesc {
                    name: format!("m{id}"),
                    id,
                    kind: MethodKind(kind),
                    request,
                    response,
                })
                .collect(),
            shapes: shapes
                .iter()
                .map(|&(ty, fixed, slots)| Shape { name: format!("t{ty}"), ty, fixed, slots: slots.to_vec() })
                .collect(),
        }
    }

    #[test]
    fn fnv_reference_values() {
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(method_id("chart.Chart", "SetTitle"), fnv1a32(b"chart.Chart/SetTitle"));
    }

    #[test]
    fn added_methods_and_fields_are_compatible() {
        let old = svc(&[(1, 0, 10, 11)], &[(10, false, &[5, 6])]);
        let new = svc(&[(1, 0, 10, 11), (2, 1, 10, 12)], &[(10, false, &[5, 6, 7]), (12, false, &[5])]);
        assert_eq!(check(core::slice::from_ref(&new), &[], &[], core::slice::from_ref(&old)), Ok(()));
        assert_eq!(check(core::slice::from_ref(&old), &[], &[], core::slice::from_ref(&new)), Ok(()));
    }

    #[test]
    fn changed_kinds_types_and_slots_are_refused() {
        let base = svc(&[(1, 0, 10, 11)], &[(10, false, &[5, 6]), (20, true, &[1, 1])]);
        for (other, want) in [
            (
                svc(&[(1, 1, 10, 11)], &[]),
                "chart.Chart.m1 (method 00000001): the client calls it as unary, the server serves it as server streaming",
            ),
            (svc(&[(1, 0, 9, 11)], &[]), "chart.Chart.m1 (method 00000001): request types differ"),
            (svc(&[(1, 0, 10, 9)], &[]), "chart.Chart.m1 (method 00000001): response types differ"),
            (
                svc(&[(1, 0, 10, 11)], &[(10, false, &[5, 7, 8])]),
                "chart.Chart: t10 field 1 differs in type between client and server",
            ),
            (svc(&[(1, 0, 10, 11)], &[(20, true, &[1, 1, 1])]), "chart.Chart: struct t20 differs in size"),
            (
                svc(&[(1, 0, 10, 11)], &[(20, false, &[1, 1])]),
                "chart.Chart: t20 is a struct on one side and a table on the other",
            ),
        ] {
            let got = check(core::slice::from_ref(&other), &[], &[], core::slice::from_ref(&base));
            assert_eq!(got, Err(Incompatible(want.into())));
        }
    }

    #[test]
    fn missing_service_and_bare_fingerprints() {
        let used = vec![Service::new("a.A", 7)];
        assert_eq!(
            check(&[], &[], &[], &used),
            Err(Incompatible("a.A: used by the client but not offered by the server".into()))
        );
        assert_eq!(
            check(&[], &used, &[], &[]),
            Err(Incompatible("a.A: used by the server but not offered by the client".into()))
        );
        assert_eq!(check(&[Service::new("a.A", 7)], &[], &[], &used), Ok(()));
        assert_eq!(check(&[Service::new("a.A", 0)], &[], &[], &used), Ok(()));
        assert!(check(&[Service::new("a.A", 8)], &[], &[], &used).is_err());
    }
}
