//! The Python generator: flatc's object-API modules (one package directory
//! per namespace, one module per type), a typed stub (`.pyi`) beside each of
//! them, and `<stem>_gatewire.py` with, per service, the method ids and
//! descriptor (`<Name>Service`), a handler base class (`<Name>Handler`),
//! routing onto a `gatewire.aio.Router` and typed clients (`<Name>Client`
//! for `gatewire.aio`, `<Name>SyncClient` for `gatewire.sync`).
//!
//! flatc's own `.pyi` output (`--python-typing`) is not used: it is not
//! `mypy --strict` clean and misstates several types (strings read as
//! `bytes`, `Pack` returning `None`, vectors that are numpy arrays). The
//! stubs written here describe what flatc's code does. The service module
//! verifies every received buffer with the layout it carries
//! (`gatewire.codegen.verify`), since the Python `flatbuffers` runtime has
//! no verifier.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::frontend::{run_flatc, scratch_dir};
use crate::ir::{Check, Enum, Field, Kind, Method, Name, Object, Schema, Service, Type};

/// Writes flatc's modules, their stubs and `<stem>_gatewire.py` into `out`.
pub fn generate(
    flatc: &Path,
    ir: &Schema,
    schema: &Path,
    includes: &[PathBuf],
    out: &Path,
) -> Result<Vec<PathBuf>, Error> {
    check_supported(ir)?;
    let tmp = scratch_dir()?;
    run_flatc(
        flatc,
        &["--python", "--gen-object-api", "--python-decode-obj-api-strings"],
        schema,
        includes,
        tmp.path(),
    )?;

    let source = crate::display_name(schema);
    let header = format!("# {} {source}. Do not edit.\n", crate::GENERATED_HEADER);
    let mut written = Vec::new();
    for rel in crate::files_under(tmp.path())? {
        let text = std::fs::read_to_string(tmp.path().join(&rel))
            .map_err(|e| Error::Io(format!("reading flatc's output {}: {e}", rel.display())))?;
        written.push(crate::write(&out.join(&rel), &format!("{header}{text}"))?);
        if rel.file_name().is_some_and(|n| n == "__init__.py") {
            continue;
        }
        let module = module_of(&rel);
        let stub = if let Some(o) = ir.objects.get(&module) {
            Some(object_stub(ir, o))
        } else {
            ir.enums.get(&module).map(|e| enum_stub(ir, e))
        };
        if let Some(stub) = stub {
            let text = format!("{header}# Types of flatc's `{module}` module beside this file.\n\n{stub}");
            written.push(crate::write(&out.join(rel.with_extension("pyi")), &text)?);
        }
    }
    let stem = module_stem(schema);
    written.push(crate::write(&out.join(format!("{stem}_gatewire.py")), &render(ir, &source))?);
    Ok(written)
}

/// flatc's Python cannot express these; refuse them rather than write code
/// that fails later.
pub(crate) fn check_supported(ir: &Schema) -> Result<(), Error> {
    for o in ir.objects.values() {
        for f in &o.fields {
            let bad = match &f.ty {
                Type::Vector64(_) => Some("64-bit vectors"),
                Type::Vector(t) if matches!(**t, Type::Union(_) | Type::UnionType(_)) => Some("vectors of unions"),
                _ => None,
            };
            if let Some(what) = bad {
                return Err(Error::Schema(format!(
                    "{}.{}: {what} are not supported by the Python and TypeScript generators",
                    o.name.full(),
                    f.name
                )));
            }
        }
    }
    Ok(())
}

/// `chart/Points.py` → `chart.Points`.
fn module_of(rel: &Path) -> String {
    let no_ext = rel.with_extension("");
    no_ext.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join(".")
}

/// The schema's file stem as a Python identifier.
pub(crate) fn module_stem(schema: &Path) -> String {
    let stem = schema.file_stem().and_then(|s| s.to_str()).unwrap_or("schema");
    let mut s: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

// ----- flatc's Python names ------------------------------------------------------------------

const PY_KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "break", "class", "continue", "def", "del", "elif", "else",
    "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal", "not", "or",
    "pass", "raise", "return", "try", "while", "with", "yield",
];

/// flatc's `CamelToSnake`.
pub(crate) fn camel_to_snake(input: &str) -> String {
    let chars: Vec<char> = input.chars().collect();
    let mut s = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if i == 0 {
            s.push(c.to_ascii_lowercase());
        } else if c == '_' {
            s.push('_');
        } else if !c.is_ascii_lowercase() {
            let prev = chars[i - 1];
            if prev.is_ascii_lowercase() || (prev.is_ascii_digit() && !c.is_ascii_digit()) {
                s.push('_');
            }
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}

/// flatc's `ToCamelCase` of a snake_case name.
pub(crate) fn to_camel(input: &str, upper: bool) -> String {
    let chars: Vec<char> = input.chars().collect();
    let mut s = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if i == 0 && c == '_' {
            s.push('_');
            if chars.get(1).is_some_and(|n| n.is_ascii_alphabetic()) {
                s.push(chars[1].to_ascii_uppercase());
                i += 1;
            }
        } else if i == 0 {
            s.push(if upper { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() });
        } else if c == '_' && i + 1 < chars.len() {
            s.push(chars[i + 1].to_ascii_uppercase());
            i += 1;
        } else {
            s.push(c);
        }
        i += 1;
    }
    s
}

/// A field's accessor name (`sent_ns` → `SentNs`).
fn method_name(field: &str) -> String {
    to_camel(&camel_to_snake(field), true)
}

/// A field's object-API attribute and argument name (`sent_ns` →
/// `sentNs`, `from` → `from_`).
fn attr_name(field: &str) -> String {
    let escaped = if PY_KEYWORDS.contains(&field) { format!("{field}_") } else { field.to_owned() };
    to_camel(&camel_to_snake(&escaped), false)
}

// ----- scalar types --------------------------------------------------------------------------

fn py_scalar(s: &str) -> &'static str {
    match s {
        "bool" => "bool",
        "float32" | "float64" => "float",
        _ => "int",
    }
}

/// The numpy scalar type.
fn np_scalar(s: &str) -> &'static str {
    match s {
        "bool" => "bool_",
        "int8" => "int8",
        "uint8" => "uint8",
        "int16" => "int16",
        "uint16" => "uint16",
        "int32" => "int32",
        "uint32" => "uint32",
        "int64" => "int64",
        "uint64" => "uint64",
        "float32" => "float32",
        _ => "float64",
    }
}

/// The numpy dtype kind and size, as `gatewire.codegen.Field.dtype`.
fn dtype_code(s: &str) -> &'static str {
    match s {
        "bool" => "b1",
        "int8" => "i1",
        "uint8" => "u1",
        "int16" => "i2",
        "uint16" => "u2",
        "int32" => "i4",
        "uint32" => "u4",
        "int64" => "i8",
        "uint64" => "u8",
        "float32" => "f4",
        _ => "f8",
    }
}

// ----- stubs ------------------------------------------------------------------------------------

/// Renders type expressions for one stub module. Every module and builtin
/// is named through a private alias, so a field called `chart`, `bytes` or
/// `np` cannot shadow what an annotation means.
struct Stub<'a> {
    ir: &'a Schema,
    imports: BTreeSet<String>,
    numpy: bool,
}

impl<'a> Stub<'a> {
    fn new(ir: &'a Schema) -> Self {
        Self { ir, imports: BTreeSet::new(), numpy: false }
    }

    fn module_alias(full: &str) -> String {
        format!("_m_{}", full.replace('.', "_"))
    }

    /// A class of flatc's module for `full` (`suffix` `"T"` for the object
    /// API).
    fn class(&mut self, full: &str, suffix: &str) -> String {
        self.imports.insert(full.to_owned());
        format!("{}.{}{suffix}", Self::module_alias(full), Name::parse(full).short)
    }

    fn builtin(name: &str) -> String {
        format!("_b.{name}")
    }

    /// An array exactly as flatc's reader returns it.
    fn ndarray(&mut self, scalar: &str) -> String {
        self.numpy = true;
        format!("_npt.NDArray[_np.{}]", np_scalar(scalar))
    }

    /// An array an object-API attribute may hold: numpy's own functions
    /// are typed with generic scalars (`np.arange(3.0)` is an array of
    /// `floating[Any]`); the sizes are checked when the value is sent.
    fn ndarray_attr(&mut self, scalar: &str) -> String {
        self.numpy = true;
        let generic = match scalar {
            "bool" => "_np.bool_",
            "float32" | "float64" => "_np.floating[_typing.Any]",
            _ => "_np.integer[_typing.Any]",
        };
        format!("_npt.NDArray[{generic}]")
    }

    fn scalar(scalar: &str) -> String {
        Self::builtin(py_scalar(scalar))
    }

    /// The type of an object-API attribute.
    fn attr_type(&mut self, ty: &Type) -> String {
        let none = "None";
        match ty {
            Type::Scalar(s) => Self::scalar(s),
            Type::UnionType(_) => Self::builtin("int"),
            Type::String => format!("{} | {none}", Self::builtin("str")),
            Type::Struct(n) | Type::Table(n) => format!("{} | {none}", self.class(n, "T")),
            Type::Union(n) => {
                let mut members: Vec<String> = Vec::new();
                for m in self.union_members(n) {
                    members.push(self.class(&m, "T"));
                }
                members.push(none.to_owned());
                members.join(" | ")
            }
            Type::Vector(inner) | Type::Array(inner, _) => match &**inner {
                Type::Scalar(s) => {
                    format!("{} | {}[{}] | {none}", self.ndarray_attr(s), Self::builtin("list"), Self::scalar(s))
                }
                // flatc's object API leaves vectors of strings as bytes.
                Type::String => format!(
                    "{l}[{s}] | {l}[{b}] | {none}",
                    l = Self::builtin("list"),
                    s = Self::builtin("str"),
                    b = Self::builtin("bytes")
                ),
                Type::Struct(n) | Type::Table(n) => {
                    format!("{}[{}] | {none}", Self::builtin("list"), self.class(n, "T"))
                }
                _ => "_typing.Any".to_owned(),
            },
            Type::Vector64(_) => "_typing.Any".to_owned(),
        }
    }

    fn union_members(&self, union: &str) -> Vec<String> {
        self.ir.enums.get(union).map(Enum::union_members).unwrap_or_default()
    }

    /// The imports, for the top of the stub.
    fn header(&self) -> String {
        let mut s = String::from("import builtins as _b\nimport typing as _typing\n\nimport flatbuffers as _fb\n");
        if self.numpy {
            s.push_str("import numpy as _np\nimport numpy.typing as _npt\n");
        }
        s.push('\n');
        for m in &self.imports {
            let _ = writeln!(s, "import {m} as {}", Self::module_alias(m));
        }
        s.push_str("\n_Buffer: _typing.TypeAlias = _b.bytes | _b.bytearray | _b.memoryview\n");
        s
    }
}

fn object_stub(ir: &Schema, o: &Object) -> String {
    let mut st = Stub::new(ir);
    let full = o.name.full();
    let short = &o.name.short;
    let view = st.class(&full, "");
    let owned = st.class(&full, "T");
    let builder = "_fb.Builder";
    let fields: Vec<&Field> = o.fields.iter().filter(|f| !f.deprecated).collect();
    let mut body = String::new();

    // The read-only view.
    let _ = writeln!(body, "class {short}:");
    if o.is_struct {
        let _ = writeln!(body, "    @classmethod\n    def SizeOf(cls) -> _b.int: ...");
    } else {
        for name in ["GetRootAs".to_owned(), format!("GetRootAs{short}")] {
            let _ = writeln!(
                body,
                "    @classmethod\n    def {name}(cls, buf: _Buffer, offset: _b.int = 0) -> {view}: ..."
            );
        }
    }
    let _ = writeln!(body, "    def Init(self, buf: _Buffer, pos: _b.int) -> None: ...");
    for f in &fields {
        let m = method_name(&f.name);
        match &f.ty {
            Type::Scalar(s) => {
                let _ = writeln!(body, "    def {m}(self) -> {}: ...", Stub::scalar(s));
            }
            Type::UnionType(_) => {
                let _ = writeln!(body, "    def {m}(self) -> _b.int: ...");
            }
            Type::String => {
                let _ = writeln!(body, "    def {m}(self) -> _b.bytes | None: ...");
            }
            Type::Struct(n) if o.is_struct => {
                let c = st.class(n, "");
                let _ = writeln!(body, "    def {m}(self, obj: {c}) -> {c}: ...");
            }
            Type::Struct(n) | Type::Table(n) => {
                let c = st.class(n, "");
                let _ = writeln!(body, "    def {m}(self) -> {c} | None: ...");
            }
            Type::Union(_) => {
                let _ = writeln!(body, "    def {m}(self) -> _fb.table.Table | None: ...");
            }
            Type::Array(inner, _) => match &**inner {
                Type::Scalar(s) => {
                    let py = Stub::scalar(s);
                    let nd = st.ndarray(s);
                    let _ = writeln!(
                        body,
                        "    @_typing.overload\n    def {m}(self, j: None = None) -> _b.list[{py}]: ...\n    \
                         @_typing.overload\n    def {m}(self, j: _b.int) -> {py} | None: ...\n    \
                         def {m}AsNumpy(self) -> {nd}: ..."
                    );
                    let _ = writeln!(
                        body,
                        "    def {m}Length(self) -> _b.int: ...\n    def {m}IsNone(self) -> _b.bool: ..."
                    );
                }
                Type::Struct(n) => {
                    let c = st.class(n, "");
                    let _ = writeln!(body, "    def {m}(self, i: _b.int) -> {c}: ...");
                    let _ = writeln!(
                        body,
                        "    def {m}Length(self) -> _b.int: ...\n    def {m}IsNone(self) -> _b.bool: ..."
                    );
                }
                _ => {}
            },
            Type::Vector(inner) => {
                match &**inner {
                    Type::Scalar(s) => {
                        let nd = st.ndarray(s);
                        let _ = writeln!(body, "    def {m}(self, j: _b.int) -> {}: ...", Stub::scalar(s));
                        // 0 when the vector is absent.
                        let _ = writeln!(body, "    def {m}AsNumpy(self) -> {nd} | _b.int: ...");
                    }
                    // "" (a str) when the vector is absent.
                    Type::String => {
                        let _ = writeln!(body, "    def {m}(self, j: _b.int) -> _b.bytes | _b.str: ...");
                    }
                    Type::Struct(n) | Type::Table(n) => {
                        let c = st.class(n, "");
                        let _ = writeln!(body, "    def {m}(self, j: _b.int) -> {c} | None: ...");
                    }
                    _ => {}
                }
                let _ =
                    writeln!(body, "    def {m}Length(self) -> _b.int: ...\n    def {m}IsNone(self) -> _b.bool: ...");
            }
            Type::Vector64(_) => {}
        }
    }
    body.push('\n');

    // The builder functions.
    if o.is_struct {
        let mut params = Vec::new();
        struct_params(&mut st, o, "", false, &mut params);
        let params: Vec<String> = params.into_iter().map(|(n, t)| format!("{n}: {t}")).collect();
        let _ = writeln!(body, "def Create{short}(builder: {builder}, {}) -> _b.int: ...", params.join(", "));
    } else {
        for prefix in [short.as_str(), ""] {
            let _ = writeln!(body, "def {prefix}Start(builder: {builder}) -> None: ...");
        }
        for f in &fields {
            let m = method_name(&f.name);
            let a = attr_name(&f.name);
            let value = match &f.ty {
                Type::Scalar(s) => Stub::scalar(s),
                _ => "_b.int".to_owned(),
            };
            for prefix in [short.as_str(), ""] {
                let _ = writeln!(body, "def {prefix}Add{m}(builder: {builder}, {a}: {value}) -> None: ...");
            }
            if matches!(f.ty, Type::Vector(_)) {
                for prefix in [short.as_str(), ""] {
                    let _ = writeln!(
                        body,
                        "def {prefix}Start{m}Vector(builder: {builder}, numElems: _b.int) -> _b.int: ..."
                    );
                }
            }
        }
        for prefix in [short.as_str(), ""] {
            let _ = writeln!(body, "def {prefix}End(builder: {builder}) -> _b.int: ...");
        }
    }
    body.push('\n');

    // The object API.
    let _ = writeln!(body, "class {short}T:");
    let mut params = Vec::new();
    for f in &fields {
        let a = attr_name(&f.name);
        let t = st.attr_type(&f.ty);
        let _ = writeln!(body, "    {a}: {t}");
        params.push(format!("{a}: {t} = ..."));
    }
    if params.is_empty() {
        let _ = writeln!(body, "    def __init__(self) -> None: ...");
    } else {
        let _ = writeln!(
            body,
            "    def __init__(\n        self,\n        {},\n    ) -> None: ...",
            params.join(",\n        ")
        );
    }
    let var = to_camel(&camel_to_snake(short), false);
    let var = if PY_KEYWORDS.contains(&var.as_str()) { format!("{var}_") } else { var };
    let _ = writeln!(
        body,
        "    @classmethod\n    def InitFromBuf(cls, buf: _Buffer, pos: _b.int) -> {owned}: ...\n    \
         @classmethod\n    def InitFromPackedBuf(cls, buf: _Buffer, pos: _b.int = 0) -> {owned}: ...\n    \
         @classmethod\n    def InitFromObj(cls, {var}: {view}) -> {owned}: ...\n    \
         def Pack(self, builder: {builder}) -> _b.int: ..."
    );
    format!("{}\n{body}", st.header())
}

/// The arguments of a struct's `Create` function: nested structs are
/// flattened with `outer_` prefixes; inside arrays each argument is a
/// sequence.
fn struct_params(st: &mut Stub<'_>, o: &Object, prefix: &str, in_array: bool, out: &mut Vec<(String, String)>) {
    for f in &o.fields {
        let name = format!("{prefix}{}", attr_name(&f.name));
        let (ty, array) = match &f.ty {
            Type::Array(inner, _) => (&**inner, true),
            t => (t, false),
        };
        match ty {
            Type::Struct(n) => {
                if let Some(inner) = st.ir.objects.get(n).cloned() {
                    struct_params(st, &inner, &format!("{name}_"), in_array || array, out);
                }
            }
            Type::Scalar(s) if !in_array && !array => out.push((name, Stub::scalar(s))),
            Type::Scalar(s) if !in_array => {
                let nd = st.ndarray(s);
                out.push((name, format!("_typing.Sequence[{}] | {nd}", Stub::scalar(s))));
            }
            _ => out.push((name, "_typing.Sequence[_typing.Any]".to_owned())),
        }
    }
}

fn enum_stub(ir: &Schema, e: &Enum) -> String {
    let mut st = Stub::new(ir);
    let mut body = format!("class {}:\n", e.name.short);
    for v in &e.values {
        let _ = writeln!(body, "    {}: _b.int", v.name);
    }
    if e.values.is_empty() {
        body.push_str("    pass\n");
    }
    let members = e.union_members();
    if !members.is_empty() {
        let mut types: Vec<String> = members.iter().map(|m| st.class(m, "T")).collect();
        types.push("None".into());
        let _ = write!(
            body,
            "\ndef {}Creator(unionType: _b.int, table: _typing.Any) -> {}: ...\n",
            e.name.short,
            types.join(" | ")
        );
    }
    format!("{}\n{body}", st.header())
}

// ----- formatting ------------------------------------------------------------------------------

/// The line length of the generated module (the Python package's ruff
/// setting).
const WIDTH: usize = 100;

/// A Python expression, laid out as `ruff format` lays out the shapes the
/// generator writes: on one line when it fits, else its arguments on one
/// indented line, else one argument per line with a trailing comma.
enum Py {
    Text(String),
    Call {
        /// Up to and including the opening bracket: `f(`.
        open: String,
        args: Vec<Self>,
        /// The closing bracket and what follows it on its line.
        close: String,
        /// Always one argument per line (a trailing comma keeps it so).
        explode: bool,
        /// A tuple: one element needs its comma.
        tuple: bool,
    },
}

impl Py {
    fn text(s: impl Into<String>) -> Self {
        Self::Text(s.into())
    }

    fn call(open: impl Into<String>, args: Vec<Self>, close: impl Into<String>) -> Self {
        Self::Call { open: open.into(), args, close: close.into(), explode: false, tuple: false }
    }

    fn exploded(open: impl Into<String>, args: Vec<Self>, close: impl Into<String>) -> Self {
        Self::Call { open: open.into(), args, close: close.into(), explode: true, tuple: false }
    }

    fn tuple(open: impl Into<String>, args: Vec<Self>, close: impl Into<String>, explode: bool) -> Self {
        Self::Call { open: open.into(), args, close: close.into(), explode, tuple: true }
    }

    fn inner(args: &[Self], tuple: bool) -> String {
        let mut s = args.iter().map(Self::flat).collect::<Vec<_>>().join(", ");
        if tuple && args.len() == 1 {
            s.push(',');
        }
        s
    }

    fn flat(&self) -> String {
        match self {
            Self::Text(s) => s.clone(),
            Self::Call { open, args, close, tuple, .. } => format!("{open}{}{close}", Self::inner(args, *tuple)),
        }
    }

    fn write(&self, out: &mut String, indent: usize, prefix: &str, suffix: &str) {
        let pad = " ".repeat(indent);
        let flat = format!("{pad}{prefix}{}{suffix}", self.flat());
        let Self::Call { open, args, close, explode, tuple } = self else {
            let _ = writeln!(out, "{flat}");
            return;
        };
        let explode = *explode && !args.is_empty();
        if args.is_empty() || (!explode && flat.len() <= WIDTH) {
            let _ = writeln!(out, "{flat}");
            return;
        }
        let _ = writeln!(out, "{pad}{prefix}{open}");
        let hugged = format!("{pad}    {}", Self::inner(args, *tuple));
        if !explode && hugged.len() <= WIDTH {
            let _ = writeln!(out, "{hugged}");
        } else {
            for a in args {
                a.write(out, indent + 4, "", ",");
            }
        }
        let _ = writeln!(out, "{pad}{close}{suffix}");
    }
}

/// Words of `text` in lines of at most `width` columns after `indent`.
fn wrap(text: &str, indent: usize, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent + line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// A docstring: the schema's `doc` lines, then `tail` wrapped, indented.
fn docstring(indent: usize, doc: &[String], tail: &str) -> String {
    let escape = |l: &str| l.replace('\\', "\\\\").replace("\"\"\"", "\\\"\\\"\\\"");
    let mut lines: Vec<String> = doc.iter().map(|l| escape(l.trim_end())).collect();
    if !tail.is_empty() {
        if !lines.is_empty() {
            lines.push(String::new());
        }
        // Room for the quotes on either end.
        lines.extend(wrap(&escape(tail), indent + 3, 88));
    }
    let pad = " ".repeat(indent);
    if lines.len() == 1 && indent + lines[0].len() + 6 <= WIDTH {
        return format!("{pad}\"\"\"{}\"\"\"\n", lines[0]);
    }
    let mut s = format!("{pad}\"\"\"{}\n", lines.first().map_or("", String::as_str));
    for l in lines.iter().skip(1) {
        if l.is_empty() {
            s.push('\n');
        } else {
            let _ = writeln!(s, "{pad}{l}");
        }
    }
    let _ = writeln!(s, "{pad}\"\"\"");
    s
}

fn hex32(x: u32) -> String {
    format!("0x{x:08X}")
}

fn hex64(x: u64) -> String {
    format!("0x{x:016X}")
}

// ----- the service module ----------------------------------------------------------------------

/// How the service module names the object-API class of each table it
/// uses: `PointsT`, or `chart_PointsT` when two namespaces share a name.
fn class_names(tables: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for t in tables {
        *count.entry(Name::parse(t).short).or_default() += 1;
    }
    tables
        .iter()
        .map(|t| {
            let n = Name::parse(t);
            let local = if count[&n.short] > 1 {
                format!("{}_{}T", n.namespace.join("_"), n.short)
            } else {
                format!("{}T", n.short)
            };
            (t.clone(), local)
        })
        .collect()
}

/// The module-level name of a table's `TableType`: `_T_CHART_POINTS`.
fn table_var(full: &str) -> String {
    let n = Name::parse(full);
    let mut parts: Vec<String> = n.namespace.iter().map(|p| crate::snake(p).to_uppercase()).collect();
    parts.push(crate::snake(&n.short).to_uppercase());
    format!("_T_{}", parts.join("_"))
}

/// The verifier's layout of a table: `gatewire.codegen.Field` arguments.
fn layout(ir: &Schema, o: &Object) -> Vec<String> {
    let mut out = Vec::new();
    for f in o.fields.iter().filter(|f| !f.deprecated) {
        let Some(check) = ir.check(f) else { continue };
        let req = if f.required { ", required=True" } else { "" };
        let attr = attr_name(&f.name);
        let spec = match check {
            Check::Scalar(size) => format!("_gc.SCALAR, {size}{req}"),
            Check::String => format!("_gc.STRING{req}"),
            Check::Struct(size) => format!("_gc.STRUCT, {size}{req}"),
            Check::Table(n) => format!("_gc.TABLE, table=\"{n}\"{req}, attr=\"{attr}\""),
            Check::Union(members) => {
                let members: Vec<String> = members.iter().map(|(v, t)| format!("({v}, \"{t}\")")).collect();
                let comma = if members.len() == 1 { "," } else { "" };
                format!("_gc.UNION{req}, attr=\"{attr}\", union=({}{comma})", members.join(", "))
            }
            Check::Vector(s, size) => {
                format!("_gc.VECTOR, {size}{req}, attr=\"{attr}\", dtype=\"{}\"", dtype_code(s))
            }
            Check::VectorString => format!("_gc.VECTOR_STRING{req}"),
            Check::VectorStruct(size) => format!("_gc.VECTOR_STRUCT, {size}{req}"),
            Check::VectorTable(n) => format!("_gc.VECTOR_TABLE, table=\"{n}\"{req}, attr=\"{attr}\""),
        };
        out.push(format!("_gc.Field({}, {spec})", f.id));
    }
    out
}

/// `<stem>_gatewire.py`.
pub fn render(ir: &Schema, source: &str) -> String {
    let mut method_tables: BTreeSet<String> = BTreeSet::new();
    for m in ir.services.iter().flat_map(|s| &s.methods) {
        method_tables.insert(m.request.full());
        method_tables.insert(m.response.full());
    }
    let all_methods: Vec<Method> = ir.services.iter().flat_map(|s| s.methods.clone()).collect();
    let reachable: Vec<String> = crate::frontend::reachable(&all_methods, &ir.objects, &ir.enums)
        .into_iter()
        .filter(|n| ir.objects.get(n).is_some_and(|o| !o.is_struct))
        .collect();
    let names = class_names(&method_tables);

    let mut out = String::new();
    let _ = writeln!(out, "# {} {source}. Do not edit.", crate::GENERATED_HEADER);
    let services: Vec<String> = ir.services.iter().map(|s| format!("``{}``", s.name.full())).collect();
    let summary = format!(
        "gatewire services of ``{source}``: {}.",
        if services.is_empty() { "none".to_owned() } else { services.join(", ") }
    );
    let _ = write!(
        out,
        "\"\"\"{}

Per service: ``<Name>Service`` (method ids, the descriptor the handshake
carries, ``route``), ``<Name>Handler`` (the handlers to implement),
``<Name>Client`` (typed calls on a ``gatewire.aio`` connection) and
``<Name>SyncClient`` (unary calls, server streams and events on a
``gatewire.sync`` connection).

Requests are flatc object-API values (the ``...T`` classes); replies and stream
items come back as object-API values unpacked from a verified buffer (numeric
vectors are numpy views of the received message when numpy is installed). A
payload that fails verification is ``INVALID_ARGUMENT``
(:mod:`gatewire.codegen`). flatc's modules sit beside this one; put this
directory on ``sys.path``.
\"\"\"

from __future__ import annotations

import abc
import typing

",
        wrap(&summary, 3, 76).join("\n")
    );
    for (full, local) in &names {
        let class = format!("{}T", Name::parse(full).short);
        if &class == local {
            let _ = writeln!(out, "from {full} import {class}");
        } else {
            let _ = writeln!(out, "from {full} import {class} as {local}");
        }
    }
    out.push_str("\nfrom gatewire import codegen as _gc\nfrom gatewire import sync as _sync\n");
    let mut exported: Vec<String> = Vec::new();
    for s in &ir.services {
        let b = s.base_name();
        exported.extend([format!("{b}Client"), format!("{b}Handler"), format!("{b}Service"), format!("{b}SyncClient")]);
    }
    exported.sort();
    out.push('\n');
    Py::exploded("__all__ = [", exported.iter().map(|e| Py::text(format!("\"{e}\""))).collect(), "]")
        .write(&mut out, 0, "", "");
    out.push('\n');

    // Layouts and message types.
    let entries: Vec<Py> = reachable
        .iter()
        .map(|t| {
            let fields: Vec<Py> = layout(ir, &ir.objects[t]).into_iter().map(Py::text).collect();
            let explode = fields.len() > 1;
            Py::tuple(format!("\"{t}\": ("), fields, ")", explode)
        })
        .collect();
    Py::call("_TABLES = _gc.Tables(", vec![Py::exploded("{", entries, "}")], ")").write(&mut out, 0, "", "");
    for (full, local) in &names {
        Py::call(
            format!("{}: _gc.TableType[{local}] = _TABLES.table(", table_var(full)),
            vec![
                Py::text(format!("\"{full}\"")),
                Py::text(local.clone()),
                Py::text(format!("{local}.InitFromPackedBuf")),
            ],
            ")",
        )
        .write(&mut out, 0, "", "");
    }
    for s in &ir.services {
        out.push_str("\n\n");
        service(&mut out, s, &names);
    }
    out
}

fn descriptor_expr(s: &Service, var: &str) -> Py {
    let d = &s.descriptor;
    let methods = d
        .methods
        .iter()
        .zip(&s.methods)
        .map(|(m, im)| {
            Py::exploded(
                "_gc.MethodDesc(",
                vec![
                    Py::text(format!("\"{}\"", m.name)),
                    Py::text(hex32(m.id)),
                    Py::text(format!("_gc.MethodKind.{}", im.kind.const_name())),
                    Py::text(hex64(m.request)),
                    Py::text(hex64(m.response)),
                ],
                ")",
            )
        })
        .collect();
    let shapes = d
        .shapes
        .iter()
        .map(|sh| {
            Py::exploded(
                "_gc.Shape(",
                vec![
                    Py::text(format!("\"{}\"", sh.name)),
                    Py::text(hex64(sh.ty)),
                    Py::text(if sh.fixed { "True" } else { "False" }),
                    Py::tuple("(", sh.slots.iter().map(|x| Py::text(hex64(*x))).collect(), ")", false),
                ],
                ")",
            )
        })
        .collect();
    Py::exploded(
        format!("{var} = _gc.Service("),
        vec![
            Py::text(format!("name=\"{}\"", d.name)),
            Py::text(format!("fingerprint={}", hex64(d.fingerprint))),
            Py::tuple("methods=(", methods, ")", true),
            Py::tuple("shapes=(", shapes, ")", true),
        ],
        ")",
    )
}

/// `async def name(self, params) -> ret:` (or `def`).
fn def(out: &mut String, is_async: bool, name: &str, params: &[String], ret: &str) {
    let mut args = vec![Py::text("self")];
    args.extend(params.iter().map(|p| Py::text(p.clone())));
    let kw = if is_async { "async def" } else { "def" };
    Py::call(format!("{kw} {name}("), args, format!(") -> {ret}:")).write(out, 4, "", "");
}

fn service(out: &mut String, s: &Service, names: &BTreeMap<String, String>) {
    let full = s.name.full();
    let base = s.base_name();
    let svc = format!("{base}Service");
    let handler = format!("{base}Handler");
    let desc_var = format!("_{}_DESCRIPTOR", crate::snake(&base).to_uppercase());
    let cls = |n: &Name| names[&n.full()].clone();
    let var = |n: &Name| table_var(&n.full());

    descriptor_expr(s, &desc_var).write(out, 0, "", "");

    // Constants, descriptor and route.
    let _ = writeln!(out, "\n\nclass {svc}:");
    out.push_str(&docstring(4, &s.doc, &format!("The ``{full}`` service: method ids, the descriptor and routing.")));
    let _ = writeln!(out, "\n    NAME: typing.Final = \"{full}\"\n    \"\"\"The fully qualified service name.\"\"\"");
    let _ = writeln!(
        out,
        "    FINGERPRINT: typing.Final = {}\n    \"\"\"The schema fingerprint (``docs/SCHEMA.md`` §4).\"\"\"",
        hex64(s.descriptor.fingerprint)
    );
    for m in &s.methods {
        let _ = writeln!(
            out,
            "    {}: typing.Final = {}\n    \"\"\"Method id of ``{}``.\"\"\"",
            m.const_name(),
            hex32(m.id),
            m.name
        );
    }
    let _ = write!(
        out,
        "
    @staticmethod
    def descriptor() -> _gc.Service:
        \"\"\"What the handshake advertises for this service: pass it in
        ``offers`` on the serving side and in ``uses`` on the calling side.\"\"\"
        return {desc_var}

    @staticmethod
    def route(router: _gc.Router, handler: {handler}) -> _gc.Router:
        \"\"\"Adds ``handler``'s methods to ``router``; returns ``router``.\"\"\"
"
    );
    for m in &s.methods {
        let id = Py::text(format!("{svc}.{}", m.const_name()));
        let f = Py::text(format!("handler.{}", crate::snake(&m.name)));
        let (rq, rs) = (Py::text(var(&m.request)), Py::text(var(&m.response)));
        let (register, adapter, args) = match m.kind {
            Kind::Unary => ("unary", "unary", vec![f, rq, rs]),
            Kind::ServerStreaming => ("stream", "server_streaming", vec![f, rq, rs]),
            Kind::ClientStreaming => ("stream", "client_streaming", vec![f, rq, rs]),
            Kind::BidiStreaming => ("stream", "bidi_streaming", vec![f, rq, rs]),
            Kind::Event => ("event", "event", vec![f, rq]),
        };
        Py::call(format!("router.{register}("), vec![id, Py::call(format!("_gc.{adapter}("), args, ")")], ")")
            .write(out, 8, "", "");
    }
    out.push_str("        return router\n");

    // The handler base class.
    let _ = writeln!(out, "\n\nclass {handler}(abc.ABC):");
    out.push_str(&docstring(
        4,
        &s.doc,
        &format!("The handlers of ``{full}``: implement every method, then register them with :meth:`{svc}.route`."),
    ));
    for m in &s.methods {
        let (rq, rs) = (cls(&m.request), cls(&m.response));
        let ctx = "ctx: _gc.CallContext".to_owned();
        let (params, ret) = match m.kind {
            Kind::Unary => (vec![ctx, format!("request: {rq}")], rs),
            Kind::ServerStreaming => {
                (vec![ctx, format!("request: {rq}"), format!("items: _gc.Sink[{rs}]")], "None".into())
            }
            Kind::ClientStreaming => (vec![ctx, format!("items: _gc.Source[{rq}]")], rs),
            Kind::BidiStreaming => {
                (vec![ctx, format!("items: _gc.Source[{rq}]"), format!("replies: _gc.Sink[{rs}]")], "None".into())
            }
            Kind::Event => (vec![ctx, format!("event: {rq}")], "None".into()),
        };
        out.push_str("\n    @abc.abstractmethod\n");
        def(out, true, &crate::snake(&m.name), &params, &ret);
        out.push_str(&docstring(8, &m.doc, m.kind.doc()));
    }

    // The clients.
    for sync in [false, true] {
        let class = if sync { format!("{base}SyncClient") } else { format!("{base}Client") };
        let _ = writeln!(out, "\n\nclass {class}:");
        let conn_type = if sync { "_sync.Connection" } else { "_gc.Connection" };
        let mut doc = if sync {
            format!("Calls ``{full}`` on a :mod:`gatewire.sync` connection.")
        } else {
            format!("Calls ``{full}`` on a :mod:`gatewire.aio` connection.")
        };
        doc.push_str(" ``timeout`` (seconds) travels to the peer as the call's deadline.");
        let streams: Vec<&str> = s
            .methods
            .iter()
            .filter(|m| matches!(m.kind, Kind::ClientStreaming | Kind::BidiStreaming))
            .map(|m| m.name.as_str())
            .collect();
        if sync && !streams.is_empty() {
            let _ =
                write!(doc, " Client and bidirectional streams ({}) need :class:`{base}Client`.", streams.join(", "));
        }
        out.push_str(&docstring(4, &[], &doc));
        let _ = write!(
            out,
            "
    __slots__ = (\"_conn\",)

    def __init__(self, connection: {conn_type}) -> None:
        self._conn = connection

    @property
    def connection(self) -> {conn_type}:
        \"\"\"The connection.\"\"\"
        return self._conn
"
        );
        for m in &s.methods {
            if sync && matches!(m.kind, Kind::ClientStreaming | Kind::BidiStreaming) {
                continue;
            }
            client_method(out, sync, &svc, m, &cls(&m.request), &cls(&m.response), &var(&m.request), &var(&m.response));
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn client_method(out: &mut String, sync: bool, svc: &str, m: &Method, rq: &str, rs: &str, vq: &str, vs: &str) {
    let name = crate::snake(&m.name);
    let id = format!("{svc}.{}", m.const_name());
    let timeout = "*".to_owned();
    let timeout_arg = "timeout: float | None = None".to_owned();
    let aw = if sync { "" } else { "await " };
    let call = |out: &mut String, prefix: &str, method: &str, args: Vec<Py>| {
        Py::call(format!("{prefix}{aw}self._conn.{method}("), args, ")").write(out, 8, "", "");
    };
    let packed = |v: &str| Py::text(format!("{vq}.pack({v})"));
    out.push('\n');
    match m.kind {
        Kind::Unary => {
            def(out, !sync, &name, &[format!("request: {rq}"), timeout, timeout_arg], rs);
            out.push_str(&docstring(8, &m.doc, m.kind.doc()));
            call(out, "reply = ", "call", vec![Py::text(id), packed("request"), Py::text("timeout=timeout")]);
            let _ = writeln!(out, "        return {vs}.reply(reply)");
        }
        Kind::ServerStreaming => {
            let ret = if sync { format!("_gc.SyncSource[{rs}]") } else { format!("_gc.Source[{rs}]") };
            def(out, !sync, &name, &[format!("request: {rq}"), timeout, timeout_arg], &ret);
            out.push_str(&docstring(8, &m.doc, m.kind.doc()));
            call(out, "stream = ", "server_stream", vec![Py::text(id), packed("request"), Py::text("timeout=timeout")]);
            let _ = writeln!(out, "        return _gc.{}(stream, {vs})", if sync { "SyncSource" } else { "Source" });
        }
        Kind::ClientStreaming => {
            def(out, true, &name, &[timeout, timeout_arg], &format!("tuple[_gc.Sink[{rq}], _gc.Reply[{rs}]]"));
            let doc = format!("{} Send the items, ``finish`` the sink, then await the reply.", m.kind.doc());
            out.push_str(&docstring(8, &m.doc, &doc));
            call(out, "tx, rx = ", "open_stream", vec![Py::text(id), Py::text("b\"\""), Py::text("timeout=timeout")]);
            let _ = writeln!(out, "        return _gc.Sink(tx, {vq}), _gc.Reply(_gc.Source(rx, {vs}))");
        }
        Kind::BidiStreaming => {
            def(out, true, &name, &[timeout, timeout_arg], &format!("tuple[_gc.Sink[{rq}], _gc.Source[{rs}]]"));
            out.push_str(&docstring(8, &m.doc, m.kind.doc()));
            call(out, "tx, rx = ", "open_stream", vec![Py::text(id), Py::text("b\"\""), Py::text("timeout=timeout")]);
            let _ = writeln!(out, "        return _gc.Sink(tx, {vq}), _gc.Source(rx, {vs})");
        }
        Kind::Event => {
            def(out, !sync, &name, &[format!("event: {rq}")], "None");
            out.push_str(&docstring(8, &m.doc, m.kind.doc()));
            call(out, "", "emit", vec![Py::text(id), packed("event")]);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn flatc_names() {
        // As flatc 25.12.19 spells them (checked against its output).
        let cases = [
            ("sent_ns", "SentNs", "sentNs"),
            ("fooBar", "FooBar", "fooBar"),
            ("HTTPCode", "Httpcode", "httpcode"),
            ("a_1b", "A1b", "a1b"),
            ("x__y", "X_y", "x_y"),
            ("_lead", "_Lead", "_Lead"),
            ("trail_", "Trail_", "trail_"),
            ("from", "From", "from_"),
            ("class_", "Class_", "class_"),
            ("is", "Is", "is_"),
            ("type", "Type", "type"),
            ("v2_x", "V2X", "v2X"),
            ("snake_ABC", "SnakeAbc", "snakeAbc"),
            ("lambda", "Lambda", "lambda_"),
        ];
        for (field, method, attr) in cases {
            assert_eq!((method_name(field), attr_name(field)), (method.to_owned(), attr.to_owned()), "{field}");
        }
    }

    /// A schema with every field kind the generators handle.
    pub(crate) const KITCHEN: &str = "namespace k.inner;
enum Color : ubyte { Red, Green = 3, Blue }
struct Pt { x: float; y: float; }
struct Box { a: Pt; tag: [ubyte:3]; c: Color; }
table Leaf { name: string; n: int64 = 5; }
table Leaf2 { v: [double]; }
union Any { Leaf, Other: Leaf2 = 7 }
namespace k;
attribute \"event\";
table All {
  b: bool = true; i8: byte; f: float = 1.5; color: k.inner.Color = Blue;
  s: string (required); pt: k.inner.Pt; bx: k.inner.Box; leaf: k.inner.Leaf;
  bools: [bool]; longs: [long]; strs: [string]; pts: [k.inner.Pt]; leaves: [k.inner.Leaf];
  any: k.inner.Any; old: int (deprecated); from: int;
}
table Leaf { shadow: bool; }
rpc_service KitchenService {
  Do(All): k.inner.Leaf;
  Shadow(Leaf): k.inner.Leaf (streaming: \"bidi\");
  Note(k.inner.Leaf2): Leaf (event);
}
";

    pub(crate) fn generate_into(lang: crate::Lang, text: &str) -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let schema = dir.path().join("kitchen.fbs");
        std::fs::write(&schema, text).unwrap();
        let out = dir.path().join("out");
        let files = crate::generate(lang, &schema, &[], &out).unwrap();
        (dir, files)
    }

    #[test]
    fn every_field_kind_gets_a_layout_and_a_stub() {
        let (dir, files) = generate_into(crate::Lang::Python, KITCHEN);
        let out = dir.path().join("out");
        let read = |p: &str| std::fs::read_to_string(out.join(p)).unwrap();
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            assert!(text.starts_with("# @generated by gatewire-codegen from "), "{}", f.display());
        }
        let module = read("kitchen_gatewire.py");
        for want in [
            "_gc.Field(4, _gc.STRING, required=True),",
            "_gc.Field(5, _gc.STRUCT, 8),",
            "_gc.Field(6, _gc.STRUCT, 12),",
            "_gc.Field(7, _gc.TABLE, table=\"k.inner.Leaf\", attr=\"leaf\"),",
            "_gc.Field(8, _gc.VECTOR, 1, attr=\"bools\", dtype=\"b1\"),",
            "_gc.Field(10, _gc.VECTOR_STRING),",
            "_gc.Field(11, _gc.VECTOR_STRUCT, 8),",
            "_gc.Field(14, _gc.UNION, attr=\"any\", union=((1, \"k.inner.Leaf\"), (7, \"k.inner.Leaf2\"))),",
            "_gc.Field(16, _gc.SCALAR, 4),",
            // Two tables called Leaf: aliased by namespace.
            "from k.inner.Leaf import LeafT as k_inner_LeafT",
            "from k.Leaf import LeafT as k_LeafT",
            "class KitchenService:",
            "class KitchenHandler(abc.ABC):",
            "class KitchenSyncClient:",
        ] {
            assert!(module.contains(want), "{want}\n{module}");
        }
        // The deprecated field has no slot in the layout.
        assert!(!module.contains("_gc.Field(15,"), "{module}");
        let stub = read("k/All.pyi");
        for want in [
            "from_: _b.int",
            "any: _m_k_inner_Leaf.LeafT | _m_k_inner_Leaf2.Leaf2T | None",
            "strs: _b.list[_b.str] | _b.list[_b.bytes] | None",
            "def AllStartLongsVector(builder: _fb.Builder, numElems: _b.int) -> _b.int: ...",
            "def Any(self) -> _fb.table.Table | None: ...",
        ] {
            assert!(stub.contains(want), "{want}\n{stub}");
        }
        assert!(!stub.contains("Old"), "{stub}");
        let boxed = read("k/inner/Box.pyi");
        assert!(boxed.contains("def CreateBox(builder: _fb.Builder, a_x: _b.float, a_y: _b.float, tag:"), "{boxed}");
        assert!(read("k/inner/Any.pyi").contains("def AnyCreator(unionType: _b.int, table: _typing.Any)"));
    }

    #[test]
    fn descriptors_are_the_rust_ones() {
        let flatc = crate::frontend::find_flatc().unwrap();
        let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema/examples/chart.fbs");
        let ir = crate::frontend::load(&flatc, &schema, &[]).unwrap();
        let module = render(&ir, "chart.fbs");
        let chart = &ir.services[0].descriptor;
        assert!(module.contains(&format!("fingerprint={},", hex64(chart.fingerprint))));
        for m in &chart.methods {
            assert!(module.contains(&format!("\"{}\",\n            {},\n", m.name, hex32(m.id))), "{}", m.name);
            assert!(module.contains(&hex64(m.request)) && module.contains(&hex64(m.response)));
        }
        for sh in &chart.shapes {
            assert!(module.contains(&format!("\"{}\",\n            {},", sh.name, hex64(sh.ty))), "{}", sh.name);
        }
    }

    #[test]
    fn unsupported_types_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let schema = dir.path().join("v.fbs");
        std::fs::write(&schema, "namespace v; table T { big: [ubyte] (vector64); } rpc_service S { M(T): T; }")
            .unwrap();
        for lang in [crate::Lang::Python, crate::Lang::Ts] {
            let e = crate::generate(lang, &schema, &[], &dir.path().join("out")).unwrap_err();
            assert!(e.to_string().contains("64-bit vectors are not supported"), "{e}");
        }
    }

    #[test]
    fn stems() {
        assert_eq!(module_stem(Path::new("a/chart.fbs")), "chart");
        assert_eq!(module_stem(Path::new("my-schema.v2.fbs")), "my_schema_v2");
        assert_eq!(module_stem(Path::new("3d.fbs")), "_3d");
    }
}
