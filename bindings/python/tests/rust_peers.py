"""The Rust reference binaries the interop tests run (``interop-peer``,
``example-peer``): found or built, and served on tcp, unix and ws."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .aio_support import TRANSPORTS

REPO = Path(__file__).resolve().parents[3]
PACKAGE_DIR = Path(__file__).resolve().parents[1]
STARTUP = 120.0
"""Seconds a peer may take to print its endpoints."""


def rust_binary(env: str | None, name: str, package: str) -> Path:
    """``$env`` (relative to the package directory) or
    ``target/debug/NAME``, built with ``cargo build -p PACKAGE`` when it is
    missing; the test fails when it is missing and cargo is not."""
    configured = os.environ.get(env) if env is not None else None
    if configured:
        path = Path(configured)
        path = path if path.is_absolute() else PACKAGE_DIR / path
    else:
        path = REPO / "target" / "debug" / name
    if not path.exists():
        cargo = shutil.which("cargo")
        if cargo is None or not (REPO / "Cargo.toml").exists():
            pytest.fail(f"{path} is not built, and building it needs cargo (Rust)")
        subprocess.run(
            [cargo, "build", "--locked", "--quiet", "-p", package],
            cwd=REPO,
            check=True,
            timeout=1800,
        )
    assert path.exists(), path
    return path


@dataclasses.dataclass
class RustServer:
    """A reference peer's ``serve`` on tcp, unix and ws."""

    urls: dict[str, str]
    """The URL of each transport."""
    lines: queue.Queue[str]
    """What it printed after its endpoints."""

    def expect_line(self, want: str, timeout: float = 10.0) -> None:
        """Waits for the peer to print ``want``."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"the peer never printed {want!r}") from None
            if line == want:
                return


@contextlib.contextmanager
def serving(binary: Path) -> Iterator[RustServer]:
    """``BINARY serve`` on tcp, unix (in a private directory) and ws, until
    the block ends: then its stdin closes, and it must exit cleanly."""
    directory = Path(tempfile.gettempdir()) / f"gw-peer-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    directory.mkdir(mode=0o700)
    proc = subprocess.Popen(
        [
            str(binary),
            "serve",
            "tcp://127.0.0.1:0",
            f"unix://{directory}/s.sock",
            "ws://127.0.0.1:0/gw",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    lines: queue.Queue[str] = queue.Queue()

    def reader() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.put(raw.decode().strip())

    threading.Thread(target=reader, daemon=True).start()
    try:
        urls: dict[str, str] = {}
        for _ in TRANSPORTS:
            try:
                line = lines.get(timeout=STARTUP)
            except queue.Empty:
                raise AssertionError(f"{binary.name} did not print its endpoints in time") from None
            assert line.startswith("listening "), line
            url = line.split(" ", 1)[1]
            urls[url.split("://", 1)[0]] = url
        assert sorted(urls) == sorted(TRANSPORTS), urls
        yield RustServer(urls, lines)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        assert code == 0, f"{binary.name} serve exited with {code}"
