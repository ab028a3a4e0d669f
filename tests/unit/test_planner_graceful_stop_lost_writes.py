"""A graceful stop (test_planner_graceful_stop) amid lost status writes and restarts: every plan is made again
from the flow and its Jobs, so a write lost in the middle, or deletes that never went out, end the flow
the same way; random flows stopped amid lost writes (a property test)."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from graceful_stop_rig import RETRY, T0, ending, flow, job_of, stop, to_the_gate
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_planner_finally import FINALLY, by_step, failed_condition, started
from test_planner_joins import message, phases
from test_planner_properties import MAX_ROUNDS, check_plan, perturb, random_flows

from zen_flow.api import JobFlow
from zen_flow.api.constants import (
    ANNOTATION_STOP,
    ANNOTATION_STOPPED_BY,
    StepPhase,
)
from zen_flow.api.flow_status import StepStatus
from zen_flow.planner import CreateJob, DeleteJob
from zen_flow.planner.interventions import stopped_by_request
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator, run

# --- lost status writes and restarts ---------------------------------------------------------------------


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
