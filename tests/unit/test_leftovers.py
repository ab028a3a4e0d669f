"""Directories of a killed run (cluster, etcd, benchmark) are removed by the next start; a live one's stay."""

from __future__ import annotations

import subprocess
from pathlib import Path

from zen_flow_dev.cluster import leftovers


def test_a_dead_owners_directories_are_swept_a_live_owners_and_unclaimed_ones_stay(
    tmp_path: Path,
) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()  # reaped: its pid names no process
    stale = []
    for prefix in leftovers.PREFIXES:
        directory = tmp_path / f"{prefix}stale"
        directory.mkdir()
        (directory / leftovers.OWNER_FILE).write_text(f"{dead.pid}\n")
        stale.append(directory)
    live = tmp_path / "zenflow-bench-live"
    live.mkdir()
    leftovers.claim(live)
    unclaimed = tmp_path / "zenflow-bench-starting"  # being created right now: no owner file yet
    unclaimed.mkdir()
    other = tmp_path / "someone-else"
    other.mkdir()
    (other / leftovers.OWNER_FILE).write_text(f"{dead.pid}\n")

    assert sorted(leftovers.sweep(tmp_path)) == sorted(stale)
    assert not any(d.exists() for d in stale)
    assert live.exists()
    assert unclaimed.exists()
    assert other.exists()
