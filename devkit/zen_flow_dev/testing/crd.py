"""Install the JobFlow CRD from config/crd/ into a cluster and wait until it is Established."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from zen_flow.api import constants
from zen_flow_dev.cluster.adminclient import wait_until

REPO = Path(__file__).resolve().parents[3]
JOBFLOW_CRD_PATH = REPO / "config" / "crd" / f"{constants.CRD_NAME}.yaml"


def install_crd(kubectl: Path | str, kubeconfig: Path | str, timeout: float = 60.0) -> dict[str, Any]:
    """Server-side apply (idempotent, also updates an existing cluster's CRD); returns the stored CRD."""
    base = [str(kubectl), f"--kubeconfig={kubeconfig}"]

    def run(*args: str) -> str:
        done = subprocess.run([*base, *args], capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr}")
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

    return wait_until(established, timeout=timeout, what=f"CRD {constants.CRD_NAME} Established")
