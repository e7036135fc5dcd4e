//! Authentication in the handshake, and authorization of every call.
//!
//! # Authentication
//!
//! A server decides whether to accept a client when its HELLO arrives
//! (PROTOCOL.md §4.1, step 3), before any call can exist (§4.2). The
//! configured [`Authenticator`] sees the HELLO's opaque `auth` payload and
//! what the transport knows about the peer ([`PeerInfo`]: the verified TLS
//! client certificate, Unix peer credentials) and returns an [`Identity`] or
//! a [`Status`]:
//!
//! - `Ok(identity)`: the server sends HELLO_ACK and the identity stays with
//!   the connection; handlers read it with
//!   [`CallContext::identity`](crate::CallContext::identity);
//! - `Err(status)`: the server refuses with a HELLO_ACK carrying the status
//!   code (`UNAUTHENTICATED` when the code is `NO_ERROR`) and closes. The
//!   client's connect fails with an [`Error`] whose `code()` is
//!   that code: a typed refusal, never a hang or a silent close.
//!
//! Without an authenticator every client is accepted, with an anonymous
//! identity. Implementations shipped here:
//!
//! | type | decides from | identity subject |
//! |---|---|---|
//! | [`TokenAuthenticator`] | static bearer tokens, stored as SHA-256 digests | the token's subject |
//! | [`JwtAuthenticator`] | an HS256 or EdDSA JWT with `exp` and `sub` | `sub` |
//! | [`MtlsAuthenticator`] | the client certificate the TLS layer verified | common name or first SAN |
//! | [`UnixPeerAuthenticator`] | Unix peer credentials against a uid/gid allowlist | `uid:N` |
//! | [`AnyAuthenticator`] | the first of several that accepts | that one's |
//!
//! Closures `Fn(Option<&[u8]>, &PeerInfo) -> Result<Identity, Status>` are
//! authenticators too. The call is synchronous and runs on the connection's
//! reader task: it must not block (no network or disk I/O). A panic refuses
//! the client with `INTERNAL`.
//!
//! # Authorization
//!
//! An [`Authorizer`] (or a closure `Fn(&Identity, u32) -> Result<(), Status>`)
//! is asked before each incoming call or stream runs, with the connection's
//! identity and the method id. A denial is answered with its status code
//! (`PERMISSION_DENIED` when the code is `NO_ERROR`) and the handler never
//! runs; it is asked before the method is looked up, so a caller that may not
//! call a method cannot learn whether it exists. One-way events are not
//! authorized (see `docs/SECURITY.md`).
//!
//! # Expiry
//!
//! An identity may expire ([`Identity::expires_at`]: a JWT's `exp`, a client
//! certificate's end of validity). A call that arrives after the expiry
//! fails with `UNAUTHENTICATED` without reaching the authorizer or the
//! handler; the connection stays open and calls already running finish.
//! Re-authenticating a live connection is not supported: the client
//! reconnects with fresh credentials.
//!
//! # Secrets
//!
//! Tokens live in [`Token`], which has no `Debug` or `Display`; the client's
//! auth payload shows as `<redacted>` in the builder's `Debug`; authenticators
//! keep digests or keys, never print them, and log refusals without the
//! presented credential.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gatewire_proto::ErrorCode;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use crate::error::{Error, Status};
use crate::transport::PeerInfo;
use crate::transport::tls::PeerCertificate;

// ----- identity -------------------------------------------------------------

/// How a peer proved who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMethod {
    /// Nothing: no authenticator is configured.
    Anonymous,
    /// A static bearer token ([`TokenAuthenticator`]).
    Token,
    /// A signed JWT ([`JwtAuthenticator`]).
    Jwt,
    /// A client certificate verified by TLS ([`MtlsAuthenticator`]).
    Certificate,
    /// Unix peer credentials ([`UnixPeerAuthenticator`]).
    UnixCredentials,
    /// An authenticator of the application's own.
    Custom,
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Anonymous => "anonymous",
            Self::Token => "token",
            Self::Jwt => "jwt",
            Self::Certificate => "certificate",
            Self::UnixCredentials => "unix-credentials",
            Self::Custom => "custom",
        })
    }
}

/// Who the peer of a connection authenticated as: a subject, how it was
/// established and until when it holds. It carries no secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    subject: String,
    method: AuthMethod,
    expires_at: Option<SystemTime>,
}

/// Given to the authorizer for a connection that has no identity (the
/// client side of a connection, whose server authenticated nobody).
static ANONYMOUS: Identity = Identity::anonymous();

impl Identity {
    /// An identity for `subject`, established by `method`, with no expiry.
    pub fn new(subject: impl Into<String>, method: AuthMethod) -> Self {
        Self { subject: subject.into(), method, expires_at: None }
    }

    /// The identity of every peer when no authenticator is configured: an
    /// empty subject, [`AuthMethod::Anonymous`].
    pub const fn anonymous() -> Self {
        Self { subject: String::new(), method: AuthMethod::Anonymous, expires_at: None }
    }

    /// The same identity, valid until `at`.
    #[must_use]
    pub fn with_expiry(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// The subject: a token's name, a JWT's `sub`, a certificate's name,
    /// `uid:N`; empty when anonymous.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// How the identity was established.
    pub fn method(&self) -> AuthMethod {
        self.method
    }

    /// When the identity stops being valid, if ever.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// Whether the identity has expired at `now`.
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// Whether no authenticator established this identity.
    pub fn is_anonymous(&self) -> bool {
        self.method == AuthMethod::Anonymous
    }
}

// ----- traits ---------------------------------------------------------------

/// Decides, from a client's HELLO, whether to accept it and who it is.
///
/// See the [module docs](self). `hello_auth` is the HELLO's `auth` payload
/// (`None` when the client sent none), at most `max_handshake` bytes (16 KiB
/// by default). Return `Err` with `UNAUTHENTICATED` (or another code) to
/// refuse; the message goes to the client, so keep secrets out of it.
pub trait Authenticator: Send + Sync + 'static {
    /// Accepts the client as an [`Identity`], or refuses it.
    fn authenticate(&self, hello_auth: Option<&[u8]>, peer: &PeerInfo) -> Result<Identity, Status>;
}

impl<F> Authenticator for F
where
    F: Fn(Option<&[u8]>, &PeerInfo) -> Result<Identity, Status> + Send + Sync + 'static,
{
    fn authenticate(&self, hello_auth: Option<&[u8]>, peer: &PeerInfo) -> Result<Identity, Status> {
        self(hello_auth, peer)
    }
}

impl fmt::Debug for dyn Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("dyn Authenticator")
    }
}

/// Decides whether an authenticated peer may call a method.
///
/// Asked before every incoming call and stream; `Err` answers the call with
/// the status (`PERMISSION_DENIED` when its code is `NO_ERROR`) and the
/// handler does not run. Synchronous and on the connection's reader task:
/// keep it quick.
pub trait Authorizer: Send + Sync + 'static {
    /// `Ok` to let the call run.
    fn authorize(&self, identity: &Identity, method: u32) -> Result<(), Status>;
}

impl<F> Authorizer for F
where
    F: Fn(&Identity, u32) -> Result<(), Status> + Send + Sync + 'static,
{
    fn authorize(&self, identity: &Identity, method: u32) -> Result<(), Status> {
        self(identity, method)
    }
}

impl fmt::Debug for dyn Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("dyn Authorizer")
    }
}

fn unauthenticated(message: &str) -> Status {
    Status::new(ErrorCode::UNAUTHENTICATED, message)
}

// ----- runtime hooks (used by the connection driver) --------------------------

/// The server's decision on a HELLO: the configured authenticator's, or
/// anonymous acceptance without one. Never panics; an expired identity is
/// refused at once.
pub(crate) fn authenticate(
    authenticator: Option<&dyn Authenticator>,
    hello_auth: Option<&[u8]>,
    peer: &PeerInfo,
) -> Result<Identity, Status> {
    let Some(authenticator) = authenticator else { return Ok(Identity::anonymous()) };
    let result = match catch_unwind(AssertUnwindSafe(|| authenticator.authenticate(hello_auth, peer))) {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(%peer, "authenticator panicked; refusing the client");
            Err(Status::new(ErrorCode::INTERNAL, "authentication failed"))
        }
    };
    let result = result.and_then(|identity| {
        if identity.is_expired_at(SystemTime::now()) {
            Err(unauthenticated("credentials expired"))
        } else {
            Ok(identity)
        }
    });
    match result {
        Ok(identity) => {
            tracing::debug!(%peer, subject = identity.subject(), method = %identity.method(), "client authenticated");
            Ok(identity)
        }
        Err(mut status) => {
            if status.code == ErrorCode::NO_ERROR {
                status.code = ErrorCode::UNAUTHENTICATED;
            }
            // The presented credential is never logged, only the verdict.
            tracing::debug!(%peer, code = %status.code, reason = ?status.message, "client refused");
            Err(status)
        }
    }
}

/// Whether an incoming call to `method` may run: the identity has not
/// expired and the authorizer (if any) allows it. `Err` is the status to
/// answer with.
pub(crate) fn check_call(
    identity: Option<&Identity>,
    authorizer: Option<&dyn Authorizer>,
    method: u32,
) -> Result<(), Status> {
    if identity.is_some_and(|id| id.is_expired_at(SystemTime::now())) {
        return Err(unauthenticated("credentials expired"));
    }
    let Some(authorizer) = authorizer else { return Ok(()) };
    let identity = identity.unwrap_or(&ANONYMOUS);
    match catch_unwind(AssertUnwindSafe(|| authorizer.authorize(identity, method))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(mut status)) => {
            if status.code == ErrorCode::NO_ERROR {
                status.code = ErrorCode::PERMISSION_DENIED;
            }
            tracing::debug!(method, subject = identity.subject(), code = %status.code, "call denied");
            Err(status)
        }
        Err(_) => {
            tracing::warn!(method, "authorizer panicked; denying the call");
            Err(Status::new(ErrorCode::PERMISSION_DENIED, "authorization failed"))
        }
    }
}

// ----- secrets ----------------------------------------------------------------

/// A bearer token or other secret credential.
///
/// It deliberately implements neither `Debug` nor `Display` (nor
/// `Serialize`), so it cannot end up in logs or error messages by accident.
/// Read it with [`Token::expose`] only where it is sent or checked.
#[derive(Clone)]
pub struct Token(Bytes);

impl Token {
    /// Wraps secret bytes.
    pub fn new(secret: impl Into<Bytes>) -> Self {
        Self(secret.into())
    }

    /// The secret bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The SHA-256 digest of the token: what a [`TokenAuthenticator`]
    /// stores, and what a configuration file should hold instead of the
    /// token.
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.0).into()
    }
}

impl From<String> for Token {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}

impl From<&str> for Token {
    fn from(s: &str) -> Self {
        Self(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<Vec<u8>> for Token {
    fn from(v: Vec<u8>) -> Self {
        Self(Bytes::from(v))
    }
}

impl From<&[u8]> for Token {
    fn from(v: &[u8]) -> Self {
        Self(Bytes::copy_from_slice(v))
    }
}

impl From<Bytes> for Token {
    fn from(b: Bytes) -> Self {
        Self(b)
    }
}

/// The client's HELLO `auth` payload inside the configuration: its `Debug`
/// says only how long it is.
#[derive(Clone)]
pub(crate) struct AuthPayload(pub(crate) Bytes);

impl fmt::Debug for AuthPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}

// ----- static tokens ------------------------------------------------------------

/// Accepts clients whose HELLO `auth` is one of a set of static bearer
/// tokens (hostile inputs G2).
///
/// Only the SHA-256 digest of each token is kept. The presented token is
/// hashed and compared with **every** stored digest in constant time (equal
/// 32-byte lengths, no early exit), so neither the token's length, nor which
/// byte differs, nor which entry matched shows in the timing. An unknown, a
/// wrong and a missing token all get the same refusal: `UNAUTHENTICATED`,
/// "invalid or missing token". An empty token never matches.
///
/// Tokens should be long random strings (at least 128 bits of entropy):
/// SHA-256 without a salt is then as good as a slow hash, since there is
/// nothing to guess.
#[derive(Clone, Default)]
pub struct TokenAuthenticator {
    entries: Vec<TokenEntry>,
}

#[derive(Clone)]
struct TokenEntry {
    digest: [u8; 32],
    subject: String,
}

impl fmt::Debug for TokenAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subjects: Vec<&str> = self.entries.iter().map(|e| e.subject.as_str()).collect();
        f.debug_struct("TokenAuthenticator").field("subjects", &subjects).finish_non_exhaustive()
    }
}

impl TokenAuthenticator {
    /// No tokens yet: everyone is refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `token` as `subject`. Only its digest is kept.
    #[must_use]
    pub fn token(self, subject: impl Into<String>, token: impl Into<Token>) -> Self {
        let digest = token.into().sha256();
        self.sha256(subject, digest)
    }

    /// Accepts the token whose SHA-256 digest is `digest` as `subject`.
    #[must_use]
    pub fn sha256(mut self, subject: impl Into<String>, digest: [u8; 32]) -> Self {
        self.entries.push(TokenEntry { digest, subject: subject.into() });
        self
    }

    /// [`sha256`](Self::sha256) with the digest written as 64 hex digits
    /// (`sha256sum` output).
    pub fn sha256_hex(self, subject: impl Into<String>, hex: &str) -> Result<Self, Error> {
        let hex = hex.trim().as_bytes();
        let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
        if hex.len() != 64 {
            return Err(Error::config(format!("a SHA-256 digest has 64 hex digits, not {}", hex.len())));
        }
        let mut digest = [0u8; 32];
        for (byte, pair) in digest.iter_mut().zip(hex.chunks(2)) {
            let (Some(hi), Some(lo)) = (digit(pair[0]), digit(pair[1])) else {
                return Err(Error::config("a SHA-256 digest has only hex digits"));
            };
            *byte = hi << 4 | lo;
        }
        Ok(self.sha256(subject, digest))
    }

    /// How many tokens are accepted.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no token is accepted.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Authenticator for TokenAuthenticator {
    fn authenticate(&self, hello_auth: Option<&[u8]>, _peer: &PeerInfo) -> Result<Identity, Status> {
        let presented = hello_auth.unwrap_or_default();
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut found = Choice::from(0);
        let mut index = 0u32;
        for (i, entry) in self.entries.iter().enumerate() {
            // Equal 32-byte slices: `ct_eq` does not short-circuit.
            let equal = digest.ct_eq(&entry.digest);
            index.conditional_assign(&(i as u32), equal);
            found |= equal;
        }
        let present = Choice::from(u8::from(!presented.is_empty()));
        if bool::from(found & present) {
            Ok(Identity::new(self.entries[index as usize].subject.clone(), AuthMethod::Token))
        } else {
            Err(unauthenticated("invalid or missing token"))
        }
    }
}

// ----- JWT ----------------------------------------------------------------------

/// Accepts clients whose HELLO `auth` is a signed JWT (compact form, UTF-8).
///
/// Exactly one algorithm is accepted per authenticator (HS256 or EdDSA), so
/// a token cannot pick a weaker one ("alg confusion", `none`). The claims
/// `exp` and `sub` are required; `nbf` is checked when present; `iss` and
/// `aud` when configured. The identity's subject is `sub` and it expires at
/// `exp` (plus the leeway): calls after that fail with `UNAUTHENTICATED`.
///
/// Refusals say "token expired", "token not yet valid" or "invalid token"
/// (bad signature, malformed, wrong issuer or audience...).
#[derive(Clone)]
pub struct JwtAuthenticator {
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
}

impl fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key (an HMAC secret for HS256) is never shown.
        f.debug_struct("JwtAuthenticator")
            .field("algorithms", &self.validation.algorithms)
            .field("issuer", &self.validation.iss)
            .field("audience", &self.validation.aud)
            .field("leeway_secs", &self.validation.leeway)
            .finish_non_exhaustive()
    }
}

/// Smallest HS256 secret accepted: the hash output size (RFC 7518 §3.2).
pub const MIN_HS256_SECRET: usize = 32;

/// Default [`JwtAuthenticator::leeway`]: clock skew allowed on `exp` and `nbf`.
pub const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(30);

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

impl JwtAuthenticator {
    /// HS256 (HMAC-SHA-256) with a shared secret of at least
    /// [`MIN_HS256_SECRET`] bytes.
    pub fn hs256(secret: impl AsRef<[u8]>) -> Result<Self, Error> {
        let secret = secret.as_ref();
        if secret.len() < MIN_HS256_SECRET {
            return Err(Error::config(format!(
                "an HS256 secret needs at least {MIN_HS256_SECRET} bytes, this one has {}",
                secret.len()
            )));
        }
        Ok(Self::with_key(jsonwebtoken::DecodingKey::from_secret(secret), jsonwebtoken::Algorithm::HS256))
    }

    /// EdDSA (Ed25519) with the issuer's public key as PEM
    /// (`-----BEGIN PUBLIC KEY-----`, SubjectPublicKeyInfo).
    pub fn eddsa_pem(public_key_pem: impl AsRef<[u8]>) -> Result<Self, Error> {
        let key = jsonwebtoken::DecodingKey::from_ed_pem(public_key_pem.as_ref())
            .map_err(|e| Error::config(format!("invalid Ed25519 public key: {e}")))?;
        Ok(Self::with_key(key, jsonwebtoken::Algorithm::EdDSA))
    }

    /// EdDSA (Ed25519) with the issuer's raw 32-byte public key.
    pub fn eddsa_public_key(public_key: &[u8; 32]) -> Self {
        Self::with_key(jsonwebtoken::DecodingKey::from_ed_der(public_key), jsonwebtoken::Algorithm::EdDSA)
    }

    fn with_key(key: jsonwebtoken::DecodingKey, algorithm: jsonwebtoken::Algorithm) -> Self {
        let mut validation = jsonwebtoken::Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.leeway = DEFAULT_JWT_LEEWAY.as_secs();
        Self { key, validation }
    }

    /// Requires the `iss` claim to be `issuer`.
    #[must_use]
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[issuer]);
        self.validation.required_spec_claims.insert("iss".into());
        self
    }

    /// Requires the `aud` claim to name `audience`.
    #[must_use]
    pub fn audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self.validation.validate_aud = true;
        self.validation.required_spec_claims.insert("aud".into());
        self
    }

    /// Clock skew allowed on `exp` and `nbf` (default
    /// [`DEFAULT_JWT_LEEWAY`], 30 s; whole seconds).
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.validation.leeway = leeway.as_secs();
        self
    }
}

impl Authenticator for JwtAuthenticator {
    fn authenticate(&self, hello_auth: Option<&[u8]>, _peer: &PeerInfo) -> Result<Identity, Status> {
        use jsonwebtoken::errors::ErrorKind;
        let Some(token) = hello_auth.and_then(|a| std::str::from_utf8(a).ok()) else {
            return Err(unauthenticated("invalid or missing token"));
        };
        match jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation) {
            Ok(data) => {
                let expires = UNIX_EPOCH
                    + Duration::from_secs(data.claims.exp.saturating_add(self.validation.leeway).min(i64::MAX as u64));
                Ok(Identity::new(data.claims.sub, AuthMethod::Jwt).with_expiry(expires))
            }
            Err(e) => Err(unauthenticated(match e.kind() {
                ErrorKind::ExpiredSignature => "token expired",
                ErrorKind::ImmatureSignature => "token not yet valid",
                _ => "invalid token",
            })),
        }
    }
}

// ----- mTLS ---------------------------------------------------------------------

/// Accepts clients that presented a certificate the TLS layer verified
/// (`tls://` or `wss://` with a client CA, see
/// [`TlsServerConfigBuilder::client_ca_pem`](crate::transport::tls::TlsServerConfigBuilder::client_ca_pem)).
///
/// The identity's subject is the certificate's name
/// ([`PeerCertificate::name`]: common name, else the first DNS name, URI or
/// e-mail address) and it expires with the certificate. With
/// [`allow`](Self::allow), only certificates carrying one of the listed
/// names (as common name or subject alternative name) are accepted. A client
/// without a certificate, or on a transport without TLS, is refused with
/// `UNAUTHENTICATED`.
#[derive(Clone, Debug, Default)]
pub struct MtlsAuthenticator {
    allowed: Option<Vec<String>>,
}

impl MtlsAuthenticator {
    /// Accepts any certificate the TLS layer verified.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts only certificates carrying one of these names.
    #[must_use]
    pub fn allow(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.allowed.get_or_insert_with(Vec::new).extend(names.into_iter().map(Into::into));
        self
    }

    fn accepts(&self, cert: &PeerCertificate) -> bool {
        self.allowed.as_ref().is_none_or(|names| names.iter().any(|n| cert.has_name(n)))
    }
}

impl Authenticator for MtlsAuthenticator {
    fn authenticate(&self, _hello_auth: Option<&[u8]>, peer: &PeerInfo) -> Result<Identity, Status> {
        let Some(cert) = peer.tls.as_ref().and_then(|t| t.peer_certificate.as_ref()) else {
            return Err(unauthenticated("a client certificate is required"));
        };
        if !self.accepts(cert) {
            return Err(unauthenticated("client certificate not allowed"));
        }
        Ok(Identity::new(cert.name(), AuthMethod::Certificate).with_expiry(cert.not_after))
    }
}

// ----- Unix credentials -----------------------------------------------------------

/// Accepts Unix-socket clients whose uid (or primary gid) is allowed, from
/// the credentials the kernel reported at connect time (`SO_PEERCRED`).
///
/// By default only the server's own effective uid is allowed. Clients on
/// other transports have no credentials and are refused. Only the primary
/// gid is known: supplementary groups are not checked.
#[derive(Clone, Debug)]
pub struct UnixPeerAuthenticator {
    uids: Vec<u32>,
    gids: Vec<u32>,
}

impl Default for UnixPeerAuthenticator {
    fn default() -> Self {
        Self::new()
    }
}

impl UnixPeerAuthenticator {
    /// Allows the server's own effective uid.
    pub fn new() -> Self {
        Self::with_uids([effective_uid()])
    }

    /// Allows exactly these uids (and no gid).
    pub fn with_uids(uids: impl IntoIterator<Item = u32>) -> Self {
        Self { uids: uids.into_iter().collect(), gids: Vec::new() }
    }

    /// Also allows `uid`.
    #[must_use]
    pub fn allow_uid(mut self, uid: u32) -> Self {
        self.uids.push(uid);
        self
    }

    /// Also allows clients whose primary gid is `gid`.
    #[must_use]
    pub fn allow_gid(mut self, gid: u32) -> Self {
        self.gids.push(gid);
        self
    }
}

impl Authenticator for UnixPeerAuthenticator {
    fn authenticate(&self, _hello_auth: Option<&[u8]>, peer: &PeerInfo) -> Result<Identity, Status> {
        let Some(cred) = peer.credentials else {
            return Err(unauthenticated("unix peer credentials are required"));
        };
        if self.uids.contains(&cred.uid) || self.gids.contains(&cred.gid) {
            Ok(Identity::new(format!("uid:{}", cred.uid), AuthMethod::UnixCredentials))
        } else {
            Err(unauthenticated("unix peer not allowed"))
        }
    }
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions, touches no memory of ours and
    // cannot fail.
    unsafe { libc::geteuid() }
}

// ----- combinations -------------------------------------------------------------

/// Tries several authenticators in order and accepts with the first that
/// accepts (for example Unix credentials for local daemons, else a token).
/// When all refuse, the first refusal is returned.
#[derive(Clone, Debug, Default)]
pub struct AnyAuthenticator {
    all: Vec<Arc<dyn Authenticator>>,
}

impl AnyAuthenticator {
    /// No authenticator yet: everyone is refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `authenticator` after the others.
    #[must_use]
    pub fn or(mut self, authenticator: impl Authenticator) -> Self {
        self.all.push(Arc::new(authenticator));
        self
    }
}

impl Authenticator for AnyAuthenticator {
    fn authenticate(&self, hello_auth: Option<&[u8]>, peer: &PeerInfo) -> Result<Identity, Status> {
        let mut first = None;
        for authenticator in &self.all {
            match authenticator.authenticate(hello_auth, peer) {
                Ok(identity) => return Ok(identity),
                Err(status) => {
                    first.get_or_insert(status);
                }
            }
        }
        Err(first.unwrap_or_else(|| unauthenticated("no authentication method accepted the client")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::UnixCredentials;

    fn peer() -> PeerInfo {
        PeerInfo::default()
    }

    #[test]
    fn tokens_of_any_length_are_compared_as_digests() {
        let auth = TokenAuthenticator::new().token("a", "short").token("b", "a-much-longer-token-0123456789abcdef");
        assert_eq!(auth.authenticate(Some(b"short"), &peer()).unwrap().subject(), "a");
        let b = auth.authenticate(Some(b"a-much-longer-token-0123456789abcdef"), &peer()).unwrap();
        assert_eq!((b.subject(), b.method()), ("b", AuthMethod::Token));
        for wrong in [&b"shor"[..], b"shortt", b"", b"a-much-longer-token-0123456789abcdeF", &[0u8; 4096]] {
            let err = auth.authenticate(Some(wrong), &peer()).unwrap_err();
            assert_eq!(err.code, ErrorCode::UNAUTHENTICATED);
            assert_eq!(err.message.as_deref(), Some("invalid or missing token"));
        }
        assert_eq!(auth.authenticate(None, &peer()).unwrap_err().code, ErrorCode::UNAUTHENTICATED);
    }

    #[test]
    fn empty_token_never_matches() {
        let auth = TokenAuthenticator::new().token("empty", "");
        assert!(auth.authenticate(Some(b""), &peer()).is_err());
        assert!(auth.authenticate(None, &peer()).is_err());
    }

    #[test]
    fn digests_from_hex() {
        let digest = Token::from("secret").sha256();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let auth = TokenAuthenticator::new().sha256_hex("s", &hex.to_uppercase()).unwrap();
        assert_eq!(auth.authenticate(Some(b"secret"), &peer()).unwrap().subject(), "s");
        assert!(TokenAuthenticator::new().sha256_hex("s", "abc").is_err());
        assert!(TokenAuthenticator::new().sha256_hex("s", &"zz".repeat(32)).is_err());
    }

    #[test]
    fn debug_shows_no_secret() {
        let auth = TokenAuthenticator::new().token("alice", "hunter2-token");
        let shown = format!("{auth:?}");
        assert!(shown.contains("alice") && !shown.contains("hunter2"), "{shown}");
        let jwt = JwtAuthenticator::hs256([7u8; 32]).unwrap();
        assert!(!format!("{jwt:?}").contains("7, 7"), "{jwt:?}");
        assert_eq!(format!("{:?}", AuthPayload(Bytes::from_static(b"hunter2"))), "<redacted 7 bytes>");
    }

    fn jwt(claims: &serde_json::Value, secret: &[u8]) -> String {
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_secret(secret)).unwrap()
    }

    #[test]
    fn jwt_refusals_say_why() {
        let secret = [3u8; 32];
        let auth = JwtAuthenticator::hs256(secret).unwrap().leeway(Duration::ZERO);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let message = |token: &str| auth.authenticate(Some(token.as_bytes()), &peer()).unwrap_err().message.unwrap();
        let ok = auth
            .authenticate(Some(jwt(&serde_json::json!({"sub": "a", "exp": now + 60}), &secret).as_bytes()), &peer());
        let ok = ok.unwrap();
        assert_eq!((ok.subject(), ok.method()), ("a", AuthMethod::Jwt));
        assert_eq!(ok.expires_at(), Some(UNIX_EPOCH + Duration::from_secs(now + 60)));
        assert_eq!(message(&jwt(&serde_json::json!({"sub": "a", "exp": now - 5}), &secret)), "token expired");
        let early = serde_json::json!({"sub": "a", "exp": now + 600, "nbf": now + 300});
        assert_eq!(message(&jwt(&early, &secret)), "token not yet valid");
        assert_eq!(message(&jwt(&serde_json::json!({"sub": "a", "exp": now + 60}), &[4u8; 32])), "invalid token");
        assert_eq!(message(&jwt(&serde_json::json!({"exp": now + 60}), &secret)), "invalid token");
        assert_eq!(auth.authenticate(None, &peer()).unwrap_err().message.unwrap(), "invalid or missing token");
    }

    #[test]
    fn mtls_needs_a_certificate() {
        let err = MtlsAuthenticator::new().authenticate(None, &peer()).unwrap_err();
        assert_eq!(
            (err.code, err.message.as_deref()),
            (ErrorCode::UNAUTHENTICATED, Some("a client certificate is required"))
        );
    }

    #[test]
    fn any_returns_the_first_refusal() {
        let any =
            AnyAuthenticator::new().or(UnixPeerAuthenticator::new()).or(TokenAuthenticator::new().token("t", "tok"));
        assert_eq!(any.authenticate(Some(b"tok"), &peer()).unwrap().subject(), "t");
        let err = any.authenticate(Some(b"nope"), &peer()).unwrap_err();
        assert_eq!(err.message.as_deref(), Some("unix peer credentials are required"));
        assert!(AnyAuthenticator::new().authenticate(None, &peer()).is_err());
    }

    #[test]
    fn short_hs256_secret_is_refused() {
        assert!(JwtAuthenticator::hs256([1u8; 31]).is_err());
    }

    #[test]
    fn unix_allowlist() {
        let mut p = peer();
        p.credentials = Some(UnixCredentials { uid: 1234, gid: 55, pid: None });
        assert!(UnixPeerAuthenticator::with_uids([1234]).authenticate(None, &p).is_ok());
        assert!(UnixPeerAuthenticator::with_uids([1]).authenticate(None, &p).is_err());
        assert!(UnixPeerAuthenticator::with_uids([1]).allow_gid(55).authenticate(None, &p).is_ok());
        assert!(UnixPeerAuthenticator::new().authenticate(None, &peer()).is_err(), "no credentials");
    }

    #[test]
    fn hooks_map_codes_and_survive_panics() {
        let refuse = |_: Option<&[u8]>, _: &PeerInfo| -> Result<Identity, Status> {
            Err(Status { code: ErrorCode::NO_ERROR, message: None })
        };
        let err = authenticate(Some(&refuse), None, &peer()).unwrap_err();
        assert_eq!(err.code, ErrorCode::UNAUTHENTICATED);
        let boom = |_: Option<&[u8]>, _: &PeerInfo| -> Result<Identity, Status> { panic!("boom") };
        assert_eq!(authenticate(Some(&boom), None, &peer()).unwrap_err().code, ErrorCode::INTERNAL);
        assert!(authenticate(None, None, &peer()).unwrap().is_anonymous());

        let expired = Identity::new("x", AuthMethod::Custom).with_expiry(UNIX_EPOCH);
        assert_eq!(check_call(Some(&expired), None, 1).unwrap_err().code, ErrorCode::UNAUTHENTICATED);
        let deny =
            |_: &Identity, _: u32| -> Result<(), Status> { Err(Status { code: ErrorCode::NO_ERROR, message: None }) };
        assert_eq!(check_call(None, Some(&deny), 1).unwrap_err().code, ErrorCode::PERMISSION_DENIED);
        assert!(check_call(None, None, 1).is_ok());
    }
}
