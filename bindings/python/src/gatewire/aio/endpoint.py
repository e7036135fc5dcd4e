"""Endpoints: where a server binds and where a client connects, written as
URLs. Mirrors ``gatewire::endpoint`` (the same forms and the same
refusals).

=========================== ===========================================
form                        transport
=========================== ===========================================
``tcp://host:port``         TCP byte stream
``unix:///abs/path.sock``   Unix-domain stream socket
``ws://host:port/path``     WebSocket over TCP (path defaults to ``/``)
``tls://host:port``         TLS over TCP, ALPN ``gatewire/1``
``wss://host:port/path``    WebSocket over TLS (path defaults to ``/``)
=========================== ===========================================

Hosts are DNS names, IPv4 addresses or bracketed IPv6 addresses
(``tcp://[::1]:4000``); the brackets are not part of :attr:`Endpoint.host`
and ``str()`` adds them back. Schemes are matched without regard to case;
everything else is kept as written, so ``Endpoint.parse(str(e)) == e``.

Refused: a missing or unknown scheme, a missing host or port, a port that
is not a decimal ``0..=65535``, an unbracketed IPv6 address, credentials
(``user@host``: tokens never travel in URLs), a path on ``tcp://`` or
``tls://``, a fragment or a character outside visible ASCII in a WebSocket
path, and a Unix path that is empty, relative or contains a NUL byte. Port
``0`` is accepted: binding to it picks a free port.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .errors import ConfigError

__all__ = ["Endpoint", "EndpointError"]

_SCHEMES = ("tcp", "unix", "ws", "tls", "wss")
_HOST_CHARS = re.compile(r"[A-Za-z0-9._-]+")


class EndpointError(ConfigError):
    """An endpoint string that cannot be used (see the module docs for what
    is refused)."""

    _KIND = "rpc.config.endpoint"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A parsed endpoint URL.

    Attributes:
        scheme: ``tcp``, ``unix``, ``ws``, ``tls`` or ``wss`` (lowercase).
        host: DNS name or IP address without IPv6 brackets (``""`` for unix).
        port: TCP port; ``0`` binds to a free port (``0`` for unix).
        path: the WebSocket request path, or the Unix socket path (``""``
            for tcp and tls).
    """

    scheme: str
    host: str = ""
    port: int = 0
    path: str = ""

    @classmethod
    def of(cls, target: str | Endpoint) -> Endpoint:
        """``target`` as an endpoint: a URL parsed, or an :class:`Endpoint`
        that is what its URL parses to (one built by hand is held to the
        same rules).

        Raises:
            EndpointError: the URL, or the endpoint's, is refused; the
                message says why.
            TypeError: ``target`` is neither.
        """
        if isinstance(target, str):
            return cls.parse(target)
        if not isinstance(target, Endpoint):
            raise TypeError(f"an endpoint is a URL or an Endpoint, not {type(target).__name__}")
        if cls.parse(str(target)) != target:
            raise EndpointError(f"{target!r} is not what its URL `{target}` parses to")
        return target

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """Parses ``url``.

        Raises:
            EndpointError: the URL is refused; the message says why.
        """
        scheme, sep, rest = url.partition("://")
        if not sep:
            raise EndpointError(
                f"endpoint `{url}` has no scheme; expected tcp://, unix://, ws://, tls:// or wss://"
            )
        scheme = scheme.lower()
        if scheme not in _SCHEMES:
            raise EndpointError(
                f"unknown endpoint scheme `{scheme}`; expected tcp, unix, ws, tls or wss"
            )
        if scheme == "unix":
            if not rest:
                raise EndpointError("unix endpoint has no path; write unix:///absolute/path.sock")
            if "\0" in rest:
                raise EndpointError("unix socket path contains a NUL byte")
            if not rest.startswith("/"):
                raise EndpointError(
                    f"unix socket path `{rest}` is not absolute; write unix:///absolute/path.sock"
                )
            return cls("unix", path=rest)
        end = len(rest)
        for ch in "/?#":
            i = rest.find(ch)
            if i != -1:
                end = min(end, i)
        authority, tail = rest[:end], rest[end:]
        host, port = _parse_authority(url, authority)
        if scheme in ("tcp", "tls"):
            if tail:
                raise EndpointError(
                    f"{scheme}:// endpoints take no path, query or fragment, found `{tail}`"
                )
            return cls(scheme, host, port)
        if not tail:
            return cls(scheme, host, port, "/")
        if not tail.startswith("/"):
            raise EndpointError(f"invalid websocket path `{tail}`: must start with `/`")
        if "#" in tail:
            raise EndpointError(f"invalid websocket path `{tail}`: fragments are not allowed")
        if not all(0x21 <= ord(c) <= 0x7E for c in tail):
            raise EndpointError(
                f"invalid websocket path `{tail}`: only visible ASCII characters are allowed"
                " (percent-encode the rest)"
            )
        return cls(scheme, host, port, tail)

    @property
    def authority(self) -> str:
        """``host:port``, with brackets around an IPv6 address."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        if self.scheme in ("ws", "wss"):
            return f"{self.scheme}://{self.authority}{self.path}"
        return f"{self.scheme}://{self.authority}"


def _parse_authority(url: str, authority: str) -> tuple[str, int]:
    if "@" in authority:
        raise EndpointError(
            f"endpoint `{url}` carries credentials (`user@host`); credentials never go in"
            " endpoint URLs"
        )
    if authority.startswith("["):
        inner, bracket, after = authority[1:].partition("]")
        if not bracket:
            raise EndpointError(f"invalid host `{authority}`: missing `]`")
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            raise EndpointError(
                f"invalid host `{inner}`: only IPv6 addresses go between brackets"
            ) from None
        if not after:
            raise EndpointError(f"endpoint `{url}` has no port; write host:port")
        if not after.startswith(":"):
            raise EndpointError(f"invalid host `{authority}`: expected `:port` after `]`")
        host, port = inner, after[1:]
    else:
        host, colon, port = authority.rpartition(":")
        if not colon:
            if not authority:
                raise EndpointError(f"endpoint `{url}` has no host")
            raise EndpointError(f"endpoint `{url}` has no port; write host:port")
        if ":" in host:
            raise EndpointError(
                f"invalid host `{host}`: IPv6 addresses must be written in brackets,"
                " as in [::1]:4000"
            )
        if not host:
            raise EndpointError(f"endpoint `{url}` has no host")
        if not _HOST_CHARS.fullmatch(host):
            raise EndpointError(
                f"invalid host `{host}`: expected a DNS name or an IP address"
                " (letters, digits, `-`, `.`, `_`)"
            )
    if not port:
        raise EndpointError(f"endpoint `{url}` has no port; write host:port")
    if not port.isascii() or not port.isdigit() or int(port) > 0xFFFF:
        raise EndpointError(f"invalid port `{port}`: expected a number from 0 to 65535")
    return host, int(port)
