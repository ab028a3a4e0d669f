"""Integration tier: a real kube-apiserver + etcd, no controllers (Jobs never get pods here).

`cluster` binds the shared fixtures of tests/conftest.py (kubeconfig, kubectl, namespace, api_client)
to the session's `apiserver_cluster`; every test here is marked `integration`.
"""

from __future__ import annotations

from typing import Any

import pytest

from zen_flow_dev.cluster import find_kubectl
from zen_flow_dev.testing.crd import install_crd


@pytest.fixture(scope="session")
def cluster(apiserver_cluster: Any) -> Any:
    return apiserver_cluster


@pytest.fixture(scope="session")
def jobflow_crd(cluster: Any) -> dict[str, Any]:
    """The JobFlow CRD, installed once per session and Established, as the apiserver stored it."""
    return install_crd(find_kubectl(getattr(cluster, "bin_dir", None)), cluster.kubeconfig)
