"""config/user-roles on a full local cluster (its kube-controller-manager aggregates ClusterRoles): whoever
holds Kubernetes' built-in `view` in a namespace lists its flows and writes none, `edit` also creates,
patches (`zen-flow stop/suspend/retry`) and deletes them, and only `admin` decides gates (`approve`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zen_flow_dev.cluster import LocalCluster, find_kubectl
from zen_flow_dev.testing.driver import wait_until
from zen_flow_dev.testing.flows import flow_manifest, job_step
from zen_flow_dev.testing.kubectl import Kubectl, kubectl_runner

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "user-roles"
USERS = {"view": "vera", "edit": "ed", "admin": "ada"}
KINDS = ("jobflows", "cronjobflows", "jobflowtemplates")
GROUP = "workflow.kube-zen.io"
AGGREGATED = 60.0  # the clusterrole-aggregation controller fills the built-in roles within seconds


def _can(kubectl: Kubectl, user: str, verb: str, kind: str) -> bool:
    done = kubectl("auth", "can-i", verb, f"{kind}.{GROUP}", "-n", NAMESPACE, f"--as={user}", check=False)
    answer = done.stdout.strip()
    assert answer in ("yes", "no"), f"can-i {verb} {kind} as {user}: {done.stdout}{done.stderr}"
    return answer == "yes"


async def test_built_in_roles_read_write_and_approve_flows(scheduled: LocalCluster) -> None:
    kubectl = kubectl_runner(find_kubectl(scheduled.bin_dir), scheduled.kubeconfig)
    kubectl("apply", "-k", str(ROOT / "config" / "user-roles"))
    kubectl("create", "namespace", NAMESPACE)
    for role, user in USERS.items():
        kubectl("create", "rolebinding", user, f"--clusterrole={role}", f"--user={user}", "-n", NAMESPACE)

    async def aggregated() -> bool:
        return all(_can(kubectl, user, "list", "jobflows") for user in USERS.values())

    await wait_until(aggregated, AGGREGATED, interval=0.5, what="view, edit and admin take in jobflows")
    for role, user in USERS.items():
        for kind in KINDS:
            assert _can(kubectl, user, "watch", kind), (role, kind)
            for verb in ("create", "patch", "delete"):
                assert _can(kubectl, user, verb, kind) == (role != "view"), (role, kind, verb)
        assert _can(kubectl, user, "approve", "jobflows") == (role == "admin"), role

    # Real requests, as `kubectl get jf` and the CLI's interventions send them.
    flow = json.dumps(flow_manifest("hello", NAMESPACE, [job_step("build")]))
    assert kubectl("get", "jf", "-n", NAMESPACE, "--as=vera", check=False).returncode == 0
    refused = kubectl("create", "-f", "-", "--as=vera", input=flow, check=False)
    assert refused.returncode != 0
    assert "forbidden" in refused.stderr.lower()
    kubectl("create", "-f", "-", "--as=ed", input=flow)
    stop = json.dumps({"metadata": {"annotations": {f"{GROUP}/stop": "true"}}})
    kubectl("patch", "jf", "hello", "-n", NAMESPACE, "--type=merge", "-p", stop, "--as=ed")
    kubectl("delete", "jf", "hello", "-n", NAMESPACE, "--as=ed", "--wait=false")
