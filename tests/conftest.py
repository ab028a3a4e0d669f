"""Shared test configuration: tier markers, the local clusters, and per-test cluster fixtures.

Tiers: tests/unit (no cluster), tests/integration (`apiserver_cluster`: etcd + kube-apiserver) and
tests/e2e (`full_cluster`: + controller-manager, scheduler, kwok). Each tier's conftest binds `cluster`
to its cluster; the fixtures below (`kubeconfig`, `kubectl`, `namespace`, `api_client`) use that
binding, so they are available in tests/integration and tests/e2e only. See docs/TESTING.md.
"""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import pytest
from hypothesis import HealthCheck, settings

from zen_flow_dev.cluster import ExternalCluster, LocalCluster, existing_kubeconfig, find_kubectl
from zen_flow_dev.testing.controller import ControllerProcess, StartController
from zen_flow_dev.testing.driver import FlowDriver
from zen_flow_dev.testing.kubectl import Kubectl, kubectl_runner

# Property tests: no per-example deadline (a shared 2-core machine makes timings noisy), and in CI a
# fixed derandomized search, so a landing never depends on the luck of the draw. Locally each run explores
# new examples (and keeps failures in .hypothesis/).
settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
# `make fuzz`: the webhook fuzz test (and any other property) with many more cases.
settings.register_profile("fuzz", parent=settings.get_profile("default"), max_examples=20_000)
settings.load_profile(
    os.environ.get("ZENFLOW_HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "default")
)

TESTS_DIR = Path(__file__).parent
TIER_MARKERS = {"integration": "integration", "e2e": "e2e", "node": "node"}
LOG_TAIL_LINES = 60
_CLUSTER_FIXTURES = ("cluster", "apiserver_cluster", "full_cluster")


class ClusterHandle(Protocol):
    """What tests may rely on: LocalCluster, or ExternalCluster under ZENFLOW_TEST_KUBECONFIG."""

    @property
    def kubeconfig(self) -> Path: ...
    @property
    def server(self) -> str: ...
    @property
    def ca_cert(self) -> Path | None: ...
    def log_tails(self, lines: int = 60) -> dict[str, str]: ...
    def stop(self) -> None: ...


def pytest_configure(config: pytest.Config) -> None:
    # A CI timeout or `kill` sends SIGTERM, whose default action skips atexit and fixture teardown. As a
    # KeyboardInterrupt it unwinds like Ctrl-C: session fixtures and atexit stop the local clusters and
    # remove their directories (the processes would die with us anyway, see zen_flow_dev/cluster/process.py).
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once
    raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            tier = item.path.relative_to(TESTS_DIR).parts[0]
        except (ValueError, IndexError):
            continue
        marker = TIER_MARKERS.get(tier)
        if marker is not None:
            item.add_marker(marker)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """On failure, append the tail of every control-plane log to the report."""
    report: pytest.TestReport = yield
    if report.failed:
        funcargs: dict[str, Any] = getattr(item, "funcargs", {})
        seen: set[int] = set()
        for name in _CLUSTER_FIXTURES:
            cluster = funcargs.get(name)
            if cluster is None or id(cluster) in seen or not hasattr(cluster, "log_tails"):
                continue
            seen.add(id(cluster))
            for component, tail in cluster.log_tails(LOG_TAIL_LINES).items():
                report.sections.append((f"{component} log (last {LOG_TAIL_LINES} lines)", tail))
    return report


def _smoke_job_enabled() -> bool:
    return os.environ.get("ZENFLOW_CLUSTER_SMOKE", "1") not in ("0", "false", "no")


def _cluster(profile: str, tmp_path_factory: pytest.TempPathFactory) -> ClusterHandle:
    existing = existing_kubeconfig()
    if existing is not None:
        return ExternalCluster.from_kubeconfig(existing, tmp_path_factory.mktemp("external-cluster"))
    local = LocalCluster("full" if profile == "full" else "apiserver", smoke_job=_smoke_job_enabled())
    return local.start()


@pytest.fixture(scope="session")
def apiserver_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    """etcd + kube-apiserver (TLS, RBAC, client-cert auth), started once per session."""
    cluster = _cluster("apiserver", tmp_path_factory)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def full_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    """apiserver + kube-controller-manager + kube-scheduler + kwok (node kwok-node-0), once per session."""
    cluster = _cluster("full", tmp_path_factory)
    yield cluster
    cluster.stop()


# The fixtures below are function-scoped on purpose: `cluster` differs per tier, and a session-scoped
# fixture built on it would be cached with whichever tier ran first.


@pytest.fixture(scope="session")
def _kubectl_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A private discovery cache: every local cluster has a new port, ~/.kube/cache would only grow.
    return tmp_path_factory.mktemp("kubectl-cache")


@pytest.fixture
def kubeconfig(cluster: ClusterHandle) -> Path:
    return cluster.kubeconfig


@pytest.fixture
def kubectl(cluster: ClusterHandle, _kubectl_cache_dir: Path) -> Kubectl:
    """`kubectl(*args, input=None, check=True)` with the tier's kubeconfig; raises KubectlError on failure."""
    return kubectl_runner(
        find_kubectl(getattr(cluster, "bin_dir", None)), cluster.kubeconfig, cache_dir=_kubectl_cache_dir
    )


@pytest.fixture
def namespace(kubectl: Kubectl) -> Iterator[str]:
    """A fresh namespace `zf-<8 hex>` (label zenflow.test/namespace=true), deleted afterwards without
    waiting for its termination."""
    name = f"zf-{secrets.token_hex(4)}"
    manifest = (
        '{"apiVersion": "v1", "kind": "Namespace", "metadata": '
        f'{{"name": "{name}", "labels": {{"zenflow.test/namespace": "true"}}}}}}'
    )
    kubectl("create", "-f", "-", input=manifest)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture
async def api_client(kubeconfig: Path) -> AsyncIterator[Any]:
    """A kubernetes_asyncio ApiClient for the tier's kubeconfig, closed after the test."""
    from kubernetes_asyncio import client, config

    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    async with client.ApiClient(configuration) as api:
        yield api


# --- a zen-flow controller process per test ------------------------------------------------------


@pytest.fixture
def start_controller(
    kubeconfig: Path, namespace: str, tmp_path: Path, request: pytest.FixtureRequest, jobflow_crd: Any
) -> Iterator[StartController]:
    """Start (and wait for /readyz of) `zen-flow run` watching only the test's namespace; keyword
    arguments go to `ControllerProcess`. All are stopped at teardown, their log tails attached to the
    report. Needs the tier's `jobflow_crd` fixture."""
    started: list[ControllerProcess] = []

    def start(**kwargs: Any) -> ControllerProcess:
        kwargs.setdefault("namespaces", [namespace])
        proc = ControllerProcess(kubeconfig, tmp_path / f"controller-{len(started)}.log", **kwargs)
        started.append(proc.start())
        proc.wait_ready()
        return proc

    yield start
    for n, proc in enumerate(started):
        proc.stop()
        request.node.add_report_section("teardown", f"controller-{n} log", proc.log_tail(60))


@pytest.fixture
async def driver(kubeconfig: Path) -> AsyncIterator[FlowDriver]:
    """Create, read and wait on JobFlows and Jobs in the tier's cluster."""
    drv = await FlowDriver.connect(kubeconfig)
    yield drv
    await drv.close()
