//! What the generators see of a schema: services with their methods, and the
//! tables, structs and enums the methods reach. Built by [`crate::frontend`]
//! from flatc's binary schema; independent of any target language.

use std::collections::BTreeMap;

use gatewire_proto::control::{MethodKind, Service as Descriptor};

/// A compiled schema.
#[derive(Clone, Debug)]
pub struct Schema {
    /// The `.fbs` file the schema was read from, as given.
    pub file: String,
    /// Services in declaration order.
    pub services: Vec<Service>,
    /// Tables and structs by fully qualified name.
    pub objects: BTreeMap<String, Object>,
    /// Enums and unions by fully qualified name.
    pub enums: BTreeMap<String, Enum>,
}

/// An `rpc_service`.
#[derive(Clone, Debug)]
pub struct Service {
    /// Fully qualified name, e.g. `chart.Chart`.
    pub name: Name,
    /// Documentation lines.
    pub doc: Vec<String>,
    /// Methods in declaration order.
    pub methods: Vec<Method>,
    /// The descriptor advertised in the handshake.
    pub descriptor: Descriptor,
}

/// One method of a service.
#[derive(Clone, Debug)]
pub struct Method {
    /// The name as declared, e.g. `SetTitle`.
    pub name: String,
    /// The method id: derived, or given with the `method_id` attribute.
    pub id: u32,
    /// How it is called.
    pub kind: Kind,
    /// The request, opening or event table.
    pub request: Name,
    /// The response or stream item table.
    pub response: Name,
    /// Documentation lines.
    pub doc: Vec<String>,
}

impl Method {
    /// The name of the method's id constant: `SET_TITLE`.
    pub fn const_name(&self) -> String {
        crate::snake(&self.name).to_uppercase()
    }
}

impl Service {
    /// The service's name without a `Service` suffix: `Chart` for
    /// `chart.Chart` and `chart.ChartService`.
    pub fn base_name(&self) -> String {
        self.name.short.strip_suffix("Service").filter(|b| !b.is_empty()).unwrap_or(&self.name.short).to_owned()
    }
}

/// The call kind, from the `streaming` and `event` attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `M(Req): Resp`
    Unary,
    /// `M(Req): Item (streaming: "server")`
    ServerStreaming,
    /// `M(Item): Resp (streaming: "client")`
    ClientStreaming,
    /// `M(In): Out (streaming: "bidi")`
    BidiStreaming,
    /// `M(Event): Empty (event)`
    Event,
}

impl Kind {
    /// The kind on the wire.
    pub fn wire(self) -> MethodKind {
        match self {
            Self::Unary => MethodKind::UNARY,
            Self::ServerStreaming => MethodKind::SERVER_STREAMING,
            Self::ClientStreaming => MethodKind::CLIENT_STREAMING,
            Self::BidiStreaming => MethodKind::BIDI_STREAMING,
            Self::Event => MethodKind::EVENT,
        }
    }

    /// A one-line description for generated docs.
    pub fn doc(self) -> &'static str {
        match self {
            Self::Unary => "Unary.",
            Self::ServerStreaming => "Server streaming: one request, then a stream of items from the callee.",
            Self::ClientStreaming => "Client streaming: a stream of items from the caller, then one reply.",
            Self::BidiStreaming => "Bidirectional streaming: both sides send items.",
            Self::Event => "One-way event: no reply; an event that fails to decode is dropped.",
        }
    }

    /// The `MethodKind` constant's name in the generated Python and
    /// TypeScript.
    pub fn const_name(self) -> &'static str {
        match self {
            Self::Unary => "UNARY",
            Self::ServerStreaming => "SERVER_STREAMING",
            Self::ClientStreaming => "CLIENT_STREAMING",
            Self::BidiStreaming => "BIDI_STREAMING",
            Self::Event => "EVENT",
        }
    }

    /// The name used in canonical descriptions.
    pub fn canonical(self) -> &'static str {
        match self {
            Self::Unary => "unary",
            Self::ServerStreaming => "server_streaming",
            Self::ClientStreaming => "client_streaming",
            Self::BidiStreaming => "bidi_streaming",
            Self::Event => "event",
        }
    }
}

/// A fully qualified name split into namespace and short name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name {
    /// Namespace components, outermost first.
    pub namespace: Vec<String>,
    /// The last component.
    pub short: String,
}

impl Name {
    /// Splits `a.b.C`.
    pub fn parse(full: &str) -> Self {
        let mut parts: Vec<String> = full.split('.').map(str::to_owned).collect();
        let short = parts.pop().unwrap_or_default();
        Self { namespace: parts, short }
    }

    /// `a.b.C`.
    pub fn full(&self) -> String {
        let mut s = self.namespace.join(".");
        if !s.is_empty() {
            s.push('.');
        }
        s.push_str(&self.short);
        s
    }
}

/// A table or struct.
#[derive(Clone, Debug)]
pub struct Object {
    /// Its name.
    pub name: Name,
    /// A struct (fixed layout) rather than a table.
    pub is_struct: bool,
    /// Fields in id order (tables) or declaration order (structs).
    pub fields: Vec<Field>,
    /// A struct's size in bytes (0 for a table).
    pub bytesize: u32,
    /// A struct's alignment in bytes (1 for a table).
    pub minalign: u32,
}

/// A field of a table or struct.
#[derive(Clone, Debug)]
pub struct Field {
    /// The field's name.
    pub name: String,
    /// Its slot id.
    pub id: u16,
    /// Its type.
    pub ty: Type,
    /// Marked `deprecated`: the slot stays, the accessor goes.
    pub deprecated: bool,
    /// Marked `required`: a table without it fails verification.
    pub required: bool,
}

/// A field type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Type {
    /// `bool`, `int8` … `float64`, by canonical name.
    Scalar(&'static str),
    /// `string`.
    String,
    /// `[T]`.
    Vector(Box<Self>),
    /// `[T]` with 64-bit offsets.
    Vector64(Box<Self>),
    /// `[T:N]` inside a struct.
    Array(Box<Self>, u16),
    /// A table.
    Table(String),
    /// A struct.
    Struct(String),
    /// The type field of a union.
    UnionType(String),
    /// The value field of a union.
    Union(String),
}

impl Type {
    /// The canonical type string of `docs/SCHEMA.md` §4.
    pub fn canonical(&self) -> String {
        match self {
            Self::Scalar(s) => (*s).to_owned(),
            Self::String => "string".to_owned(),
            Self::Vector(t) => format!("[{}]", t.canonical()),
            Self::Vector64(t) => format!("[{}]64", t.canonical()),
            Self::Array(t, n) => format!("[{}:{n}]", t.canonical()),
            Self::Table(n) => format!("table {n}"),
            Self::Struct(n) => format!("struct {n}"),
            Self::UnionType(n) => format!("utype {n}"),
            Self::Union(n) => format!("union {n}"),
        }
    }
}

/// An enum or union.
#[derive(Clone, Debug)]
pub struct Enum {
    /// Its name.
    pub name: Name,
    /// Every value in declaration order, `NONE` included for a union.
    pub values: Vec<EnumValue>,
}

impl Enum {
    /// A union: the tables its values name, in declaration order.
    pub fn union_members(&self) -> Vec<String> {
        self.values.iter().filter_map(|v| v.table.clone()).collect()
    }
}

/// One value of an enum or union.
#[derive(Clone, Debug)]
pub struct EnumValue {
    /// The value's name as flatc spells it.
    pub name: String,
    /// The number on the wire.
    pub value: i64,
    /// For a union: the table this value carries (`None` for `NONE`).
    pub table: Option<String>,
}

/// The size in bytes of a scalar, by canonical name.
pub fn scalar_size(s: &str) -> u32 {
    match s {
        "bool" | "int8" | "uint8" => 1,
        "int16" | "uint16" => 2,
        "int32" | "uint32" | "float32" => 4,
        _ => 8,
    }
}

/// How the verifiers of received tables (Python's and TypeScript's
/// `codegen` modules) check one field slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// A scalar of this many bytes.
    Scalar(u32),
    /// A string.
    String,
    /// A struct of this many bytes.
    Struct(u32),
    /// A table, by name.
    Table(String),
    /// A union: (value, table) of each member.
    Union(Vec<(i64, String)>),
    /// A vector of this scalar (canonical name) and size.
    Vector(&'static str, u32),
    /// A vector of strings.
    VectorString,
    /// A vector of structs of this many bytes.
    VectorStruct(u32),
    /// A vector of tables, by name.
    VectorTable(String),
}

impl Schema {
    /// How a verifier checks `field`; `None` for what is not checked on its
    /// own: a union's type field (checked with its value), 64-bit vectors,
    /// arrays and vectors of unions.
    pub fn check(&self, field: &Field) -> Option<Check> {
        let struct_size = |n: &str| self.objects.get(n).map_or(0, |o| o.bytesize);
        Some(match &field.ty {
            Type::Scalar(s) => Check::Scalar(scalar_size(s)),
            Type::String => Check::String,
            Type::Struct(n) => Check::Struct(struct_size(n)),
            Type::Table(n) => Check::Table(n.clone()),
            Type::Union(n) => Check::Union(
                self.enums
                    .get(n)
                    .map(|e| e.values.iter().filter_map(|v| v.table.clone().map(|t| (v.value, t))).collect())
                    .unwrap_or_default(),
            ),
            Type::Vector(inner) => match &**inner {
                Type::Scalar(s) => Check::Vector(s, scalar_size(s)),
                Type::String => Check::VectorString,
                Type::Struct(n) => Check::VectorStruct(struct_size(n)),
                Type::Table(n) => Check::VectorTable(n.clone()),
                _ => return None,
            },
            Type::UnionType(_) | Type::Vector64(_) | Type::Array(..) => return None,
        })
    }
}
