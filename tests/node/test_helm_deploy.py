"""The Helm chart deployed for real on the node cluster: the same image and checks as test_deploy.py,
with the chart's own values for running without cert-manager (webhook.secretName, webhook.caBundle)."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from zen_flow_dev.cluster import LocalCluster, find_kubectl
from zen_flow_dev.cluster.pki import create_ca, issue_serving_cert
from zen_flow_dev.testing.driver import FlowDriver
from zen_flow_dev.testing.flows import flow_manifest, job_step
from zen_flow_dev.testing.kubectl import kubectl_runner

ROOT = Path(__file__).resolve().parents[2]
NS = "zen-flow-system"


@pytest.fixture(scope="module")
def released(
    node_cluster: LocalCluster, image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    helm = subprocess.run(
        [str(ROOT / "tools" / "build-gotool.sh"), "helm"],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if helm.returncode != 0:
        pytest.skip(f"helm could not be built: {helm.stderr.strip()[-300:]}")
    tmp = tmp_path_factory.mktemp("helm")
    binary = str(find_kubectl(node_cluster.bin_dir))

    kubectl = kubectl_runner(binary, node_cluster.kubeconfig, timeout=180)

    ca = create_ca(tmp / "ca", common_name="zen-flow-webhook-ca")
    cert, key = issue_serving_cert(ca, tmp / "serving", [f"zen-flow-webhook.{NS}.svc"])
    values = {
        "webhook": {
            "certManager": {"enabled": False},
            "secretName": "zen-flow-webhook-cert",
            "caBundle": base64.b64encode(ca.cert_path.read_bytes()).decode(),
        }
    }
    (tmp / "values.yaml").write_text(yaml.safe_dump(values))
    rendered = subprocess.run(
        [helm.stdout.strip().splitlines()[-1], "template", "zen-flow", str(ROOT / "charts" / "zen-flow"),
         "--namespace", NS, "--include-crds", "--values", str(tmp / "values.yaml")],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    kubectl("create", "namespace", NS)
    kubectl("-n", NS, "create", "secret", "tls", "zen-flow-webhook-cert", f"--cert={cert}", f"--key={key}")
    kubectl("apply", "--server-side", "-f", "-", input=rendered)
    kubectl("-n", NS, "rollout", "status", "deployment/zen-flow-controller", "--timeout=180s")
    yield kubectl
    kubectl("delete", "-f", "-", "--ignore-not-found", "--wait=false", input=rendered, check=False)


async def test_the_chart_runs_flows_and_refuses_broken_ones(
    released: Any, node_cluster: LocalCluster, namespace: str
) -> None:
    kubectl = released
    broken = flow_manifest("broken", namespace, [job_step("a"), job_step("b", "nope")])
    refused = kubectl("create", "-f", "-", input=json.dumps(broken), check=False)
    assert 'spec.steps[1].dependencies[0]: Not found: "nope"' in refused.stderr
    container = {"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", "echo ok"]}
    pod = {"spec": {"restartPolicy": "Never", "containers": [container]}}
    job = {"apiVersion": "batch/v1", "kind": "Job", "spec": {"backoffLimit": 0, "template": pod}}
    driver = await FlowDriver.connect(node_cluster.kubeconfig)
    try:
        await driver.create(
            flow_manifest(
                "charted", namespace, [job_step("a", template=job), job_step("b", "a", template=job)]
            )
        )
        flow = await driver.wait_phase(namespace, "charted", timeout=180)
    finally:
        await driver.close()
    assert flow["status"]["phase"] == "Succeeded", flow["status"]
