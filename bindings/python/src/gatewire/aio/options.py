"""Connection and server options: the keyword arguments of
:func:`gatewire.aio.connect` and :func:`gatewire.aio.serve` (the Rust
runtime's ``Builder`` setters, as keywords).

Every :class:`~gatewire.limits.Limits` field may also be given on its own
(``connect(url, max_frame=4 << 20, max_in_flight=200)``); it overrides the
same field of ``limits``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..exceptions import InvalidLimit
from ..limits import Limits, Timeouts
from . import _compress
from .errors import ConfigError

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
    auth: bytes | None = None
    """Client: the authentication payload sent in HELLO. Never logged."""
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
            else:
                raise TypeError(f"unknown gatewire option {name!r}")
        if "ws_origins" in mine:
            origins = mine["ws_origins"]
            if isinstance(origins, str) or not isinstance(origins, Sequence):
                raise TypeError("ws_origins must be a sequence of strings")
            mine["ws_origins"] = tuple(str(o) for o in origins)
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
