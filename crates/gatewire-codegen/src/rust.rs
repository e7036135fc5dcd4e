//! The Rust generator: one file per schema holding flatc's table code (with
//! the object API) and, per service, a module with the method ids, the
//! descriptor, a `Handler` trait, `route` and a typed `Client`. The code
//! names only `::gatewire` paths, so a crate needs no other dependency.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use gatewire_proto::control::Service as Descriptor;

use crate::Error;
use crate::frontend::{run_flatc, scratch_dir};
use crate::ir::{Kind, Method, Name, Schema, Service};

/// Writes `<stem>.rs` into `out`.
pub fn generate(
    flatc: &Path,
    ir: &Schema,
    schema: &Path,
    includes: &[PathBuf],
    out: &Path,
) -> Result<Vec<PathBuf>, Error> {
    let tmp = scratch_dir()?;
    run_flatc(flatc, &["--rust", "--gen-object-api"], schema, includes, tmp.path())?;
    let stem = schema.file_stem().and_then(|s| s.to_str()).unwrap_or("schema").to_owned();
    let flatc_out = tmp.path().join(format!("{stem}_generated.rs"));
    let tables = std::fs::read_to_string(&flatc_out)
        .map_err(|e| Error::Io(format!("reading flatc's output {}: {e}", flatc_out.display())))?;
    let text = render(ir, &crate::display_name(schema), &tables);
    Ok(vec![crate::write(&out.join(format!("{stem}.rs")), &text)?])
}

/// `a.b.C` as a path from the file's top level.
fn path(name: &Name) -> String {
    let mut p: Vec<String> = name.namespace.iter().map(|n| n.to_owned()).collect();
    p.push(name.short.clone());
    p.join("::")
}

/// The object-API type of a table.
fn owned(name: &Name) -> String {
    format!("{}T", path(name))
}

fn module_name(service: &Service) -> String {
    let snake = crate::snake(&service.name.short);
    if snake.ends_with("service") { snake } else { format!("{snake}_service") }
}

fn doc_lines(out: &mut String, indent: &str, lines: &[String]) {
    for l in lines {
        let _ = writeln!(out, "{indent}///{}{l}", if l.is_empty() { "" } else { " " });
    }
}

/// The whole file.
pub fn render(ir: &Schema, source: &str, flatc_tables: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "// {} {source}. Do not edit.", crate::GENERATED_HEADER);
    let _ = writeln!(out, "//");
    let _ = writeln!(out, "// Include it with `include!`; it depends only on the `gatewire` crate.");
    out.push('\n');
    // flatc names its runtime `::flatbuffers`; the re-export keeps users from
    // depending on a second copy.
    out.push_str(&rewrite_flatc(flatc_tables));
    out.push('\n');

    let mut tables: Vec<&Name> =
        ir.services.iter().flat_map(|s| &s.methods).flat_map(|m| [&m.request, &m.response]).collect();
    tables.sort();
    tables.dedup();
    for t in tables {
        let _ = write!(
            out,
            "impl ::gatewire::codegen::Table for {owned} {{
    type View<'a> = {view}<'a>;

    fn to_message(&self) -> ::gatewire::Message {{
        ::gatewire::codegen::pack_with(|fbb| self.pack(fbb))
    }}

    fn from_view(view: &Self::View<'_>) -> Self {{
        view.unpack()
    }}
}}

",
            owned = owned(t),
            view = path(t),
        );
    }
    for s in &ir.services {
        service(&mut out, s);
    }
    out
}

/// flatc's Rust expects to sit at a crate root, with `flatbuffers` as a
/// dependency: point its runtime paths at `::gatewire::codegen::flatbuffers`
/// and its `alloc::` paths at `::std::`, so the file can be included in any
/// module. Object-API types lose `#[non_exhaustive]`, so a crate that holds
/// a schema's code can share it: other crates build values with
/// `..Default::default()` to keep compiling when the schema gains fields.
fn rewrite_flatc(text: &str) -> String {
    let text = text.replace("::flatbuffers::", "::gatewire::codegen::flatbuffers::");
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if matches!(line.trim(), "extern crate alloc;" | "#[non_exhaustive]") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("alloc::") {
            let before = rest[..at].chars().next_back();
            out.push_str(&rest[..at]);
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                out.push_str("alloc::");
            } else {
                out.push_str("::std::");
            }
            rest = &rest[at + "alloc::".len()..];
        }
        out.push_str(rest);
        out.push('\n');
    }
    out
}

fn descriptor_expr(d: &Descriptor) -> String {
    let mut s = String::from("::gatewire::codegen::Service {\n");
    let _ = writeln!(s, "            name: NAME.into(),");
    let _ = writeln!(s, "            fingerprint: FINGERPRINT,");
    s.push_str("            methods: vec![\n");
    for m in &d.methods {
        let _ = writeln!(
            s,
            "                ::gatewire::codegen::MethodDesc {{ name: \"{}\".into(), id: {:#010x}, kind: \
             ::gatewire::codegen::MethodKind({}), request: {:#018x}, response: {:#018x} }},",
            m.name, m.id, m.kind.0, m.request, m.response
        );
    }
    s.push_str("            ],\n            shapes: vec![\n");
    for sh in &d.shapes {
        let slots: Vec<String> = sh.slots.iter().map(|x| format!("{x:#018x}")).collect();
        let _ = writeln!(
            s,
            "                ::gatewire::codegen::Shape {{ name: \"{}\".into(), ty: {:#018x}, fixed: {}, slots: vec![{}] }},",
            sh.name,
            sh.ty,
            sh.fixed,
            slots.join(", ")
        );
    }
    s.push_str("            ],\n        }");
    s
}

fn handler_signature(m: &Method) -> String {
    let name = crate::snake(&m.name);
    let (req, resp) = (owned(&m.request), owned(&m.response));
    match m.kind {
        Kind::Unary => format!(
            "async fn {name}(&self, ctx: ::gatewire::CallContext, request: Fb<{req}>) -> Result<{resp}, ::gatewire::Status>"
        ),
        Kind::ServerStreaming => format!(
            "async fn {name}(&self, ctx: ::gatewire::CallContext, request: Fb<{req}>, items: Sink<{resp}>) -> Result<(), ::gatewire::Status>"
        ),
        Kind::ClientStreaming => format!(
            "async fn {name}(&self, ctx: ::gatewire::CallContext, items: Source<{req}>) -> Result<{resp}, ::gatewire::Status>"
        ),
        Kind::BidiStreaming => format!(
            "async fn {name}(&self, ctx: ::gatewire::CallContext, items: Source<{req}>, replies: Sink<{resp}>) -> Result<(), ::gatewire::Status>"
        ),
        Kind::Event => format!("async fn {name}(&self, ctx: ::gatewire::CallContext, event: Fb<{req}>)"),
    }
}

fn route_arm(m: &Method) -> String {
    let name = crate::snake(&m.name);
    let id = m.const_name();
    match m.kind {
        Kind::Unary => format!(
            "    let h = handler.clone();
    let router = router.unary({id}, move |ctx, message| {{
        let h = h.clone();
        async move {{ Ok(h.{name}(ctx, Fb::decode(message)?).await?.to_message()) }}
    }});
"
        ),
        Kind::ServerStreaming => format!(
            "    let h = handler.clone();
    let router = router.stream({id}, move |ctx, opening, _items, replies| {{
        let h = h.clone();
        async move {{ h.{name}(ctx, Fb::decode(opening)?, Sink::new(replies)).await }}
    }});
"
        ),
        Kind::ClientStreaming => format!(
            "    let h = handler.clone();
    let router = router.stream({id}, move |ctx, _opening, items, mut replies| {{
        let h = h.clone();
        async move {{
            let reply = h.{name}(ctx, Source::new(items)).await?;
            replies.send_last(reply.to_message()).await?;
            Ok(())
        }}
    }});
"
        ),
        Kind::BidiStreaming => format!(
            "    let h = handler.clone();
    let router = router.stream({id}, move |ctx, _opening, items, replies| {{
        let h = h.clone();
        async move {{ h.{name}(ctx, Source::new(items), Sink::new(replies)).await }}
    }});
"
        ),
        Kind::Event => format!(
            "    let h = handler.clone();
    let router = router.event({id}, move |ctx, message| {{
        let h = h.clone();
        async move {{
            if let Ok(event) = Fb::decode(message) {{
                h.{name}(ctx, event).await;
            }}
        }}
    }});
"
        ),
    }
}

fn client_method(m: &Method) -> String {
    let name = crate::snake(&m.name);
    let id = m.const_name();
    let (req, resp) = (owned(&m.request), owned(&m.response));
    let mut doc = String::new();
    doc_lines(&mut doc, "    ", &m.doc);
    if !m.doc.is_empty() {
        doc.push_str("    ///\n");
    }
    let _ = writeln!(doc, "    /// {}", m.kind.doc());
    let body = match m.kind {
        Kind::Unary => format!(
            "    pub async fn {name}(&self, request: &{req}) -> ::gatewire::Result<Fb<{resp}>> {{
        ::gatewire::codegen::decode_reply(self.conn.call({id}, request.to_message()).await?)
    }}

    /// [`Self::{name}`] with a deadline that travels to the peer.
    pub async fn {name}_with(
        &self,
        request: &{req},
        deadline: Option<::std::time::Duration>,
    ) -> ::gatewire::Result<Fb<{resp}>> {{
        ::gatewire::codegen::decode_reply(self.conn.call_with({id}, request.to_message(), deadline).await?)
    }}
"
        ),
        Kind::ServerStreaming => format!(
            "    pub async fn {name}(&self, request: &{req}) -> ::gatewire::Result<Source<{resp}>> {{
        Ok(Source::new(self.conn.server_stream({id}, request.to_message()).await?))
    }}
"
        ),
        Kind::ClientStreaming => format!(
            "    ///
    /// Send the items, `finish` the sink, then await the reply.
    pub async fn {name}(&self) -> ::gatewire::Result<(Sink<{req}>, ::gatewire::codegen::Reply<{resp}>)> {{
        let (items, replies) = self.conn.open_stream({id}, ::gatewire::Message::raw(::std::vec::Vec::new())).await?;
        Ok((Sink::new(items), ::gatewire::codegen::Reply::new(Source::new(replies))))
    }}
"
        ),
        Kind::BidiStreaming => format!(
            "    pub async fn {name}(&self) -> ::gatewire::Result<(Sink<{req}>, Source<{resp}>)> {{
        let (items, replies) = self.conn.open_stream({id}, ::gatewire::Message::raw(::std::vec::Vec::new())).await?;
        Ok((Sink::new(items), Source::new(replies)))
    }}
"
        ),
        Kind::Event => format!(
            "    pub async fn {name}(&self, event: &{req}) -> ::gatewire::Result<()> {{
        self.conn.emit({id}, event.to_message()).await
    }}
"
        ),
    };
    doc + &body
}

fn service(out: &mut String, s: &Service) {
    let full = s.name.full();
    doc_lines(out, "", &s.doc);
    if !s.doc.is_empty() {
        out.push_str("///\n");
    }
    let _ = writeln!(out, "/// The `{full}` service: method ids, descriptor, handler trait and client.");
    let _ = writeln!(out, "pub mod {} {{", module_name(s));
    out.push_str(
        "    #![allow(unused_imports, clippy::all, missing_docs)]
    use super::*;
    use ::gatewire::codegen::{Fb, Sink, Source, Table as _};

",
    );
    let _ = writeln!(out, "    /// The fully qualified service name.");
    let _ = writeln!(out, "    pub const NAME: &str = \"{full}\";");
    let _ = writeln!(out, "    /// The schema fingerprint (`docs/SCHEMA.md` §4).");
    let _ = writeln!(out, "    pub const FINGERPRINT: u64 = {:#018x};", s.descriptor.fingerprint);
    for m in &s.methods {
        let _ = writeln!(out, "    /// Method id of `{}`.", m.name);
        let _ = writeln!(out, "    pub const {}: u32 = {:#010x};", m.const_name(), m.id);
    }
    let _ = write!(
        out,
        "
    /// What the handshake advertises for this service: pass it to
    /// `Builder::offer` on the serving side and `Builder::uses` on the
    /// calling side.
    pub fn descriptor() -> ::gatewire::codegen::Service {{
        {}
    }}

    /// The service's handlers. Register an implementation with [`route`].
    #[::gatewire::codegen::async_trait]
    pub trait Handler: Send + Sync + 'static {{
",
        descriptor_expr(&s.descriptor)
    );
    for m in &s.methods {
        doc_lines(out, "        ", &m.doc);
        if !m.doc.is_empty() {
            out.push_str("        ///\n");
        }
        let _ = writeln!(out, "        /// {}", m.kind.doc());
        let _ = writeln!(out, "        {};", handler_signature(m));
    }
    out.push_str(
        "    }

    /// Adds `handler`'s methods to `router`.
    pub fn route<H: Handler>(router: ::gatewire::Router, handler: H) -> ::gatewire::Router {
        let handler = ::std::sync::Arc::new(handler);
",
    );
    for m in &s.methods {
        for line in route_arm(m).lines() {
            let _ = writeln!(out, "    {line}");
        }
    }
    out.push_str(
        "        router
    }

    /// A typed client on a connection.
    #[derive(Clone, Debug)]
    pub struct Client {
        conn: ::gatewire::Connection,
    }

    impl Client {
        /// Calls the service on `conn`.
        pub fn new(conn: ::gatewire::Connection) -> Self {
            Self { conn }
        }

        /// The connection.
        pub fn connection(&self) -> &::gatewire::Connection {
            &self.conn
        }

",
    );
    for m in &s.methods {
        for line in client_method(m).lines() {
            if line.is_empty() {
                out.push('\n');
            } else {
                let _ = writeln!(out, "    {line}");
            }
        }
        out.push('\n');
    }
    out.push_str("    }\n}\n\n");
}
