"""Differential test against the Rust core: directed conversations
(``directed.py``) and random ones (``convgen.py``) are recorded by the Rust
interpreter (``gatewire_vectors::interp::run`` in ``Record`` mode, through
the ``record-conversations`` binary of ``crates/gatewire-vectors``) and
replayed here with every frame, event, result and state compared.

The recorder is ``target/debug/record-conversations``, built with ``cargo
build --locked -p gatewire-vectors`` when it is missing, or the command
``GATEWIRE_RECORDER`` names: one that reads a JSON array of conversations on
stdin and writes the same array, recorded, on stdout (``{"name": ...,
"error": ...}`` in place of a conversation the recorder rejects). A relative
command path is taken from this package's directory (``bindings/python``).
``GATEWIRE_DIFF_SEED`` (default 0) and ``GATEWIRE_DIFF_COUNT`` (default
1000, about 25 s on 2 vCPUs) pick the random conversations; each
conversation is one test.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from .convgen import conversations
from .directed import directed
from .rust_peers import rust_binary
from .vectorjson import Json, run

RECORDER = os.environ.get("GATEWIRE_RECORDER")
SEED = int(os.environ.get("GATEWIRE_DIFF_SEED", "0"))
COUNT = int(os.environ.get("GATEWIRE_DIFF_COUNT", "1000"))
PACKAGE_DIR = Path(__file__).resolve().parents[1]

CONVERSATIONS: list[Json] = directed() + conversations(SEED, COUNT)


def _command() -> list[str]:
    if not RECORDER:
        return [str(rust_binary(None, "record-conversations", "gatewire-vectors"))]
    argv = shlex.split(RECORDER)
    program = Path(argv[0])
    if len(program.parts) > 1 and not program.is_absolute():
        argv[0] = str(PACKAGE_DIR / program)
    return argv


@pytest.fixture(scope="module")
def recorded() -> dict[str, Json]:
    """Every conversation, recorded by the Rust core, by name."""
    proc = subprocess.run(
        _command(),
        input=json.dumps(CONVERSATIONS),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"recorder {_command()!r} failed ({proc.returncode}):\n{proc.stderr}")
    out: list[Json] = json.loads(proc.stdout)
    assert [c.get("name") for c in out] == [c["name"] for c in CONVERSATIONS]
    return {c["name"]: c for c in out}


def test_directed_and_random_conversations_are_generated() -> None:
    names = [c["name"] for c in CONVERSATIONS]
    assert len(set(names)) == len(names)
    assert len(names) == len(directed()) + COUNT


@pytest.mark.parametrize("name", [c["name"] for c in CONVERSATIONS])
def test_python_agrees_with_rust(recorded: dict[str, Json], name: str) -> None:
    conv = recorded[name]
    assert "error" not in conv, f"the recorder rejected {name}: {conv['error']}"
    run(conv)
