//! D5 (out of file descriptors) in its own test binary: it lowers the
//! process's `RLIMIT_NOFILE`, which no other test may share. The peers are a
//! separate Python process, whose descriptors the limit does not touch.

use std::process::Stdio;
use std::time::Duration;

use gatewire::{Builder, Message, Router, Timeouts};
use gatewire_hostile::{Attacker, LIMIT, request, serve_tcp};
use gatewire_proto::FrameType;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::time::timeout;

/// Opens `n` connections to the port once told to on stdin, says so, then
/// counts the connections on which the server sent something (its
/// handshake-deadline GOAWAY), closing each as soon as it has.
const PEERS: &str = r#"
import selectors, socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
sys.stdin.readline()
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
print("connected", flush=True)
sel = selectors.DefaultSelector()
for s in socks:
    sel.register(s, selectors.EVENT_READ)
answered, deadline = 0, time.time() + 20
while answered < n and time.time() < deadline:
    for key, _ in sel.select(timeout=1):
        try:
            got = key.fileobj.recv(65536)
        except OSError:
            got = b""
        sel.unregister(key.fileobj)
        key.fileobj.close()
        answered += 1 if got else 0
print(answered, flush=True)
"#;

const PEERS_N: usize = 20;

/// The highest open descriptor number, plus one.
fn fd_ceiling() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .expect("some descriptor")
        + 1
}

fn set_nofile(soft: u64) -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit(2) with a valid rlimit struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        let old = lim.rlim_cur;
        lim.rlim_cur = soft;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        old
    }
}

/// D5: the accept loop survives running out of file descriptors. With the
/// process limited to 4 descriptors more than it holds, 20 peers (another
/// process) connect at once and stay silent: the server can hold at most 4
/// of them, so accepting the others fails with EMFILE until the handshake
/// deadline (100 ms) closes some. The accept loop backs off and keeps
/// accepting: every one of the 20 is eventually accepted and sent its
/// GOAWAY(TIMEOUT), and once the limit is lifted a new client is served.
#[tokio::test]
async fn d5_accept_survives_emfile() {
    let mut t = Timeouts::default();
    t.handshake = Duration::from_millis(100);
    let router = Router::new().unary(1, |_ctx, m: Message| async move { Ok(m) });
    let (_server, addr) = serve_tcp(Builder::new().router(router).timeouts(t)).await;
    let port = addr.rsplit(':').next().unwrap();
    let mut peers = tokio::process::Command::new("python3")
        .args(["-c", PEERS, port, &PEERS_N.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs (a prerequisite of the workspace)");
    let mut stdin = peers.stdin.take().unwrap();
    let mut lines = BufReader::new(peers.stdout.take().unwrap()).lines();

    // Fill every free descriptor below the limit, then free exactly 4.
    let old = set_nofile(fd_ceiling() + 64);
    let mut filler = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        filler.push(f);
    }
    assert!(filler.len() >= 4, "{} descriptors free", filler.len());
    filler.truncate(filler.len() - 4);
    stdin.write_all(b"go\n").await.unwrap();
    let line = timeout(LIMIT, lines.next_line()).await.expect("the peers connect").unwrap();
    assert_eq!(line.as_deref(), Some("connected"));
    let line = timeout(Duration::from_secs(30), lines.next_line()).await.expect("the peers finish").unwrap();
    set_nofile(old);
    drop(filler);
    let answered: usize = line.expect("a count").parse().expect("a number");
    assert_eq!(answered, PEERS_N, "peers the server accepted and answered");
    let _ = timeout(LIMIT, peers.wait()).await;

    let mut a = Attacker::handshake(&addr).await;
    a.send(&[request(1, 1, b"after EMFILE")]).await;
    let r = a.expect_frame("RESPONSE", |f| f.header.ty == FrameType::RESPONSE).await;
    assert_eq!(&r.payload[..], b"after EMFILE");
}
