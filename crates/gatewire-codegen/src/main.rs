//! `gatewire gen --lang rust|python|ts SCHEMA.fbs -o DIR [-I DIR]...`

use std::path::PathBuf;
use std::process::ExitCode;

use gatewire_codegen::Lang;

const USAGE: &str = "usage: gatewire gen --lang rust|python|ts SCHEMA.fbs -o DIR [-I INCLUDE_DIR]...

Generates typed gatewire clients and servers for the rpc_service declarations
of SCHEMA.fbs, with flatc's table code beside them (docs/SCHEMA.md).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<Vec<PathBuf>, String> {
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        Some("gen") => {}
        Some("-h" | "--help") | None => return Err(USAGE.into()),
        Some(other) => return Err(format!("unknown command `{other}`\n\n{USAGE}")),
    }
    let (mut lang, mut out, mut schema, mut includes) = (None, None, None, Vec::new());
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value\n\n{USAGE}"));
        match a.as_str() {
            "--lang" | "-l" => lang = Some(value("--lang")?.parse::<Lang>().map_err(|e| e.to_string())?),
            "-o" | "--out" => out = Some(PathBuf::from(value("-o")?)),
            "-I" | "--include" => includes.push(PathBuf::from(value("-I")?)),
            s if s.starts_with('-') => return Err(format!("unknown option `{s}`\n\n{USAGE}")),
            s if schema.is_none() => schema = Some(PathBuf::from(s)),
            s => return Err(format!("one schema at a time (got `{s}` too)\n\n{USAGE}")),
        }
    }
    let lang = lang.ok_or(format!("--lang is required\n\n{USAGE}"))?;
    let schema = schema.ok_or(format!("a schema file is required\n\n{USAGE}"))?;
    let out = out.ok_or(format!("-o DIR is required\n\n{USAGE}"))?;
    gatewire_codegen::generate(lang, &schema, &includes, &out).map_err(|e| e.to_string())
}
