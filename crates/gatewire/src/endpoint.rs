//! Endpoints: where a listener binds and where a client connects, written as
//! URLs.
//!
//! | form | transport |
//! |---|---|
//! | `tcp://host:port` | TCP byte stream |
//! | `unix:///absolute/path.sock` | Unix-domain stream socket |
//! | `ws://host:port/path` | WebSocket over TCP (path defaults to `/`) |
//! | `tls://host:port` | TLS 1.3 over TCP, ALPN `gatewire/1` |
//! | `wss://host:port/path` | WebSocket over TLS (path defaults to `/`) |
//!
//! Hosts are DNS names, IPv4 addresses or bracketed IPv6 addresses
//! (`tcp://[::1]:4000`); the brackets are not part of [`Endpoint`]'s `host`
//! field and are added back by [`Display`](fmt::Display). Schemes are matched
//! without regard to case; everything else is kept as written, so
//! `endpoint.to_string().parse()` gives the same endpoint back.
//!
//! What the parser refuses, each with its own [`EndpointError`]: a missing or
//! unknown scheme, a missing host or port, a port that is not a decimal
//! `u16`, an unbracketed IPv6 address, credentials (`user@host`: tokens never
//! travel in URLs), a path on `tcp://` or `tls://`, a fragment or whitespace
//! in a WebSocket path, and a Unix path that is empty, relative or contains
//! a NUL byte. Port `0` is accepted: binding to it picks a free port.

use std::fmt;
use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::str::FromStr;

/// A parsed endpoint URL; see the [module docs](self) for the forms.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// `tcp://host:port`.
    Tcp {
        /// DNS name or IP address, without IPv6 brackets.
        host: String,
        /// TCP port; `0` binds to a free port.
        port: u16,
    },
    /// `unix:///absolute/path.sock`.
    Unix {
        /// Absolute path of the socket file.
        path: PathBuf,
    },
    /// `ws://host:port/path`.
    Ws {
        /// DNS name or IP address, without IPv6 brackets.
        host: String,
        /// TCP port; `0` binds to a free port.
        port: u16,
        /// HTTP request path, starting with `/` (query allowed, no fragment).
        path: String,
    },
    /// `tls://host:port`. Binding and connecting need a TLS configuration.
    Tls {
        /// DNS name or IP address, without IPv6 brackets.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// `wss://host:port/path`. Binding and connecting need a TLS
    /// configuration.
    Wss {
        /// DNS name or IP address, without IPv6 brackets.
        host: String,
        /// TCP port.
        port: u16,
        /// HTTP request path, starting with `/`.
        path: String,
    },
}

/// Why an endpoint string was refused, or why an endpoint cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// No `scheme://` prefix.
    #[error("endpoint `{input}` has no scheme; expected tcp://, unix://, ws://, tls:// or wss://")]
    MissingScheme {
        /// The whole input.
        input: String,
    },
    /// A scheme other than `tcp`, `unix`, `ws`, `tls` and `wss`.
    #[error("unknown endpoint scheme `{scheme}`; expected tcp, unix, ws, tls or wss")]
    UnknownScheme {
        /// The scheme as written.
        scheme: String,
    },
    /// Nothing before the `:port`.
    #[error("endpoint `{input}` has no host")]
    MissingHost {
        /// The whole input.
        input: String,
    },
    /// A host with characters that belong in no DNS name or IP address.
    #[error("invalid host `{host}`: {reason}")]
    InvalidHost {
        /// The host as written.
        host: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No `:port` after the host.
    #[error("endpoint `{input}` has no port; write host:port")]
    MissingPort {
        /// The whole input.
        input: String,
    },
    /// A port that is not a decimal number from 0 to 65535.
    #[error("invalid port `{port}`: expected a number from 0 to 65535")]
    InvalidPort {
        /// The port as written.
        port: String,
    },
    /// `user@` or `user:password@` in the authority.
    #[error("endpoint `{input}` carries credentials (`user@host`); credentials never go in endpoint URLs")]
    Credentials {
        /// The whole input, with the credentials replaced by `<redacted>`:
        /// an error message must not carry the secret on to logs.
        input: String,
    },
    /// A path, query or fragment on a scheme that has none.
    #[error("{scheme}:// endpoints take no path, query or fragment, found `{rest}`")]
    UnexpectedPath {
        /// `tcp` or `tls`.
        scheme: &'static str,
        /// What followed the port.
        rest: String,
    },
    /// A WebSocket path that does not start with `/`, has a fragment, or has
    /// characters outside visible ASCII.
    #[error("invalid websocket path `{path}`: {reason}")]
    InvalidPath {
        /// The path as written.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `unix://` with nothing after it.
    #[error("unix endpoint has no path; write unix:///absolute/path.sock")]
    MissingUnixPath,
    /// A Unix socket path that does not start with `/`.
    #[error("unix socket path `{path}` is not absolute; write unix:///absolute/path.sock")]
    RelativeUnixPath {
        /// The path as written.
        path: String,
    },
    /// A Unix socket path containing a NUL byte (abstract sockets are not
    /// supported).
    #[error("unix socket path `{path}` contains a NUL byte")]
    InvalidUnixPath {
        /// The path as written, NUL escaped.
        path: String,
    },
    /// The endpoint parses but this build cannot bind or connect it yet.
    #[error("{scheme}:// endpoints are not supported yet: {reason}")]
    Unsupported {
        /// The scheme.
        scheme: &'static str,
        /// Why, and what to use instead.
        reason: &'static str,
    },
}

impl Endpoint {
    /// The scheme, lowercase: `tcp`, `unix`, `ws`, `tls` or `wss`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Self::Tcp { .. } => "tcp",
            Self::Unix { .. } => "unix",
            Self::Ws { .. } => "ws",
            Self::Tls { .. } => "tls",
            Self::Wss { .. } => "wss",
        }
    }

    /// `Ok` when this build can bind and connect the endpoint, otherwise
    /// [`EndpointError::Unsupported`]. Every scheme is supported today
    /// (`tls://` and `wss://` still need a TLS configuration to be used).
    pub fn check_supported(&self) -> Result<(), EndpointError> {
        match self {
            Self::Tcp { .. } | Self::Unix { .. } | Self::Ws { .. } | Self::Tls { .. } | Self::Wss { .. } => Ok(()),
        }
    }
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let Some((scheme, rest)) = input.split_once("://") else {
            return Err(EndpointError::MissingScheme { input: input.into() });
        };
        match scheme.to_ascii_lowercase().as_str() {
            "tcp" => {
                let (host, port) = parse_plain(input, "tcp", rest)?;
                Ok(Self::Tcp { host, port })
            }
            "tls" => {
                let (host, port) = parse_plain(input, "tls", rest)?;
                Ok(Self::Tls { host, port })
            }
            "ws" => {
                let (host, port, path) = parse_ws(input, rest)?;
                Ok(Self::Ws { host, port, path })
            }
            "wss" => {
                let (host, port, path) = parse_ws(input, rest)?;
                Ok(Self::Wss { host, port, path })
            }
            "unix" => parse_unix(rest),
            _ => Err(EndpointError::UnknownScheme { scheme: scheme.into() }),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { host, port } | Self::Tls { host, port } => {
                write!(f, "{}://{}", self.scheme(), Authority(host, *port))
            }
            Self::Ws { host, port, path } | Self::Wss { host, port, path } => {
                write!(f, "{}://{}{path}", self.scheme(), Authority(host, *port))
            }
            Self::Unix { path } => write!(f, "unix://{}", path.display()),
        }
    }
}

/// `host:port`, with brackets around an IPv6 host.
pub(crate) struct Authority<'a>(pub(crate) &'a str, pub(crate) u16);

impl fmt::Display for Authority<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.contains(':') { write!(f, "[{}]:{}", self.0, self.1) } else { write!(f, "{}:{}", self.0, self.1) }
    }
}

/// Splits `rest` at the first `/`, `?` or `#`: the authority, then the rest.
fn split_authority(rest: &str) -> (&str, &str) {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    rest.split_at(end)
}

/// `tcp://` and `tls://`: an authority and nothing else.
fn parse_plain(input: &str, scheme: &'static str, rest: &str) -> Result<(String, u16), EndpointError> {
    let (authority, tail) = split_authority(rest);
    let (host, port) = parse_authority(input, authority)?;
    if !tail.is_empty() {
        return Err(EndpointError::UnexpectedPath { scheme, rest: tail.into() });
    }
    Ok((host, port))
}

/// `ws://` and `wss://`: an authority, then an optional path.
fn parse_ws(input: &str, rest: &str) -> Result<(String, u16, String), EndpointError> {
    let (authority, path) = split_authority(rest);
    let (host, port) = parse_authority(input, authority)?;
    if path.is_empty() {
        return Ok((host, port, "/".into()));
    }
    let invalid = |reason| EndpointError::InvalidPath { path: path.into(), reason };
    if !path.starts_with('/') {
        return Err(invalid("must start with `/`"));
    }
    if path.contains('#') {
        return Err(invalid("fragments are not allowed"));
    }
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid("only visible ASCII characters are allowed (percent-encode the rest)"));
    }
    Ok((host, port, path.into()))
}

fn parse_unix(rest: &str) -> Result<Endpoint, EndpointError> {
    if rest.is_empty() {
        return Err(EndpointError::MissingUnixPath);
    }
    if rest.contains('\0') {
        return Err(EndpointError::InvalidUnixPath { path: rest.replace('\0', "\\0") });
    }
    if !rest.starts_with('/') {
        return Err(EndpointError::RelativeUnixPath { path: rest.into() });
    }
    Ok(Endpoint::Unix { path: PathBuf::from(rest) })
}

/// `host:port` or `[v6]:port`.
fn parse_authority(input: &str, authority: &str) -> Result<(String, u16), EndpointError> {
    if let Some((credentials, _)) = authority.rsplit_once('@') {
        // The scheme holds no `@`, so the first `credentials@` is in the
        // authority.
        let input = input.replacen(&format!("{credentials}@"), "<redacted>@", 1);
        return Err(EndpointError::Credentials { input });
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(EndpointError::InvalidHost { host: authority.into(), reason: "missing `]`" });
        };
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(EndpointError::InvalidHost {
                host: host.into(),
                reason: "only IPv6 addresses go between brackets",
            });
        }
        if after.is_empty() {
            return Err(EndpointError::MissingPort { input: input.into() });
        }
        let Some(port) = after.strip_prefix(':') else {
            return Err(EndpointError::InvalidHost { host: authority.into(), reason: "expected `:port` after `]`" });
        };
        (host, port)
    } else {
        let Some((host, port)) = authority.rsplit_once(':') else {
            if authority.is_empty() {
                return Err(EndpointError::MissingHost { input: input.into() });
            }
            return Err(EndpointError::MissingPort { input: input.into() });
        };
        if host.contains(':') {
            return Err(EndpointError::InvalidHost {
                host: host.into(),
                reason: "IPv6 addresses must be written in brackets, as in [::1]:4000",
            });
        }
        if host.is_empty() {
            return Err(EndpointError::MissingHost { input: input.into() });
        }
        if !host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')) {
            return Err(EndpointError::InvalidHost {
                host: host.into(),
                reason: "expected a DNS name or an IP address (letters, digits, `-`, `.`, `_`)",
            });
        }
        (host, port)
    };
    if port.is_empty() {
        return Err(EndpointError::MissingPort { input: input.into() });
    }
    // `u16::from_str` also takes a leading `+`; ports are plain digits.
    let Some(Ok(port)) = port.bytes().all(|b| b.is_ascii_digit()).then(|| port.parse::<u16>()) else {
        return Err(EndpointError::InvalidPort { port: port.into() });
    };
    Ok((host.into(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Endpoint, EndpointError> {
        s.parse()
    }

    #[test]
    fn parses_each_scheme() {
        assert_eq!(parse("tcp://127.0.0.1:4000").unwrap(), Endpoint::Tcp { host: "127.0.0.1".into(), port: 4000 });
        assert_eq!(parse("tcp://example.com:0").unwrap(), Endpoint::Tcp { host: "example.com".into(), port: 0 });
        assert_eq!(parse("unix:///run/gw/gw.sock").unwrap(), Endpoint::Unix { path: "/run/gw/gw.sock".into() });
        assert_eq!(
            parse("ws://localhost:8080/rpc").unwrap(),
            Endpoint::Ws { host: "localhost".into(), port: 8080, path: "/rpc".into() }
        );
        assert_eq!(parse("tls://h:1").unwrap(), Endpoint::Tls { host: "h".into(), port: 1 });
        assert_eq!(
            parse("wss://h:443/a/b?x=1").unwrap(),
            Endpoint::Wss { host: "h".into(), port: 443, path: "/a/b?x=1".into() }
        );
    }

    #[test]
    fn ws_path_defaults_to_root() {
        assert_eq!(parse("ws://h:1").unwrap(), Endpoint::Ws { host: "h".into(), port: 1, path: "/".into() });
        assert_eq!(parse("ws://h:1").unwrap().to_string(), "ws://h:1/");
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let e = parse("tcp://[::1]:4000").unwrap();
        assert_eq!(e, Endpoint::Tcp { host: "::1".into(), port: 4000 });
        assert_eq!(e.to_string(), "tcp://[::1]:4000");
        let e = parse("ws://[fe80::1:2]:80/x").unwrap();
        assert_eq!(e, Endpoint::Ws { host: "fe80::1:2".into(), port: 80, path: "/x".into() });
        assert_eq!(e.to_string(), "ws://[fe80::1:2]:80/x");
    }

    #[test]
    fn scheme_is_case_insensitive() {
        assert_eq!(parse("TCP://h:1").unwrap(), Endpoint::Tcp { host: "h".into(), port: 1 });
        assert_eq!(parse("Unix:///s").unwrap().scheme(), "unix");
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "tcp://127.0.0.1:4000",
            "tcp://[::1]:0",
            "tcp://my-host.example_1.com:65535",
            "unix:///tmp/gatewire/gw.sock",
            "ws://localhost:8080/",
            "ws://[::]:9/a/b?token=no",
            "tls://h:4443",
            "wss://[2001:db8::1]:443/rpc",
        ] {
            let e = parse(s).unwrap();
            assert_eq!(e.to_string(), s);
            assert_eq!(parse(&e.to_string()).unwrap(), e);
        }
    }

    #[test]
    fn missing_scheme() {
        assert_eq!(parse("127.0.0.1:4000"), Err(EndpointError::MissingScheme { input: "127.0.0.1:4000".into() }));
        assert!(matches!(parse(""), Err(EndpointError::MissingScheme { .. })));
    }

    #[test]
    fn unknown_scheme() {
        assert_eq!(parse("http://h:1"), Err(EndpointError::UnknownScheme { scheme: "http".into() }));
        assert_eq!(
            parse("udp://h:1").unwrap_err().to_string(),
            "unknown endpoint scheme `udp`; expected tcp, unix, ws, tls or wss"
        );
    }

    #[test]
    fn missing_port() {
        for s in ["tcp://host", "tcp://host:", "ws://host/path", "tcp://[::1]", "tcp://[::1]:"] {
            assert!(matches!(parse(s), Err(EndpointError::MissingPort { .. })), "{s}");
        }
        assert_eq!(parse("tcp://host").unwrap_err().to_string(), "endpoint `tcp://host` has no port; write host:port");
    }

    #[test]
    fn missing_host() {
        for s in ["tcp://:80", "tcp://", "ws:///path"] {
            assert!(matches!(parse(s), Err(EndpointError::MissingHost { .. })), "{s}");
        }
    }

    #[test]
    fn invalid_port() {
        for p in ["65536", "-1", "+80", "http", "1 "] {
            assert_eq!(parse(&format!("tcp://h:{p}")), Err(EndpointError::InvalidPort { port: p.into() }), "{p}");
        }
    }

    #[test]
    fn invalid_hosts() {
        for s in ["tcp://::1:80", "tcp://[::1:80", "tcp://[nope]:80", "tcp://[::1]x:80", "tcp://a b:1", "tcp://h%20:1"]
        {
            assert!(matches!(parse(s), Err(EndpointError::InvalidHost { .. })), "{s}");
        }
        assert!(parse("tcp://::1:80").unwrap_err().to_string().contains("brackets"));
    }

    #[test]
    fn credentials_refused() {
        for s in ["tcp://user@h:1", "ws://user:secret@h:1/"] {
            assert!(matches!(parse(s), Err(EndpointError::Credentials { .. })), "{s}");
        }
    }

    #[test]
    fn tcp_takes_no_path() {
        assert_eq!(parse("tcp://h:1/x"), Err(EndpointError::UnexpectedPath { scheme: "tcp", rest: "/x".into() }));
        assert!(matches!(parse("tls://h:1?q"), Err(EndpointError::UnexpectedPath { scheme: "tls", .. })));
    }

    #[test]
    fn invalid_ws_paths() {
        for s in ["ws://h:1?q", "ws://h:1/a#frag", "ws://h:1/a b", "ws://h:1/é"] {
            assert!(matches!(parse(s), Err(EndpointError::InvalidPath { .. })), "{s}");
        }
    }

    #[test]
    fn unix_paths() {
        assert_eq!(parse("unix://"), Err(EndpointError::MissingUnixPath));
        assert_eq!(parse("unix://rel/gw.sock"), Err(EndpointError::RelativeUnixPath { path: "rel/gw.sock".into() }));
        assert!(matches!(parse("unix://@abstract"), Err(EndpointError::RelativeUnixPath { .. })));
        assert!(matches!(parse("unix:///a\0b"), Err(EndpointError::InvalidUnixPath { .. })));
        assert!(parse("unix://rel").unwrap_err().to_string().contains("not absolute"));
    }

    #[test]
    fn every_scheme_is_supported() {
        for s in ["tcp://h:1", "unix:///s", "ws://h:1/", "tls://h:1", "wss://h:1/"] {
            assert!(parse(s).unwrap().check_supported().is_ok(), "{s}");
        }
        let err = EndpointError::Unsupported { scheme: "wss", reason: "not in this build" };
        assert_eq!(err.to_string(), "wss:// endpoints are not supported yet: not in this build");
    }
}
