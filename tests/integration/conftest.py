"""Integration tier: a real kube-apiserver + etcd, no controllers (Jobs never get pods here).

`cluster` binds the shared fixtures of tests/conftest.py (kubeconfig, kubectl, namespace, api_client)
to the session's `apiserver_cluster`; every test here is marked `integration`.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from zen_flow.api import constants
from zen_flow.devcluster import find_kubectl
from zen_flow.devcluster.adminclient import wait_until


@pytest.fixture(scope="session")
def cluster(apiserver_cluster: Any) -> Any:
    return apiserver_cluster


JOBFLOW_CRD_PATH = Path(__file__).resolve().parents[2] / "config" / "crd" / f"{constants.CRD_NAME}.yaml"


@pytest.fixture(scope="session")
def jobflow_crd(cluster: Any) -> dict[str, Any]:
    """The JobFlow CRD, installed once per session and Established; returns it as the apiserver stored it.

    Server-side apply makes it idempotent (an existing cluster under ZENFLOW_TEST_KUBECONFIG is updated).
    """
    base = [str(find_kubectl(getattr(cluster, "bin_dir", None))), f"--kubeconfig={cluster.kubeconfig}"]

    def run(*args: str) -> str:
        done = subprocess.run([*base, *args], capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done.stdout

    run(
        "apply",
        "--server-side",
        "--field-manager=zen-flow-tests",
        "--force-conflicts",
        "-f",
        str(JOBFLOW_CRD_PATH),
    )

    # Not `kubectl wait`: kubectl 1.36 fails at once while a new CRD has no status.conditions yet.
    def established() -> dict[str, Any] | None:
        crd: dict[str, Any] = json.loads(run("get", "crd", constants.CRD_NAME, "-o", "json"))
        conditions = crd.get("status", {}).get("conditions") or []
        return crd if any(c["type"] == "Established" and c["status"] == "True" for c in conditions) else None

    return wait_until(established, timeout=60, what=f"CRD {constants.CRD_NAME} Established")
