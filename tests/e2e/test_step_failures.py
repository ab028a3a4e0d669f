"""Step failures end to end on the full local cluster: a failure fails the flow and skips its dependents,
or is tolerated (`allowFailure`, `continueOnFailure`), retried, or final by a FailJob rule.

Each test runs its own `zen-flow run` process watching only the test's namespace.
"""

from __future__ import annotations

from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver, jobs_by_step, step_phases
from zen_flow_dev.testing.flows import flow_manifest, job_step, job_template


async def test_failing_step_fails_the_flow_and_skips_dependents(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    steps = [
        job_step("extract"),
        job_step("transform", "extract", template=job_template(exit_code=3)),
        job_step("load", "transform"),
        job_step("report", "load"),
    ]
    start_controller()
    await driver.create(flow_manifest("etl", namespace, steps))
    flow = await driver.wait_phase(namespace, "etl", timeout=60)
    assert flow["status"]["phase"] == "Failed"
    assert step_phases(flow) == {
        "extract": "Succeeded",
        "transform": "Failed",
        "load": "Skipped",
        "report": "Skipped",
    }
    # How the container ended, read from the failed pod: what a user debugging the step needs first.
    transform = next(s for s in flow["status"]["steps"] if s["name"] == "transform")
    assert transform["message"].startswith("Job failed: main: exit code 3; ")
    assert sorted(jobs_by_step(await driver.jobs(namespace))) == ["extract", "transform"]


async def test_a_failure_allowed_by_allow_failure_lets_the_flow_succeed(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    steps = [
        job_step("build"),
        job_step("lint", "build", template=job_template(exit_code=3), allowFailure=True),
        job_step("package", "lint"),
    ]
    controller = start_controller()
    await driver.create(flow_manifest("release", namespace, steps))
    flow = await driver.wait_phase(namespace, "release", timeout=60)
    assert flow["status"]["phase"] == "Succeeded", flow["status"]
    assert step_phases(flow) == {"build": "Succeeded", "lint": "Failed", "package": "Succeeded"}
    complete = next(c for c in flow["status"]["conditions"] if c["type"] == "Complete")
    said = "2 steps succeeded, 1 failed with allowFailure: lint"
    assert (complete["status"], complete["reason"], complete["message"]) == (
        "True",
        "SucceededWithFailures",
        said,
    )
    # Failed in the step metrics, and counted apart as tolerated: ZenFlowStepsFailing leaves it out. Both
    # went up at lint's own write, before package started.
    assert controller.metric("zen_flow_step_transitions_total", namespace=namespace, phase="Failed") == 1
    assert controller.metric("zen_flow_step_failures_allowed_total", namespace=namespace) == 1


async def test_continue_on_failure_lets_dependents_run(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    steps = [
        job_step("flaky", template=job_template(exit_code=1), continueOnFailure=True),
        job_step("after", "flaky"),
    ]
    start_controller()
    await driver.create(flow_manifest("tolerant", namespace, steps))
    flow = await driver.wait_phase(namespace, "tolerant", timeout=60)
    assert step_phases(flow) == {"flaky": "Failed", "after": "Succeeded"}
    # The original's meaning is kept: a failed step fails the flow even when its dependents ran.
    assert flow["status"]["phase"] == "Failed"


async def test_retry_creates_a_new_job_and_succeeds_on_a_later_attempt(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    retry = {"limit": 3, "backoff": {"type": "Fixed", "duration": "1s"}}
    steps = [job_step("flaky", template=job_template(exit_code=2, fail_attempts=2), retryPolicy=retry)]
    start_controller()
    await driver.create(flow_manifest("retrying", namespace, steps))
    flow = await driver.wait_phase(namespace, "retrying", timeout=90)
    assert flow["status"]["phase"] == "Succeeded", flow["status"]
    step = flow["status"]["steps"][0]
    assert step["retryCount"] == 2
    names = jobs_by_step(await driver.jobs(namespace))["flaky"]
    assert len(set(names)) == 3  # one Job per attempt, old attempts kept for logs
    assert step["jobRef"]["name"] in names


async def test_a_failure_a_failjob_rule_marks_final_is_not_retried(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    # The real Job controller applies the flow's podFailurePolicy (copied into the Job): exit code 42 is
    # final. The step's retryPolicy would retry it 3 times; it does not, and says why.
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}
    retry = {"limit": 3, "backoff": {"type": "Fixed", "duration": "1s"}}
    steps = [job_step("migrate", template=job_template(exit_code=42), retryPolicy=retry)]
    start_controller()
    await driver.create(
        flow_manifest("final", namespace, steps, executionPolicy={"podFailurePolicy": policy})
    )
    flow = await driver.wait_phase(namespace, "final", timeout=60)
    assert flow["status"]["phase"] == "Failed"
    step = flow["status"]["steps"][0]
    assert step["message"].startswith(
        "attempt 1 failed, not retried (a FailJob rule of its podFailurePolicy marked it final): "
        "Job failed: main: exit code 42; PodFailurePolicy: "
    )
    assert len(jobs_by_step(await driver.jobs(namespace))["migrate"]) == 1
