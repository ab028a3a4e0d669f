"""executionPolicy.jobRetention end to end on the full local cluster: real Jobs, real pods (kwok).

Runs its own `zen-flow run` process watching only the test's namespace (as tests/e2e/test_engine.py).
"""

from __future__ import annotations

from typing import Any

from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver, step_phases, wait_until
from zen_flow_dev.testing.flows import flow_manifest, job_step, job_template


async def test_failed_only_deletes_the_succeeded_steps_jobs_and_keeps_their_outputs(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    # b reads a's stored output and a's Job status: a's Job must outlive b's build (and b's success).
    consumer = job_template(run_seconds=3)
    consumer["metadata"] = {
        "annotations": {
            "example.com/count": "{{inputs.parameters.count}}",
            "example.com/done": "{{inputs.parameters.done}}",
        }
    }
    a = job_step(
        "a", outputs={"parameters": [{"name": "succeeded", "valueFrom": {"jsonPath": "$.succeeded"}}]}
    )
    inputs = [
        {"name": "count", "valueFrom": {"jsonPath": "a:$.outputs.parameters.succeeded"}},
        {"name": "done", "valueFrom": {"jsonPath": "a:$.conditions[-1].type"}},
    ]
    b = job_step("b", "a", template=consumer, inputs={"parameters": inputs})
    controller = start_controller()
    policy = {"jobRetention": "FailedOnly", "ttlSecondsAfterFinished": 3600}
    await driver.create(flow_manifest("lean", namespace, [a, b, job_step("c", "b")], executionPolicy=policy))

    async def job_of_b() -> dict[str, Any] | None:
        jobs = await driver.jobs(namespace)
        found = [j for j in jobs if j["metadata"]["labels"].get("workflow.kube-zen.io/step") == "b"]
        return found[0] if found else None

    built = (await wait_until(job_of_b, 60, what="step b's Job"))["metadata"]["annotations"]
    assert (built["example.com/count"], built["example.com/done"]) == ("1", "Complete")

    flow = await driver.wait_phase(namespace, "lean", timeout=90)
    assert flow["status"]["phase"] == "Succeeded", flow["status"]

    async def no_jobs() -> bool:
        return not await driver.jobs(namespace)

    await wait_until(no_jobs, 60, what="the succeeded steps' Jobs deleted")
    flow = await driver.get(namespace, "lean")
    assert flow is not None
    assert step_phases(flow) == {"a": "Succeeded", "b": "Succeeded", "c": "Succeeded"}
    steps = {s["name"]: s for s in flow["status"]["steps"]}
    assert steps["a"]["outputs"]["parameters"] == [{"name": "succeeded", "value": "1"}]
    assert flow["status"]["phase"] == "Succeeded"

    async def logged() -> list[str] | None:
        lines = [line for line in controller.log_lines() if '"deleted job"' in line]
        return lines if len(lines) >= 3 else None

    deleted = await wait_until(logged, 30, what="the controller's log of the deletes")
    assert len(deleted) == 3  # each Job once
    assert all("jobRetention FailedOnly" in line for line in deleted)
