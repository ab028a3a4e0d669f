"""State transitions a user drives or waits for, with the controller running against the apiserver (the
planner simulator proves them in the unit tier; here they go through the real API, watches and status
writes): the flow deadline and its finally grace, suspend and resume, approval and rejection. The test
plays the Job controller (controller_steps)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from controller_steps import WAIT, conditions, finish, jobs_by_step, wait_steps

from zen_flow.api.constants import LABEL_CONCURRENCY_KEY
from zen_flow.api.meta import parse_time
from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver, step_phases, wait_until
from zen_flow_dev.testing.flows import flow_manifest, job_step, manual_step

pytestmark = pytest.mark.integration


async def test_the_flow_deadline_stops_it_no_earlier_than_due(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    start_controller()
    deadline = {"activeDeadlineSeconds": 3}
    await driver.create(
        flow_manifest("bounded", namespace, [job_step("a"), job_step("b", "a")], executionPolicy=deadline)
    )
    await wait_steps(driver, namespace, "bounded", {"a": "Running"})

    flow = await driver.wait_phase(namespace, "bounded", timeout=WAIT)  # nobody finishes Job a
    status = flow["status"]
    assert status["phase"] == "Failed"
    failed = conditions(flow)["Failed"]
    assert failed["reason"] == "DeadlineExceeded"
    assert failed["message"] == "flow deadline of 3s exceeded"
    assert step_phases(flow) == {"a": "Failed", "b": "Skipped"}
    ran = parse_time(status["completionTime"]) - parse_time(status["startTime"])
    assert ran.total_seconds() >= 3
    # The running Job was stopped (deleted), not left behind.
    left = [
        j
        for j in (await jobs_by_step(driver, namespace)).get("a", [])
        if not j["metadata"].get("deletionTimestamp")
    ]
    assert left == []


async def test_the_finally_grace_ends_the_other_steps_and_runs_the_finally_steps_before_the_deadline(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    start_controller()
    policy = {"activeDeadlineSeconds": 20, "finallyGraceSeconds": 10}
    steps = [
        job_step("a"),
        job_step("b", "a"),
        job_step("cleanup", when="flow.outcome == 'Failed'", **{"finally": True}),
    ]
    await driver.create(flow_manifest("graced", namespace, steps, executionPolicy=policy))
    await wait_steps(driver, namespace, "graced", {"a": "Running"})

    # Nobody finishes Job a: at startTime + 10 s it is stopped, and cleanup starts (one write later).
    flow = await wait_steps(
        driver, namespace, "graced", {"a": "Failed", "b": "Skipped", "cleanup": "Running"}
    )
    said = "flow deadline: the last 10s of activeDeadlineSeconds (20s) are kept for the finally steps"
    steps_now = {s["name"]: s for s in flow["status"]["steps"]}
    assert steps_now["a"]["message"] == said
    assert steps_now["b"]["message"] == "not started: " + said
    assert flow["status"]["phase"] == "Running"
    started = parse_time(flow["status"]["startTime"])
    assert (parse_time(steps_now["a"]["completionTime"]) - started).total_seconds() >= 10
    left = [
        j
        for j in (await jobs_by_step(driver, namespace)).get("a", [])
        if not j["metadata"].get("deletionTimestamp")
    ]
    assert left == []  # stopped (deleted), not left running

    await finish(driver, namespace, "cleanup")
    flow = await driver.wait_phase(namespace, "graced", timeout=WAIT)
    assert flow["status"]["phase"] == "Failed"
    failed = conditions(flow)["Failed"]
    assert (failed["reason"], failed["message"]) == ("DeadlineExceeded", said)
    assert step_phases(flow) == {"a": "Failed", "b": "Skipped", "cleanup": "Succeeded"}
    ended = parse_time(flow["status"]["completionTime"]) - started
    assert ended.total_seconds() < 20  # within the deadline: the finally step had its time


async def test_suspend_holds_new_steps_and_resume_goes_on(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    start_controller()
    await driver.create(flow_manifest("held", namespace, [job_step("a"), job_step("b", "a")], suspend=True))
    flow = await driver.wait_phase(namespace, "held", phases=("Suspended",), timeout=WAIT)
    assert conditions(flow)["Suspended"]["status"] == "True"
    assert await jobs_by_step(driver, namespace) == {}  # the status says it decided: nothing started

    await driver.patch(namespace, "held", {"spec": {"suspend": False}})
    await wait_steps(driver, namespace, "held", {"a": "Running", "b": "Pending"})
    # Suspended while a runs: a goes on, b does not start when a finishes.
    await driver.patch(namespace, "held", {"spec": {"suspend": True}})
    await driver.wait_phase(namespace, "held", phases=("Suspended",), timeout=WAIT)
    await finish(driver, namespace, "a")
    flow = await wait_steps(driver, namespace, "held", {"a": "Succeeded", "b": "Pending"})
    assert flow["status"]["phase"] == "Suspended"
    assert sorted(await jobs_by_step(driver, namespace)) == ["a"]

    await driver.patch(namespace, "held", {"spec": {"suspend": False}})
    await wait_steps(driver, namespace, "held", {"b": "Running"})
    await finish(driver, namespace, "b")
    flow = await driver.wait_phase(namespace, "held", timeout=WAIT)
    assert flow["status"]["phase"] == "Succeeded"
    assert conditions(flow)["Suspended"]["status"] == "False"


def _gated(name: str, namespace: str) -> dict[str, Any]:
    return flow_manifest(
        name, namespace, [job_step("build"), manual_step("gate", "build"), job_step("ship", "gate")]
    )


@pytest.mark.parametrize(
    ("verb", "gate", "ship"), [("approve", "Succeeded", "Running"), ("reject", "Failed", "Skipped")]
)
async def test_a_gate_waits_for_its_decision(
    namespace: str, driver: FlowDriver, start_controller: StartController, verb: str, gate: str, ship: str
) -> None:
    start_controller()
    await driver.create(_gated("release", namespace))
    await wait_steps(driver, namespace, "release", {"build": "Running"})
    await finish(driver, namespace, "build")
    flow = await driver.wait_phase(namespace, "release", phases=("Paused",), timeout=WAIT)
    assert step_phases(flow)["gate"] == "PendingApproval"
    assert conditions(flow)["WaitingForApproval"]["status"] == "True"
    assert sorted(await jobs_by_step(driver, namespace)) == ["build"]

    annotation = {f"{verb}.workflow.kube-zen.io/gate": "true"}
    await driver.patch(namespace, "release", {"metadata": {"annotations": annotation}})
    flow = await wait_steps(driver, namespace, "release", {"gate": gate, "ship": ship})
    assert conditions(flow)["WaitingForApproval"]["status"] == "False"
    decision = "Approved" if verb == "approve" else "Rejected"
    assert [(a["step"], a["decision"]) for a in flow["status"]["audit"]["approvals"]] == [("gate", decision)]
    if verb == "reject":
        flow = await driver.wait_phase(namespace, "release", timeout=WAIT)
        assert flow["status"]["phase"] == "Failed"
        assert sorted(await jobs_by_step(driver, namespace)) == ["build"]  # ship never created
    else:
        await finish(driver, namespace, "ship")
        flow = await driver.wait_phase(namespace, "release", timeout=WAIT)
        assert flow["status"]["phase"] == "Succeeded"


async def test_forbid_lets_exactly_one_of_two_simultaneous_flows_run_first(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    start_controller(extra_args=["--workers", "8"])
    groups = [f"nightly-{n}" for n in range(4)]
    manifests = [
        flow_manifest(
            f"{group}-{twin}", namespace, [job_step("a")], labels={LABEL_CONCURRENCY_KEY: group},
            executionPolicy={"concurrencyPolicy": "Forbid"},
        )
        for group in groups
        for twin in ("x", "y")
    ]  # fmt: skip
    await asyncio.gather(*(driver.create(m) for m in manifests))  # the same instant, eight workers

    async def decided() -> list[dict[str, Any]] | None:
        flows = [await driver.get(namespace, m["metadata"]["name"]) for m in manifests]
        phases = [((f or {}).get("status") or {}).get("phase") for f in flows]
        return (
            [f for f in flows if f]
            if all(p in ("Running", "Pending") for p in phases) and len(flows) == 8
            else None
        )

    flows = await wait_until(decided, WAIT, what="every flow to be started or queued")
    for group in groups:
        twins = [f for f in flows if f["metadata"]["labels"][LABEL_CONCURRENCY_KEY] == group]
        running = [f["metadata"]["name"] for f in twins if f["status"]["phase"] == "Running"]
        queued = [f for f in twins if conditions(f)["Queued"]["status"] == "True"]
        assert len(running) == 1, f"{group}: {[(f['metadata']['name'], f['status']['phase']) for f in twins]}"
        assert len(queued) == 1
    jobs = await driver.jobs(namespace)
    assert len(jobs) == len(groups)  # one Job per group: the queued twin never created one


async def test_a_gate_nobody_decides_is_rejected_after_its_timeout(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    start_controller()
    steps = [job_step("build"), manual_step("gate", "build", timeoutSeconds=2), job_step("ship", "gate")]
    await driver.create(flow_manifest("expiring", namespace, steps))
    await wait_steps(driver, namespace, "expiring", {"build": "Running"})
    await finish(driver, namespace, "build")
    paused = await driver.wait_phase(namespace, "expiring", phases=("Paused",), timeout=WAIT)
    flow = await driver.wait_phase(namespace, "expiring", timeout=WAIT)
    assert flow["status"]["phase"] == "Failed"
    assert step_phases(flow) == {"build": "Succeeded", "gate": "Failed", "ship": "Skipped"}
    gate = next(s for s in flow["status"]["steps"] if s["name"] == "gate")
    assert gate["message"] == "rejected: no decision within 2s (timeoutSeconds)"
    reached = next(s for s in paused["status"]["steps"] if s["name"] == "gate")["startTime"]
    assert (parse_time(gate["completionTime"]) - parse_time(reached)).total_seconds() >= 2
    assert sorted(await jobs_by_step(driver, namespace)) == ["build"]
