"""A step whose pod no node fits says so, and fails at its podPendingTimeoutSeconds (docs/API.md, "Stuck
pods"): against a real apiserver, kube-controller-manager (the Job controller makes the pods),
kube-scheduler (it marks them Unschedulable) and a kwok node whose labels the steps' nodeSelector does
not match. This module runs its own cluster: the integration tier's has no scheduler."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from controller_steps import step_of

from zen_flow_dev.cluster import LocalCluster
from zen_flow_dev.testing.controller import ControllerProcess
from zen_flow_dev.testing.driver import FlowDriver, wait_until
from zen_flow_dev.testing.flows import flow_manifest, job_step, job_template

pytestmark = pytest.mark.integration

NAMESPACE = "default"


def nowhere(name: str, **fields: Any) -> dict[str, Any]:
    """A Job step whose pod's nodeSelector no node matches."""
    template = job_template()
    template["spec"]["template"]["spec"]["nodeSelector"] = {"zenflow.test/nowhere": "true"}
    return job_step(name, template=template, **fields)


async def test_an_unschedulable_step_says_so_and_fails_at_its_bound(
    scheduled: LocalCluster, tmp_path: Path
) -> None:
    controller = ControllerProcess(scheduled.kubeconfig, tmp_path / "controller.log", namespaces=[NAMESPACE])
    controller.start().wait_ready()
    driver = await FlowDriver.connect(scheduled.kubeconfig)
    try:
        # No bound: the step stays Running and says why, a while after its Job's pod was found not ready.
        await driver.create(flow_manifest("waits", NAMESPACE, [nowhere("a")]))
        retry = {"limit": 1, "backoff": {"duration": "1s"}}
        bounded = nowhere("a", podPendingTimeoutSeconds=5, retryPolicy=retry)
        await driver.create(flow_manifest("bounded", NAMESPACE, [bounded]))

        # Bounded: each attempt's Job is deleted after 5 s of an unschedulable pod; the retry's too.
        failed = await driver.wait_phase(NAMESPACE, "bounded", {"Failed"}, timeout=60)
        step = step_of(failed, "a")
        assert step["phase"] == "Failed"
        assert step["retryCount"] == 1
        assert step["message"].startswith(
            "attempt 2 failed: PodPendingTimeout: no pod running for 5s; pod unschedulable: "
        )
        cond = next(c for c in failed["status"]["conditions"] if c["type"] == "Failed")
        assert (cond["status"], cond["reason"]) == ("True", "StepFailed")
        assert controller.metric("zen_flow_job_deletes_total", reason="pod_pending") == 2

        async def named() -> dict[str, Any] | None:
            step = step_of(await driver.get(NAMESPACE, "waits"), "a")
            return step if (step.get("message") or "").startswith("pod unschedulable: ") else None

        step = await wait_until(named, 60, interval=0.5, what="the waiting step's message")
        assert step["phase"] == "Running"
        assert "didn't match Pod's node affinity/selector" in step["message"]
    finally:
        await driver.close()
        controller.stop()
