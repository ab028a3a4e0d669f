"""Planner: retries with backoff, their limit and the flow-wide budget, final failures — scheduled, not
polled."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from planner_time_rig import T0, reasons, step

from zen_flow.planner import CreateJob
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator


def retrying_flow(**retry: Any) -> Simulator:
    return Simulator(make_flow([job_step("a", retryPolicy=retry), job_step("b", "a")]), T0)


def test_failed_attempt_retries_after_the_backoff_with_a_new_job() -> None:
    sim = retrying_flow(limit=2, backoff={"type": "Fixed", "duration": "30s"})
    sim.reconcile()
    first = sim.running()[0]
    sim.fail(first)
    result = sim.reconcile()
    assert result.actions == ()
    assert step(sim).phase == "Retrying"
    # The failure's time is cut to the second (T0 stands for T0 up to T0 + 1 s): never less than 30 s.
    assert step(sim).next_retry_time == T0 + timedelta(seconds=31)
    assert result.requeue_after == 31
    assert reasons(sim) == ["StepRetrying"]
    sim.advance(30)
    assert sim.reconcile().actions == ()
    sim.advance(1)
    result = sim.reconcile()
    created = [a for a in result.actions if isinstance(a, CreateJob)]
    assert [(a.step, a.attempt) for a in created] == [("a", 1)]
    assert created[0].name != first
    assert created[0].name.endswith("-r1")
    assert first in sim.jobs  # the old attempt is kept for its logs
    assert (step(sim).phase, step(sim).retry_count) == ("Running", 1)
    assert step(sim).job_ref.name == created[0].name
    assert step(sim).start_time == T0  # set once, at the first attempt
    assert reasons(sim) == ["StepStarted"]
    sim.complete(created[0].name)
    sim.reconcile()
    assert step(sim).phase == "Succeeded"


def test_the_flow_message_says_when_a_retrying_step_tries_again_and_why() -> None:
    # status.steps[].nextRetryTime is in no printer column: MESSAGE (status.message) says it.
    retry = {"limit": 2, "backoff": {"type": "Fixed", "duration": "30s"}}
    sim = Simulator(
        make_flow([job_step("a", retryPolicy=retry), job_step("b", retryPolicy={"limit": 1})]), T0
    )
    sim.reconcile()
    a, b = sim.running()
    sim.fail(a)
    sim.reconcile()
    assert sim.flow.status.message == (
        "running: b; step a retrying at 2025-01-01T00:00:31Z (attempt 2 of 3): "
        "Job failed: BackoffLimitExceeded: Job has failed"
    )
    assert sim.reconcile().status is sim.flow.status  # the same words until something changes: no write
    sim.advance(5)
    sim.fail(b)  # its default backoff: 10 s
    sim.reconcile()
    assert sim.flow.status.message == "retrying: a at 2025-01-01T00:00:31Z, b at 2025-01-01T00:00:16Z"
    sim.advance(26)
    sim.reconcile()
    assert sim.flow.status.message == "running: a, b"


def test_retries_stop_at_the_limit() -> None:
    sim = retrying_flow(limit=2, backoff={"type": "Fixed", "duration": "1s"})
    sim.reconcile()
    for _ in range(3):
        sim.fail(sim.running()[0])
        sim.reconcile()
        sim.advance(2)
        sim.reconcile()
    assert step(sim).phase == "Failed"
    assert step(sim).retry_count == 2
    assert "retries exhausted: 2/2" in step(sim).message
    assert sim.phase == "Failed"
    assert len(sim.created) == 3
    assert len(set(sim.created)) == 3


def test_a_failure_a_failjob_rule_marked_final_is_not_retried_but_others_are() -> None:
    # The user's podFailurePolicy said exit code 42 is for good (FailJob): retrying it would run the same
    # failure again; a plain failure of the same step is still retried.
    sim = retrying_flow(limit=3, backoff={"type": "Fixed", "duration": "1s"})
    sim.reconcile()
    sim.fail(sim.running()[0])  # BackoffLimitExceeded: retried
    sim.reconcile()
    sim.advance(2)
    sim.reconcile()
    assert step(sim).retry_count == 1
    matched = "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 0"
    sim.fail(sim.running()[0], reason="PodFailurePolicy", message=matched)
    sim.reconcile()
    sim.advance(60)
    sim.reconcile()
    assert (step(sim).phase, sim.phase, len(sim.created)) == ("Failed", "Failed", 2)
    assert step(sim).message == (
        "attempt 2 failed, not retried (a FailJob rule of its podFailurePolicy marked it final): "
        f"Job failed: PodFailurePolicy: {matched}"
    )


def test_limit_zero_means_no_retry() -> None:
    sim = retrying_flow(limit=0)
    sim.reconcile()
    sim.fail(sim.running()[0])
    sim.reconcile()
    assert step(sim).phase == "Failed"
    assert sim.phase == "Failed"


def test_no_retry_policy_means_no_retry() -> None:
    sim = Simulator(make_flow([job_step("a")]), T0)
    sim.reconcile()
    sim.fail(sim.running()[0], message="boom")
    sim.reconcile()
    assert step(sim).phase == "Failed"
    assert step(sim).message == "Job failed: BackoffLimitExceeded: boom"


def test_retry_policy_without_limit_retries_three_times() -> None:
    sim = retrying_flow(backoff={"type": "Fixed", "duration": "1s"})
    sim.reconcile()
    attempts = 1
    while not sim.terminal:
        if sim.running():
            sim.fail(sim.running()[0])
        sim.reconcile()
        sim.advance(1)
        sim.reconcile()
        attempts = len(sim.created)
    assert attempts == 4


def test_the_flow_wide_backoff_limit_is_a_budget() -> None:
    # continueOnFailure keeps fail-fast out of the way: each step spends the budget on its own.
    retry = {"limit": 5, "backoff": {"type": "Fixed", "duration": "1s"}}
    steps = [job_step(n, retryPolicy=retry, continueOnFailure=True) for n in "xy"]
    sim = Simulator(make_flow(steps, execution_policy={"backoffLimit": 3}), T0)
    sim.reconcile()
    for _ in range(10):
        for name in sim.running():
            sim.fail(name)
        sim.reconcile()
        sim.advance(1)
        sim.reconcile()
        if sim.terminal:
            break
    total = sum(s.retry_count for s in sim.flow.status.steps)
    assert total == 3
    assert sim.phase == "Failed"
    assert any("backoffLimit=3 used up" in (s.message or "") for s in sim.flow.status.steps)


def test_two_failures_at_once_do_not_overdraw_the_budget() -> None:
    steps = [job_step(n, retryPolicy={"limit": 5}, continueOnFailure=True) for n in "xy"]
    sim = Simulator(make_flow(steps, execution_policy={"backoffLimit": 1}), T0)
    sim.reconcile()
    for name in sim.running():
        sim.fail(name)
    sim.reconcile()
    assert [s.phase for s in sim.flow.status.steps] == ["Retrying", "Failed"]


def test_a_final_failure_cancels_pending_retries() -> None:
    # Fail-fast: once a step failed for good, no new Job starts, retries included.
    steps = [job_step("x", retryPolicy={"limit": 5}), job_step("y")]
    sim = Simulator(make_flow(steps), T0)
    sim.reconcile()
    for name in sim.running():
        sim.fail(name)
    result = sim.reconcile()
    assert result.actions == ()
    assert sim.phase == "Failed"
    x = step(sim, "x")
    assert x.phase == "Failed"
    assert "not retried" in x.message


def test_retry_waits_while_suspended() -> None:
    sim = retrying_flow(limit=2, backoff={"type": "Fixed", "duration": "5s"})
    sim.reconcile()
    sim.fail(sim.running()[0])
    sim.reconcile()
    sim.set_suspend(True)
    sim.advance(60)
    result = sim.reconcile()
    assert result.actions == ()
    assert result.requeue_after is None
    assert sim.phase == "Suspended"
    sim.set_suspend(False)
    result = sim.reconcile()
    assert [a.attempt for a in result.actions if isinstance(a, CreateJob)] == [1]
    assert "FlowResumed" in reasons(sim)
