//! The TypeScript generator: flatc's object-API modules (ES modules with
//! `.js` import suffixes, one per type, plus its namespace re-export files)
//! and `<stem>_gatewire.ts` with, per service, the method ids, descriptor
//! and routing (`<Name>Service`), a handler interface (`<Name>Handler`) and
//! a typed client (`<Name>Client`). The service module imports the runtime
//! support as `import { codegen as gc } from 'gatewire'` and the
//! `flatbuffers` package.
//!
//! Requests are flatc object-API values (`PointsT`); handlers and clients
//! receive flatc's zero-copy views (`Points`) of verified buffers, so
//! `xsArray()` is a `Float64Array` over the received message.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::frontend::{run_flatc, scratch_dir};
use crate::ir::{Check, Kind, Method, Name, Object, Schema, Service};
use crate::python::{camel_to_snake, module_stem};

/// Writes flatc's modules and `<stem>_gatewire.ts` into `out`.
pub fn generate(
    flatc: &Path,
    ir: &Schema,
    schema: &Path,
    includes: &[PathBuf],
    out: &Path,
) -> Result<Vec<PathBuf>, Error> {
    crate::python::check_supported(ir)?;
    let tmp = scratch_dir()?;
    run_flatc(flatc, &["--ts", "--gen-object-api"], schema, includes, tmp.path())?;

    let source = crate::display_name(schema);
    let header = format!("// {} {source}. Do not edit.\n", crate::GENERATED_HEADER);
    let files = crate::files_under(tmp.path())?;
    let mut written = Vec::new();
    for rel in &files {
        let text = std::fs::read_to_string(tmp.path().join(rel))
            .map_err(|e| Error::Io(format!("reading flatc's output {}: {e}", rel.display())))?;
        written.push(crate::write(&out.join(rel), &format!("{header}{text}"))?);
    }
    let tables = method_tables(ir);
    let mut modules = BTreeMap::new();
    for t in &tables {
        let rel = module_path(t);
        if !files.iter().any(|f| f == Path::new(&format!("{rel}.ts"))) {
            return Err(Error::Schema(format!(
                "{t}: flatc wrote no {rel}.ts (a table of an included schema? generate that schema's code too)"
            )));
        }
        modules.insert(t.clone(), rel);
    }
    let stem = module_stem(schema);
    written.push(crate::write(&out.join(format!("{stem}_gatewire.ts")), &render(ir, &source, &modules))?);
    Ok(written)
}

/// The request and response tables of every method.
fn method_tables(ir: &Schema) -> BTreeSet<String> {
    let mut tables = BTreeSet::new();
    for m in ir.services.iter().flat_map(|s| &s.methods) {
        tables.insert(m.request.full());
        tables.insert(m.response.full());
    }
    tables
}

/// flatc's file of a type, without `.ts`: `chart.ProbeReply` →
/// `chart/probe-reply` (`Vec3` → `vec3`: a `_` before a digit is dropped).
fn module_path(full: &str) -> String {
    let n = Name::parse(full);
    let snake: Vec<char> = camel_to_snake(&n.short).chars().collect();
    let mut file = String::new();
    for (i, &c) in snake.iter().enumerate() {
        if c == '_' {
            if i > 0 && !snake.get(i + 1).is_some_and(char::is_ascii_digit) {
                file.push('-');
            }
        } else {
            file.push(c);
        }
    }
    let mut parts = n.namespace.clone();
    parts.push(file);
    parts.join("/")
}

/// How the service module names each table's view and object-API classes:
/// `Points`/`PointsT`, or `chart_Points` when two namespaces share a name.
fn class_names(tables: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for t in tables {
        *count.entry(Name::parse(t).short).or_default() += 1;
    }
    tables
        .iter()
        .map(|t| {
            let n = Name::parse(t);
            let local = if count[&n.short] > 1 { format!("{}_{}", n.namespace.join("_"), n.short) } else { n.short };
            (t.clone(), local)
        })
        .collect()
}

/// A TSDoc comment: the schema's doc lines, then `tail`.
fn doc(out: &mut String, indent: &str, lines: &[String], tail: &str) {
    let mut all: Vec<String> = lines.iter().map(|l| l.replace("*/", "*\\/")).collect();
    if !tail.is_empty() {
        if !all.is_empty() {
            all.push(String::new());
        }
        all.push(tail.to_owned());
    }
    if all.len() == 1 {
        let _ = writeln!(out, "{indent}/** {} */", all[0]);
        return;
    }
    let _ = writeln!(out, "{indent}/**");
    for l in &all {
        if l.is_empty() {
            let _ = writeln!(out, "{indent} *");
        } else {
            let _ = writeln!(out, "{indent} * {l}");
        }
    }
    let _ = writeln!(out, "{indent} */");
}

/// The verifier's layout of a table: `codegen.Field` literals.
fn layout(ir: &Schema, o: &Object) -> Vec<String> {
    let mut out = Vec::new();
    for f in o.fields.iter().filter(|f| !f.deprecated) {
        let Some(check) = ir.check(f) else { continue };
        let req = if f.required { ", required: true" } else { "" };
        let spec = match check {
            Check::Scalar(size) => format!("kind: gc.SCALAR, size: {size}{req}"),
            Check::String => format!("kind: gc.STRING{req}"),
            Check::Struct(size) => format!("kind: gc.STRUCT, size: {size}{req}"),
            Check::Table(n) => format!("kind: gc.TABLE, table: '{n}'{req}"),
            Check::Union(members) => {
                let members: Vec<String> = members.iter().map(|(v, t)| format!("[{v}, '{t}']")).collect();
                format!("kind: gc.UNION{req}, union: [{}]", members.join(", "))
            }
            Check::Vector(_, size) => format!("kind: gc.VECTOR, size: {size}{req}"),
            Check::VectorString => format!("kind: gc.VECTOR_STRING{req}"),
            Check::VectorStruct(size) => format!("kind: gc.VECTOR_STRUCT, size: {size}{req}"),
            Check::VectorTable(n) => format!("kind: gc.VECTOR_TABLE, table: '{n}'{req}"),
        };
        out.push(format!("{{ slot: {}, {spec} }}", f.id));
    }
    out
}

/// `<stem>_gatewire.ts`; `modules` maps each method table to flatc's file.
pub fn render(ir: &Schema, source: &str, modules: &BTreeMap<String, String>) -> String {
    let tables = method_tables(ir);
    let names = class_names(&tables);
    let all_methods: Vec<Method> = ir.services.iter().flat_map(|s| s.methods.clone()).collect();
    let reachable: Vec<String> = crate::frontend::reachable(&all_methods, &ir.objects, &ir.enums)
        .into_iter()
        .filter(|n| ir.objects.get(n).is_some_and(|o| !o.is_struct))
        .collect();

    let mut out = String::new();
    let _ = writeln!(out, "// {} {source}. Do not edit.", crate::GENERATED_HEADER);
    let services: Vec<String> = ir.services.iter().map(|s| format!("`{}`", s.name.full())).collect();
    let _ = write!(
        out,
        "/**
 * gatewire services of `{source}`: {}.
 *
 * Per service: `<Name>Service` (method ids, the descriptor the handshake
 * carries, `route`), `<Name>Handler` (the handlers to implement) and
 * `<Name>Client` (typed calls on a connection).
 *
 * Requests are flatc object-API values (the `…T` classes); handlers and
 * clients receive flatc's views of verified buffers, read in place: a
 * `[double]` field's `…Array()` is a `Float64Array` over the received
 * message. A payload that fails verification is `INVALID_ARGUMENT`
 * (`gatewire/codegen`).
 *
 * @module
 */

import * as flatbuffers from 'flatbuffers';
import {{ codegen as gc }} from 'gatewire';

",
        if services.is_empty() { "none".to_owned() } else { services.join(", ") }
    );
    for (full, local) in &names {
        let short = Name::parse(full).short;
        let imports = if &short == local {
            format!("{short}, {short}T")
        } else {
            format!("{short} as {local}, {short}T as {local}T")
        };
        let _ = writeln!(out, "import {{ {imports} }} from './{}.js';", modules[full]);
    }
    out.push_str(
        "
/** Serializes an object-API value. */
function encode(value: { pack(builder: flatbuffers.Builder): flatbuffers.Offset }): Uint8Array {
  const builder = new flatbuffers.Builder(256);
  builder.finish(value.pack(builder));
  return builder.asUint8Array();
}

/** The verifier's layouts of the tables the services reach. */
const LAYOUTS: gc.Layouts = {
",
    );
    for t in &reachable {
        let fields = layout(ir, &ir.objects[t]);
        if fields.is_empty() {
            let _ = writeln!(out, "  '{t}': [],");
        } else {
            let _ = writeln!(out, "  '{t}': [\n    {},\n  ],", fields.join(",\n    "));
        }
    }
    out.push_str("};\n\n/** The message types of the services' requests, replies and stream items. */\nexport const TABLES = {\n");
    for (full, local) in &names {
        let short = Name::parse(full).short;
        let _ = writeln!(
            out,
            "  '{full}': new gc.TableType(\n    '{full}',\n    LAYOUTS,\n    {local}T,\n    \
             (bytes) => {local}.getRootAs{short}(new flatbuffers.ByteBuffer(bytes)),\n    encode,\n  ),"
        );
    }
    out.push_str("} as const;\n");
    for s in &ir.services {
        out.push('\n');
        service(&mut out, s, &names);
    }
    out
}

fn descriptor(s: &Service) -> String {
    let d = &s.descriptor;
    let mut out = String::from("    return {\n");
    let _ = writeln!(out, "      name: '{}',", d.name);
    let _ = writeln!(out, "      fingerprint: {:#018x}n,", d.fingerprint);
    out.push_str("      methods: [\n");
    for (m, im) in d.methods.iter().zip(&s.methods) {
        let _ = writeln!(
            out,
            "        {{ name: '{}', id: {:#010x}, kind: gc.MethodKind.{}, request: {:#018x}n, response: {:#018x}n }},",
            m.name,
            m.id,
            im.kind.const_name(),
            m.request,
            m.response
        );
    }
    out.push_str("      ],\n      shapes: [\n");
    for sh in &d.shapes {
        let slots: Vec<String> = sh.slots.iter().map(|x| format!("{x:#018x}n")).collect();
        let _ = writeln!(
            out,
            "        {{ name: '{}', type: {:#018x}n, fixed: {}, slots: [{}] }},",
            sh.name,
            sh.ty,
            sh.fixed,
            slots.join(", ")
        );
    }
    out.push_str("      ],\n    };\n");
    out
}

fn service(out: &mut String, s: &Service, names: &BTreeMap<String, String>) {
    let full = s.name.full();
    let base = s.base_name();
    let svc = format!("{base}Service");
    let handler = format!("{base}Handler");
    let view = |n: &Name| names[&n.full()].clone();
    let owned = |n: &Name| format!("{}T", names[&n.full()]);
    let table = |n: &Name| format!("TABLES['{}']", n.full());

    // Constants, descriptor and route.
    doc(out, "", &s.doc, &format!("The `{full}` service: method ids, the descriptor and routing."));
    let _ = writeln!(out, "export class {svc} {{");
    let _ = writeln!(out, "  /** The fully qualified service name. */\n  static readonly NAME = '{full}';");
    let _ = writeln!(
        out,
        "  /** The schema fingerprint (`docs/SCHEMA.md` §4). */\n  static readonly FINGERPRINT = {:#018x}n;",
        s.descriptor.fingerprint
    );
    for m in &s.methods {
        let _ = writeln!(
            out,
            "  /** Method id of `{}`. */\n  static readonly {} = {:#010x};",
            m.name,
            m.const_name(),
            m.id
        );
    }
    let _ = write!(
        out,
        "
  /**
   * What the handshake advertises for this service (a fresh copy): pass it
   * in `offers` on the serving side and in `uses` on the calling side.
   */
  static descriptor(): gc.Service {{
{}  }}

  /** Adds `handler`'s methods to `router`; returns `router`. */
  static route(router: gc.Router, handler: {handler}): gc.Router {{
    return router
",
        descriptor(s)
    );
    for (i, m) in s.methods.iter().enumerate() {
        let name = crate::lower_camel(&m.name);
        let id = format!("{svc}.{}", m.const_name());
        let (rq, rs) = (table(&m.request), table(&m.response));
        let line = match m.kind {
            Kind::Unary => format!("unary({id}, gc.unary((ctx, r) => handler.{name}(ctx, r), {rq}, {rs}))"),
            Kind::ServerStreaming => {
                format!(
                    "stream({id}, gc.serverStreaming((ctx, r, items) => handler.{name}(ctx, r, items), {rq}, {rs}))"
                )
            }
            Kind::ClientStreaming => {
                format!("stream({id}, gc.clientStreaming((ctx, items) => handler.{name}(ctx, items), {rq}, {rs}))")
            }
            Kind::BidiStreaming => format!(
                "stream({id}, gc.bidiStreaming((ctx, items, replies) => handler.{name}(ctx, items, replies), {rq}, {rs}))"
            ),
            Kind::Event => format!("event({id}, gc.event((ctx, e) => handler.{name}(ctx, e), {rq}))"),
        };
        let end = if i + 1 == s.methods.len() { ";" } else { "" };
        let _ = writeln!(out, "      .{line}{end}");
    }
    if s.methods.is_empty() {
        out.push_str("      ;\n");
    }
    out.push_str("  }\n}\n\n");

    // The handler interface.
    doc(
        out,
        "",
        &s.doc,
        &format!(
            "The handlers of `{full}`: implement every method, then register them with {{@link {svc}.route}}. \
             Requests and items are views of verified buffers."
        ),
    );
    let _ = writeln!(out, "export interface {handler} {{");
    for m in &s.methods {
        let name = crate::lower_camel(&m.name);
        let (rq, rs) = (view(&m.request), owned(&m.response));
        let sig = match m.kind {
            Kind::Unary => format!("{name}(ctx: gc.CallContext, request: {rq}): gc.Awaitable<{rs}>;"),
            Kind::ServerStreaming => {
                format!("{name}(ctx: gc.CallContext, request: {rq}, items: gc.Sink<{rs}>): gc.Awaitable<void>;")
            }
            Kind::ClientStreaming => {
                format!("{name}(ctx: gc.CallContext, items: gc.Source<{rq}>): gc.Awaitable<{rs}>;")
            }
            Kind::BidiStreaming => format!(
                "{name}(ctx: gc.CallContext, items: gc.Source<{rq}>, replies: gc.Sink<{rs}>): gc.Awaitable<void>;"
            ),
            Kind::Event => format!("{name}(ctx: gc.CallContext, event: {rq}): gc.Awaitable<void>;"),
        };
        doc(out, "  ", &m.doc, m.kind.doc());
        let _ = writeln!(out, "  {sig}");
    }
    out.push_str("}\n\n");

    // The client.
    doc(
        out,
        "",
        &[],
        &format!(
            "Calls `{full}` on a connection. `timeoutMs` travels to the peer as the call's deadline; \
             aborting `signal` cancels the call."
        ),
    );
    let _ = writeln!(
        out,
        "export class {base}Client {{\n  constructor(\n    /** The connection. */\n    readonly connection: gc.Connection,\n  ) {{}}"
    );
    for m in &s.methods {
        let name = crate::lower_camel(&m.name);
        let id = format!("{svc}.{}", m.const_name());
        let (tq, ts) = (table(&m.request), table(&m.response));
        let (oq, vs) = (owned(&m.request), view(&m.response));
        let opts = "options";
        out.push('\n');
        let extra = if m.kind == Kind::ClientStreaming {
            " Send the items, `finish` the sink, then await the reply."
        } else {
            ""
        };
        doc(out, "  ", &m.doc, &format!("{}{extra}", m.kind.doc()));
        let body = match m.kind {
            Kind::Unary => format!(
                "  async {name}(request: {oq}, options: gc.CallOptions = {{}}): Promise<{vs}> {{
    const reply = await this.connection.call({id}, {tq}.pack(request), {opts});
    return {ts}.reply(reply);
  }}
"
            ),
            Kind::ServerStreaming => format!(
                "  async {name}(request: {oq}, options: gc.CallOptions = {{}}): Promise<gc.Source<{vs}>> {{
    const rx = await this.connection.serverStream({id}, {tq}.pack(request), {opts});
    return new gc.Source(rx, {ts});
  }}
"
            ),
            Kind::ClientStreaming => format!(
                "  async {name}(options: gc.CallOptions = {{}}): Promise<[gc.Sink<{oq}>, gc.Reply<{vs}>]> {{
    const {{ tx, rx }} = await this.connection.openStream({id}, new Uint8Array(0), {opts});
    return [new gc.Sink(tx, {tq}), new gc.Reply(new gc.Source(rx, {ts}))];
  }}
"
            ),
            Kind::BidiStreaming => format!(
                "  async {name}(options: gc.CallOptions = {{}}): Promise<[gc.Sink<{oq}>, gc.Source<{vs}>]> {{
    const {{ tx, rx }} = await this.connection.openStream({id}, new Uint8Array(0), {opts});
    return [new gc.Sink(tx, {tq}), new gc.Source(rx, {ts})];
  }}
"
            ),
            Kind::Event => format!(
                "  async {name}(event: {oq}, options: Pick<gc.CallOptions, 'signal'> = {{}}): Promise<void> {{
    await this.connection.emit({id}, {tq}.pack(event), options);
  }}
"
            ),
        };
        out.push_str(&body);
    }
    out.push_str("}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_kind_gets_a_layout() {
        let (dir, files) = crate::python::tests::generate_into(crate::Lang::Ts, crate::python::tests::KITCHEN);
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            assert!(text.starts_with("// @generated by gatewire-codegen from "), "{}", f.display());
        }
        let module = std::fs::read_to_string(dir.path().join("out/kitchen_gatewire.ts")).unwrap();
        for want in [
            "{ slot: 4, kind: gc.STRING, required: true },",
            "{ slot: 6, kind: gc.STRUCT, size: 12 },",
            "{ slot: 9, kind: gc.VECTOR, size: 8 },",
            "{ slot: 12, kind: gc.VECTOR_TABLE, table: 'k.inner.Leaf' },",
            "{ slot: 14, kind: gc.UNION, union: [[1, 'k.inner.Leaf'], [7, 'k.inner.Leaf2']] },",
            "import { Leaf as k_inner_Leaf, LeafT as k_inner_LeafT } from './k/inner/leaf.js';",
            "import { Leaf as k_Leaf, LeafT as k_LeafT } from './k/leaf.js';",
            "export class KitchenService {",
            "export interface KitchenHandler {",
            "shadow(ctx: gc.CallContext, items: gc.Source<k_Leaf>, replies: gc.Sink<k_inner_LeafT>): gc.Awaitable<void>;",
            "async note(event: Leaf2T, options: Pick<gc.CallOptions, 'signal'> = {}): Promise<void> {",
        ] {
            assert!(module.contains(want), "{want}\n{module}");
        }
    }

    #[test]
    fn flatc_file_names() {
        // As flatc 25.12.19 names them (checked against its output).
        assert_eq!(module_path("chart.ProbeReply"), "chart/probe-reply");
        assert_eq!(module_path("gateway.Vec3"), "gateway/vec3");
        assert_eq!(module_path("k.inner.Leaf2"), "k/inner/leaf2");
        assert_eq!(module_path("a.HTTPCode"), "a/httpcode");
        assert_eq!(module_path("Root"), "root");
    }
}
