"""Planner: a Job whose delete the apiserver refused while its attempt's end was stored (a timed-out step
Retrying or Failed, an earlier attempt superseded by a retry) still runs; every plan deletes it again
(planner/undeleted.py), never a Job a step runs now nor one a lost write left for `adopt`. On a fake
clock, deletes refused by leaving them out of what the Simulator applies."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from zen_flow.api.constants import StepPhase
from zen_flow.core.naming import job_name
from zen_flow.planner import DeleteJob, Plan
from zen_flow.planner.undeleted import ENDED_ATTEMPT
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
RETRIED_TIMEOUT = "attempt 1 failed: timed out after 60s"  # a Retrying step's message, and the cause


def retried(limit: int) -> dict[str, object]:
    return {"limit": limit, "backoff": {"duration": "1s", "type": "Fixed"}}


def job(step: str, attempt: int = 0) -> str:
    return job_name("flow", step, attempt)


def deletes(result: Plan) -> list[tuple[str, str]]:
    return [(a.name, a.reason) for a in result.actions if isinstance(a, DeleteJob)]


def refused(sim: Simulator) -> Plan:
    """One reconcile whose deletes the apiserver refuses: the rest of the plan, its status, stands."""
    result = sim.preview()
    sim.apply(replace(result, actions=tuple(a for a in result.actions if not isinstance(a, DeleteJob))))
    return result


def test_a_retrying_steps_timed_out_job_is_deleted_again_then_as_an_earlier_attempt() -> None:
    sim = Simulator(make_flow([job_step("a", timeoutSeconds=60, retryPolicy=retried(1))]), T0)
    sim.reconcile()
    sim.advance(61)
    timed_out = refused(sim)
    assert deletes(timed_out) == [(job("a"), "timed out after 60s")]
    a = sim.flow.status.step("a")
    assert a is not None
    assert a.phase == StepPhase.RETRYING
    # The stored status records the timeout; its Job still runs: asked again, counted as a timeout.
    again = refused(sim)
    assert deletes(again) == [(job("a"), f"{ENDED_ATTEMPT}: {RETRIED_TIMEOUT}")]
    # The retry starts beside it; the old Job is now an earlier attempt's, still asked for.
    sim.advance(2)
    started = refused(sim)
    assert job("a", 1) in sim.jobs
    assert (job("a"), f"{ENDED_ATTEMPT}: {RETRIED_TIMEOUT}") in deletes(started)
    assert deletes(refused(sim)) == [(job("a"), ENDED_ATTEMPT)]
    assert sim.flow.status.step("a").phase == StepPhase.RUNNING
    # Once it passes, nothing more is deleted: the running attempt's Job is never one of these.
    sim.reconcile()
    assert job("a") not in sim.jobs
    assert deletes(sim.reconcile()) == []
    assert job("a", 1) in sim.jobs


def test_a_failed_steps_job_is_deleted_again_while_the_flow_runs_on() -> None:
    sim = Simulator(make_flow([job_step("a", timeoutSeconds=60), job_step("b")]), T0)
    sim.reconcile()
    sim.advance(61)
    refused(sim)
    assert sim.flow.status.step("a").phase == StepPhase.FAILED
    assert sim.flow.status.phase == "Running"
    assert deletes(sim.reconcile()) == [(job("a"), f"{ENDED_ATTEMPT}: timed out after 60s")]
    assert deletes(sim.reconcile()) == []
    assert sorted(sim.jobs) == [job("b")]


def test_a_finished_or_deleting_job_of_an_ended_attempt_is_left_alone() -> None:
    sim = Simulator(make_flow([job_step("a", timeoutSeconds=60, retryPolicy=retried(2))]), T0)
    sim.instant_delete = False
    sim.reconcile()
    sim.advance(61)
    refused(sim)
    # Someone else deleted it since (it lingers while its pods go): not asked again.
    sim.delete(job("a"))
    assert deletes(sim.preview()) == []
    # Finished on its own before the delete: nothing to stop.
    sim.collect()
    sim.advance(2)
    sim.reconcile()
    sim.advance(61)
    refused(sim)
    sim.complete(job("a", 1))
    assert deletes(sim.preview()) == []


def test_a_lost_writes_job_of_the_next_attempt_is_taken_over_not_deleted() -> None:
    sim = Simulator(make_flow([job_step("a", timeoutSeconds=60, retryPolicy=retried(1))]), T0)
    sim.reconcile()
    sim.advance(61)
    sim.reconcile()
    sim.advance(2)
    sim.reconcile(write_status=False)  # attempt 2's Job created, its status write lost
    assert job("a", 1) in sim.jobs
    result = sim.reconcile()
    assert deletes(result) == []
    assert sim.flow.status.step("a").phase == StepPhase.RUNNING
    assert sim.flow.status.step("a").job_ref.name == job("a", 1)


@settings(max_examples=60, deadline=None)
@given(
    limits=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    timeouts=st.tuples(st.integers(20, 90), st.integers(20, 90)),
    refusals=st.lists(st.booleans(), min_size=1, max_size=12),
    step=st.integers(5, 40),
)
def test_refused_deletes_never_touch_a_running_attempt_and_end_once_they_pass(
    limits: tuple[int, int], timeouts: tuple[int, int], refusals: list[bool], step: int
) -> None:
    steps = [
        job_step(name, timeoutSeconds=timeout, retryPolicy=retried(limit))
        for name, limit, timeout in zip("ab", limits, timeouts, strict=True)
    ]
    sim = Simulator(make_flow(steps), T0)
    for refuse in [*refusals, False, False]:
        result = refused(sim) if refuse else sim.reconcile()
        running = {
            s.job_ref.name
            for s in result.status.steps
            if s.phase == StepPhase.RUNNING and s.job_ref is not None
        }
        assert not running & {name for name, _ in deletes(result)}
        sim.advance(step)
    # Deletes pass now: within a reconcile, no Job runs but a Running step's current attempt.
    sim.reconcile()
    current = {
        s.job_ref.name
        for s in sim.flow.status.steps
        if s.phase == StepPhase.RUNNING and s.job_ref is not None
    }
    live = {name for name, job in sim.jobs.items() if not job.finished}
    assert live <= current
