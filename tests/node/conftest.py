"""Real-node tier: the control plane plus a real node (containerd, kubelet, kube-proxy in a network
namespace of their own, a local image registry; zen_flow_dev.node). Containers really run: exit codes,
termination messages and `kubectl logs` are the kernel's and runc's, not kwok's.

It needs root, cgroup v1 hierarchies, and the binaries of tools/build-node.sh (`make test` builds them);
without them every test here is skipped with the exact reason. One node per machine at a time (fixed
cgroup names and paths): each module gets its own cluster, started and stopped around it. Every test is
marked `node`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zen_flow.api.transfer import DEFAULT_IMAGE
from zen_flow_dev.cluster import LocalCluster, find_kubectl
from zen_flow_dev.cluster.binaries import MissingBinariesError, find_node_bin_dir
from zen_flow_dev.node.host import BASE, NODE_IP, in_node, unsupported_reason
from zen_flow_dev.testing.crd import install_crd
from zen_flow_dev.testing.storage import MISSING, S3Server, versitygw_binary


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


@pytest.fixture(scope="module")
def image(node_cluster: LocalCluster) -> str:
    """The zen-flow image in the local registry, as ghcr.io/kube-zen/zen-flow:<version>: what the
    Deployment runs and what steps' artifact containers run (--artifact-image's default)."""
    tarball = os.environ.get("ZENFLOW_IMAGE_TAR", "")
    if not tarball or not Path(tarball).is_file():
        pytest.skip(
            "no zen-flow image: `make test` builds it (tools/build-image.sh: root, podman, mmdebstrap)"
        )
    assert node_cluster.node is not None
    node_cluster.node.push(Path(tarball), DEFAULT_IMAGE)  # containerd pulls ghcr.io from the local registry
    return DEFAULT_IMAGE


@pytest.fixture(scope="module")
def storage(node_cluster: LocalCluster) -> Iterator[S3Server]:
    """A real S3-compatible server on the node's address, inside the node's network namespace: pods
    reach it like a storage service of their cluster; its data is under the node's own directory."""
    binary = versitygw_binary()
    if binary is None or not binary.exists():
        pytest.skip(MISSING)
    server = S3Server(binary, host=NODE_IP, port=19000, argv_prefix=in_node, data=BASE / "s3").start()
    try:
        yield server
    finally:
        server.stop()
