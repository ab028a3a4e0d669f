"""Run `zen-flow run` as a real child process, for end-to-end tests and benchmarks.

A separate process (not an in-process task) so tests can do what happens in production: SIGKILL it in
the middle of a flow, run two replicas that elect a leader, measure its RSS and CPU.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ControllerProcess:
    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        *,
        namespaces: Sequence[str] = (),
        leader_elect: bool = False,
        lease_namespace: str = "",
        identity: str = "",
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.metrics_port = free_port()
        args = [
            sys.executable, "-m", "zen_flow", "run",
            "--kubeconfig", str(kubeconfig),
            "--metrics-addr", f"127.0.0.1:{self.metrics_port}",
            "--webhook-addr", "",
            "--log-format", "json",
            "--leader-elect", "true" if leader_elect else "false",
        ]  # fmt: skip
        if namespaces:
            args += ["--namespaces", ",".join(namespaces)]
        if lease_namespace:
            args += ["--leader-election-namespace", lease_namespace]
        if identity:
            args += ["--identity", identity]
        self.args = [*args, *extra_args]
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    def start(self) -> ControllerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as sink:
            self.proc = subprocess.Popen(
                self.args, stdout=sink, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until /readyz answers 200 (caches synced), or raise with the log tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"controller exited ({self.returncode}):\n{self.log_tail()}")
            if self.get("/readyz")[0] == 200:
                return
            time.sleep(0.1)  # poll: a child process starting up has no event to wait on
        raise TimeoutError(f"controller not ready after {timeout}s:\n{self.log_tail()}")

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except OSError:
            return 0, ""

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels` (0 when absent)."""
        status, text = self.get("/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, label_text = head.partition("{")
            if metric != name:
                continue
            if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
                total += float(value)
        return total

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, like an OOM kill or a node loss."""
        if self.alive:
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def log_tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []


# The `start_controller` test fixture: keyword arguments go to ControllerProcess.
StartController = Callable[..., ControllerProcess]
