//! The reference peer passes its own interop script on every transport, so
//! a failure against another language points at that language.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn reference_peer_against_itself() {
    let exe = env!("CARGO_BIN_EXE_interop-peer");
    let sock = std::env::temp_dir().join(format!("gatewire-interop-{}", std::process::id())).join("s.sock");
    let mut server = Command::new(exe)
        .args(["serve", "tcp://127.0.0.1:0", &format!("unix://{}", sock.display()), "ws://127.0.0.1:0/gw"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("interop-peer starts");
    let mut lines = BufReader::new(server.stdout.take().expect("stdout")).lines();
    let urls: Vec<String> = (0..3)
        .map(|_| lines.next().expect("a listening line").expect("utf-8").trim_start_matches("listening ").to_string())
        .collect();
    for url in &urls {
        let out = Command::new(exe).args(["client", url]).output().expect("client runs");
        assert!(out.status.success(), "{url}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    }
    drop(server.stdin.take());
    assert!(server.wait().expect("server exits").success());
}
