"""Connection and server options: the keyword arguments of
:func:`gatewire.aio.connect` and :func:`gatewire.aio.serve` (the Rust
runtime's ``Builder`` setters, as keywords).

Every :class:`~gatewire.limits.Limits` field may also be given on its own
(``connect(url, max_frame=4 << 20, max_in_flight=200)``); it overrides the
same field of ``limits``. ``token`` (a string or bytes) is a shorthand for
``auth``, and an :class:`ssl.SSLContext` given as ``tls_server`` or
``tls_client`` is wrapped in the matching configuration class.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..control import Service
from ..exceptions import InvalidLimit
from ..limits import Limits, Timeouts
from . import _compress
from .auth import Authenticator, Authorizer
from .errors import ConfigError
from .tls import TlsClientConfig, TlsServerConfig

__all__ = ["Options"]

_LIMIT_FIELDS = frozenset(f.name for f in dataclasses.fields(Limits))


@dataclass(frozen=True, kw_only=True, slots=True)
class Options:
    """Everything a connection (or a server's connections) is configured
    with. Unlimited or off is ``None``, never ``0``."""

    limits: Limits = field(default_factory=Limits)
    """Size, count and budget limits (the core's; same names and defaults
    as Rust)."""
    timeouts: Timeouts = field(default_factory=Timeouts)
    """The core's timeouts, in integer milliseconds (handshake 10 s,
    keepalive 20 s / 20 s, drain 30 s...)."""
    compression: bool | None = None
    """Offer zstd in the handshake. ``None`` (the default): offer it when
    the ``zstandard`` package is installed. ``True`` requires it
    (:class:`ConfigError` otherwise); ``False`` never offers it."""
    compression_threshold: int | None = 1024
    """When both sides offered zstd, messages of at least this many bytes
    are sent compressed if that makes them smaller. Default 1024; ``None``
    sends nothing compressed (compressed messages are still accepted)."""
    compression_level: int = 1
    """zstd level for outgoing messages. Default 1."""
    event_queue: int = 1024
    """One-way events queued per method for its handler before new ones are
    dropped (and counted in ``Stats.events_dropped``). Default 1024."""
    auth: bytes | None = field(default=None, repr=False)
    """Client: the authentication payload sent in HELLO (a bearer token...).
    Never logged or shown. Send it only over TLS or a Unix socket."""
    agent: str | None = None
    """Implementation name sent in the handshake. Default
    ``gatewire-python/<version>``."""
    connect_timeout: float = 10.0
    """Client: seconds allowed for the transport to connect (TCP connect
    and WebSocket upgrade). The gatewire handshake has its own
    ``timeouts.handshake``. Default 10 s."""
    linger: float = 2.0
    """Seconds a closing connection waits for its last frames to be written
    and for the peer to close its side, before the socket is dropped.
    Default 2 s."""
    ws_origin: str | None = None
    """Client: an ``Origin`` header for WebSocket connections (non-browser
    clients send none). Default none."""
    ws_origins: tuple[str, ...] = ()
    """Server: ``Origin`` values a WebSocket endpoint accepts, compared
    exactly; a present Origin that is not listed gets HTTP 403, several
    Origin headers get 400. Empty (the default) accepts any."""
    max_connections: int = 10_000
    """Server: connections served at once; more are closed as they arrive.
    Default 10,000."""
    tls_server: TlsServerConfig | None = None
    """Server: certificate, key and client-certificate policy of the
    ``tls://`` and ``wss://`` endpoints (required to bind them)."""
    tls_client: TlsClientConfig | None = None
    """Client: trust anchors, client certificate and server name for
    ``tls://`` and ``wss://``. Default: the system's trust store, the
    endpoint's host as the name."""
    authenticator: Authenticator | None = None
    """Server: decides from each client's HELLO whether to accept it, and
    who it is (:mod:`gatewire.aio.auth`). Default: everyone, anonymous."""
    authorizer: Authorizer | None = None
    """Decides, before each incoming call or stream, whether the peer's
    identity may call the method. Default: every call is allowed."""
    offers: tuple[Service, ...] = ()
    """Services this endpoint serves (:class:`~gatewire.control.Service`
    descriptors, usually from generated code): sent in the handshake and
    listed by the built-in ``LIST_SERVICES`` method. A server refuses, with
    ``INCOMPATIBLE`` and a message naming the difference, a client that uses
    a service it does not offer compatibly (``docs/PROTOCOL.md`` §10.3)."""
    uses: tuple[Service, ...] = ()
    """Services this endpoint calls on its peer: sent in the handshake and
    listed by ``LIST_SERVICES``. A client whose server does not offer them
    compatibly fails to connect with ``INCOMPATIBLE``."""

    @property
    def offers_compression(self) -> bool:
        """Whether the handshake offers zstd."""
        return _compress.AVAILABLE if self.compression is None else self.compression

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, object]) -> Options:
        """Builds options from keyword arguments: the fields of this class
        and, one by one, the fields of :class:`~gatewire.limits.Limits`.

        Raises:
            TypeError: an unknown keyword.
            ConfigError: a value out of range, or compression required
                without ``zstandard``.
        """
        own = {f.name for f in dataclasses.fields(cls)}
        mine: dict[str, object] = {}
        limits: dict[str, object] = {}
        for name, value in kwargs.items():
            if name in own:
                mine[name] = value
            elif name in _LIMIT_FIELDS:
                limits[name] = value
            elif name == "token":
                if "auth" in kwargs:
                    raise ConfigError("give either token or auth, not both")
                if not isinstance(value, str | bytes):
                    raise TypeError("token must be a string or bytes")
                mine["auth"] = value.encode() if isinstance(value, str) else value
            else:
                raise TypeError(f"unknown gatewire option {name!r}")
        server_context = mine.get("tls_server")
        if isinstance(server_context, ssl.SSLContext):
            mine["tls_server"] = TlsServerConfig(context=server_context)
        client_context = mine.get("tls_client")
        if isinstance(client_context, ssl.SSLContext):
            mine["tls_client"] = TlsClientConfig(context=client_context)
        if "ws_origins" in mine:
            origins = mine["ws_origins"]
            if isinstance(origins, str) or not isinstance(origins, Sequence):
                raise TypeError("ws_origins must be a sequence of strings")
            mine["ws_origins"] = tuple(str(o) for o in origins)
        for name in ("offers", "uses"):
            if name in mine:
                services = mine[name]
                if not isinstance(services, Sequence) or not all(
                    isinstance(x, Service) for x in services
                ):
                    raise TypeError(f"{name} must be a sequence of gatewire.control.Service")
                mine[name] = tuple(services)
        options = cls(**mine)  # type: ignore[arg-type]
        if limits:
            options = dataclasses.replace(
                options,
                limits=dataclasses.replace(options.limits, **limits),  # type: ignore[arg-type]
            )
        options.validate()
        return options

    def validate(self) -> None:
        """Checks every value.

        Raises:
            ConfigError: the first problem found.
        """
        try:
            self.limits.validate()
            self.timeouts.validate()
        except InvalidLimit as e:
            raise ConfigError(str(e)) from e
        if self.compression and not _compress.AVAILABLE:
            raise ConfigError(
                "compression=True needs the zstandard package (pip install 'gatewire[zstd]')"
            )
        if self.compression_threshold is not None and self.compression_threshold < 0:
            raise ConfigError("compression_threshold must be non-negative")
        if self.event_queue < 1:
            raise ConfigError("event_queue must be at least 1")
        if self.max_connections < 1:
            raise ConfigError("max_connections must be at least 1")
        if self.connect_timeout <= 0 or self.linger < 0:
            raise ConfigError("connect_timeout must be positive and linger non-negative")
