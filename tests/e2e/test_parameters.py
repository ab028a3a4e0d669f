"""Parameters end to end: an output value read from a real finished Job reaches the next step's Job.

Runs its own `zen-flow run` process watching only the test's namespace (as tests/e2e/test_engine.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from zen_flow.testing.controller import ControllerProcess
from zen_flow.testing.driver import FlowDriver, step_phases
from zen_flow.testing.flows import flow_manifest, job_step, job_template

StartController = Callable[..., ControllerProcess]


@pytest.fixture
def start_controller(
    kubeconfig: Path, namespace: str, tmp_path: Path, request: pytest.FixtureRequest, jobflow_crd: Any
) -> Iterator[StartController]:
    started: list[ControllerProcess] = []

    def start(**kwargs: Any) -> ControllerProcess:
        kwargs.setdefault("namespaces", [namespace])
        proc = ControllerProcess(kubeconfig, tmp_path / f"controller-{len(started)}.log", **kwargs)
        started.append(proc.start())
        proc.wait_ready()
        return proc

    yield start
    for n, proc in enumerate(started):
        proc.stop()
        request.node.add_report_section("teardown", f"controller-{n} log", proc.log_tail(60))


@pytest.fixture
async def driver(kubeconfig: Path) -> AsyncIterator[FlowDriver]:
    drv = await FlowDriver.connect(kubeconfig)
    yield drv
    await drv.close()


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
