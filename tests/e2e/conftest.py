"""End-to-end tier: apiserver + controller-manager + scheduler + kwok with one fake node (kwok-node-0).

Pods of Jobs run and succeed at once; annotate a pod template to shape a run (zen_flow_dev.cluster.stages):
`zenflow.test/exit-code: "3"` fails it with exit code 3, `zenflow.test/run-seconds: "2"` keeps it Running
2 s first. `cluster` binds the shared fixtures of tests/conftest.py to the session's `full_cluster`;
every test here is marked `e2e`.
"""

from __future__ import annotations

from typing import Any

import pytest

from zen_flow_dev.cluster import find_kubectl
from zen_flow_dev.testing.crd import install_crd


@pytest.fixture(scope="session")
def cluster(full_cluster: Any) -> Any:
    return full_cluster


@pytest.fixture(scope="session")
def jobflow_crd(cluster: Any) -> dict[str, Any]:
    """The JobFlow CRD, installed once per session and Established, as the apiserver stored it."""
    return install_crd(find_kubectl(getattr(cluster, "bin_dir", None)), cluster.kubeconfig)
