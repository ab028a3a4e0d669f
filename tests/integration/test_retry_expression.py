"""A failed attempt is retried only when its retryPolicy.expression says a retry can help (docs/API.md
"Retrying only when it can help"): against a real apiserver, kube-controller-manager (the Job controller
makes the pods, and fails the Job), kube-scheduler and a kwok node whose pods exit with the code their
annotation names. The exit code reaches the condition through the pod read the controller makes for the
step's message. This module runs its own cluster: the integration tier's has no pods."""

from __future__ import annotations

from pathlib import Path

import pytest
from controller_steps import step_of

from zen_flow_dev.cluster import LocalCluster
from zen_flow_dev.testing.controller import ControllerProcess
from zen_flow_dev.testing.driver import FlowDriver
from zen_flow_dev.testing.flows import flow_manifest, job_step, job_template

pytestmark = pytest.mark.integration

NAMESPACE = "default"
NOT_BAD_INPUT = "lastRetry.exitCode != 2"


async def test_bad_input_fails_at_once_and_a_crash_is_retried(
    scheduled: LocalCluster, tmp_path: Path
) -> None:
    driver = await FlowDriver.connect(scheduled.kubeconfig)
    controller = ControllerProcess(scheduled.kubeconfig, tmp_path / "controller.log", namespaces=[NAMESPACE])
    try:
        controller.start().wait_ready()
        retry = {"limit": 2, "backoff": {"type": "Fixed", "duration": "1s"}, "expression": NOT_BAD_INPUT}
        bad = job_step("import", template=job_template(exit_code=2), retryPolicy=retry)
        crash = job_step("import", template=job_template(exit_code=137, fail_attempts=1), retryPolicy=retry)
        await driver.create(flow_manifest("bad-input", NAMESPACE, [bad]))
        await driver.create(flow_manifest("crash", NAMESPACE, [crash]))

        failed = await driver.wait_phase(NAMESPACE, "bad-input", timeout=90)
        assert failed["status"]["phase"] == "Failed", failed["status"]
        step = step_of(failed, "import")
        assert step.get("retryCount", 0) == 0
        assert step["message"].startswith("attempt 1 failed: Job failed: main: exit code 2")
        assert step["message"].endswith(f'; not retried: retryPolicy.expression "{NOT_BAD_INPUT}" is false')
        jobs = await driver.kube.request("GET", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs")
        assert len([j for j in jobs["items"] if j["metadata"]["name"].startswith("bad-input")]) == 1

        done = await driver.wait_phase(NAMESPACE, "crash", timeout=90)
        assert done["status"]["phase"] == "Succeeded", done["status"]
        assert step_of(done, "import")["retryCount"] == 1
    finally:
        await driver.close()
        controller.stop()
