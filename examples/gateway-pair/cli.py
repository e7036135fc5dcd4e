"""A local client of the gateway daemon, over its Unix socket: the same
``gateway.Gateway`` service the desktop page calls over WebSocket, from a
blocking script (``gatewire.sync`` and the generated
``GatewaySyncClient``)::

    python cli.py unix:///path/gw.sock status
    python cli.py unix:///path/gw.sock config [KEY=VALUE ...]
    python cli.py unix:///path/gw.sock drive left [SPEED]
    python cli.py unix:///path/gw.sock telemetry N [INTERVAL_MS]

Exit status: 0 on success, 1 when the gateway refused or failed the call,
2 for a usage error.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "schemas" / "python"))

from gateway.Config import ConfigT  # noqa: E402
from gateway.Dir import Dir  # noqa: E402
from gateway.Direction import DirectionT  # noqa: E402
from gateway.Empty import EmptyT  # noqa: E402
from gateway.Health import Health  # noqa: E402
from gateway.Setting import SettingT  # noqa: E402
from gateway.TelemetryRequest import TelemetryRequestT  # noqa: E402
from gateway_gatewire import GatewayService, GatewaySyncClient  # noqa: E402

import gatewire.aio as gw  # noqa: E402
from gatewire import sync  # noqa: E402

TIMEOUT = 5.0
"""Seconds allowed for each call; it travels to the gateway as the deadline."""
MAX_SAMPLES = 100_000
"""The most telemetry samples one command asks for."""
DIRECTIONS = {
    "stop": Dir.Stop,
    "left": Dir.Left,
    "right": Dir.Right,
    "forward": Dir.Forward,
    "back": Dir.Back,
}
HEALTH = {Health.Ok: "ok", Health.Degraded: "degraded", Health.Failed: "failed"}


def _show_config(config: ConfigT) -> None:
    for setting in config.settings or []:
        print(f"  {setting.key} = {setting.value}")


def run(client: GatewaySyncClient, args: argparse.Namespace) -> None:
    if args.command == "status":
        status = client.get_status(EmptyT(), timeout=TIMEOUT)
        health = HEALTH.get(status.health, f"unknown ({status.health})")
        print(
            f"status: {status.name}, up {status.uptimeS} s, health {health},"
            f" {status.clients} client(s) connected"
        )
    elif args.command == "config":
        if args.settings:
            changes = []
            for item in args.settings:
                key, sep, value = item.partition("=")
                if not sep:
                    raise SystemExit(f"cli: expected KEY=VALUE, got {item!r}")
                changes.append(SettingT(key=key, value=value))
            print("config (changed):")
            _show_config(client.set_config(ConfigT(settings=changes), timeout=TIMEOUT))
        else:
            print("config:")
            _show_config(client.get_config(EmptyT(), timeout=TIMEOUT))
    elif args.command == "drive":
        client.drive(DirectionT(dir=DIRECTIONS[args.direction], speed=args.speed))
        print(f"drive: sent {args.direction} at {args.speed:g} m/s (a one-way event)")
    else:
        start = time.perf_counter()
        request = TelemetryRequestT(intervalMs=args.interval_ms, count=args.count)
        received = 0
        with client.telemetry(
            request, timeout=TIMEOUT + args.count * args.interval_ms / 1000
        ) as samples:
            for sample in samples:
                received += 1
                position = sample.position
                x, y = (position.x, position.y) if position is not None else (0.0, 0.0)
                if received <= 3 or received == args.count:
                    print(
                        f"telemetry: #{sample.seq} t={sample.timeMs} ms"
                        f" {sample.temperatureC:.2f} C at ({x:.2f}, {y:.2f}) m"
                    )
                elif received == 4:
                    print("telemetry: ...")
        elapsed = (time.perf_counter() - start) * 1000
        print(f"telemetry: {received} samples in {elapsed:.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Call the gateway daemon over its Unix socket (gateway.Gateway).",
    )
    parser.add_argument("url", help="the gateway's socket, unix:///path/gw.sock")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="the gateway's status")
    config = commands.add_parser("config", help="show the configuration, or change settings")
    config.add_argument("settings", nargs="*", metavar="KEY=VALUE")
    drive = commands.add_parser("drive", help="send a direction command (a one-way event)")
    drive.add_argument("direction", choices=sorted(DIRECTIONS))
    drive.add_argument("speed", nargs="?", type=float, default=1.0, help="m/s (default: 1)")
    telemetry = commands.add_parser("telemetry", help="receive N telemetry samples")
    telemetry.add_argument("count", type=int, metavar="N")
    telemetry.add_argument("interval_ms", nargs="?", type=int, default=10, metavar="INTERVAL_MS")
    args = parser.parse_args()
    if not args.url.startswith("unix://"):
        parser.error("the URL must be unix:///path (the gateway's local socket)")
    if args.command == "telemetry" and not (
        1 <= args.count <= MAX_SAMPLES and 0 <= args.interval_ms <= 10_000
    ):
        parser.error(f"N must be within 1..{MAX_SAMPLES}, INTERVAL_MS within 0..10000")
    try:
        with sync.connect(args.url, uses=[GatewayService.descriptor()]) as conn:
            run(GatewaySyncClient(conn), args)
    except gw.RpcError as e:
        print(f"cli: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
