"""Authentication in the handshake, and authorization of every call.
Mirrors ``gatewire::auth``.

Authentication
--------------

A server decides whether to accept a client when its HELLO arrives
(PROTOCOL.md §4.1, step 3), before any call can exist (§4.2). The
``authenticator`` option is called with the HELLO's opaque ``auth`` payload
(``None`` when the client sent none) and what the transport knows about
the peer (:class:`~gatewire.aio.TransportInfo`: the verified TLS client
certificate, Unix peer credentials). It returns an :class:`Identity`, or
raises :class:`~gatewire.aio.Status` to refuse:

- accepted: the server sends HELLO_ACK and the identity stays with the
  connection; handlers read it as :attr:`CallContext.identity
  <gatewire.aio.CallContext.identity>`;
- refused: the server answers with a HELLO_ACK carrying the status code
  (``UNAUTHENTICATED`` by convention) and closes. The client's
  :func:`~gatewire.aio.connect` raises
  :class:`~gatewire.aio.ConnectionClosedError` whose ``code`` is that code.

Without an authenticator every client is accepted with an anonymous
identity. Shipped here:

============================ ============================================== ========================
class                        decides from                                   identity subject
============================ ============================================== ========================
:class:`TokenAuthenticator`  static bearer tokens, kept as SHA-256 digests  the token's subject
:class:`MtlsAuthenticator`   the client certificate TLS verified            common name or first SAN
:class:`UnixPeerAuthenticator` Unix peer credentials against an allowlist   ``uid:N``
:class:`AnyAuthenticator`    the first of several that accepts              that one's
============================ ============================================== ========================

Any callable ``(auth, transport_info) -> Identity`` is an authenticator. It
runs on the event loop inside the handshake and must not block. An
exception other than :class:`~gatewire.aio.Status` refuses the client with
``INTERNAL``.

Authorization
-------------

The ``authorizer`` option, a callable ``(identity, method) -> bool | None``,
is asked before each incoming call or stream runs, and before the method is
looked up (a caller that may not call a method cannot learn whether it
exists). ``False`` denies with ``PERMISSION_DENIED``; raising
:class:`~gatewire.aio.Status` denies with its code. The handler never runs.
One-way events are not authorized (as in the Rust runtime).

Expiry
------

An identity may expire (:attr:`Identity.expires_at`: a client
certificate's end of validity). A call that arrives later fails with
``UNAUTHENTICATED`` before the authorizer and the handler; calls already
running finish. Clients reconnect with fresh credentials.

Secrets
-------

Authenticators keep digests, never tokens, and never show them; refusals
are logged (debug level) with the peer's address, the code and the
reason, never the presented credential.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from ..code import ErrorCode
from .errors import ConfigError, Status

if TYPE_CHECKING:
    from ._transport import TransportInfo

__all__ = [
    "ANONYMOUS",
    "AnyAuthenticator",
    "AuthMethod",
    "Authenticator",
    "Authorizer",
    "Identity",
    "MtlsAuthenticator",
    "TokenAuthenticator",
    "UnixPeerAuthenticator",
]

_log = logging.getLogger("gatewire")


class AuthMethod(enum.Enum):
    """How a peer proved who it is."""

    ANONYMOUS = "anonymous"
    """Nothing: no authenticator is configured."""
    TOKEN = "token"
    """A static bearer token (:class:`TokenAuthenticator`)."""
    CERTIFICATE = "certificate"
    """A client certificate verified by TLS (:class:`MtlsAuthenticator`)."""
    UNIX_CREDENTIALS = "unix-credentials"
    """Unix peer credentials (:class:`UnixPeerAuthenticator`)."""
    CUSTOM = "custom"
    """An authenticator of the application's own."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the peer of a connection authenticated as. It carries no secret."""

    subject: str
    """A token's subject, a certificate's name, ``uid:N``; empty when
    anonymous."""
    method: AuthMethod = AuthMethod.CUSTOM
    """How the identity was established."""
    expires_at: float | None = None
    """When it stops being valid, in seconds since the epoch, if ever."""

    @property
    def is_anonymous(self) -> bool:
        """Whether no authenticator established this identity."""
        return self.method is AuthMethod.ANONYMOUS

    def is_expired(self, now: float | None = None) -> bool:
        """Whether the identity has expired at ``now`` (default: the
        current time)."""
        if self.expires_at is None:
            return False
        return (time.time() if now is None else now) >= self.expires_at


ANONYMOUS = Identity("", AuthMethod.ANONYMOUS)
"""The identity of every peer when no authenticator is configured."""

Authenticator: TypeAlias = Callable[[bytes | None, "TransportInfo"], Identity]
"""Decides from a HELLO's ``auth`` payload and the transport facts: returns
the client's :class:`Identity` or raises :class:`~gatewire.aio.Status`."""

Authorizer: TypeAlias = Callable[[Identity, int], bool | None]
"""Decides whether ``identity`` may call ``method``: ``False`` (or raising
:class:`~gatewire.aio.Status`) denies."""


def _unauthenticated(message: str) -> Status:
    return Status(ErrorCode.UNAUTHENTICATED, message)


# ----- runtime hooks (used by the connection driver) ----------------------------


def authenticate(
    authenticator: Authenticator | None, auth: bytes | None, peer: TransportInfo
) -> Identity | Status:
    """The server's decision on a HELLO: the authenticator's identity, or
    the status to refuse with. Never raises."""
    if authenticator is None:
        return ANONYMOUS
    result: Identity | Status
    try:
        identity = authenticator(auth, peer)
    except Status as s:
        result = s
    except Exception:
        _log.exception("authenticator failed; refusing the client at %s", peer.address)
        result = Status(ErrorCode.INTERNAL, "authentication failed")
    else:
        if not isinstance(identity, Identity):
            _log.error("authenticator returned %r, not an Identity", type(identity))
            result = Status(ErrorCode.INTERNAL, "authentication failed")
        elif identity.is_expired():
            result = _unauthenticated("credentials expired")
        else:
            result = identity
    if isinstance(result, Identity):
        _log.debug(
            "client at %s authenticated: %s (%s)",
            peer.address,
            result.subject,
            result.method.value,
        )
    else:
        # The presented credential is never logged, only the verdict.
        _log.debug("client at %s refused: %s", peer.address, result)
    return result


def check_call(
    identity: Identity | None, authorizer: Authorizer | None, method: int
) -> Status | None:
    """Why an incoming call to ``method`` may not run, or ``None`` when it
    may: the identity has expired, or the authorizer denies it."""
    if identity is not None and identity.is_expired():
        return _unauthenticated("credentials expired")
    if authorizer is None:
        return None
    identity = identity or ANONYMOUS
    try:
        allowed = authorizer(identity, method)
    except Status as s:
        denied = s
    except Exception:
        _log.exception("authorizer failed; denying a call to method %d", method)
        denied = Status(ErrorCode.PERMISSION_DENIED, "authorization failed")
    else:
        if allowed is not False:
            return None
        denied = Status(ErrorCode.PERMISSION_DENIED, f"not allowed to call method {method}")
    _log.debug("call to method %d by %r denied: %s", method, identity.subject, denied)
    return denied


# ----- static tokens --------------------------------------------------------------


class TokenAuthenticator:
    """Accepts clients whose HELLO ``auth`` is one of a set of static bearer
    tokens (hostile inputs G2)::

        auth = TokenAuthenticator().token("desktop", desktop_token).sha256_hex("cli", digest)
        server = await gw.serve(urls, router, authenticator=auth, tls_server=tls)

    Only the SHA-256 digest of each token is kept. The presented token is
    hashed and compared with **every** stored digest using
    :func:`hmac.compare_digest` over equal 32-byte digests, with no early
    exit, so neither the token's length nor which byte differs shows in the
    timing. An unknown, a wrong and a missing token all get the same
    refusal: ``UNAUTHENTICATED``, "invalid or missing token". An empty token
    never matches.

    Tokens should be long random strings (at least 128 bits of entropy):
    SHA-256 without a salt is then as good as a slow hash.
    """

    def __init__(self) -> None:
        self._entries: list[tuple[bytes, str]] = []

    def __repr__(self) -> str:
        return f"TokenAuthenticator(subjects={[s for _, s in self._entries]!r})"

    def __len__(self) -> int:
        return len(self._entries)

    def token(self, subject: str, token: str | bytes) -> TokenAuthenticator:
        """Accepts ``token`` (a string is encoded as UTF-8) as ``subject``.
        Only its digest is kept. Returns ``self``."""
        raw = token.encode() if isinstance(token, str) else bytes(token)
        return self.sha256(subject, hashlib.sha256(raw).digest())

    def sha256(self, subject: str, digest: bytes) -> TokenAuthenticator:
        """Accepts the token whose SHA-256 digest is ``digest`` as
        ``subject``. Returns ``self``.

        Raises:
            ConfigError: ``digest`` is not 32 bytes.
        """
        if len(digest) != 32:
            raise ConfigError(f"a SHA-256 digest has 32 bytes, not {len(digest)}")
        self._entries.append((bytes(digest), subject))
        return self

    def sha256_hex(self, subject: str, digest: str) -> TokenAuthenticator:
        """:meth:`sha256` with the digest as 64 hex digits (``sha256sum``
        output). Returns ``self``.

        Raises:
            ConfigError: not 64 hex digits.
        """
        text = digest.strip()
        if len(text) != 64:
            raise ConfigError(f"a SHA-256 digest has 64 hex digits, not {len(text)}")
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ConfigError("a SHA-256 digest has only hex digits") from None
        return self.sha256(subject, raw)

    def __call__(self, auth: bytes | None, peer: TransportInfo) -> Identity:
        presented = auth or b""
        digest = hashlib.sha256(presented).digest()
        subject: str | None = None
        for stored, name in self._entries:
            # Every entry is compared, equal lengths, whatever matched before.
            if hmac.compare_digest(digest, stored) and subject is None:
                subject = name
        if subject is None or not presented:
            raise _unauthenticated("invalid or missing token")
        return Identity(subject, AuthMethod.TOKEN)


# ----- mTLS --------------------------------------------------------------------------


class MtlsAuthenticator:
    """Accepts clients that presented a certificate the TLS layer verified
    (``tls://`` or ``wss://`` with a client CA in
    :class:`~gatewire.aio.TlsServerConfig`).

    The identity's subject is the certificate's name
    (:attr:`~gatewire.aio.tls.PeerCertificate.name`: common name, else the
    first DNS name, URI or e-mail address) and it expires with the
    certificate. With ``allow``, only certificates carrying one of the
    listed names (as common name or alternative name) are accepted. A client
    without a certificate, or on a transport without TLS, is refused with
    ``UNAUTHENTICATED``.
    """

    def __init__(self, allow: Iterable[str] | None = None) -> None:
        self._allowed = None if allow is None else frozenset(allow)

    def __repr__(self) -> str:
        allowed = None if self._allowed is None else sorted(self._allowed)
        return f"MtlsAuthenticator(allow={allowed!r})"

    def __call__(self, auth: bytes | None, peer: TransportInfo) -> Identity:
        cert = peer.tls.peer_certificate if peer.tls is not None else None
        if cert is None:
            raise _unauthenticated("a client certificate is required")
        if self._allowed is not None and not any(cert.has_name(n) for n in self._allowed):
            raise _unauthenticated("client certificate not allowed")
        return Identity(cert.name, AuthMethod.CERTIFICATE, cert.not_after)


# ----- Unix credentials --------------------------------------------------------------


class UnixPeerAuthenticator:
    """Accepts Unix-socket clients whose uid (or primary gid) is allowed,
    from the credentials the kernel reported at connect time
    (``SO_PEERCRED``; Linux).

    Args:
        uids: the uids allowed. Default: the server's own effective uid.
        gids: primary gids allowed. Default: none (supplementary groups are
            never checked).

    Clients on other transports have no credentials and are refused.
    """

    def __init__(self, uids: Iterable[int] | None = None, gids: Iterable[int] = ()) -> None:
        self._uids = {os.geteuid()} if uids is None else set(uids)
        self._gids = set(gids)

    def __repr__(self) -> str:
        return f"UnixPeerAuthenticator(uids={sorted(self._uids)}, gids={sorted(self._gids)})"

    def allow_uid(self, uid: int) -> UnixPeerAuthenticator:
        """Also allows ``uid``. Returns ``self``."""
        self._uids.add(uid)
        return self

    def allow_gid(self, gid: int) -> UnixPeerAuthenticator:
        """Also allows clients whose primary gid is ``gid``. Returns
        ``self``."""
        self._gids.add(gid)
        return self

    def __call__(self, auth: bytes | None, peer: TransportInfo) -> Identity:
        cred = peer.credentials
        if cred is None:
            raise _unauthenticated("unix peer credentials are required")
        if cred.uid in self._uids or cred.gid in self._gids:
            return Identity(f"uid:{cred.uid}", AuthMethod.UNIX_CREDENTIALS)
        raise _unauthenticated("unix peer not allowed")


# ----- combinations --------------------------------------------------------------------


class AnyAuthenticator:
    """Tries several authenticators in order and accepts with the first that
    accepts (for example Unix credentials for local daemons, else a token).
    When all refuse, the first refusal is raised."""

    def __init__(self, *authenticators: Authenticator) -> None:
        self._all = list(authenticators)

    def __repr__(self) -> str:
        return f"AnyAuthenticator({', '.join(repr(a) for a in self._all)})"

    def __call__(self, auth: bytes | None, peer: TransportInfo) -> Identity:
        first: Status | None = None
        for authenticator in self._all:
            try:
                return authenticator(auth, peer)
            except Status as s:
                first = first or s
        raise first or _unauthenticated("no authentication method accepted the client")
