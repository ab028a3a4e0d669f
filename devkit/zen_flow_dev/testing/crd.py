"""Install the JobFlow CRD and its admission policy, and the CronJobFlow and JobFlowTemplate CRDs, from
config/crd/ into a cluster and wait until the CRDs are Established."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

from zen_flow.api import constants
from zen_flow_dev.cluster.adminclient import wait_until

REPO = Path(__file__).resolve().parents[3]
JOBFLOW_CRD_PATH = REPO / "config" / "crd" / f"{constants.CRD_NAME}.yaml"
CRONJOBFLOW_CRD_PATH = REPO / "config" / "crd" / f"{constants.CRON_CRD_NAME}.yaml"
TEMPLATE_CRD_PATH = REPO / "config" / "crd" / f"{constants.TEMPLATE_CRD_NAME}.yaml"
CLUSTER_TEMPLATE_CRD_PATH = REPO / "config" / "crd" / f"{constants.CLUSTER_TEMPLATE_CRD_NAME}.yaml"
# The ValidatingAdmissionPolicies (and bindings) that ship with the CRD: a started flow's spec.steps and
# spec.arguments stay unchanged; what each step must be; where its parameters' values come from.
ADMISSION_POLICIES_PATH = REPO / "config" / "crd" / "admission-policies.yaml"


def is_established(crd: dict[str, Any]) -> bool:
    """Does a CustomResourceDefinition, as the apiserver returns it, serve its kind yet?"""
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def install_crd(kubectl: Path | str, kubeconfig: Path | str, timeout: float = 60.0) -> dict[str, Any]:
    """Server-side apply of the CRD and its admission policy (idempotent, also updates an existing
    cluster's); returns the stored CRD once both are in force."""
    base = [str(kubectl), f"--kubeconfig={kubeconfig}"]

    def attempt(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*base, *args], input=stdin, capture_output=True, text=True, timeout=120, check=False
        )

    def run(*args: str, stdin: str | None = None) -> str:
        done = attempt(*args, stdin=stdin)
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
        "-f",
        str(ADMISSION_POLICIES_PATH),
        "-f",
        str(CRONJOBFLOW_CRD_PATH),
        "-f",
        str(TEMPLATE_CRD_PATH),
        "-f",
        str(CLUSTER_TEMPLATE_CRD_PATH),
    )

    # Not `kubectl wait`: kubectl 1.36 fails at once while a new CRD has no status.conditions yet.
    def established() -> dict[str, Any] | None:
        crd: dict[str, Any] = json.loads(run("get", "crd", constants.CRD_NAME, "-o", "json"))
        return crd if is_established(crd) else None

    crd = wait_until(established, timeout=timeout, what=f"CRD {constants.CRD_NAME} Established")
    # As `kubectl apply -k config/crd` installs it: a controller then syncs its CronJobFlow informer too.
    for other in (constants.CRON_CRD_NAME, constants.TEMPLATE_CRD_NAME, constants.CLUSTER_TEMPLATE_CRD_NAME):

        def other_established(name: str = other) -> bool:
            return is_established(json.loads(run("get", "crd", name, "-o", "json")))

        wait_until(other_established, timeout=timeout, what=f"CRD {other} Established")

    # The apiserver enforces a new admission policy from its next policy refresh (about a second): until
    # then a started flow's steps could still be edited, and a Job step without a template created. Wait
    # for each policy on probes: a finished flow in `default` (named for this call: test sessions may
    # share a cluster) edited, and broken flows created, with server-side dry runs until each is refused.
    name = f"zen-flow-policy-probe-{uuid.uuid4().hex[:8]}"
    probe = ("jobflow", name, "-n", "default")
    run("create", "-f", "-", stdin=json.dumps(_probe_flow(name)))
    try:
        run("patch", *probe, "--subresource=status", "--type=merge", "-p", '{"status":{"phase":"Failed"}}')
        edit = json.dumps({"spec": {"steps": [{"name": "edited", "type": "Manual"}]}})

        def refused() -> bool:
            done = attempt("patch", *probe, "--dry-run=server", "--type=merge", "-p", edit)
            return done.returncode != 0 and "cannot change" in done.stderr

        wait_until(refused, timeout=timeout, what="the JobFlow spec-immutability policy enforced")
        broken = _probe_flow(f"{name}-steps")
        broken["spec"]["steps"] = [{"name": "work", "type": "Job"}]

        def refused_steps() -> bool:
            done = attempt("create", "--dry-run=server", "-f", "-", stdin=json.dumps(broken))
            return done.returncode != 0 and "needs a template" in done.stderr

        wait_until(refused_steps, timeout=timeout, what="the JobFlow step policy enforced")
        unsourced = _probe_flow(f"{name}-parameters")
        unsourced["spec"]["steps"] = [
            {"name": "gate", "type": "Manual", "inputs": {"parameters": [{"name": "v"}]}}
        ]

        def refused_parameters() -> bool:
            done = attempt("create", "--dry-run=server", "-f", "-", stdin=json.dumps(unsourced))
            return done.returncode != 0 and "set exactly one of value and valueFrom" in done.stderr

        wait_until(refused_parameters, timeout=timeout, what="the JobFlow parameter policy enforced")
    finally:
        attempt("delete", *probe, "--wait=false")
    return crd


def _probe_flow(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{constants.GROUP}/{constants.VERSION}",
        "kind": constants.KIND,
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"steps": [{"name": "gate", "type": "Manual"}]},
    }
