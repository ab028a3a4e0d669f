"""Planner: a graceful stop (`workflow.kube-zen.io/stop: RunFinally`, `zen-flow stop --run-finally`) ends
the steps that are not finally as a stop does, then runs the finally steps with `flow.outcome` Failed;
the flow ends Failed, reason Stopped. Any other value stays the stop now (test_planner_interventions,
test_planner_finally). Every plan is made again from the flow and its Jobs, so a lost status write or a
restart in the middle ends the same way."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_planner_finally import FINALLY, by_step, failed_condition, started
from test_planner_joins import message, phases
from test_planner_properties import MAX_ROUNDS, check_plan, perturb, random_flows

from zen_flow.api import JobFlow
from zen_flow.api.constants import (
    ANNOTATION_RETRIED_BY,
    ANNOTATION_RETRY,
    ANNOTATION_RETRY_STEPS,
    ANNOTATION_STOP,
    ANNOTATION_STOPPED_BY,
    LABEL_CONCURRENCY_KEY,
    StepPhase,
)
from zen_flow.api.flow_status import StepStatus
from zen_flow.planner import CreateJob, DeleteJob, Plan
from zen_flow.planner.interventions import stopped_by_request
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.group import FlowGroup
from zen_flow_dev.testing.simulator import Simulator, run

T0 = datetime(2025, 1, 1, tzinfo=UTC)
RETRY: dict[str, Any] = {"retryPolicy": {"limit": 3, "backoff": {"type": "Fixed", "duration": "1s"}}}
ON_FAILURE: dict[str, Any] = {"when": "flow.outcome == 'Failed'", **FINALLY}


def flow(**spec: Any) -> Simulator:
    """build, then test and lint (test retries), a gate after lint, a publish step after both; finally:
    cleanup when the flow failed, then notify."""
    steps = [
        job_step("build"),
        job_step("test", "build", **RETRY),
        job_step("lint", "build"),
        manual_step("gate", "lint"),
        job_step("publish", "test", "gate"),
        job_step("cleanup", **ON_FAILURE),
        job_step("notify", "cleanup", **FINALLY),
    ]
    return Simulator(make_flow(steps, **spec), T0)


def to_the_gate(sim: Simulator) -> None:
    """build succeeded, lint succeeded (the gate waits for a decision), test runs."""
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.reconcile()
    sim.complete(job_of(sim, "lint"))
    sim.reconcile()
    assert phases(sim) == {
        "build": "Succeeded",
        "test": "Running",
        "lint": "Succeeded",
        "gate": "PendingApproval",
        "publish": "Pending",
        "cleanup": "Pending",
        "notify": "Pending",
    }


def job_of(sim: Simulator, step: str) -> str:
    return next(j for j in sim.running() if sim.steps[j] == step)


def stop(sim: Simulator, value: str = "RunFinally", user: str = "alice") -> None:
    sim.annotate(ANNOTATION_STOP, value)
    sim.annotate(ANNOTATION_STOPPED_BY, user)


def reasons(result: Plan) -> list[str]:
    return [e.reason for e in result.events]


def test_a_graceful_stop_stops_the_other_steps_then_runs_the_finally_steps_and_fails_stopped() -> None:
    sim = flow()
    to_the_gate(sim)
    test = job_of(sim, "test")
    stop(sim)
    result = sim.reconcile()
    assert [(a.name, a.reason) for a in result.actions if isinstance(a, DeleteJob)] == [
        (test, "stopped by alice")
    ]
    # The other steps end, and that is written before the finally steps start.
    assert [a.step for a in result.actions if isinstance(a, CreateJob)] == []
    assert message(sim, "cleanup") == "waiting for the status that ends the other steps to be written"
    assert sim.flow.status.message == "stopped by alice; the finally steps start next: cleanup"
    assert reasons(result).count("FlowStopped") == 1
    # The plan that write brings starts those that may start, seeing Failed.
    second = sim.reconcile()
    assert [a.step for a in second.actions if isinstance(a, CreateJob)] == ["cleanup"]
    assert phases(sim) == {
        "build": "Succeeded",
        "test": "Failed",
        "lint": "Succeeded",
        "gate": "Skipped",
        "publish": "Skipped",
        "cleanup": "Running",
        "notify": "Pending",
    }
    assert message(sim, "test") == "stopped by alice"  # not retried: its retryPolicy does not apply
    assert message(sim, "gate") == "no decision: stopped by alice"
    assert message(sim, "publish") == "not started: stopped by alice"
    assert message(sim, "cleanup") == ""
    assert sim.phase == "Running"
    assert (sim.flow.status.message or "").startswith("stopped by alice")
    assert "FlowStopped" not in reasons(second)  # said once
    assert "FlowFailed" not in reasons(result) + reasons(second)

    sim.complete(job_of(sim, "cleanup"))
    sim.reconcile()
    assert started(sim)[-1] == "notify"
    sim.complete(job_of(sim, "notify"))
    end = sim.reconcile()
    assert sim.phase == "Failed"
    assert failed_condition(sim) == ("Stopped", "stopped by alice")
    assert (phases(sim)["cleanup"], phases(sim)["notify"]) == ("Succeeded", "Succeeded")
    assert "FlowStopped" not in reasons(end)  # said once, at the stop
    assert "FlowFailed" in reasons(end)
    assert started(sim).count("test") == 1


def test_a_failed_finally_step_is_said_beside_the_stop() -> None:
    sim = flow()
    to_the_gate(sim)
    stop(sim)
    sim.reconcile()
    sim.reconcile()  # brought by the stopping plan's write: starts cleanup
    sim.fail(job_of(sim, "cleanup"))
    run(sim, by_step(sim, {}))
    assert phases(sim)["notify"] == "Succeeded"  # finally steps do not fail-fast each other
    reason, text = failed_condition(sim)
    assert reason == "Stopped"
    assert text.startswith("stopped by alice; finally step cleanup failed: Job failed")


def test_the_value_is_read_in_any_case() -> None:
    for value in ("RunFinally", "runfinally", " RUNFINALLY "):
        sim = flow()
        to_the_gate(sim)
        stop(sim, value)
        sim.reconcile()
        sim.reconcile()
        assert phases(sim)["cleanup"] == "Running", value


def test_any_other_value_stops_now_and_runs_no_finally_step() -> None:
    for value in ("true", "run-finally", "RunFinallyPlease"):
        sim = flow()
        to_the_gate(sim)
        stop(sim, value)
        sim.reconcile()
        assert sim.phase == "Failed", value
        assert phases(sim)["cleanup"] == "Skipped"
        assert message(sim, "cleanup") == "not started: stopped by alice"


def test_without_finally_steps_a_graceful_stop_is_the_stop_now() -> None:
    steps = [job_step("a"), job_step("b", **RETRY), job_step("c", "a", "b"), manual_step("gate", "c")]
    outcomes = []
    for value in ("true", "RunFinally"):
        sim = Simulator(make_flow(steps), T0)
        sim.reconcile()
        stop(sim, value)
        result = sim.reconcile()
        outcomes.append((result.actions, result.events, sim.flow.status))
    assert outcomes[0] == outcomes[1]
    assert outcomes[1][2].phase == "Failed"


def test_a_running_finally_step_goes_on_and_a_stop_that_stops_nothing_keeps_the_outcome() -> None:
    # Every other step had ended: the graceful stop has nothing to stop. The running finally step is not
    # deleted, the one after it still runs, and the flow ends as its steps did (as a stop that comes
    # once every step has finished).
    steps = [job_step("a"), job_step("cleanup", **FINALLY), job_step("notify", "cleanup", **FINALLY)]
    sim = Simulator(make_flow(steps), T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.reconcile()
    sim.reconcile()
    assert phases(sim)["cleanup"] == "Running"
    stop(sim)
    result = sim.reconcile()
    assert not [a for a in result.actions if isinstance(a, DeleteJob)]
    assert "FlowStopped" not in reasons(result)
    run(sim, by_step(sim, {}))
    assert sim.phase == "Succeeded"
    assert phases(sim)["notify"] == "Succeeded"


def test_a_stop_now_while_the_finally_steps_of_a_graceful_stop_run_stops_them_at_once() -> None:
    sim = flow()
    to_the_gate(sim)
    stop(sim)
    sim.reconcile()
    sim.reconcile()
    cleanup = job_of(sim, "cleanup")
    stop(sim, "true", "bob")  # the webhook writes stopped-by again: the value changed
    result = sim.reconcile()
    assert [a.name for a in result.actions if isinstance(a, DeleteJob)] == [cleanup]
    assert sim.phase == "Failed"
    assert failed_condition(sim) == ("Stopped", "stopped by bob")
    assert (phases(sim)["cleanup"], message(sim, "cleanup")) == ("Failed", "stopped by bob")
    assert message(sim, "notify") == "not started: stopped by bob"
    assert "FlowStopped" in reasons(result)  # a second request, said as such
    assert "notify" not in started(sim)


def test_the_flow_deadline_during_a_graceful_stop_stops_the_finally_steps() -> None:
    sim = flow(execution_policy={"activeDeadlineSeconds": 60})
    to_the_gate(sim)
    stop(sim)
    sim.reconcile()
    sim.reconcile()
    sim.advance(60)
    sim.reconcile()
    assert sim.phase == "Failed"
    assert failed_condition(sim)[0] == "DeadlineExceeded"
    assert phases(sim)["cleanup"] == "Failed"
    assert not sim.running()


def test_a_graceful_stop_of_a_flow_that_has_not_started_runs_no_finally_step() -> None:
    # Nothing ran to clean up after; a flow queued or suspended before its first step would otherwise
    # wait for its turn to run its cleanup.
    sim = flow(suspend=True)
    sim.reconcile()
    assert sim.phase == "Suspended"
    stop(sim)
    result = sim.reconcile()
    assert not [a for a in result.actions if isinstance(a, CreateJob)]
    assert sim.phase == "Failed"
    assert failed_condition(sim) == ("Stopped", "stopped by alice")
    assert message(sim, "cleanup") == "not started: stopped by alice"


def test_a_suspended_flow_stopped_gracefully_runs_its_finally_steps_once_resumed() -> None:
    sim = flow()
    to_the_gate(sim)
    sim.set_suspend(True)
    stop(sim)
    result = sim.reconcile()
    assert [a.reason for a in result.actions if isinstance(a, DeleteJob)] == ["stopped by alice"]
    assert not [a for a in result.actions if isinstance(a, CreateJob)]
    assert phases(sim)["cleanup"] == "Pending"
    sim.set_suspend(False)
    run(sim, by_step(sim, {}))
    assert failed_condition(sim) == ("Stopped", "stopped by alice")
    assert phases(sim)["notify"] == "Succeeded"


def test_the_outcome_stays_failed_for_finally_steps_decided_in_a_later_plan() -> None:
    # The stop only skipped steps (a waiting gate): no step failed. Under parallelism 1 the second finally
    # step's `when` is decided at its slot, plans later: the status must still say the flow was stopped.
    steps = [
        manual_step("gate"),
        job_step("after", "gate"),
        job_step("first", **ON_FAILURE),
        job_step("second", **ON_FAILURE),
    ]
    sim = Simulator(make_flow(steps, execution_policy={"parallelism": 1}), T0)
    sim.reconcile()
    stop(sim)
    sim.reconcile()
    sim.reconcile()
    assert started(sim) == ["first"]
    run(sim, by_step(sim, {}))
    assert phases(sim) == {"gate": "Skipped", "after": "Skipped", "first": "Succeeded", "second": "Succeeded"}
    assert failed_condition(sim) == ("Stopped", "stopped by alice")


def test_a_rerun_is_refused_while_the_request_is_set_then_runs_the_stopped_and_finally_steps() -> None:
    sim = flow()
    to_the_gate(sim)
    stop(sim)
    run(sim, by_step(sim, {}))
    assert sim.phase == "Failed"
    sim.annotate(ANNOTATION_RETRY, "r1")
    sim.annotate(ANNOTATION_RETRIED_BY, "carol")
    result = sim.reconcile()
    assert "RetryIgnored" in reasons(result)
    sim.annotate(ANNOTATION_STOP, None)  # what `zen-flow retry` does
    sim.annotate(ANNOTATION_RETRY, "r2")
    sim.reconcile()
    assert phases(sim)["test"] == "Running"
    assert phases(sim)["gate"] == "PendingApproval"


# --- lost status writes and restarts ---------------------------------------------------------------------


def ending(sim: Simulator) -> tuple[Any, ...]:
    steps = tuple((s.name, s.phase, s.message, s.retry_count) for s in sim.flow.status.steps)
    return sim.phase, failed_condition(sim), steps, sorted(started(sim))


def test_a_lost_write_of_the_stopping_plan_ends_the_same_way() -> None:
    # The plan that deleted test's Job and created cleanup's loses its status write (a 409, a leader
    # change): the next plan sees test Running with its Job gone and cleanup Pending with a Job. It must not
    # retry test (its retryPolicy) nor create cleanup again, and end as with the write kept.
    endings = []
    for lose, instant in ((False, True), (True, True), (True, False)):
        sim = flow()
        sim.instant_delete = instant
        to_the_gate(sim)
        stop(sim)
        sim.reconcile(write_status=not lose)
        if lose:
            sim.reconcile(write_status=False)  # twice: a restart after the first loss
        run(sim, by_step(sim, {}))
        endings.append(ending(sim))
    assert endings[1] == endings[0]
    assert endings[2] == endings[0]
    assert endings[0][1] == ("Stopped", "stopped by alice")


def test_a_lost_write_when_a_finally_step_started_and_finished_is_taken_over() -> None:
    sim = flow()
    to_the_gate(sim)
    stop(sim)
    sim.reconcile()
    sim.reconcile()
    sim.complete(job_of(sim, "cleanup"))
    sim.reconcile(write_status=False)  # notify's Job created, its write lost
    sim.complete(job_of(sim, "notify"))
    sim.reconcile()
    assert sim.phase == "Failed"
    assert failed_condition(sim) == ("Stopped", "stopped by alice")
    assert started(sim).count("notify") == 1


def test_a_graceful_stop_whose_delete_of_an_unrecorded_job_was_lost_still_runs_the_finally_steps() -> None:
    # The write after build's create is lost, then the stop's plan (which took the Job over and deleted
    # it) loses its write too: the next plan finds build Pending in the status with its Job being deleted.
    # That delete was the stop's: build ends stopped, the flow had begun, and the finally steps run.
    sim = Simulator(make_flow([job_step("build"), job_step("notify", **FINALLY)]), T0)
    sim.instant_delete = False
    sim.reconcile(write_status=False)
    stop(sim)
    sim.reconcile(write_status=False)
    run(sim, by_step(sim, {}))
    assert sim.phase == "Failed"
    assert failed_condition(sim) == ("Stopped", "stopped by alice")
    assert phases(sim) == {"build": "Failed", "notify": "Succeeded"}
    assert message(sim, "build") == "stopped by alice"
    assert started(sim) == ["build", "notify"]


@pytest.mark.parametrize("retry", [{}, RETRY])
def test_a_lost_write_of_a_stop_now_still_ends_stopped(retry: dict[str, Any]) -> None:
    # The stop deleted the only running Job and lost its status write: the next plan finds the step's
    # Job gone. That is the stop's own delete, not a failure to report (before: "step a failed: Job ...
    # not found (deleted outside zen-flow)", reason StepFailed) nor one to retry.
    sim = Simulator(make_flow([job_step("a", **retry)]), T0)
    sim.reconcile()
    stop(sim, "true")
    sim.reconcile(write_status=False)
    result = sim.reconcile()
    assert sim.phase == "Failed"
    assert failed_condition(sim) == ("Stopped", "stopped by alice")
    assert message(sim, "a") == "stopped by alice"
    assert not [a for a in result.actions if isinstance(a, CreateJob)]


def test_a_graceful_stop_whose_writes_are_all_lost_still_runs_the_finally_steps() -> None:
    # The first plan created a's Job and lost its write (no start time, no step recorded); the stop's plan
    # lost its write too. Had that plan deleted the Job then, a Job gone at once (not left in the cache
    # being deleted) was all that said the flow had run: the next plan found a flow that never started,
    # and skipped cleanup "not started: stopped by alice". The delete waits for the write that records the
    # stop: lost, the Job runs on, and the next plan stops the flow again.
    sim = Simulator(make_flow([job_step("a"), job_step("cleanup", **FINALLY)]), T0, instant_delete=True)
    sim.reconcile(write_status=False)
    a = job_of(sim, "a")
    stop(sim)
    lost = sim.reconcile(write_status=False)
    assert [(d.name, d.after_write) for d in lost.actions if isinstance(d, DeleteJob)] == [(a, True)]
    assert sim.running() == [a]
    sim.reconcile()
    assert not sim.running()
    assert (phases(sim)["a"], message(sim, "a")) == ("Failed", "stopped by alice")
    sim.reconcile()  # brought by that write: cleanup starts
    assert started(sim) == ["a", "cleanup"]
    run(sim, by_step(sim, {}))
    assert failed_condition(sim) == ("Stopped", "stopped by alice")
    assert phases(sim)["cleanup"] == "Succeeded"


def test_a_graceful_stop_written_whose_deletes_never_went_out_deletes_them_next() -> None:
    # The write that records the stop landed, its deletes (sent after it) did not: its answer was lost,
    # or the controller restarted between the two. The next plan reads from the stored status which steps
    # the stop ended, and deletes their Jobs still running, as the finally steps start.
    sim = Simulator(make_flow([job_step("a"), job_step("cleanup", **FINALLY)]), T0, instant_delete=True)
    sim.reconcile()
    a = job_of(sim, "a")
    stop(sim)
    sim.apply(dataclasses.replace(sim.preview(), actions=()))
    assert (phases(sim)["a"], sim.running()) == ("Failed", [a])
    result = sim.reconcile()
    assert [(d.name, d.reason) for d in result.actions if isinstance(d, DeleteJob)] == [
        (a, "stopped by alice")
    ]
    assert [job for job in sim.running() if sim.steps[job] != "cleanup"] == []
    assert phases(sim)["cleanup"] == "Running"


GRACED: dict[str, Any] = {"activeDeadlineSeconds": 100, "finallyGraceSeconds": 30}


@pytest.mark.parametrize("then", ["taken back", "stopped again by bob", "grace point passed", "grace edited"])
def test_a_stop_written_whose_deletes_never_went_out_deletes_them_whatever_came_since(then: str) -> None:
    # What the stored status says a stop (or the grace) ended stays ended, whatever happens to the
    # request since: its Job is deleted by the next plan, not left running beside cleanup.
    sim = Simulator(make_flow([job_step("a"), job_step("cleanup", **FINALLY)], execution_policy=GRACED), T0)
    sim.reconcile()
    a = job_of(sim, "a")
    if then == "grace edited":
        sim.advance(70)  # the grace point: the grace ends a
    else:
        stop(sim)
    sim.apply(dataclasses.replace(sim.preview(), actions=()))
    assert (phases(sim)["a"], sim.running()) == ("Failed", [a])
    if then == "taken back":
        sim.annotate(ANNOTATION_STOP, None)
        sim.annotate(ANNOTATION_STOPPED_BY, None)
    elif then == "stopped again by bob":
        stop(sim, user="bob")
    elif then == "grace point passed":
        sim.advance(70)
    else:
        policy = {**GRACED, "finallyGraceSeconds": 20}
        spec = sim.flow.spec.model_validate({**sim.flow.spec.to_wire(), "executionPolicy": policy})
        sim.flow = sim.flow.model_copy(update={"spec": spec})
    for _ in range(2):
        sim.reconcile()
    assert [sim.steps[job] for job in sim.running()] == ["cleanup"]


# Found by the property below (hypothesis seed 12345): s0 is skipped, the finally steps run, and a
# graceful stop comes with a finally step's Job gone; s4 (after s1, `when: flow.outcome == 'Failed'`)
# must still see Succeeded: no step that is not finally failed or was stopped.
_BACKOFF: dict[str, Any] = {"retryPolicy": {"backoff": {"type": "Exponential", "duration": "1s"}}}
_TOLERATED: dict[str, Any] = {"allowFailure": True, **FINALLY}
LATE_STOP_FLOW = make_flow(
    [
        manual_step("s0", when="never", allowFailure=True, **_BACKOFF),
        job_step("s1", dependencyPolicy="AllSucceeded", **_BACKOFF, **_TOLERATED),
        job_step("s2", timeoutSeconds=1, dependencyPolicy="AllSucceeded", **_TOLERATED),
        job_step("s3", **_BACKOFF, **_TOLERATED),
        job_step("s4", "s1", when="flow.outcome == 'Failed'", **_TOLERATED),
    ],
    name="f",
    execution_policy={"ttlSecondsAfterFinished": 0},
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_flows(), st.integers(0, 2**32))
@example(LATE_STOP_FLOW, 1)
def test_random_flows_stopped_gracefully_amid_lost_writes(flow: JobFlow, seed: int) -> None:
    rng = random.Random(seed)
    sim = Simulator(flow, T0, instant_delete=rng.random() < 0.5)
    final = {s.name for s in flow.spec.steps if s.is_finally}
    stop_round = rng.randrange(1, 8)
    for round_ in range(MAX_ROUNDS):
        if round_ == stop_round:
            stop(sim, rng.choice(["RunFinally", "runFinally"]))
            # A flow that has not started a step is stopped now (nothing ran to clean up after).
            begun = sim.flow.status.start_time is not None or bool(sim.created)
        before = sim.flow
        roll = rng.random()
        lose = roll < 0.2  # the write lost; or it landed, but what waited for it did not go out (more
        # often around the stop, whose plans hold its deletes)
        dropped = not lose and roll < (0.7 if stop_round <= round_ <= stop_round + 1 else 0.35)
        result = sim.reconcile(write_status=not lose, held=not dropped)
        check_plan(sim, before, result)
        if any(sim.steps[job] in final for job in sim.created):
            # Once the finally steps have started, no step a stop ended (as stored) still runs its Job.
            left = [s.name for s in sim.flow.status.steps if s.name not in final and stopped_job_runs(sim, s)]
            assert not left, f"{left} run beside the finally steps"
        if round_ >= stop_round:
            # Once stopped, no step that is not finally starts again, not even after a lost write.
            late = [a.step for a in result.actions if isinstance(a, CreateJob) and a.step not in final]
            assert not late, f"{late} started after the stop"
        if sim.terminal and not lose:
            assert not sim.running(), f"{sim.phase} flow left Jobs running: {sim.running()}"
            break
        if not dropped:  # the Jobs whose deletes were dropped run on into the next plan
            perturb(sim, rng, result)
    else:
        raise AssertionError(f"flow did not finish: {sim.phase} {sim.flow.status.message}")
    statuses = sim.flow.status.steps
    stopped_main = [s.name for s in statuses if s.name not in final and stopped_by_request(s)]
    reason = failed_condition(sim)[0] if sim.phase == "Failed" else ""
    if reason == "Stopped" and final and begun:
        # A graceful stop skips no finally step: they run (or their own `when` skips them). One whose Job
        # is found gone under it (here: deleted by someone else) ends "stopped by", not retried.
        stopped_final = [s for s in statuses if s.name in final and stopped_by_request(s)]
        assert stopped_main or stopped_final
        assert all(s.phase == StepPhase.FAILED for s in stopped_final)
    if stopped_main:
        assert reason in ("Stopped", "DeadlineExceeded"), reason
    # A Job name never served two attempts (creating one that exists raises DuplicateCreate).
    owners: dict[str, set[tuple[str, int]]] = {}
    for past in sim.plans:
        for action in past.actions:
            if isinstance(action, CreateJob):
                owners.setdefault(action.name, set()).add((action.step, action.attempt))
    assert all(len(v) == 1 for v in owners.values())
    assert all(StepPhase(s.phase).terminal for s in statuses)


def stopped_job_runs(sim: Simulator, s: StepStatus) -> bool:
    ended = s.phase == StepPhase.FAILED and stopped_by_request(s)
    return ended and s.job_ref is not None and s.job_ref.name in sim.running()


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


# --- what an earlier stop wrote (review findings) ----------------------------------------------------------


def stopped_then_rerun_in_part() -> Simulator:
    """A stop by alice ended every step, side (continueOnFailure) too; `zen-flow retry --step a`, a minute
    later, reruns a only: side keeps its "stopped by alice"."""
    steps = [
        job_step("a"),
        job_step("side", continueOnFailure=True),
        job_step("b", "a"),
        job_step("cleanup", **FINALLY),
    ]
    sim = Simulator(make_flow(steps), T0)
    sim.reconcile()
    stop(sim, "true")
    sim.reconcile()
    assert failed_condition(sim) == ("Stopped", "stopped by alice")
    sim.advance(60)
    sim.annotate(ANNOTATION_STOP, None)  # what `zen-flow retry --step a` does
    sim.annotate(ANNOTATION_RETRY, "r1")
    sim.annotate(ANNOTATION_RETRY_STEPS, "a")
    sim.reconcile()
    assert (phases(sim)["a"], message(sim, "side")) == ("Running", "stopped by alice")
    return sim


@pytest.mark.parametrize("user", ["alice", "bob"])
def test_what_an_earlier_stop_wrote_is_not_this_stop(user: str) -> None:
    # A new graceful stop ends a and b: its FlowStopped event is said (before: filtered, as if an earlier
    # plan had said it, because side's message began "stopped by"), whoever asks.
    sim = stopped_then_rerun_in_part()
    sim.advance(1)
    stop(sim, "RunFinally", user)
    result = sim.reconcile()
    assert reasons(result).count("FlowStopped") == 1
    run(sim, by_step(sim, {}))
    assert failed_condition(sim) == ("Stopped", f"stopped by {user}")


@pytest.mark.parametrize("user", ["alice", "bob"])
def test_a_graceful_stop_that_stops_nothing_after_a_partial_rerun_keeps_the_outcome(user: str) -> None:
    # Once a and b succeeded, a graceful stop has nothing to stop: the flow ends as its steps did, with
    # side's failure (before: Stopped, side's old message taken for this stop's doing).
    sim = stopped_then_rerun_in_part()
    sim.complete(job_of(sim, "a"))
    sim.reconcile()
    sim.complete(job_of(sim, "b"))
    sim.reconcile()
    sim.reconcile()
    assert phases(sim)["cleanup"] == "Running"
    sim.advance(1)
    stop(sim, "RunFinally", user)
    result = sim.reconcile()
    assert "FlowStopped" not in reasons(result)
    run(sim, by_step(sim, {}))
    assert failed_condition(sim) == ("StepFailed", "step side failed: stopped by alice")


def test_a_stop_now_by_someone_else_once_the_graceful_stop_only_skipped_steps_still_ends_stopped() -> None:
    # alice's graceful stop skipped the gate and the step after it (it stopped no Job); bob changes the
    # value to true as the finally step ends: the steps alice's stop ended count, whoever asks now.
    steps = [manual_step("gate"), job_step("after", "gate"), job_step("cleanup", **FINALLY)]
    sim = Simulator(make_flow(steps), T0)
    sim.reconcile()
    sim.advance(5)
    stop(sim)
    sim.reconcile()
    sim.reconcile()
    assert message(sim, "gate") == "no decision: stopped by alice"
    sim.advance(5)
    sim.complete(job_of(sim, "cleanup"))
    stop(sim, "true", "bob")
    sim.reconcile()
    assert sim.phase == "Failed"
    assert failed_condition(sim) == ("Stopped", "stopped by bob")


def test_a_blank_stopped_by_is_an_unrecorded_user_in_later_plans_too() -> None:
    # A step message has its whitespace collapsed: "stopped by   " was written "stopped by", which later
    # plans did not recognise as the stop's, and the flow ended as if it had not stopped anything.
    sim = flow()
    to_the_gate(sim)
    stop(sim, "RunFinally", "   ")
    sim.reconcile()
    assert message(sim, "test") == "stopped by an unrecorded user"
    run(sim, by_step(sim, {}))
    assert failed_condition(sim) == ("Stopped", "stopped by an unrecorded user")


def test_removing_the_request_during_the_finally_steps_still_ends_the_flow_stopped() -> None:
    # The other steps stay stopped and the finally steps go on; the stop ended them, so the flow ends
    # Stopped, as its steps' messages say, with no request left (before: StepFailed "step test failed:
    # stopped by alice").
    sim = flow()
    to_the_gate(sim)
    stop(sim)
    sim.reconcile()
    sim.annotate(ANNOTATION_STOP, None)
    result = sim.reconcile()
    assert not [a for a in result.actions if isinstance(a, DeleteJob)]
    assert (sim.flow.status.message or "").startswith("stopped by alice;")
    run(sim, by_step(sim, {}))
    assert phases(sim)["notify"] == "Succeeded"
    assert failed_condition(sim) == ("Stopped", "stopped by alice")


def test_removing_a_graceful_stop_that_only_skipped_steps_does_not_end_the_flow_succeeded() -> None:
    # alice's graceful stop skipped the waiting gate and the step after it: nothing failed. Removed while
    # the finally step runs, the flow ended Succeeded "1 step succeeded, 2 skipped", its work never done.
    steps = [manual_step("gate"), job_step("after", "gate"), job_step("cleanup", **ON_FAILURE)]
    sim = Simulator(make_flow(steps), T0)
    sim.reconcile()
    sim.advance(5)
    stop(sim)
    sim.reconcile()
    sim.reconcile()
    assert phases(sim) == {"gate": "Skipped", "after": "Skipped", "cleanup": "Running"}
    sim.annotate(ANNOTATION_STOP, None)
    sim.annotate(ANNOTATION_STOPPED_BY, None)
    run(sim, by_step(sim, {}))
    assert phases(sim)["cleanup"] == "Succeeded"
    assert failed_condition(sim) == ("Stopped", "stopped by alice")


def test_a_lost_write_of_a_stop_now_after_a_finally_step_failed_says_only_the_stop() -> None:
    # As with the write kept: "stopped by alice", not "...; finally step cleanup failed: ..." (a graceful
    # stop names it: test_a_failed_finally_step_is_said_beside_the_stop).
    steps = [job_step("a"), job_step("cleanup", **FINALLY), job_step("notify", "cleanup", **FINALLY)]
    endings = []
    for lose in (False, True):
        sim = Simulator(make_flow(steps), T0)
        sim.reconcile()
        sim.complete(job_of(sim, "a"))
        sim.reconcile()
        sim.reconcile()
        sim.fail(job_of(sim, "cleanup"))
        sim.reconcile()
        assert phases(sim)["notify"] == "Running"
        stop(sim, "true")
        sim.reconcile(write_status=not lose)
        sim.reconcile()
        endings.append(ending(sim))
    assert endings[1] == endings[0]
    assert endings[0][1] == ("Stopped", "stopped by alice")
