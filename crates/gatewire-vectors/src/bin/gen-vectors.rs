//! Writes `tests/vectors/*.json`, or with `--check` fails when they differ
//! from what the Rust core records.

use std::process::ExitCode;

fn main() -> ExitCode {
    let check = std::env::args().any(|a| a == "--check");
    let dir = gatewire_vectors::vectors_dir();
    let files = match gatewire_vectors::render() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: recording vectors failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stale = Vec::new();
    for (name, contents) in files {
        let path = dir.join(name);
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(contents.as_str()) {
                stale.push(name);
            }
        } else if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, contents)) {
            eprintln!("error: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if !stale.is_empty() {
        eprintln!(
            "error: stale vectors in tests/vectors: {}; run `cargo xtask vectors` and review the diff",
            stale.join(", ")
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
