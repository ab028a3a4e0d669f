"""Parameters end to end: an output value read from a real finished Job reaches the next step's Job.

Runs its own `zen-flow run` process watching only the test's namespace (as tests/e2e/test_engine.py).
"""

from __future__ import annotations

from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver, step_phases
from zen_flow_dev.testing.flows import flow_manifest, job_step, job_template


async def test_an_output_value_reaches_the_dependent_job(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    consumer = job_template()
    consumer["metadata"] = {"annotations": {"example.com/count": "{{inputs.parameters.count}}"}}
    consumer["spec"]["template"]["spec"]["containers"][0]["args"] = ["--count={{.Parameters.count}}"]
    a = job_step(
        "a", outputs={"parameters": [{"name": "succeeded", "valueFrom": {"jsonPath": "$.succeeded"}}]}
    )
    b = job_step(
        "b",
        "a",
        template=consumer,
        inputs={
            "parameters": [
                {"name": "count", "valueFrom": {"jsonPath": "a:$.outputs.parameters.succeeded"}},
                {"name": "done", "valueFrom": {"jsonPath": "a:$.conditions[-1].type"}},  # a's Job status
            ]
        },
    )
    start_controller()
    await driver.create(flow_manifest("params", namespace, [a, b]))
    flow = await driver.wait_phase(namespace, "params", timeout=90)

    assert flow["status"]["phase"] == "Succeeded", flow["status"]
    assert step_phases(flow) == {"a": "Succeeded", "b": "Succeeded"}
    steps = {s["name"]: s for s in flow["status"]["steps"]}
    assert steps["a"]["outputs"]["parameters"] == [{"name": "succeeded", "value": "1"}]

    jobs = {j["metadata"]["labels"]["workflow.kube-zen.io/step"]: j for j in await driver.jobs(namespace)}
    job_b = jobs["b"]
    assert job_b["metadata"]["annotations"]["example.com/count"] == "1"
    main = job_b["spec"]["template"]["spec"]["containers"][0]
    assert main["args"] == ["--count=1"]
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env["ZF_PARAM_COUNT"] == "1"
    assert env["ZF_PARAM_DONE"] == "Complete"
    # The dependent started only after the value was committed: its Job is younger than a's completion.
    assert job_b["metadata"]["creationTimestamp"] >= steps["a"]["completionTime"]
