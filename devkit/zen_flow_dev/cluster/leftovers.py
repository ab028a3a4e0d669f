"""Directories left behind by a cluster whose Python process was killed (SIGKILL skips atexit).

Each private directory we create gets an `owner` file holding our pid; the next start-up removes
directories whose owner is gone. The control-plane processes themselves die with their parent
(PR_SET_PDEATHSIG, see process.py), so only files can be left over.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

OWNER_FILE = "owner"
# The benchmark's work directory holds the apiserver's audit log: hundreds of MB of RAM on /dev/shm.
PREFIXES = ("zenflow-cluster-", "zenflow-etcd-", "zenflow-bench-")


def claim(directory: Path) -> None:
    """Mark `directory` as belonging to this process."""
    (directory / OWNER_FILE).write_text(f"{os.getpid()}\n")


def sweep(base: Path) -> list[Path]:
    """Remove our directories in `base` whose owner process no longer exists; returns what was removed.

    A directory without a readable owner file is left alone: it may be one being created right now.
    """
    removed: list[Path] = []
    try:
        candidates = [p for p in base.iterdir() if p.name.startswith(PREFIXES) and p.is_dir()]
    except OSError:
        return removed
    for directory in candidates:
        try:
            pid = int((directory / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue
        if _alive(pid):
            continue
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    with contextlib.suppress(OSError):
        # A zombie has exited: its directories are as stale as those of a reaped process.
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True
