"""One control-plane process: its own process group, its own log file, a bounded shutdown."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec hook asking Linux to SIGKILL the child when its parent dies.

    This is the last line of defence when the Python process itself is SIGKILLed (atexit does not run):
    without it, a killed pytest would leave an apiserver and etcd running. The kernel ties the signal to
    the *thread* that forked, so it is only armed when starting from the main thread, which lives as long
    as the process.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    prctl = libc.prctl

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return arm


class ComponentProcess:
    """A started control-plane component; stdout and stderr go to `log_path`."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None):
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._env = dict(env) if env is not None else None
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"$ {' '.join(self.argv)}\n".encode())
            log.flush()
            # A new session: Ctrl-C in the terminal reaches only us, so we stop components in order
            # instead of the terminal killing them all at once, and killpg() reaches any children.
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                start_new_session=True,
                preexec_fn=_parent_death_signal(),
            )

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    def exit_code(self) -> int | None:
        """None while running (or never started), else the exit status (negative: killed by signal)."""
        if self._popen is None:
            return None
        return self._popen.poll()

    def is_running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def signal(self, signum: int) -> None:
        # Only while our child is unreaped: after that its pid (= pgid) may belong to someone else.
        if self._popen is None or self._popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, signum)

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the process to exit; True if it has."""
        if self._popen is None:
            return True
        try:
            self._popen.wait(timeout=max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it if it is still there after `grace` seconds."""
        if self._popen is None:
            return
        self.signal(signal.SIGTERM)
        if not self.wait(grace):
            self.signal(signal.SIGKILL)
            self.wait(5.0)

    def tail(self, lines: int = 60) -> str:
        return tail_file(self.log_path, lines)


def tail_file(path: Path, lines: int = 60, max_bytes: int = 256 * 1024) -> str:
    """The last `lines` lines of a (possibly large) file, reading at most `max_bytes` from its end."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except FileNotFoundError:
        return f"<{path} does not exist>"
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def stop_all(processes: Sequence[ComponentProcess], grace: float = 10.0) -> None:
    """Stop in reverse start order, but signal everything first so the graces overlap.

    Reverse order matters for the *signal*: clients (kwok, scheduler, KCM) get SIGTERM before the
    apiserver, and the apiserver before etcd, so nobody logs a storm of connection errors on the way down.
    """
    running = [p for p in reversed(processes) if p.is_running()]
    for process in running:
        process.signal(signal.SIGTERM)
        # etcd must outlive the apiserver's shutdown; give each a moment before moving down the stack.
        process.wait(min(grace, 2.0))
    deadline = time.monotonic() + grace
    for process in running:
        if not process.wait(deadline - time.monotonic()):
            process.signal(signal.SIGKILL)
            process.wait(5.0)
