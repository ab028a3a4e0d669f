"""Integration tier: a real kube-apiserver + etcd, no controllers (Jobs never get pods here).

`cluster` binds the shared fixtures of tests/conftest.py (kubeconfig, kubectl, namespace, api_client)
to the session's `apiserver_cluster`; every test here is marked `integration`. A module whose steps need
pods made, placed and ended asks for `scheduled` instead: a full local cluster of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from zen_flow_dev.cluster import LocalCluster, find_kubectl
from zen_flow_dev.testing.crd import install_crd


@pytest.fixture(scope="session")
def cluster(apiserver_cluster: Any) -> Any:
    return apiserver_cluster


@pytest.fixture(scope="session")
def jobflow_crd(cluster: Any) -> dict[str, Any]:
    """The JobFlow CRD, installed once per session and Established, as the apiserver stored it."""
    return install_crd(find_kubectl(getattr(cluster, "bin_dir", None)), cluster.kubeconfig)


@pytest.fixture(scope="module")
def scheduled(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    """The asking module's own full local cluster (kube-controller-manager makes a Job's pods,
    kube-scheduler places them, a kwok node runs them) with the CRD installed; the tier's has none of
    them. One per module, in a directory named after it."""
    name = request.module.__name__.removeprefix("test_").replace("_", "-")
    cluster = LocalCluster("full", workdir=tmp_path_factory.mktemp(name), smoke_job=False)
    cluster.start()
    install_crd(find_kubectl(cluster.bin_dir), cluster.kubeconfig)
    yield cluster
    cluster.stop()
