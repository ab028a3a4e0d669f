"""LocalCluster: a real control plane (etcd + kube-apiserver [+ KCM, scheduler, kwok]) on loopback."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import TracebackType
from typing import Literal, TypeVar

from zen_flow_dev.cluster import bootstrap, components, leftovers
from zen_flow_dev.cluster.adminclient import AdminClient, WaitTimeout, http_ok, tls_context, wait_until
from zen_flow_dev.cluster.binaries import (
    APISERVER_BINARIES,
    FULL_BINARIES,
    check_bin_dir,
    find_bin_dir,
    find_node_bin_dir,
)
from zen_flow_dev.cluster.kubeconfig import write_kubeconfig
from zen_flow_dev.cluster.pki import ClusterPKI, create_cluster_pki, issue_serving_cert
from zen_flow_dev.cluster.process import ComponentProcess, stop_all, tail_file
from zen_flow_dev.cluster.stages import kwok_stages_yaml
from zen_flow_dev.node.node import NODE_IP, NODE_NAME, NodeInputs, RealNode, wait_for

_T = TypeVar("_T")

Profile = Literal["apiserver", "full", "node"]
PROFILES: tuple[Profile, ...] = ("apiserver", "full", "node")
"""apiserver: etcd + kube-apiserver. full: + controller-manager, scheduler, kwok with a fake node.
node: + controller-manager, scheduler, and a real node (containerd, kubelet, kube-proxy, a local image
registry; zen_flow_dev.node) instead of kwok; needs root (docs/TESTING.md, "The real-node tier")."""

_SHM = Path("/dev/shm")
_PORT_CONFLICT = "address already in use"
_START_ATTEMPTS = 3


class ClusterStartError(RuntimeError):
    """Start-up failed; the message carries the tail of every component log (the workdir is gone)."""


class LocalCluster:
    """Start with `start()` or `with LocalCluster(...) as cluster:`; `stop()` is idempotent.

    `workdir=None` creates a private directory (on /dev/shm when available) that `stop()` removes; a given
    `workdir` is created if needed and left in place (its contents are ours). etcd's data always lives on
    /dev/shm when it exists and is always removed.
    """

    def __init__(
        self,
        profile: Profile = "apiserver",
        bin_dir: Path | None = None,
        workdir: Path | None = None,
        *,
        smoke_job: bool = True,
        start_timeout: float = 90.0,
        stop_grace: float = 10.0,
        extra_apiserver_args: Sequence[str] = (),
        extra_etcd_args: Sequence[str] = (),
    ) -> None:
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
        required = APISERVER_BINARIES if profile == "apiserver" else FULL_BINARIES
        self.profile: Profile = profile
        self.bin_dir = check_bin_dir(bin_dir, required) if bin_dir is not None else find_bin_dir(required)
        self.smoke_job = smoke_job
        self.extra_apiserver_args = tuple(extra_apiserver_args)
        """Appended to kube-apiserver's command line (a repeated flag overrides ours), e.g. an audit log
        for the benchmark: `--audit-policy-file=...`, `--audit-log-path=...`."""
        self.extra_etcd_args = tuple(extra_etcd_args)
        """Appended to etcd's command line, e.g. `--max-request-bytes=...` to meet etcd's size limit
        with small objects."""
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self._requested_workdir = workdir
        self._workdir: Path | None = None
        self._owns_workdir = False
        self._etcd_dir: Path | None = None
        self._pki: ClusterPKI | None = None
        self._ports: components.Ports | None = None
        self._processes: list[ComponentProcess] = []
        self.node: RealNode | None = None
        self._lock = threading.Lock()
        self.startup_seconds: dict[str, float] = {}
        """Seconds per start-up phase (etcd, kube-apiserver, components, node, smoke-job, total)."""

    # -- public surface -------------------------------------------------------------------------------

    @property
    def workdir(self) -> Path:
        return self._require(self._workdir, "workdir")

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (user zenflow-admin, group system:masters), CA and client cert embedded."""
        return self.workdir / "kubeconfig"

    @property
    def pki(self) -> ClusterPKI:
        return self._require(self._pki, "pki")

    @property
    def ca_cert(self) -> Path:
        return self.pki.ca.cert_path

    @property
    def ports(self) -> components.Ports:
        return self._require(self._ports, "ports")

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    def component_logs(self) -> dict[str, Path]:
        node = self.node.processes if self.node is not None else []
        return {p.name: p.log_path for p in [*self._processes, *node]}

    def log_tails(self, lines: int = 60) -> dict[str, str]:
        return {name: tail_file(path, lines) for name, path in self.component_logs().items()}

    def pids(self) -> dict[str, int]:
        return {p.name: p.pid for p in self._processes if p.pid is not None and p.is_running()}

    def dead_components(self) -> dict[str, int]:
        """Components that have exited, with their exit status (negative: killed by that signal)."""
        return {p.name: code for p in self._processes if (code := p.exit_code()) is not None}

    def admin_client(self, timeout: float = 10.0) -> AdminClient:
        return AdminClient(self.server, self._admin_tls(), timeout=timeout)

    def issue_serving_cert(
        self, hosts: tuple[str, ...] = ("127.0.0.1",), directory: Path | None = None
    ) -> tuple[Path, Path]:
        """A serving cert chaining to this cluster's CA (so `ca_cert` works as a webhook caBundle)."""
        return issue_serving_cert(self.pki.ca, directory or self.workdir / "serving", hosts)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> LocalCluster:
        if self._processes:
            raise RuntimeError("cluster already started")
        _register_for_exit(self)
        began = time.monotonic()
        try:
            for attempt in range(1, _START_ATTEMPTS + 1):
                try:
                    self._start_once()
                    break
                except (WaitTimeout, RuntimeError, OSError) as error:
                    tails = self.log_tails()
                    conflict = any(_PORT_CONFLICT in tail for tail in tails.values())
                    self._teardown()
                    if conflict and attempt < _START_ATTEMPTS:
                        continue  # another process grabbed one of our free ports in between; new ports
                    raise ClusterStartError(_failure_report(self.profile, error, tails)) from error
        except BaseException:
            # KeyboardInterrupt during start-up included: never leave half a cluster behind.
            self._teardown()
            _unregister(self)
            raise
        self.startup_seconds["total"] = round(time.monotonic() - began, 2)
        return self

    def stop(self) -> None:
        self._teardown()
        _unregister(self)

    # -- internals -------------------------------------------------------------------------------------

    def _start_once(self) -> None:
        self.startup_seconds.clear()
        shm = _shm_or_none()
        leftovers.sweep(Path(shm or tempfile.gettempdir()))
        workdir = self._make_workdir()
        if shm:
            self._etcd_dir = Path(tempfile.mkdtemp(prefix="zenflow-etcd-", dir=shm))
            leftovers.claim(self._etcd_dir)
        else:
            self._etcd_dir = workdir / "etcd"
        etcd_data = self._etcd_dir / "data"
        self._pki = create_cluster_pki(workdir / "pki")
        self._ports = _free_ports()
        write_kubeconfig(
            self.kubeconfig, self.server, self.ca_cert, self._pki.admin_cert, self._pki.admin_key
        )
        ports, pki = self._ports, self._pki

        with self._phase("etcd"):
            self._spawn(
                "etcd", [*components.etcd_argv(self.bin_dir, etcd_data, ports), *self.extra_etcd_args]
            )
            self._wait_http(f"http://127.0.0.1:{ports.etcd_client}/health", None, 30.0, "etcd")

        admin_tls = self._admin_tls()
        with self._phase("kube-apiserver"):
            cert_dir = workdir / "certs" / "apiserver"
            real_node = self.profile == "node"
            disabled = (
                components.NODE_DISABLED_ADMISSION_PLUGINS
                if real_node
                else components.DISABLED_ADMISSION_PLUGINS
            )
            argv = [
                *components.apiserver_argv(self.bin_dir, pki, cert_dir, ports, disabled),
                *(components.node_apiserver_args(pki, NODE_IP) if real_node else []),
                *self.extra_apiserver_args,
            ]
            self._spawn("kube-apiserver", argv)
            self._wait_http(f"{self.server}/readyz", admin_tls, self.start_timeout, "kube-apiserver")
        if self.profile == "apiserver":
            return

        client = self.admin_client()
        with self._phase("components"):
            stages = workdir / "kwok-stages.yaml"
            stages.write_text(kwok_stages_yaml())
            certs = workdir / "certs"
            kubeconfig = self.kubeconfig
            controllers = components.NODE_KCM_CONTROLLERS if real_node else components.KCM_CONTROLLERS
            kcm = components.controller_manager_argv(
                self.bin_dir,
                kubeconfig,
                certs / "kcm",
                ports,
                controllers,
                pki.ca.cert_path if real_node else None,
            )
            self._spawn("kube-controller-manager", kcm)
            self._spawn(
                "kube-scheduler",
                components.scheduler_argv(self.bin_dir, kubeconfig, certs / "scheduler", ports),
            )
            if not real_node:
                kwok_env = {
                    **os.environ,
                    "KWOK_WORKDIR": str(workdir / "kwok"),
                }  # ignore any ~/.kwok/kwok.yaml
                self._spawn(
                    "kwok", components.kwok_argv(self.bin_dir, kubeconfig, stages, ports), env=kwok_env
                )
                bootstrap.register_node(client)
            # The components serve self-signed certs from their cert dirs: only liveness matters here.
            insecure = ssl._create_unverified_context()
            self._wait_http(
                f"https://127.0.0.1:{ports.controller_manager}/healthz",
                insecure,
                60.0,
                "kube-controller-manager",
            )
            self._wait_http(f"https://127.0.0.1:{ports.scheduler}/healthz", insecure, 60.0, "kube-scheduler")
            if not real_node:
                self._wait_http(f"http://127.0.0.1:{ports.kwok}/healthz", None, 60.0, "kwok")
        with self._phase("node"):
            if real_node:
                self.node = RealNode(NodeInputs(find_node_bin_dir(), pki, ports.apiserver, self.log_dir))
                self.node.start(wait_for)
                bootstrap.wait_node_ready(client, 90.0, abort=self._node_abort_reason, name=NODE_NAME)
            else:
                bootstrap.wait_node_ready(client, 60.0, abort=self._abort_reason)
        if self.smoke_job:
            with self._phase("smoke-job"):
                bootstrap.run_smoke_job(client, 60.0, abort=self._abort_reason)

    def _make_workdir(self) -> Path:
        if self._requested_workdir is not None:
            self._requested_workdir.mkdir(parents=True, exist_ok=True)
            self._workdir, self._owns_workdir = self._requested_workdir, False
        else:
            base = _shm_or_none() or tempfile.gettempdir()
            self._workdir = Path(tempfile.mkdtemp(prefix="zenflow-cluster-", dir=base))
            leftovers.claim(self._workdir)
            self._owns_workdir = True
        return self._workdir

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> ComponentProcess:
        process = ComponentProcess(name, argv, self.log_dir / f"{name}.log", env=env)
        with self._lock:
            self._processes.append(process)
        process.start()
        return process

    def _wait_http(self, url: str, context: ssl.SSLContext | None, timeout: float, name: str) -> None:
        wait_until(lambda: http_ok(url, context), timeout, f"{name} at {url}", abort=self._abort_reason)

    def _node_abort_reason(self) -> str | None:
        return self._abort_reason() or (self.node.failed() if self.node is not None else None)

    def _abort_reason(self) -> str | None:
        dead = self.dead_components()
        if not dead:
            return None
        return ", ".join(f"{name} exited with status {code}" for name, code in dead.items())

    @contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        yield
        self.startup_seconds[name] = round(time.monotonic() - began, 2)

    def _admin_tls(self) -> ssl.SSLContext:
        return tls_context(self.ca_cert, self.pki.admin_cert, self.pki.admin_key)

    def _teardown(self) -> None:
        with self._lock:
            processes, self._processes = self._processes, []
            node, self.node = self.node, None
        if node is not None:
            node.stop()  # before the control plane: the kubelet must not outlive its apiserver
        with ExitStack() as cleanup:
            if self._etcd_dir is not None:
                cleanup.callback(shutil.rmtree, self._etcd_dir, ignore_errors=True)
            if self._workdir is not None and self._owns_workdir:
                cleanup.callback(shutil.rmtree, self._workdir, ignore_errors=True)
            stop_all(processes, grace=self.stop_grace)
        self._etcd_dir = None
        if self._owns_workdir:
            self._workdir = None

    @staticmethod
    def _require(value: _T | None, what: str) -> _T:
        if value is None:
            raise RuntimeError(f"LocalCluster.{what} is only available after start()")
        return value


def _failure_report(profile: str, error: BaseException, tails: dict[str, str]) -> str:
    sections = [f"local {profile} cluster failed to start: {error}"]
    for name, tail in tails.items():
        sections.append(f"----- {name} (last lines) -----\n{tail}")
    return "\n".join(sections)


def _shm_or_none() -> str | None:
    return str(_SHM) if _SHM.is_dir() and os.access(_SHM, os.W_OK) else None


def _free_ports() -> components.Ports:
    """Distinct free loopback ports: all sockets stay bound until every port is chosen."""
    sockets = []
    try:
        for _ in range(6):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        ports = [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()
    return components.Ports(*ports)


# -- process-exit safety net ---------------------------------------------------------------------------

_live: set[LocalCluster] = set()
_live_lock = threading.Lock()
_atexit_registered = False


def _register_for_exit(cluster: LocalCluster) -> None:
    global _atexit_registered
    with _live_lock:
        _live.add(cluster)
        if not _atexit_registered:
            atexit.register(_stop_live_clusters)
            _atexit_registered = True


def _unregister(cluster: LocalCluster) -> None:
    with _live_lock:
        _live.discard(cluster)


def _stop_live_clusters() -> None:
    with _live_lock:
        clusters = list(_live)
    for cluster in clusters:
        cluster.stop()
