"""A deterministic in-memory pair of connections with a fake clock (STYLE
rule 21): no sockets, no sleeps."""

from __future__ import annotations

from collections.abc import Callable

from gatewire.codec import Frame
from gatewire.protocol import Config, Connected, Connection, Event, HelloReceived, Role


class Pair:
    """A client and a server connected back to back."""

    def __init__(
        self,
        client: Config | None = None,
        server: Config | None = None,
        split: Callable[[bytes], list[bytes]] | None = None,
        batch: Callable[[], int] | None = None,
    ) -> None:
        """``split`` cuts what one side writes into the reads of the other;
        ``batch``, when given, makes each side's output taken with
        ``transmit`` (each call's limit from ``batch``) instead of
        ``poll_transmit``."""
        self.now = 0
        self.client = Connection(client or Config(Role.CLIENT), self.now)
        self.server = Connection(server or Config(Role.SERVER), self.now)
        self.events: dict[str, list[Event]] = {"client": [], "server": []}
        self.sent: dict[str, list[Frame]] = {"client": [], "server": []}
        """The frames each side sent (with ``poll_transmit`` only)."""
        self.wire: dict[str, bytearray] = {"client": bytearray(), "server": bytearray()}
        """Every byte each side sent."""
        self._split = split or (lambda data: [data])
        self._batch = batch

    def conn(self, side: str) -> Connection:
        return self.client if side == "client" else self.server

    def transmit(self, side: str) -> bool:
        """Moves every pending frame of ``side`` to its peer; whether any."""
        src = self.conn(side)
        dst = self.conn("server" if side == "client" else "client")
        data = bytearray()
        if self._batch is not None:
            while frames := src.transmit(self._batch()):
                data += b"".join(frames)
        else:
            while (f := src.poll_transmit()) is not None:
                self.sent[side].append(f)
                f.encode_to(data)
        self.wire[side] += data
        for piece in self._split(bytes(data)):
            dst.handle_bytes(self.now, piece)
        return bool(data)

    def collect(self, side: str) -> list[Event]:
        """Drains the events of ``side`` (also kept in ``self.events``)."""
        c = self.conn(side)
        out = []
        while (e := c.poll_event()) is not None:
            out.append(e)
        self.events[side].extend(out)
        return out

    def drive(self, on_event: Callable[[str, Event], None] | None = None) -> None:
        """Exchanges frames and drains events until both sides are quiet."""
        for _ in range(10_000):
            moved = self.transmit("client") | self.transmit("server")
            got = False
            for side in ("client", "server"):
                for e in self.collect(side):
                    got = True
                    if on_event is not None:
                        on_event(side, e)
            if not moved and not got:
                return
        raise AssertionError("the pair did not settle")

    def advance(self, ms: int) -> None:
        self.now += ms
        self.client.handle_timeout(self.now)
        self.server.handle_timeout(self.now)

    def connect(self) -> None:
        """Completes the handshake (the server accepts)."""

        def accept(side: str, e: Event) -> None:
            if side == "server" and isinstance(e, HelloReceived):
                self.server.accept()

        self.drive(accept)
        assert self.client.is_connected() and self.server.is_connected()
        assert any(isinstance(e, Connected) for e in self.events["client"])
