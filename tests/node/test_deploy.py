"""zen-flow deployed for real: the image built from the Containerfile, pulled by containerd from the local
registry, run by the kubelet as two pods under the controller's own ServiceAccount and RBAC, electing a
leader; the webhooks reached by the apiserver through their Service (no cert-manager: the set-up of
docs/WEBHOOKS.md); a flow of real containers; the leader SIGKILLed mid-flow. Then the same with the Helm
chart.

The image comes from `make test` (tools/build-image.sh, before pytest: building it fetches wheels, which
a test must not). Without it, these tests are skipped and say so.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from zen_flow.api.constants import (
    ANNOTATION_APPROVED_BY_PREFIX,
    ANNOTATION_CREATED_BY,
    APPROVE_PREFIX,
    LABEL_STEP,
)
from zen_flow.api.transfer import DEFAULT_IMAGE
from zen_flow_dev.cluster import LocalCluster
from zen_flow_dev.cluster.pki import create_ca, issue_serving_cert
from zen_flow_dev.testing.driver import FlowDriver, wait_until
from zen_flow_dev.testing.flows import flow_manifest, job_step, manual_step
from zen_flow_dev.testing.kubectl import kubectl_runner

ROOT = Path(__file__).resolve().parents[2]
IMAGE = DEFAULT_IMAGE
NS, SVC, SA = "zen-flow-system", "zen-flow-webhook", "zen-flow-controller"
WEBHOOKS = (
    "validatingwebhookconfiguration/zen-flow-validating-webhook",
    "mutatingwebhookconfiguration/zen-flow-mutating-webhook",
)


def _webhook_tls(tmp: Path) -> tuple[Path, Path, str]:
    """A CA and a serving certificate for the webhook Service, as docs/WEBHOOKS.md makes them."""
    ca = create_ca(tmp / "ca", common_name="zen-flow-webhook-ca")
    cert, key = issue_serving_cert(ca, tmp / "serving", [f"{SVC}.{NS}.svc", f"{SVC}.{NS}.svc.cluster.local"])
    return cert, key, base64.b64encode(ca.cert_path.read_bytes()).decode()


def _install_webhook_tls(kubectl: Any, tmp: Path) -> None:
    cert, key, bundle = _webhook_tls(tmp)
    kubectl("-n", NS, "create", "secret", "tls", "zen-flow-webhook-cert", f"--cert={cert}", f"--key={key}")
    for kind in WEBHOOKS:
        # Every webhook of the configuration, as docs/WEBHOOKS.md: one without the CA fails (failurePolicy
        # Fail) every write it covers.
        count = len(json.loads(kubectl("get", kind, "-o", "json").stdout)["webhooks"])
        ops = [
            {"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": bundle}
            for i in range(count)
        ]
        kubectl("patch", kind, "--type=json", "-p", json.dumps(ops))


def _overlay(tmp: Path) -> Path:
    """The dev overlay, as a user would take it, with two replicas (to see them elect a leader)."""
    overlay = tmp / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(ROOT / "config" / "overlays" / "dev", overlay)],
                "patches": [
                    {
                        "target": {"kind": "Deployment", "name": "zen-flow-controller"},
                        "patch": "- op: replace\n  path: /spec/replicas\n  value: 2\n",
                    }
                ],
            }
        )
    )
    return overlay


def _pods(kubectl: Any) -> list[dict[str, Any]]:
    listed = json.loads(
        kubectl("-n", NS, "get", "pods", "-l", "app.kubernetes.io/component=controller", "-o", "json").stdout
    )
    return [p for p in listed["items"] if not p["metadata"].get("deletionTimestamp")]


def _holder(kubectl: Any) -> str:
    done = kubectl(
        "-n", NS, "get", "lease", "zen-flow-controller", "-o", "jsonpath={.spec.holderIdentity}", check=False
    )
    return done.stdout if done.returncode == 0 else ""


@pytest.fixture(scope="module")
def deployed(
    node_cluster: LocalCluster, image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    from zen_flow_dev.cluster import find_kubectl

    tmp = tmp_path_factory.mktemp("deploy")
    binary = str(find_kubectl(node_cluster.bin_dir))

    kubectl = kubectl_runner(binary, node_cluster.kubeconfig, timeout=180)

    # The overlay lives outside the repository, so kustomize must be allowed to load ../ paths from it.
    built = kubectl("kustomize", "--load-restrictor=LoadRestrictionsNone", str(_overlay(tmp))).stdout
    kubectl("apply", "--server-side", "-f", "-", input=built)
    _install_webhook_tls(kubectl, tmp)
    kubectl("-n", NS, "rollout", "status", "deployment/zen-flow-controller", "--timeout=180s")
    yield kubectl
    kubectl("delete", "-f", "-", "--ignore-not-found", "--wait=false", input=built, check=False)


def test_two_pods_under_their_service_account_elect_one_leader(deployed: Any) -> None:
    kubectl = deployed
    pods = _pods(kubectl)
    assert len(pods) == 2
    for pod in pods:
        spec = pod["spec"]
        assert spec["serviceAccountName"] == SA
        assert spec["containers"][0]["image"] == IMAGE
        status = pod["status"]["containerStatuses"][0]
        assert status["ready"] is True
        assert status["imageID"].startswith("ghcr.io/kube-zen/zen-flow@sha256:")  # pulled, not faked
        assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    # The process really runs as the image's non-root user, on a read-only root filesystem.
    name = pods[0]["metadata"]["name"]
    assert kubectl("-n", NS, "exec", name, "--", "id", "-u").stdout.strip() == "65532"
    touched = kubectl("-n", NS, "exec", name, "--", "touch", "/opt/zen-flow/x", check=False)
    assert "Read-only file system" in touched.stderr
    deadline = time.monotonic() + 60
    while not (holder := _holder(kubectl)):
        assert time.monotonic() < deadline, "no replica took the lease"
        time.sleep(0.5)  # polling the Lease object: nothing to wait on
    assert holder.split("_")[0] in {p["metadata"]["name"] for p in pods}
    # The controller's identity is exactly config/rbac's: no Secrets; pods only listed (termination
    # messages), never read one by one, watched or changed.
    identity = f"--as=system:serviceaccount:{NS}:{SA}"
    for verb, resource in (("create", "jobs"), ("list", "pods")):
        allowed = kubectl("auth", "can-i", verb, resource, "-n", "default", identity, check=False)
        assert allowed.stdout.strip() == "yes", (verb, resource)
    for verb, resource in (
        ("get", "secrets"),
        ("get", "pods"),
        ("watch", "pods"),
        ("delete", "pods"),
        ("update", "jobflows.workflow.kube-zen.io/status"),
    ):
        assert (
            kubectl("auth", "can-i", verb, resource, "-n", "default", identity, check=False).stdout.strip()
            == "no"
        )


def _pod_metrics(kubectl: Any, pod: dict[str, Any]) -> str:
    """A controller pod's /metrics, read through the apiserver's pod proxy."""
    name = pod["metadata"]["name"]
    return str(kubectl("get", "--raw", f"/api/v1/namespaces/{NS}/pods/{name}:8080/proxy/metrics").stdout)


def _webhook_denials(kubectl: Any) -> float:
    """Denials counted by the controller pods themselves, read through the apiserver's pod proxy."""
    total = 0.0
    for pod in _pods(kubectl):
        for line in _pod_metrics(kubectl, pod).splitlines():
            if line.startswith("zen_flow_webhook_requests_total{") and 'allowed="false"' in line:
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_the_webhooks_answer_through_their_service(deployed: Any, namespace: str) -> None:
    kubectl = deployed
    # The image's admission rules are the compiled ones (tools/build-image.sh, hatch_build.py).
    for pod in _pods(kubectl):
        assert 'zen_flow_build_info{validator="compiled",version=' in _pod_metrics(kubectl, pod)
    before = _webhook_denials(kubectl)
    # Only the webhook checks that dependencies name real steps (the CRD's CEL cannot afford it).
    broken = flow_manifest("broken", namespace, [job_step("a"), job_step("b", "nope")])
    refused = kubectl("create", "-f", "-", input=json.dumps(broken), check=False)
    assert refused.returncode != 0
    assert (
        'The JobFlow "broken" is invalid: spec.steps[1].dependencies[0]: Not found: "nope"' in refused.stderr
    )
    assert _webhook_denials(kubectl) == before + 1
    good = flow_manifest("stamped", namespace, [job_step("a")])
    created = json.loads(kubectl("create", "-o", "json", "-f", "-", input=json.dumps(good)).stdout)
    assert created["metadata"]["annotations"][ANNOTATION_CREATED_BY] == "zenflow-admin"  # the mutating one
    # A decision on a Manual step is taken only by a user RBAC lets `approve` the flow: the webhook asks
    # the apiserver with the controller's own ServiceAccount (the shipped ClusterRole lets it ask).
    gated = flow_manifest(
        "pre-approved", namespace, [manual_step("gate")], annotations={APPROVE_PREFIX + "gate": "true"}
    )
    decided = json.loads(kubectl("create", "-o", "json", "-f", "-", input=json.dumps(gated)).stdout)
    assert decided["metadata"]["annotations"][ANNOTATION_APPROVED_BY_PREFIX + "gate"] == "zenflow-admin"


async def test_a_flow_of_real_containers_survives_the_leader_being_killed(
    deployed: Any, namespace: str, node_cluster: LocalCluster
) -> None:
    kubectl = deployed
    steps = [job_step(f"s{i}", *([f"s{i - 1}"] if i else []), template=_sleepy_job()) for i in range(6)]
    driver = await FlowDriver.connect(node_cluster.kubeconfig)
    try:
        await driver.create(flow_manifest("in-cluster", namespace, steps))

        async def halfway() -> bool:
            flow = await driver.get(namespace, "in-cluster")
            return ((flow or {}).get("status") or {}).get("progress", {}).get("completedSteps", 0) >= 2

        await wait_until(halfway, 120, what="two steps done by the in-cluster controller")
        leader = _holder(kubectl).split("_")[0]
        kubectl("-n", NS, "delete", "pod", leader, "--grace-period=0", "--force")  # SIGKILL, no release
        flow = await driver.wait_phase(namespace, "in-cluster", timeout=240)
        jobs = await driver.jobs(namespace)
    finally:
        await driver.close()
    assert flow["status"]["phase"] == "Succeeded", flow["status"]
    steps_run = sorted(j["metadata"]["labels"][LABEL_STEP] for j in jobs)
    assert steps_run == sorted(f"s{i}" for i in range(6))  # no step ran twice
    assert _holder(kubectl).split("_")[0] != leader


def _sleepy_job() -> dict[str, Any]:
    container = {"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", "sleep 2; echo done"]}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }
