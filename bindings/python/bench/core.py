"""The sans-IO core alone, no sockets and no event loop: round trips per
second of 32-byte calls between a client and a server core in one process,
64 at a time (what one round trip costs both ends in the protocol core),
then what each step of a call costs, then how fast a server core takes in
1 MiB stream messages sent in 64 KiB fragments and read 64 KiB at a time::

    python3 bench/core.py [--rounds N] [--reps N]

Run it pinned (``taskset -c 0``) on a quiet machine; it prints the median
of the repetitions, and per step the best of ``--rounds`` batches of 64.
"""

from __future__ import annotations

import argparse
import statistics
import time

from gatewire import Codec, Message
from gatewire.protocol import (
    Config,
    Connection,
    HelloReceived,
    Request,
    Response,
    Role,
    StreamData,
)

IN_FLIGHT = 64
METHOD = 0x1234


def _move(src: Connection, dst: Connection) -> None:
    data = bytearray()
    while (frame := src.poll_transmit()) is not None:
        frame.encode_to(data)
    if data:
        dst.handle_bytes(0, bytes(data))


def connected() -> tuple[Connection, Connection]:
    """A client and a server core after the handshake."""
    client = Connection(Config(Role.CLIENT), 0)
    server = Connection(Config(Role.SERVER), 0)
    for _ in range(10):
        _move(client, server)
        while (event := server.poll_event()) is not None:
            if isinstance(event, HelloReceived):
                server.accept()
        _move(server, client)
        while client.poll_event() is not None:
            pass
        if client.is_connected() and server.is_connected():
            return client, server
    raise RuntimeError("the handshake did not complete")


def round_trips(rounds: int) -> float:
    """Round trips per second over ``rounds`` batches of ``IN_FLIGHT``."""
    client, server = connected()
    message = Message(Codec.RAW, bytes(range(32)))
    done = 0
    start = time.perf_counter()
    for _ in range(rounds):
        for _ in range(IN_FLIGHT):
            client.send_request(METHOD, message, None)
        _move(client, server)
        while (event := server.poll_event()) is not None:
            if isinstance(event, Request):
                server.send_response(event.id, event.message)
        _move(server, client)
        while (event := client.poll_event()) is not None:
            if isinstance(event, Response):
                done += 1
    assert done == rounds * IN_FLIGHT
    return done / (time.perf_counter() - start)


def steps(rounds: int) -> dict[str, float]:
    """Microseconds per call of each step, the best of ``rounds`` batches of
    ``IN_FLIGHT`` calls on fresh connections."""
    names = [
        "send_request",
        "take requests (transmit)",
        "take requests (poll_transmit, to_bytes)",
        "server: receive requests",
        "server: answer and take responses",
        "client: receive responses",
    ]
    best = dict.fromkeys(names, float("inf"))

    def keep(name: str, seconds: float) -> None:
        best[name] = min(best[name], seconds / IN_FLIGHT * 1e6)

    message = Message(Codec.RAW, bytes(range(32)))
    clock = time.perf_counter
    for i in range(rounds):
        client, server = connected()
        t0 = clock()
        for _ in range(IN_FLIGHT):
            client.send_request(METHOD, message, None)
        t1 = clock()
        if i % 2:
            requests = client.transmit(1 << 20)
            keep("take requests (transmit)", clock() - t1)
        else:
            requests = []
            while (frame := client.poll_transmit()) is not None:
                requests.append(frame.to_bytes())
            keep("take requests (poll_transmit, to_bytes)", clock() - t1)
        keep("send_request", t1 - t0)
        t2 = clock()
        server.handle_bytes(0, b"".join(requests))
        received = []
        while (event := server.poll_event()) is not None:
            received.append(event)
        t3 = clock()
        for event in received:
            if isinstance(event, Request):
                server.send_response(event.id, event.message)
        responses = b"".join(server.transmit(1 << 20))
        t4 = clock()
        client.handle_bytes(0, responses)
        done = 0
        while (event := client.poll_event()) is not None:
            done += isinstance(event, Response)
        t5 = clock()
        assert done == IN_FLIGHT
        keep("server: receive requests", t3 - t2)
        keep("server: answer and take responses", t4 - t3)
        keep("client: receive responses", t5 - t4)
    return best


def large_messages(messages: int) -> float:
    """MiB/s a server core takes in: ``messages`` stream messages of 1 MiB,
    each sent in 64 KiB fragments and handed over 64 KiB at a time (as a
    socket's reads), delivered and credited back."""
    client, server = connected()
    sid = client.open_stream(METHOD, Message(Codec.RAW, b""), None)
    body = bytes(range(256)) * 4096
    spent = 0.0
    for _ in range(messages):
        client.send_stream_data(sid, Message(Codec.RAW, body), False)
        wire = b"".join(client.transmit(1 << 30))
        start = time.perf_counter()
        for at in range(0, len(wire), 1 << 16):
            server.handle_bytes(0, wire[at : at + (1 << 16)])
        got = 0
        while (event := server.poll_event()) is not None:
            if isinstance(event, StreamData):
                got += len(event.message.body)
                server.grant_credit(event.id, len(event.message.body))
        spent += time.perf_counter() - start
        assert got == len(body)
        _move(server, client)
        while client.poll_event() is not None:
            pass
    return messages / spent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=300, help="batches of 64 calls per repetition")
    ap.add_argument("--reps", type=int, default=5, help="repetitions (median printed)")
    args = ap.parse_args()
    round_trips(max(1, args.rounds // 6))
    runs = [round_trips(args.rounds) for _ in range(args.reps)]
    print(f"core round trips/s, median of {args.reps}: {statistics.median(runs):,.0f}")
    print(f"per call, best of {args.rounds} batches of {IN_FLIGHT}:")
    for name, us in steps(max(2, args.rounds)).items():
        print(f"  {name:42} {us:5.2f} us")
    large_messages(16)
    rates = [large_messages(64) for _ in range(args.reps)]
    print(
        f"1 MiB messages in 64 KiB fragments, received, median of {args.reps}:"
        f" {statistics.median(rates):,.0f} MiB/s"
    )


if __name__ == "__main__":
    main()
