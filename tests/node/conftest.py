"""Real-node tier: the control plane plus a real node (containerd, kubelet, kube-proxy in a network
namespace of their own, a local image registry; zen_flow_dev.node). Containers really run: exit codes,
termination messages and `kubectl logs` are the kernel's and runc's, not kwok's.

It needs root, cgroup v1 hierarchies, and the binaries of tools/build-node.sh (`make test` builds them);
without them every test here is skipped with the exact reason. One node per machine at a time (fixed
cgroup names and paths): each module gets its own cluster, started and stopped around it. Every test is
marked `node`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from zen_flow_dev.cluster import LocalCluster, find_kubectl
from zen_flow_dev.cluster.binaries import MissingBinariesError, find_node_bin_dir
from zen_flow_dev.node.host import unsupported_reason
from zen_flow_dev.testing.crd import install_crd


def node_skip_reason() -> str | None:
    if (reason := unsupported_reason()) is not None:
        return reason
    try:
        find_node_bin_dir()
    except MissingBinariesError as error:
        return str(error)
    return None


@pytest.fixture(scope="module")
def node_cluster() -> Iterator[LocalCluster]:
    if (reason := node_skip_reason()) is not None:
        pytest.skip(reason)
    cluster = LocalCluster("node")
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def cluster(node_cluster: LocalCluster) -> LocalCluster:
    return node_cluster


@pytest.fixture(scope="module")
def jobflow_crd(cluster: LocalCluster) -> dict[str, Any]:
    return install_crd(find_kubectl(cluster.bin_dir), cluster.kubeconfig)
