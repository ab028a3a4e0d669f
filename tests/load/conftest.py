"""Load tier: the small correctness-only smoke of the benchmark workloads, on the full local cluster.

The benchmark itself (timings, the baseline, API cost, memory) is `python -m zen_flow_dev.bench`
(docs/BENCHMARKS.md); nothing here measures time. `cluster` binds the shared fixtures of
tests/conftest.py to the session's `full_cluster`, like tests/e2e.
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
