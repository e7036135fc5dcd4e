//! Unix-domain stream sockets: a [`Framing::Stream`] transport for local
//! IPC, with the peer's credentials.
//!
//! # Binding safely
//!
//! [`bind`] guards the socket path (hostile inputs I1 and I3):
//!
//! 1. The path must fit in `sun_path` (108 bytes with the terminating NUL on
//!    Linux, 104 elsewhere); a longer one fails up front, naming the path
//!    and its length, instead of being truncated by the kernel.
//! 2. The parent directory is the real access control: socket-file modes
//!    are ignored by some systems and `chmod` after `bind` leaves a window.
//!    A missing parent is created with mode `0700` (set explicitly, the
//!    umask is not relied upon). An existing parent must be a directory that
//!    is owned by us (or by root) and writable by neither group nor others,
//!    so `/tmp` itself is refused: use a private directory such as
//!    `$XDG_RUNTIME_DIR/gatewire/`. A `0755` parent is accepted; then the
//!    socket's own mode is all that keeps other users out, so prefer `0700`.
//! 3. A symbolic link at the socket path is refused, as is anything there
//!    that is not a socket.
//! 4. An existing socket is probed with a connect. If something answers,
//!    `bind` fails with [`io::ErrorKind::AddrInUse`] and leaves it alone; if
//!    the connection is refused, the socket is stale and is removed (only if
//!    it is still the same file). Another server starting in the instant
//!    between the probe and the removal could still lose its path; two
//!    servers should not race for one path.
//! 5. After `bind`, the socket file is set to mode `0600`.
//!
//! Dropping the [`UnixListener`] removes the socket file if it is still the
//! one we created.
//!
//! # Credentials
//!
//! The peer's uid, gid and pid ([`UnixCredentials`]) are read with
//! `SO_PEERCRED` (or the platform's equivalent) when the connection is
//! accepted or made, and reported in [`PeerInfo::credentials`]; they
//! describe the process that called `connect` (or `listen`). Checking them
//! is up to the server.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixStream;

use super::tcp::{StreamRead, StreamWrite};
use super::{Framing, PeerInfo, Transport, TransportRead, TransportWrite, UnixCredentials};

/// Size of `sockaddr_un.sun_path`, the terminating NUL included.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub const SUN_PATH_LEN: usize = 108;
/// Size of `sockaddr_un.sun_path`, the terminating NUL included.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub const SUN_PATH_LEN: usize = 104;

/// Mode of a directory [`bind`] creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode [`bind`] gives the socket file.
pub const SOCKET_MODE: u32 = 0o600;

/// An established Unix-socket connection.
#[derive(Debug)]
pub struct UnixTransport {
    stream: UnixStream,
    credentials: UnixCredentials,
    peer: PeerInfo,
}

impl UnixTransport {
    /// Wraps a connected stream, reading the peer's credentials now;
    /// `address` is what [`PeerInfo::address`] will say (the socket path).
    pub fn from_stream(stream: UnixStream, address: String) -> io::Result<Self> {
        let cred = stream.peer_cred()?;
        let credentials = UnixCredentials { uid: cred.uid(), gid: cred.gid(), pid: cred.pid() };
        let peer = PeerInfo { address: Some(address), credentials: Some(credentials), tls: None };
        Ok(Self { stream, credentials, peer })
    }

    /// The peer's credentials, read when the connection was made.
    pub fn credentials(&self) -> UnixCredentials {
        self.credentials
    }
}

impl Transport for UnixTransport {
    fn framing(&self) -> Framing {
        Framing::Stream
    }

    fn peer(&self) -> PeerInfo {
        self.peer.clone()
    }

    fn split(self: Box<Self>) -> (Box<dyn TransportRead>, Box<dyn TransportWrite>) {
        let (r, w) = self.stream.into_split();
        (Box::new(StreamRead(r)), Box::new(StreamWrite(w)))
    }
}

/// Connects to the socket at `path`.
pub async fn connect(path: &Path) -> io::Result<UnixTransport> {
    check_path_len(path)?;
    let stream = UnixStream::connect(path).await?;
    UnixTransport::from_stream(stream, path.display().to_string())
}

/// A listening Unix socket that removes its file when dropped.
#[derive(Debug)]
pub struct UnixListener {
    inner: tokio::net::UnixListener,
    path: PathBuf,
    /// Device and inode of the socket file we created.
    file_id: (u64, u64),
}

impl UnixListener {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for the next connection and records the peer's credentials.
    ///
    /// An error may concern only the connection being accepted; keep
    /// accepting, after a short backoff.
    ///
    /// Cancel safety: dropping the future loses no connection.
    pub async fn accept(&self) -> io::Result<UnixTransport> {
        let (stream, _) = self.inner.accept().await?;
        UnixTransport::from_stream(stream, self.path.display().to_string())
    }
}

impl Drop for UnixListener {
    fn drop(&mut self) {
        // Only remove the file if it is still ours: a successor may have
        // replaced it.
        if fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.file_id) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Binds a listening socket at `path`, following the rules in the
/// [module docs](self).
///
/// Errors (all name the path): [`io::ErrorKind::InvalidInput`] for a path
/// too long for `sun_path`; [`io::ErrorKind::PermissionDenied`] for an unsafe
/// parent directory; [`io::ErrorKind::AlreadyExists`] for a symbolic link or
/// a non-socket at the path; [`io::ErrorKind::AddrInUse`] when a live server
/// answers there; otherwise the underlying I/O error.
pub async fn bind(path: &Path) -> io::Result<UnixListener> {
    check_path_len(path)?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        Some(_) => Path::new("."),
        None => return Err(io::Error::new(io::ErrorKind::InvalidInput, "a unix socket path must name a file")),
    };
    prepare_parent(parent)?;
    clear_stale(path).await?;

    let inner = tokio::net::UnixListener::bind(path).map_err(|e| context(e, "cannot bind unix socket", path))?;
    let meta = fs::symlink_metadata(path).map_err(|e| context(e, "cannot stat new unix socket", path))?;
    let listener = UnixListener { inner, path: path.to_owned(), file_id: (meta.dev(), meta.ino()) };
    // On error the listener drops and removes the file.
    fs::set_permissions(path, fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(|e| context(e, "cannot set the mode of unix socket", path))?;
    Ok(listener)
}

fn context(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} `{}`: {e}", path.display()))
}

fn check_path_len(path: &Path) -> io::Result<()> {
    let len = path.as_os_str().as_bytes().len();
    if len + 1 > SUN_PATH_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "unix socket path `{}` is {len} bytes; the limit is {} bytes ({SUN_PATH_LEN} with the terminating NUL)",
                path.display(),
                SUN_PATH_LEN - 1
            ),
        ));
    }
    if path.as_os_str().as_bytes().contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "unix socket path contains a NUL byte"));
    }
    Ok(())
}

/// Creates the parent directory (mode 0700) if missing, then checks that it
/// is a directory owned by us or root and not writable by group or others.
fn prepare_parent(dir: &Path) -> io::Result<()> {
    match fs::metadata(dir) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .map_err(|e| context(e, "cannot create socket directory", dir))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
                .map_err(|e| context(e, "cannot set the mode of socket directory", dir))?;
        }
        Err(e) => return Err(context(e, "cannot inspect socket directory", dir)),
    }
    // Checked whether we created it or not: someone may have raced us.
    let meta = fs::metadata(dir).map_err(|e| context(e, "cannot inspect socket directory", dir))?;
    let refuse = |why: String| {
        Err(io::Error::new(io::ErrorKind::PermissionDenied, format!("socket directory `{}` {why}", dir.display())))
    };
    if !meta.is_dir() {
        return refuse("is not a directory".into());
    }
    let me = effective_uid();
    if meta.uid() != me && meta.uid() != 0 {
        return refuse(format!("is owned by uid {}, not by us (uid {me}) or root", meta.uid()));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return refuse(format!(
            "is writable by group or others (mode {mode:04o}); use a private directory with mode 0700"
        ));
    }
    Ok(())
}

/// Refuses a symlink or non-socket at `path`; removes a stale socket; fails
/// with `AddrInUse` on a live one.
async fn clear_stale(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(context(e, "cannot inspect", path)),
    };
    let file_type = meta.file_type();
    if file_type.is_symlink() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("refusing to bind: `{}` is a symbolic link", path.display()),
        ));
    }
    if !std::os::unix::fs::FileTypeExt::is_socket(&file_type) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("refusing to bind: `{}` exists and is not a socket", path.display()),
        ));
    }
    match UnixStream::connect(path).await {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("address in use: a server is listening on `{}`", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            // Stale: nobody listens. Remove it only if it is still the file
            // we probed.
            let same = fs::symlink_metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == (meta.dev(), meta.ino()));
            if same {
                match fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(context(e, "cannot remove stale unix socket", path)),
                }
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        // A full backlog (EAGAIN), a permission problem...: we cannot tell
        // it is stale, so leave it alone.
        Err(e) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("address in use: cannot tell whether `{}` is stale: {e}", path.display()),
        )),
    }
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions, touches no memory of ours and
    // cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use bytes::BytesMut;
    use tokio::time::timeout;

    use super::super::WriteBatch;
    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    /// A private scratch directory, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        /// A fresh path under the temp dir; the directory itself is not
        /// created.
        fn new(name: &str) -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            Self(std::env::temp_dir().join(format!("gw-{}-{n}-{name}", std::process::id())))
        }

        /// Like `new`, with the directory created 0700.
        fn created(name: &str) -> Self {
            let s = Self::new(name);
            fs::DirBuilder::new().mode(0o700).create(&s.0).unwrap();
            fs::set_permissions(&s.0, fs::Permissions::from_mode(0o700)).unwrap();
            s
        }

        fn sock(&self) -> PathBuf {
            self.0.join("gw.sock")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    async fn connect_and_accept(listener: &UnixListener) -> (UnixTransport, UnixTransport) {
        let (c, s) = timeout(WAIT, async { tokio::join!(connect(listener.path()), listener.accept()) })
            .await
            .expect("connect and accept in time");
        (c.unwrap(), s.unwrap())
    }

    #[tokio::test]
    async fn creates_private_directory_and_socket_modes() {
        let dir = Scratch::new("modes");
        let nested = dir.0.join("inner");
        let path = nested.join("gw.sock");
        let listener = bind(&path).await.unwrap();
        assert_eq!(mode(&dir.0), DIR_MODE);
        assert_eq!(mode(&nested), DIR_MODE);
        assert!(std::os::unix::fs::FileTypeExt::is_socket(&fs::symlink_metadata(&path).unwrap().file_type()));
        assert_eq!(mode(&path), SOCKET_MODE);
        drop(listener);
        assert!(!path.exists(), "socket removed on drop");
    }

    #[tokio::test]
    async fn round_trip_with_credentials() {
        let dir = Scratch::created("creds");
        let listener = bind(&dir.sock()).await.unwrap();
        let (client, server) = connect_and_accept(&listener).await;
        // SAFETY: getegid has no preconditions and cannot fail.
        let gid = unsafe { libc::getegid() };
        let me = UnixCredentials { uid: effective_uid(), gid, pid: Some(std::process::id() as i32) };
        assert_eq!(server.credentials(), me);
        assert_eq!(client.credentials(), me);
        assert_eq!(server.peer().credentials, Some(me));
        assert_eq!(server.peer().address.as_deref(), Some(dir.sock().to_str().unwrap()));
        assert_eq!(server.framing(), Framing::Stream);

        let (_cr, mut cw) = Box::new(client).split();
        let (mut sr, _sw) = Box::new(server).split();
        let mut batch = WriteBatch::default();
        batch.buf.extend_from_slice(b"ping");
        batch.ends.push(4);
        timeout(WAIT, cw.write(&batch)).await.unwrap().unwrap();
        timeout(WAIT, cw.shutdown()).await.unwrap().unwrap();
        let mut buf = BytesMut::new();
        while timeout(WAIT, sr.read(&mut buf)).await.unwrap().unwrap() != 0 {}
        assert_eq!(&buf[..], b"ping");
    }

    #[tokio::test]
    async fn live_socket_is_not_unlinked() {
        let dir = Scratch::created("live");
        let first = bind(&dir.sock()).await.unwrap();
        let err = bind(&dir.sock()).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert!(err.to_string().contains("address in use"), "{err}");
        // The first server's socket is untouched and still accepts.
        assert_eq!(mode(&dir.sock()), SOCKET_MODE);
        let _ = connect_and_accept(&first).await;
        // The second server's failed bind must not have removed it on drop.
        assert!(dir.sock().exists());
    }

    #[tokio::test]
    async fn stale_socket_is_replaced() {
        let dir = Scratch::created("stale");
        // A std listener does not remove its file when dropped: a crashed
        // server leaves the same thing behind.
        drop(std::os::unix::net::UnixListener::bind(dir.sock()).unwrap());
        assert!(dir.sock().exists());
        let listener = bind(&dir.sock()).await.unwrap();
        let _ = connect_and_accept(&listener).await;
    }

    #[tokio::test]
    async fn symlink_is_refused() {
        let dir = Scratch::created("symlink");
        let target = dir.0.join("elsewhere.sock");
        std::os::unix::fs::symlink(&target, dir.sock()).unwrap();
        let err = bind(&dir.sock()).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(fs::symlink_metadata(dir.sock()).unwrap().file_type().is_symlink(), "left in place");
        assert!(!target.exists());
    }

    #[tokio::test]
    async fn regular_file_is_refused() {
        let dir = Scratch::created("file");
        fs::write(dir.sock(), b"data").unwrap();
        let err = bind(&dir.sock()).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(fs::read(dir.sock()).unwrap(), b"data");
    }

    #[tokio::test]
    async fn over_long_path_is_refused_up_front() {
        let dir = Scratch::new("long");
        let path = dir.0.join("x".repeat(SUN_PATH_LEN));
        let len = path.as_os_str().len();
        let err = bind(&path).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let msg = err.to_string();
        assert!(msg.contains(&format!("is {len} bytes")) && msg.contains(path.to_str().unwrap()), "{msg}");
        assert!(!dir.0.exists(), "nothing created");
        assert_eq!(connect(&path).await.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    #[tokio::test]
    async fn longest_path_that_fits_binds() {
        let dir = Scratch::created("fits");
        let base = dir.0.as_os_str().len() + 1;
        let path = dir.0.join("s".repeat(SUN_PATH_LEN - 1 - base));
        assert_eq!(path.as_os_str().len(), SUN_PATH_LEN - 1);
        let listener = bind(&path).await.unwrap();
        let _ = connect_and_accept(&listener).await;
    }

    #[tokio::test]
    async fn group_or_world_writable_parent_is_refused() {
        for m in [0o770, 0o702, 0o1777] {
            let dir = Scratch::created("writable");
            fs::set_permissions(&dir.0, fs::Permissions::from_mode(m)).unwrap();
            let err = bind(&dir.sock()).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{m:o}");
            assert!(err.to_string().contains("writable by group or others"), "{err}");
            assert!(!dir.sock().exists());
        }
    }

    #[tokio::test]
    async fn parent_that_is_a_file_is_refused() {
        let dir = Scratch::created("notdir");
        let file = dir.0.join("file");
        fs::write(&file, b"").unwrap();
        let err = bind(&file.join("gw.sock")).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
        assert!(err.to_string().contains("is not a directory"), "{err}");
    }

    #[tokio::test]
    async fn drop_leaves_a_replaced_file_alone() {
        let dir = Scratch::created("replaced");
        let listener = bind(&dir.sock()).await.unwrap();
        fs::remove_file(dir.sock()).unwrap();
        fs::write(dir.sock(), b"successor").unwrap();
        drop(listener);
        assert_eq!(fs::read(dir.sock()).unwrap(), b"successor");
    }
}
