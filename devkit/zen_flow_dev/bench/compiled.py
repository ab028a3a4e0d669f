"""`python -m zen_flow_dev.bench --compiled`: the benchmark run against zen-flow as the image installs it,
its admission rules compiled with mypyc (hatch_build.py), instead of the development install's Python.

The wheel is built with the image's command (tools/build-image.sh) and unpacked into a directory that
goes first on PYTHONPATH for a second run of the benchmark, so the harness, the webhook server it starts
and the controller it runs all import the compiled modules.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def build_wheel(out: Path) -> Path:
    """The compiled wheel, built into `out` with the image's command (tools/build-image.sh)."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-build-isolation",
        "--no-deps",
        "-w",
        str(out),
    ]
    done = subprocess.run(
        [*command, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "ZEN_FLOW_COMPILE": "1"},
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"building the compiled wheel failed ({done.returncode}):\n{done.stderr[-4000:]}")
    (wheel,) = out.glob("zen_flow-*.whl")
    return wheel


def unpack(wheel: Path, into: Path) -> Path:
    """`wheel`'s files under `into` (a directory to put first on PYTHONPATH); returns `into`."""
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(into)
    return into


def rerun(args: Sequence[str]) -> int:
    """The benchmark with `args`, importing zen-flow from a compiled build."""
    print("[bench] building zen-flow with its admission rules compiled (mypyc, ~40 s)", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="zen-flow-compiled-") as tmp:
        unpacked = unpack(build_wheel(Path(tmp)), Path(tmp) / "unpacked")
        path = os.pathsep.join(p for p in (str(unpacked), os.environ.get("PYTHONPATH")) if p)
        return subprocess.run(
            [sys.executable, "-m", "zen_flow_dev.bench", *args],
            env={**os.environ, "PYTHONPATH": path},
            check=False,
        ).returncode
