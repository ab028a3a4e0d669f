"""`zen-flow-dev cluster` (`make cluster`): run a local cluster in the foreground until Ctrl-C / SIGTERM."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TextIO

from zen_flow_dev.cluster.binaries import MissingBinariesError
from zen_flow_dev.cluster.cluster import PROFILES, ClusterStartError, LocalCluster, Profile

_HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Shutdown(BaseException):
    """Raised from a signal handler; BaseException so no `except Exception` on the way swallows it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def run_cluster(
    profile: str,
    *,
    workdir: Path | None = None,
    smoke_job: bool = True,
    out: TextIO | None = None,
) -> int:
    """Start a `profile` cluster, print how to use it, block until a signal, tear down. Returns an exit code:
    0 after a clean stop on a signal, 1 if start-up failed or a component died, 2 for a bad profile."""
    stream = out or sys.stdout
    if profile not in PROFILES:
        print(f"unknown profile {profile!r}; choose one of: {', '.join(PROFILES)}", file=sys.stderr)
        return 2
    chosen: Profile = "full" if profile == "full" else "node" if profile == "node" else "apiserver"
    try:
        cluster = LocalCluster(chosen, workdir=workdir, smoke_job=smoke_job)
    except MissingBinariesError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    with _signals_raise_shutdown():
        try:
            print(
                f"starting the local {profile} cluster (binaries: {cluster.bin_dir}) ...",
                file=stream,
                flush=True,
            )
            cluster.start()
            _print_ready(cluster, stream)
            dead = _wait_for_death(cluster)
            print(f"a control-plane component died: {dead}", file=sys.stderr)
            for name, tail in cluster.log_tails().items():
                print(f"----- {name} -----\n{tail}", file=sys.stderr)
            return 1
        except ClusterStartError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        except _Shutdown as stop:
            print(f"\n{stop}: stopping the cluster ...", file=stream, flush=True)
            return 0
        finally:
            cluster.stop()


def _print_ready(cluster: LocalCluster, stream: TextIO) -> None:
    phases = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in cluster.startup_seconds.items())
    lines = [
        f"local {cluster.profile} cluster is ready at {cluster.server} ({phases})",
        f"kubeconfig: {cluster.kubeconfig}",
        f"logs:       {cluster.log_dir}",
        "",
        f"  export KUBECONFIG={cluster.kubeconfig}",
        # The kubectl built with the cluster: the machine's own may be many minor versions older.
        f"  export PATH={cluster.bin_dir}:$PATH",
        "",
        "Ctrl-C stops it and removes its working directory.",
    ]
    print("\n".join(lines), file=stream, flush=True)


def _wait_for_death(cluster: LocalCluster) -> dict[str, int]:
    """Block until a component exits (returned) or a signal raises _Shutdown."""
    idle = threading.Event()  # never set: wait() is just an interruptible, bounded pause
    while True:
        dead = cluster.dead_components()
        if dead:
            return dead
        idle.wait(1.0)


@contextmanager
def _signals_raise_shutdown() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        # Ignore repeats while we tear down: a second Ctrl-C must not abort the cleanup half-way.
        for sig in _HANDLED_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise _Shutdown(signum)

    previous = {sig: signal.signal(sig, handler) for sig in _HANDLED_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
