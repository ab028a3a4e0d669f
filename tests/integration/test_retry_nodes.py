"""A retry keeps off the node its failed attempt ran on (retryPolicy.affinity.nodeAntiAffinity,
docs/API.md "Retrying on another node"): against a real apiserver, kube-controller-manager (the Job
controller makes the pods), kube-scheduler (it places them) and TWO kwok nodes. This module runs its
own cluster: the integration tier's has no scheduler."""

from __future__ import annotations

from pathlib import Path

import pytest
from controller_steps import step_of

from zen_flow_dev.cluster import LocalCluster
from zen_flow_dev.cluster.stages import ATTEMPT_LABEL, NODE_NAME, node_manifest
from zen_flow_dev.testing.controller import ControllerProcess
from zen_flow_dev.testing.driver import FlowDriver, wait_until
from zen_flow_dev.testing.flows import flow_manifest, job_step, job_template

pytestmark = pytest.mark.integration

NAMESPACE = "default"
OTHER_NODE = "kwok-node-1"
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"


async def test_a_retry_lands_on_another_node_than_the_failed_attempt(
    scheduled: LocalCluster, tmp_path: Path
) -> None:
    driver = await FlowDriver.connect(scheduled.kubeconfig)
    controller = ControllerProcess(scheduled.kubeconfig, tmp_path / "controller.log", namespaces=[NAMESPACE])
    try:
        # A second fake node beside the cluster's: kwok takes every node with its annotation.
        await driver.kube.request("POST", "/api/v1/nodes", body=node_manifest(OTHER_NODE))

        async def ready() -> bool:
            node = await driver.kube.request("GET", f"/api/v1/nodes/{OTHER_NODE}")
            conditions = (node.get("status") or {}).get("conditions") or []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        await wait_until(ready, 60, interval=0.5, what=f"Node {OTHER_NODE} Ready")
        controller.start().wait_ready()

        # The first attempt fails (exit 3), the second succeeds; the user's own required term (both nodes
        # match it) stays, ANDed with the exclusion.
        template = job_template(exit_code=3, fail_attempts=1)
        user_term = {"matchExpressions": [{"key": "type", "operator": "In", "values": ["kwok"]}]}
        template["spec"]["template"]["spec"]["affinity"] = {
            "nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [user_term]}}
        }
        retry = {"limit": 1, "backoff": {"duration": "1s"}, "affinity": {"nodeAntiAffinity": {}}}
        await driver.create(
            flow_manifest("hop", NAMESPACE, [job_step("a", template=template, retryPolicy=retry)])
        )
        done = await driver.wait_phase(NAMESPACE, "hop", timeout=90)
        assert done["status"]["phase"] == "Succeeded", done["status"]
        step = step_of(done, "a")
        assert step["retryCount"] == 1
        (failed_on,) = step["failedNodes"]
        assert failed_on in (NODE_NAME, OTHER_NODE)

        listed = await driver.kube.request("GET", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs")
        by_attempt = {j["metadata"]["labels"][ATTEMPT_LABEL]: j for j in listed["items"]}
        first, second = by_attempt["0"], by_attempt["1"]
        jobs = {attempt: j["metadata"]["name"] for attempt, j in by_attempt.items()}
        assert first["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][REQUIRED][
            "nodeSelectorTerms"
        ] == [user_term]
        terms = second["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][REQUIRED]["nodeSelectorTerms"]
        exclusion = {"key": "metadata.name", "operator": "NotIn", "values": [failed_on]}
        assert terms == [{**user_term, "matchFields": [exclusion]}]

        async def node_of(job: str) -> str:
            pods = await driver.kube.request(
                "GET",
                f"/api/v1/namespaces/{NAMESPACE}/pods",
                query=[("labelSelector", f"batch.kubernetes.io/job-name={job}")],
            )
            (pod,) = pods["items"]
            node: str = pod["spec"]["nodeName"]
            return node

        assert await node_of(jobs["0"]) == failed_on
        assert await node_of(jobs["1"]) != failed_on
    finally:
        await driver.close()
        controller.stop()
