"""A stop (now or graceful) that meets another end of the flow: the last failure already decided the
outcome, or the controller's own delete for a timeout, the deadline or a replacement lost its status
write. Each end stays what it was; the stop adds no outcome of its own."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from graceful_stop_rig import ON_FAILURE, RETRY, T0, ending, job_of, reasons, stop
from test_planner_finally import FINALLY, by_step, failed_condition, started
from test_planner_joins import message, phases

from zen_flow.api.constants import (
    LABEL_CONCURRENCY_KEY,
)
from zen_flow.planner import DeleteJob
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.group import FlowGroup
from zen_flow_dev.testing.simulator import Simulator, run

# --- a stop that comes once the outcome is decided (review findings) --------------------------------------


@pytest.mark.parametrize("value", ["true", "RunFinally"])
def test_a_stop_after_the_last_failure_keeps_it(value: str) -> None:
    # a failed, and the stop landed before the controller looked: b can never run (a failed for good),
    # so every step has ended and the stop stops nothing. Before: b "not started: stopped by alice" and
    # the flow Stopped, hiding a's failure.
    sim = Simulator(make_flow([job_step("a"), job_step("b", "a")]), T0)
    sim.reconcile()
    sim.fail(job_of(sim, "a"))
    stop(sim, value)
    result = sim.reconcile()
    assert sim.phase == "Failed"
    assert failed_condition(sim) == (
        "StepFailed",
        "step a failed: Job failed: BackoffLimitExceeded: Job has failed",
    )
    assert message(sim, "b") == "dependency a failed"
    assert "FlowStopped" not in reasons(result)


def test_a_graceful_stop_after_the_last_failure_runs_the_finally_steps_and_keeps_it() -> None:
    sim = Simulator(make_flow([job_step("a"), job_step("b", "a"), job_step("cleanup", **ON_FAILURE)]), T0)
    sim.reconcile()
    sim.fail(job_of(sim, "a"))
    stop(sim)
    result = sim.reconcile()
    assert "FlowStopped" not in reasons(result)
    sim.reconcile()
    assert started(sim) == ["a", "cleanup"]  # flow.outcome Failed: the failure's, not the stop's
    run(sim, by_step(sim, {}))
    assert failed_condition(sim)[0] == "StepFailed"
    assert message(sim, "b") == "dependency a failed"


def test_a_graceful_stop_during_the_finally_steps_keeps_flow_outcome() -> None:
    # a succeeded, the finally steps run; a graceful stop comes then (it stops nothing of a's) and
    # cleanup's Job is deleted by someone else: cleanup ends "stopped by alice" (tolerated), the flow
    # ends Stopped, but flow.outcome stays a's, Succeeded, for every finally step of the run. Before:
    # the plans after cleanup ended judged it Failed, so rollback ran and report was skipped.
    on_success: dict[str, Any] = {"when": "flow.outcome == 'Succeeded'", **FINALLY}
    steps = [
        job_step("a"),
        job_step("cleanup", allowFailure=True, **FINALLY),
        job_step("check", allowFailure=True, **FINALLY),
        job_step("rollback", "cleanup", **ON_FAILURE),
        job_step("report", "cleanup", **on_success),
    ]
    sim = Simulator(make_flow(steps), T0)
    sim.reconcile()
    sim.complete(job_of(sim, "a"))
    sim.reconcile()
    sim.reconcile()
    assert sorted(started(sim)) == ["a", "check", "cleanup"]
    stop(sim)
    sim.vanish(job_of(sim, "cleanup"))
    sim.reconcile()
    assert message(sim, "cleanup") == "stopped by alice"
    run(sim, by_step(sim, {}))
    assert "rollback" not in started(sim)
    assert "report" in started(sim)
    assert message(sim, "rollback") == "when \"flow.outcome == 'Failed'\" is false"
    assert failed_condition(sim)[0] == "Stopped"  # the flow's own ending is the stop's, as before


@pytest.mark.parametrize("value", ["true", "RunFinally"])
def test_a_lost_write_of_a_stop_ends_a_step_after_a_stopped_one_for_the_stop(value: str) -> None:
    # x was stopped (its Job deleted) and the write lost; a had failed for good. b waits for both: the plan
    # that stopped x skipped b for a, and so must the next one, not for "dependency x failed"; c, after x
    # only, ends "not started: stopped by alice" in both.
    steps = [
        job_step("x"),
        job_step("a"),
        job_step("b", "x", "a"),
        job_step("c", "x"),
        job_step("cleanup", **FINALLY),
    ]
    endings = []
    for lose in (False, True):
        sim = Simulator(make_flow(steps), T0)
        sim.reconcile()
        sim.fail(job_of(sim, "a"))
        stop(sim, value)
        sim.reconcile(write_status=not lose)
        run(sim, by_step(sim, {}))
        endings.append(ending(sim))
        assert message(sim, "b") == "dependency a failed"
        assert message(sim, "c") == "not started: stopped by alice"
    assert endings[1] == endings[0]


# --- the controller's own deletes, their status write lost (review findings) ------------------------------


@pytest.mark.parametrize("value", ["true", "RunFinally"])
def test_a_timeout_whose_write_was_lost_stays_a_timeout_when_a_stop_lands(value: str) -> None:
    # The plan that deleted a's Job for its timeout lost its write (the stop annotation written meanwhile
    # bumps the resourceVersion: a 409). The next plan sees the stop and a's Job gone: our own delete for
    # the timeout, not the stop's (before: a "stopped by alice", and a graceful stop, which then stopped
    # nothing, ended Stopped instead of StepFailed).
    endings = []
    for lose in (False, True):
        sim = Simulator(make_flow([job_step("a", timeoutSeconds=10), job_step("cleanup", **FINALLY)]), T0)
        sim.reconcile()
        sim.advance(12)
        result = sim.reconcile(write_status=not lose)
        assert [a.reason for a in result.actions if isinstance(a, DeleteJob)] == ["timed out after 10s"]
        stop(sim, value)
        run(sim, by_step(sim, {}))
        assert message(sim, "a") == "timed out after 10s"
        endings.append(ending(sim))
    assert endings[1] == endings[0]


def flow_past_its_deadline(lose: bool, *, graceful: bool, **cleanup: Any) -> Simulator:
    """a runs (a graceful stop: cleanup runs) when the flow's deadline passes; that plan's write is lost
    or kept."""
    steps = [job_step("a"), job_step("cleanup", **FINALLY, **cleanup)]
    sim = Simulator(make_flow(steps, execution_policy={"activeDeadlineSeconds": 60}), T0)
    sim.reconcile()
    if graceful:
        stop(sim)
        sim.reconcile()
        sim.reconcile()
        assert phases(sim)["cleanup"] == "Running"
    sim.advance(61)
    result = sim.reconcile(write_status=not lose)
    assert [a.reason for a in result.actions if isinstance(a, DeleteJob)] == ["flow deadline exceeded"]
    run(sim, by_step(sim, {}))
    return sim


@pytest.mark.parametrize("graceful", [False, True])
@pytest.mark.parametrize("retry", [{}, RETRY])
def test_a_lost_write_of_the_deadline_still_ends_deadline_exceeded(
    graceful: bool, retry: dict[str, Any]
) -> None:
    # The next plan finds the Job the deadline deleted gone: that delete's, not one outside zen-flow
    # (before: the flow FinallyStepFailed, StepFailed or, after a graceful stop, Stopped "...finally step
    # cleanup failed: Job ... not found (deleted outside zen-flow)"; with a retryPolicy the step's message
    # said so).
    kept = flow_past_its_deadline(False, graceful=graceful, **retry)
    lost = flow_past_its_deadline(True, graceful=graceful, **retry)
    assert ending(lost) == ending(kept)
    assert failed_condition(lost) == ("DeadlineExceeded", "flow deadline of 60s exceeded")
    running = "cleanup" if graceful else "a"
    assert message(lost, running) == "flow deadline exceeded"


def test_a_lost_write_of_a_replacement_during_a_graceful_stop_still_ends_replaced() -> None:
    labels = {LABEL_CONCURRENCY_KEY: "k"}
    policy = {"concurrencyPolicy": "Replace"}
    steps = [job_step("a"), job_step("cleanup", **FINALLY)]
    endings = []
    for lose in (False, True):
        group = FlowGroup(T0)
        old = group.add(make_flow(steps, name="old", labels=labels, execution_policy=policy, created=T0))
        group.reconcile("old")
        stop(old)
        group.reconcile("old")
        group.reconcile("old")
        assert phases(old)["cleanup"] == "Running"
        group.advance(5)
        later = T0 + timedelta(seconds=5)
        group.add(make_flow(steps, name="new", labels=labels, execution_policy=policy, created=later))
        group.reconcile("new")
        result = old.reconcile(write_status=not lose, peers=group.peers("old"))
        assert [a.reason for a in result.actions if isinstance(a, DeleteJob)] == ["replaced by a newer flow"]
        group.reconcile("old")
        endings.append(ending(old))
    assert endings[1] == endings[0]
    assert endings[0][1] == ("Replaced", "replaced by newer flow new (concurrency group k)")


def test_a_finally_step_a_lost_stop_now_deleted_is_not_run_again_when_the_value_turns_to_run_finally() -> (
    None
):
    # a failed (fail-fast), cleanup runs; a stop now deletes its Job and loses its write; then the value is
    # changed to RunFinally. The next plan finds cleanup's Job gone under a stop: it ends "stopped by bob",
    # never retried (before: "deleted outside zen-flow", retried by its retryPolicy: its Job created twice).
    steps = [job_step("a"), job_step("cleanup", **FINALLY, **RETRY), job_step("notify", "cleanup", **FINALLY)]
    sim = Simulator(make_flow(steps), T0)
    sim.reconcile()
    sim.fail(job_of(sim, "a"))
    sim.reconcile()
    sim.reconcile()
    assert phases(sim)["cleanup"] == "Running"
    stop(sim, "true")
    sim.reconcile(write_status=False)
    stop(sim, "RunFinally", "bob")
    result = sim.reconcile()
    assert (phases(sim)["cleanup"], message(sim, "cleanup")) == ("Failed", "stopped by bob")
    assert reasons(result).count("FlowStopped") == 1
    run(sim, by_step(sim, {}))
    assert started(sim) == ["a", "cleanup", "notify"]  # the finally steps after it still run
    assert failed_condition(sim) == ("Stopped", "stopped by bob")
