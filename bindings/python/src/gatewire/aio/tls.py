"""TLS for ``tls://`` and ``wss://`` endpoints, with the standard :mod:`ssl`
module. Mirrors ``gatewire::transport::tls``.

What is enforced
----------------

- **TLS 1.2 at least** (:data:`MINIMUM_VERSION`) in contexts built here.
  The Rust runtime speaks only TLS 1.3, so that is what a Rust peer
  negotiates. An :class:`ssl.SSLContext` passed in keeps its own versions.
- **ALPN** ``gatewire/1`` (:data:`ALPN`) on ``tls://``, on both ends: a
  server offers only it and closes a client that did not select it, and a
  client fails with :class:`~gatewire.aio.AlpnError` unless the server
  selected it (a gatewire client talking to an HTTPS server, or the
  reverse). ``wss://`` uses ``http/1.1`` (:data:`ALPN_HTTP11`) instead, as
  browsers do; the ``gatewire.v1`` WebSocket subprotocol plays the same
  role there.
- **The server's certificate and name are always verified** by contexts
  built here: the chain against the CA given (``ca_file`` / ``ca_pem``) or,
  without one, the system's trust store; the name against the endpoint's
  host (a DNS name or an IP address), or ``server_name``. There is no
  option to skip this; a context passed in decides for itself.
- **No plaintext fallback.** A ``tls://`` or ``wss://`` endpoint is never
  served or dialled without TLS; a server without :class:`TlsServerConfig`
  cannot bind one.
- **Client certificates (mTLS):** with ``client_ca_file`` or
  ``client_ca_pem`` a server requires them; ``client_auth_optional=True``
  lets clients without one connect too (an authenticator then decides),
  while a certificate that is sent is still verified. The verified
  certificate's names reach handlers through
  :attr:`~gatewire.aio.CallContext.transport_info` (``tls.peer_certificate``)
  and, with :class:`~gatewire.aio.auth.MtlsAuthenticator`, their identity.
- **One deadline** covers the TCP connect, the TLS handshake and, for
  ``wss://``, the WebSocket upgrade (``connect_timeout`` on a client,
  ``timeouts.handshake`` on a server).

Closing: asyncio's TLS transports cannot half-close. A closing connection
sends ``close_notify`` and waits (at most ``linger``) for the peer's, then
drops the socket.

Certificate verification failures raise
:class:`~gatewire.aio.CertificateVerifyError` (its subclass
:class:`~gatewire.aio.HostnameMismatchError` for a name that does not
match); other TLS failures, such as a server refusing our client
certificate, raise :class:`~gatewire.aio.TlsError`.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import (
    AlpnError,
    CertificateVerifyError,
    HostnameMismatchError,
    TlsConfigError,
    TlsError,
)

__all__ = [
    "ALPN",
    "ALPN_HTTP11",
    "MINIMUM_VERSION",
    "ClientAuth",
    "PeerCertificate",
    "TlsClientConfig",
    "TlsInfo",
    "TlsServerConfig",
]

ALPN = "gatewire/1"
"""The ALPN protocol id of gatewire over TLS (``tls://``)."""

ALPN_HTTP11 = "http/1.1"
"""The ALPN protocol id under ``wss://``: WebSocket runs over HTTP/1.1."""

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
"""The oldest TLS version contexts built here accept."""

_HOSTNAME_MISMATCH = 62  # X509_V_ERR_HOSTNAME_MISMATCH
_IP_ADDRESS_MISMATCH = 64  # X509_V_ERR_IP_ADDRESS_MISMATCH

_NAME_KEYS = {
    "commonName": "CN",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "domainComponent": "DC",
    "serialNumber": "serialNumber",
    "emailAddress": "emailAddress",
}


class ClientAuth(enum.Enum):
    """How a server treats client certificates."""

    NONE = "none"
    """No certificate is requested."""
    OPTIONAL = "optional"
    """A certificate is requested; a client without one still connects, one
    with an invalid certificate does not."""
    REQUIRED = "required"
    """A client without a valid certificate fails the TLS handshake."""
    CUSTOM = "custom"
    """Decided by an :class:`ssl.SSLContext` passed in."""


def _scheme_alpn(scheme: str) -> str:
    return ALPN if scheme == "tls" else ALPN_HTTP11


def _load(what: str, path: str | None, load: Callable[[], object]) -> None:
    """Runs ``load()``, turning failures into :class:`TlsConfigError`
    naming the file (never quoting its content)."""
    try:
        load()
    except (OSError, ValueError) as e:
        where = f" from `{path}`" if path else ""
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise TlsConfigError(f"cannot load {what}{where}: {reason}") from e


def _server_context(
    alpn: str,
    cert_file: str,
    key_file: str | None,
    client_ca_file: str | None,
    client_ca_pem: str | None,
    client_auth_optional: bool,
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = MINIMUM_VERSION
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    _load(
        "certificate chain and private key",
        cert_file,
        lambda: ctx.load_cert_chain(cert_file, key_file),
    )
    if client_ca_file is not None or client_ca_pem is not None:
        _load(
            "client CA certificates",
            client_ca_file,
            lambda: ctx.load_verify_locations(cafile=client_ca_file, cadata=client_ca_pem),
        )
        ctx.verify_mode = ssl.CERT_OPTIONAL if client_auth_optional else ssl.CERT_REQUIRED
    ctx.set_alpn_protocols([alpn])
    return ctx


def _client_context(
    alpn: str,
    ca_file: str | None,
    ca_pem: str | None,
    cert_file: str | None,
    key_file: str | None,
) -> ssl.SSLContext:
    # PROTOCOL_TLS_CLIENT: CERT_REQUIRED and check_hostname on.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = MINIMUM_VERSION
    if ca_file is None and ca_pem is None:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        _load(
            "CA certificates",
            ca_file,
            lambda: ctx.load_verify_locations(cafile=ca_file, cadata=ca_pem),
        )
    if cert_file is not None:
        _load(
            "client certificate and private key",
            cert_file,
            lambda: ctx.load_cert_chain(cert_file, key_file),
        )
    ctx.set_alpn_protocols([alpn])
    return ctx


class TlsServerConfig:
    """The certificate, key and client-certificate policy of a server's
    ``tls://`` and ``wss://`` listeners (the ``tls_server`` option).

    Args:
        cert_file: the server's certificate chain (leaf first), PEM.
        key_file: its private key, PEM (unencrypted).
        client_ca_file: require client certificates issued by the CAs in
            this PEM file (mTLS).
        client_ca_pem: the same, as PEM text.
        client_auth_optional: with a client CA, let clients without a
            certificate connect too; a certificate that is sent is still
            verified. Default: required.
        context: an :class:`ssl.SSLContext` of your own (server side)
            instead of the files. It is used as given for both schemes, its
            ALPN list replaced by ``["gatewire/1", "http/1.1"]`` (``tls://``
            listeners then require ``gatewire/1``).

    Raises:
        TlsConfigError: a file that cannot be read or parsed, or a missing
            or contradictory argument.
    """

    def __init__(
        self,
        cert_file: str | None = None,
        key_file: str | None = None,
        *,
        client_ca_file: str | None = None,
        client_ca_pem: str | None = None,
        client_auth_optional: bool = False,
        context: ssl.SSLContext | None = None,
    ) -> None:
        files = (cert_file, key_file, client_ca_file, client_ca_pem)
        if context is not None:
            if any(f is not None for f in files):
                raise TlsConfigError("give either an SSLContext or certificate files, not both")
            context.set_alpn_protocols([ALPN, ALPN_HTTP11])
            self._contexts = {"tls": context, "wss": context}
            self.client_auth = ClientAuth.CUSTOM
            return
        if cert_file is None or key_file is None:
            raise TlsConfigError("a TLS server needs a certificate chain and its private key")
        if client_ca_file is None and client_ca_pem is None:
            self.client_auth = ClientAuth.NONE
        elif client_auth_optional:
            self.client_auth = ClientAuth.OPTIONAL
        else:
            self.client_auth = ClientAuth.REQUIRED
        self._contexts = {
            scheme: _server_context(
                _scheme_alpn(scheme),
                cert_file,
                key_file,
                client_ca_file,
                client_ca_pem,
                client_auth_optional,
            )
            for scheme in ("tls", "wss")
        }

    def __repr__(self) -> str:
        return f"TlsServerConfig(client_auth={self.client_auth.value})"

    def context(self, scheme: str) -> ssl.SSLContext:
        """The context a listener of ``scheme`` (``tls`` or ``wss``) uses."""
        return self._contexts[scheme]


class TlsClientConfig:
    """Trust anchors, client certificate and server name for connecting to
    ``tls://`` and ``wss://`` endpoints (the ``tls_client`` option).

    Args:
        ca_file: trust the CA certificates in this PEM file.
        ca_pem: the same, as PEM text. Without either, the system's trust
            store is used.
        cert_file: present this certificate chain to servers that ask for
            one (mTLS).
        key_file: its private key (default: in ``cert_file``).
        server_name: verify the server's certificate for this name instead
            of the endpoint's host (connect to ``tls://10.0.0.5:4000``,
            verify ``gateway.internal``). The name is always verified; this
            only chooses it.
        context: an :class:`ssl.SSLContext` of your own (client side)
            instead. It is used as given for both schemes, its ALPN list
            replaced by ``["gatewire/1", "http/1.1"]``.

    Raises:
        TlsConfigError: a file that cannot be read or parsed, or a
            contradictory argument.
    """

    def __init__(
        self,
        *,
        ca_file: str | None = None,
        ca_pem: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        server_name: str | None = None,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.server_name = server_name
        if context is not None:
            if any(f is not None for f in (ca_file, ca_pem, cert_file, key_file)):
                raise TlsConfigError("give either an SSLContext or certificate files, not both")
            context.set_alpn_protocols([ALPN, ALPN_HTTP11])
            self._contexts = {"tls": context, "wss": context}
            return
        if key_file is not None and cert_file is None:
            raise TlsConfigError("key_file needs cert_file")
        self._contexts = {
            scheme: _client_context(_scheme_alpn(scheme), ca_file, ca_pem, cert_file, key_file)
            for scheme in ("tls", "wss")
        }

    def __repr__(self) -> str:
        return f"TlsClientConfig(server_name={self.server_name!r})"

    def context(self, scheme: str) -> ssl.SSLContext:
        """The context a connection to a ``scheme`` endpoint (``tls`` or
        ``wss``) uses."""
        return self._contexts[scheme]

    def name_for(self, host: str) -> str:
        """The name the server's certificate must carry when connecting to
        ``host``."""
        return self.server_name or host


_default_client: TlsClientConfig | None = None


def default_client_config() -> TlsClientConfig:
    """The configuration used without ``tls_client``: the system's trust
    store, no client certificate."""
    global _default_client  # noqa: PLW0603 - built once, on first use
    if _default_client is None:
        _default_client = TlsClientConfig()
    return _default_client


# ----- session facts ------------------------------------------------------------


IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """The identity in a certificate the TLS layer verified."""

    subject: str
    """The subject distinguished name, as text (``CN=desktop, O=Example``)."""
    common_name: str | None
    """The subject's first common name, if any."""
    dns_names: tuple[str, ...]
    """DNS names among the subject alternative names."""
    uris: tuple[str, ...]
    """URIs among the subject alternative names (SPIFFE ids...)."""
    emails: tuple[str, ...]
    """E-mail addresses among the subject alternative names."""
    ip_addresses: tuple[IpAddress, ...]
    """IP addresses among the subject alternative names."""
    not_after: float
    """End of the certificate's validity, in seconds since the epoch."""
    sha256: bytes
    """SHA-256 of the DER certificate (for pinning)."""

    @property
    def name(self) -> str:
        """The name an identity is given: the common name, else the first
        DNS name, URI or e-mail address, else the whole subject."""
        for n in (self.common_name, *self.dns_names, *self.uris, *self.emails):
            if n:
                return n
        return self.subject

    def has_name(self, name: str) -> bool:
        """Whether ``name`` is the common name or one of the DNS, URI or
        e-mail alternative names (exact comparison)."""
        return name == self.common_name or name in (*self.dns_names, *self.uris, *self.emails)

    @classmethod
    def from_ssl(cls, obj: ssl.SSLObject | ssl.SSLSocket) -> PeerCertificate | None:
        """The peer's verified end-entity certificate, or ``None`` when it
        sent none (or it was not verified)."""
        der = obj.getpeercert(binary_form=True)
        decoded: dict[str, Any] | None = obj.getpeercert()
        if not der or not decoded:
            return None
        parts: list[str] = []
        common_name = None
        for rdn in decoded.get("subject", ()):
            for key, value in rdn:
                parts.append(f"{_NAME_KEYS.get(key, key)}={value}")
                if key == "commonName" and common_name is None:
                    common_name = str(value)
        names: dict[str, list[str]] = {"DNS": [], "URI": [], "email": [], "IP Address": []}
        for kind, value in decoded.get("subjectAltName", ()):
            if kind in names:
                names[kind].append(str(value).strip())
        ips: list[IpAddress] = []
        for text in names["IP Address"]:
            try:
                ips.append(ipaddress.ip_address(text))
            except ValueError:
                continue
        not_after = decoded.get("notAfter")
        return cls(
            subject=", ".join(parts),
            common_name=common_name,
            dns_names=tuple(names["DNS"]),
            uris=tuple(names["URI"]),
            emails=tuple(names["email"]),
            ip_addresses=tuple(ips),
            not_after=float(ssl.cert_time_to_seconds(not_after)) if not_after else 0.0,
            sha256=hashlib.sha256(der).digest(),
        )


@dataclass(frozen=True, slots=True)
class TlsInfo:
    """What a TLS session established (in
    :attr:`~gatewire.aio.TransportInfo.tls`)."""

    version: str | None
    """The TLS version (``TLSv1.3``)."""
    alpn: str | None
    """The ALPN protocol both ends agreed on."""
    server_name: str | None
    """Client side: the name the server's certificate was verified
    against. Server side: ``None``."""
    peer_certificate: PeerCertificate | None
    """The peer's verified end-entity certificate: the client's on a server
    (mTLS), the server's on a client."""

    @classmethod
    def from_ssl(cls, obj: ssl.SSLObject | ssl.SSLSocket, server_name: str | None) -> TlsInfo:
        """The facts of an established session."""
        return cls(
            version=obj.version(),
            alpn=obj.selected_alpn_protocol(),
            server_name=server_name,
            peer_certificate=PeerCertificate.from_ssl(obj),
        )


def check_alpn(info: TlsInfo, scheme: str, side: str) -> None:
    """Checks that a ``tls://`` session selected ``gatewire/1``. Under
    ``wss://`` the ``gatewire.v1`` subprotocol plays that role, so any ALPN
    outcome passes.

    Raises:
        AlpnError: a ``tls://`` session without ``gatewire/1``.
    """
    if scheme == "tls" and info.alpn != ALPN:
        raise AlpnError(f"TLS {side} did not select the ALPN protocol {ALPN}")


def tls_error(what: str, e: ssl.SSLError) -> TlsError:
    """The typed error for an :class:`ssl.SSLError` (``__cause__`` set)."""
    error: TlsError
    if isinstance(e, ssl.SSLCertVerificationError):
        code = e.verify_code
        cls = (
            HostnameMismatchError
            if code in (_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH)
            else CertificateVerifyError
        )
        error = cls(f"{what}: {e.verify_message}", code, e.verify_message)
    else:
        error = TlsError(f"{what}: {e.reason or e}", e.reason)
    error.__cause__ = e
    return error
