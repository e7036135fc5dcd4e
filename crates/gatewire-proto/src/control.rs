//! Control payloads: the FlatBuffers tables of `schema/gatewire.fbs` as plain
//! Rust values.
//!
//! Decoding verifies the buffer first, with the bounds of
//! [`verifier_options`]; nothing is read from an unverified table.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use bytes::Bytes;
use gatewire_schema::control as fb;
use gatewire_schema::flatbuffers::{self, FlatBufferBuilder, InvalidFlatbuffer, VerifierOptions};

use crate::code::ErrorCode;

/// Nesting depth a control table may reach.
pub const MAX_DEPTH: usize = 32;
/// Tables a control payload may contain.
pub const MAX_TABLES: usize = 10_000;

/// The verifier bounds for a control payload of `len` bytes: depth 32,
/// 10,000 tables and an apparent size of at most four times the payload.
pub fn verifier_options(len: usize) -> VerifierOptions {
    VerifierOptions {
        max_depth: MAX_DEPTH,
        max_tables: MAX_TABLES,
        max_apparent_size: len.saturating_mul(4).max(64),
        ignore_missing_null_terminator: false,
    }
}

/// A control payload that failed verification or breaks a rule of
/// `docs/PROTOCOL.md` §4.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The FlatBuffers verifier rejected the payload.
    #[error("invalid {table} table: {reason}")]
    Invalid {
        /// Which table.
        table: &'static str,
        /// The verifier's finding.
        reason: String,
    },
    /// The payload is empty where a table is required.
    #[error("missing {0} table")]
    Missing(&'static str),
    /// `min_version` is greater than `max_version`.
    #[error("version range {min}..={max} is empty")]
    EmptyVersionRange {
        /// Lowest version offered.
        min: u16,
        /// Highest version offered.
        max: u16,
    },
}

impl ControlError {
    fn invalid(table: &'static str, e: &InvalidFlatbuffer) -> Self {
        Self::Invalid { table, reason: e.to_string() }
    }
}

/// Receive limits as advertised in HELLO and HELLO_ACK. Zero means "not
/// stated": the protocol default applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdvertisedLimits {
    /// Largest frame payload accepted, in bytes.
    pub max_frame: u32,
    /// Largest message accepted, in bytes.
    pub max_message: u32,
    /// Calls and streams the peer may have open at once.
    pub max_in_flight: u32,
    /// Initial per-stream credit, in bytes.
    pub initial_stream_credit: u32,
    /// Initial connection credit, in bytes.
    pub connection_credit: u32,
}

/// A service an endpoint offers or uses: its name, fingerprint and
/// descriptor (`docs/PROTOCOL.md` §10).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Service {
    /// Fully qualified service name.
    pub name: String,
    /// Hash of the service's canonical description; 0 means unknown.
    pub fingerprint: u64,
    /// The service's methods. Empty: no descriptor, only the fingerprint.
    pub methods: Vec<MethodDesc>,
    /// The shapes of the tables and structs its methods reach.
    pub shapes: Vec<Shape>,
}

impl Service {
    /// A service known only by name and fingerprint.
    pub fn new(name: impl Into<String>, fingerprint: u64) -> Self {
        Self { name: name.into(), fingerprint, methods: Vec::new(), shapes: Vec::new() }
    }
}

/// One method of a service descriptor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MethodDesc {
    /// The method's name within its service.
    pub name: String,
    /// The method id.
    pub id: u32,
    /// The call kind.
    pub kind: MethodKind,
    /// Type hash of the request, opening or event table.
    pub request: u64,
    /// Type hash of the response or stream item table.
    pub response: u64,
}

/// How a method is called (`docs/SCHEMA.md` §2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MethodKind(pub u8);

impl MethodKind {
    /// REQUEST and one RESPONSE.
    pub const UNARY: Self = Self(0);
    /// One request opens a stream; the callee sends the items.
    pub const SERVER_STREAMING: Self = Self(1);
    /// The caller sends the items; the callee answers with one message.
    pub const CLIENT_STREAMING: Self = Self(2);
    /// Both sides send items.
    pub const BIDI_STREAMING: Self = Self(3);
    /// A one-way EVENT.
    pub const EVENT: Self = Self(4);
}

/// The wire shape of a table or struct: one hash per field slot, in
/// field-id order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// Fully qualified type name.
    pub name: String,
    /// Type hash of the table or struct.
    pub ty: u64,
    /// A struct: the slots must match exactly. A table may gain slots.
    pub fixed: bool,
    /// One hash per field slot.
    pub slots: Vec<u64>,
}

/// The answer of the built-in method `LIST_SERVICES`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceList {
    /// Services the endpoint serves.
    pub offers: Vec<Service>,
    /// Services the endpoint calls on its peer.
    pub uses: Vec<Service>,
}

/// The HELLO table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hello {
    /// Lowest protocol version the client speaks.
    pub min_version: u16,
    /// Highest protocol version the client speaks.
    pub max_version: u16,
    /// The client's receive limits.
    pub limits: AdvertisedLimits,
    /// Compression algorithms the client decodes.
    pub compression: Vec<u8>,
    /// Payload codecs the client understands.
    pub codecs: Vec<u8>,
    /// Opaque authentication payload.
    pub auth: Option<Bytes>,
    /// Services the client offers.
    pub services: Vec<Service>,
    /// Implementation name, for logs.
    pub agent: Option<String>,
    /// Services the client uses.
    pub uses: Vec<Service>,
}

/// The HELLO_ACK table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HelloAck {
    /// The version chosen; meaningless when refused.
    pub version: u16,
    /// `NO_ERROR` to accept; anything else refuses.
    pub error_code: ErrorCode,
    /// Human-readable reason for a refusal.
    pub message: Option<String>,
    /// The server's receive limits.
    pub limits: AdvertisedLimits,
    /// Compression algorithms the server decodes.
    pub compression: Vec<u8>,
    /// Payload codecs the server understands.
    pub codecs: Vec<u8>,
    /// Services the server offers.
    pub services: Vec<Service>,
    /// Implementation name, for logs.
    pub agent: Option<String>,
    /// Services the server uses.
    pub uses: Vec<Service>,
}

impl Default for ErrorCode {
    fn default() -> Self {
        Self::NO_ERROR
    }
}

/// The optional detail of an ERROR frame.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorInfo {
    /// Human-readable message.
    pub message: Option<String>,
    /// Opaque application detail.
    pub details: Option<Bytes>,
}

/// The optional detail of a GOAWAY frame.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GoAwayInfo {
    /// Human-readable reason.
    pub message: Option<String>,
}

fn limits_to_fb<'b>(fbb: &mut FlatBufferBuilder<'b>, l: &AdvertisedLimits) -> flatbuffers::WIPOffset<fb::Limits<'b>> {
    fb::Limits::create(
        fbb,
        &fb::LimitsArgs {
            max_frame: l.max_frame,
            max_message: l.max_message,
            max_in_flight: l.max_in_flight,
            initial_stream_credit: l.initial_stream_credit,
            connection_credit: l.connection_credit,
        },
    )
}

fn limits_from_fb(l: Option<fb::Limits<'_>>) -> AdvertisedLimits {
    l.map(|l| AdvertisedLimits {
        max_frame: l.max_frame(),
        max_message: l.max_message(),
        max_in_flight: l.max_in_flight(),
        initial_stream_credit: l.initial_stream_credit(),
        connection_credit: l.connection_credit(),
    })
    .unwrap_or_default()
}

type ServicesOffset<'b> =
    flatbuffers::WIPOffset<flatbuffers::Vector<'b, flatbuffers::ForwardsUOffset<fb::Service<'b>>>>;

fn services_to_fb<'b>(fbb: &mut FlatBufferBuilder<'b>, services: &[Service]) -> Option<ServicesOffset<'b>> {
    if services.is_empty() {
        return None;
    }
    let items: Vec<_> = services
        .iter()
        .map(|s| {
            let name = fbb.create_string(&s.name);
            let methods = (!s.methods.is_empty()).then(|| {
                let items: Vec<_> = s
                    .methods
                    .iter()
                    .map(|m| {
                        let name = fbb.create_string(&m.name);
                        fb::Method::create(
                            fbb,
                            &fb::MethodArgs {
                                name: Some(name),
                                id: m.id,
                                kind: m.kind.0,
                                request: m.request,
                                response: m.response,
                            },
                        )
                    })
                    .collect();
                fbb.create_vector(&items)
            });
            let shapes = (!s.shapes.is_empty()).then(|| {
                let items: Vec<_> = s
                    .shapes
                    .iter()
                    .map(|sh| {
                        let name = fbb.create_string(&sh.name);
                        let slots = fbb.create_vector(&sh.slots);
                        fb::Shape::create(
                            fbb,
                            &fb::ShapeArgs { name: Some(name), type_: sh.ty, fixed: sh.fixed, slots: Some(slots) },
                        )
                    })
                    .collect();
                fbb.create_vector(&items)
            });
            fb::Service::create(fbb, &fb::ServiceArgs { name: Some(name), fingerprint: s.fingerprint, methods, shapes })
        })
        .collect();
    Some(fbb.create_vector(&items))
}

fn services_from_fb(v: Option<flatbuffers::Vector<'_, flatbuffers::ForwardsUOffset<fb::Service<'_>>>>) -> Vec<Service> {
    let service = |s: fb::Service<'_>| Service {
        name: s.name().to_string(),
        fingerprint: s.fingerprint(),
        methods: s
            .methods()
            .map(|m| {
                m.iter()
                    .map(|m| MethodDesc {
                        name: m.name().unwrap_or_default().to_string(),
                        id: m.id(),
                        kind: MethodKind(m.kind()),
                        request: m.request(),
                        response: m.response(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        shapes: s
            .shapes()
            .map(|v| {
                v.iter()
                    .map(|sh| Shape {
                        name: sh.name().unwrap_or_default().to_string(),
                        ty: sh.type_(),
                        fixed: sh.fixed(),
                        slots: sh.slots().map(|x| x.iter().collect()).unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    v.map(|v| v.iter().map(service).collect()).unwrap_or_default()
}

fn bytes_to_fb<'b>(
    fbb: &mut FlatBufferBuilder<'b>,
    v: &[u8],
) -> Option<flatbuffers::WIPOffset<flatbuffers::Vector<'b, u8>>> {
    (!v.is_empty()).then(|| fbb.create_vector(v))
}

fn vec_from_fb(v: Option<flatbuffers::Vector<'_, u8>>) -> Vec<u8> {
    v.map(|v| v.bytes().to_vec()).unwrap_or_default()
}

impl Hello {
    /// Serializes the table.
    pub fn encode(&self) -> Vec<u8> {
        let mut fbb = FlatBufferBuilder::new();
        let limits = limits_to_fb(&mut fbb, &self.limits);
        let compression = bytes_to_fb(&mut fbb, &self.compression);
        let codecs = bytes_to_fb(&mut fbb, &self.codecs);
        let auth = self.auth.as_ref().map(|a| fbb.create_vector(a));
        let services = services_to_fb(&mut fbb, &self.services);
        let uses = services_to_fb(&mut fbb, &self.uses);
        let agent = self.agent.as_ref().map(|a| fbb.create_string(a));
        let root = fb::Hello::create(
            &mut fbb,
            &fb::HelloArgs {
                min_version: self.min_version,
                max_version: self.max_version,
                limits: Some(limits),
                compression,
                codecs,
                auth,
                services,
                agent,
                uses,
            },
        );
        fbb.finish_minimal(root);
        fbb.finished_data().to_vec()
    }

    /// Verifies and reads the table.
    pub fn decode(buf: &[u8]) -> Result<Self, ControlError> {
        if buf.is_empty() {
            return Err(ControlError::Missing("Hello"));
        }
        let t = flatbuffers::root_with_opts::<fb::Hello<'_>>(&verifier_options(buf.len()), buf)
            .map_err(|e| ControlError::invalid("Hello", &e))?;
        if t.min_version() > t.max_version() {
            return Err(ControlError::EmptyVersionRange { min: t.min_version(), max: t.max_version() });
        }
        Ok(Self {
            min_version: t.min_version(),
            max_version: t.max_version(),
            limits: limits_from_fb(t.limits()),
            compression: vec_from_fb(t.compression()),
            codecs: vec_from_fb(t.codecs()),
            auth: t.auth().map(|a| Bytes::copy_from_slice(a.bytes())),
            services: services_from_fb(t.services()),
            agent: t.agent().map(ToString::to_string),
            uses: services_from_fb(t.uses()),
        })
    }
}

impl HelloAck {
    /// Serializes the table.
    pub fn encode(&self) -> Vec<u8> {
        let mut fbb = FlatBufferBuilder::new();
        let message = self.message.as_ref().map(|m| fbb.create_string(m));
        let limits = limits_to_fb(&mut fbb, &self.limits);
        let compression = bytes_to_fb(&mut fbb, &self.compression);
        let codecs = bytes_to_fb(&mut fbb, &self.codecs);
        let services = services_to_fb(&mut fbb, &self.services);
        let uses = services_to_fb(&mut fbb, &self.uses);
        let agent = self.agent.as_ref().map(|a| fbb.create_string(a));
        let root = fb::HelloAck::create(
            &mut fbb,
            &fb::HelloAckArgs {
                version: self.version,
                error_code: self.error_code.0,
                message,
                limits: Some(limits),
                compression,
                codecs,
                services,
                agent,
                uses,
            },
        );
        fbb.finish_minimal(root);
        fbb.finished_data().to_vec()
    }

    /// Verifies and reads the table.
    pub fn decode(buf: &[u8]) -> Result<Self, ControlError> {
        if buf.is_empty() {
            return Err(ControlError::Missing("HelloAck"));
        }
        let t = flatbuffers::root_with_opts::<fb::HelloAck<'_>>(&verifier_options(buf.len()), buf)
            .map_err(|e| ControlError::invalid("HelloAck", &e))?;
        Ok(Self {
            version: t.version(),
            error_code: ErrorCode(t.error_code()),
            message: t.message().map(ToString::to_string),
            limits: limits_from_fb(t.limits()),
            compression: vec_from_fb(t.compression()),
            codecs: vec_from_fb(t.codecs()),
            services: services_from_fb(t.services()),
            agent: t.agent().map(ToString::to_string),
            uses: services_from_fb(t.uses()),
        })
    }
}

impl ServiceList {
    /// Serializes the table.
    pub fn encode(&self) -> Vec<u8> {
        let mut fbb = FlatBufferBuilder::new();
        let offers = services_to_fb(&mut fbb, &self.offers);
        let uses = services_to_fb(&mut fbb, &self.uses);
        let root = fb::ServiceList::create(&mut fbb, &fb::ServiceListArgs { offers, uses });
        fbb.finish_minimal(root);
        fbb.finished_data().to_vec()
    }

    /// Verifies and reads the table.
    pub fn decode(buf: &[u8]) -> Result<Self, ControlError> {
        if buf.is_empty() {
            return Err(ControlError::Missing("ServiceList"));
        }
        let t = flatbuffers::root_with_opts::<fb::ServiceList<'_>>(&verifier_options(buf.len()), buf)
            .map_err(|e| ControlError::invalid("ServiceList", &e))?;
        Ok(Self { offers: services_from_fb(t.offers()), uses: services_from_fb(t.uses()) })
    }
}

impl ErrorInfo {
    /// Serializes the table; an empty value encodes to no bytes at all.
    pub fn encode(&self) -> Vec<u8> {
        if self.message.is_none() && self.details.is_none() {
            return Vec::new();
        }
        let mut fbb = FlatBufferBuilder::new();
        let message = self.message.as_ref().map(|m| fbb.create_string(m));
        let details = self.details.as_ref().map(|d| fbb.create_vector(d));
        let root = fb::ErrorInfo::create(&mut fbb, &fb::ErrorInfoArgs { message, details });
        fbb.finish_minimal(root);
        fbb.finished_data().to_vec()
    }

    /// Verifies and reads the table; an empty payload is an empty value.
    pub fn decode(buf: &[u8]) -> Result<Self, ControlError> {
        if buf.is_empty() {
            return Ok(Self::default());
        }
        let t = flatbuffers::root_with_opts::<fb::ErrorInfo<'_>>(&verifier_options(buf.len()), buf)
            .map_err(|e| ControlError::invalid("ErrorInfo", &e))?;
        Ok(Self {
            message: t.message().map(ToString::to_string),
            details: t.details().map(|d| Bytes::copy_from_slice(d.bytes())),
        })
    }
}

impl GoAwayInfo {
    /// Serializes the table; an empty value encodes to no bytes at all.
    pub fn encode(&self) -> Vec<u8> {
        let Some(m) = &self.message else {
            return Vec::new();
        };
        let mut fbb = FlatBufferBuilder::new();
        let message = Some(fbb.create_string(m));
        let root = fb::GoAway::create(&mut fbb, &fb::GoAwayArgs { message });
        fbb.finish_minimal(root);
        fbb.finished_data().to_vec()
    }

    /// Verifies and reads the table; an empty payload is an empty value.
    pub fn decode(buf: &[u8]) -> Result<Self, ControlError> {
        if buf.is_empty() {
            return Ok(Self::default());
        }
        let t = flatbuffers::root_with_opts::<fb::GoAway<'_>>(&verifier_options(buf.len()), buf)
            .map_err(|e| ControlError::invalid("GoAway", &e))?;
        Ok(Self { message: t.message().map(ToString::to_string) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn hello_round_trip() {
        let h = Hello {
            min_version: 1,
            max_version: 1,
            limits: AdvertisedLimits {
                max_frame: 1 << 20,
                max_message: 1 << 20,
                max_in_flight: 100,
                initial_stream_credit: 1 << 18,
                connection_credit: 1 << 22,
            },
            compression: vec![1],
            codecs: vec![0, 1, 2],
            auth: Some(Bytes::from_static(b"token")),
            services: vec![Service::new("chart.Chart", 0x0123_4567_89ab_cdef)],
            agent: Some("gatewire-rust/0.1".into()),
            uses: vec![described()],
        };
        assert_eq!(Hello::decode(&h.encode()).unwrap(), h);
        let ack = HelloAck { services: vec![described()], uses: vec![Service::new("x.Y", 0)], ..HelloAck::default() };
        assert_eq!(HelloAck::decode(&ack.encode()).unwrap(), ack);
        let list = ServiceList { offers: vec![described()], uses: vec![] };
        assert_eq!(ServiceList::decode(&list.encode()).unwrap(), list);
    }

    fn described() -> Service {
        Service {
            name: "gateway.Gateway".into(),
            fingerprint: u64::MAX,
            methods: vec![MethodDesc {
                name: "Status".into(),
                id: 0xdead_beef,
                kind: MethodKind::SERVER_STREAMING,
                request: 1,
                response: u64::MAX,
            }],
            shapes: vec![Shape { name: "gateway.Status".into(), ty: 1, fixed: false, slots: vec![3, 4, 5] }],
        }
    }

    #[test]
    fn empty_and_garbage_are_rejected() {
        assert_eq!(Hello::decode(&[]), Err(ControlError::Missing("Hello")));
        assert!(matches!(Hello::decode(&[0xff; 12]), Err(ControlError::Invalid { .. })));
        assert!(matches!(HelloAck::decode(&[1, 0, 0]), Err(ControlError::Invalid { .. })));
    }

    #[test]
    fn version_range_must_not_be_empty() {
        let h = Hello { min_version: 3, max_version: 2, ..Hello::default() };
        assert_eq!(Hello::decode(&h.encode()), Err(ControlError::EmptyVersionRange { min: 3, max: 2 }));
    }

    #[test]
    fn optional_tables() {
        assert_eq!(ErrorInfo::decode(&[]).unwrap(), ErrorInfo::default());
        assert!(ErrorInfo::default().encode().is_empty());
        let e = ErrorInfo { message: Some("boom".into()), details: Some(Bytes::from_static(&[1, 2])) };
        assert_eq!(ErrorInfo::decode(&e.encode()).unwrap(), e);
        let g = GoAwayInfo { message: Some("bye".into()) };
        assert_eq!(GoAwayInfo::decode(&g.encode()).unwrap(), g);
    }
}
