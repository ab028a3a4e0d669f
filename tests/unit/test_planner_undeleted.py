"""Planner: a Job whose delete the apiserver refused while its attempt's end was stored (a timed-out step
Retrying or Failed, an earlier attempt superseded by a retry) still runs; every plan deletes it again
(planner/undeleted.py), never a Job a step runs now nor one a lost write left for `adopt`. On a fake
clock, deletes refused by leaving them out of what the Simulator applies."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from zen_flow.api import Job, JobFlow
from zen_flow.api.constants import StepPhase
from zen_flow.api.flow_status import Audit, JobFlowStatus, ObjectRef, Retry, StepStatus
from zen_flow.core.naming import job_name
from zen_flow.planner import DeleteJob, Plan, as_job
from zen_flow.planner.lifecycle import STRAY_EVENT, terminal_plan
from zen_flow.planner.undeleted import ENDED_ATTEMPT, undeleted
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


def child_step(name: str) -> dict[str, object]:
    return {"name": name, "type": "Flow", "flow": {"templateRef": {"name": "t"}}}


def with_child(
    step: StepStatus, *, phase: str = "Running", reruns: int = 0, uid: str = "u1", parent: str = "flow"
) -> tuple[JobFlow, dict[str, Job]]:
    """A parent flow (its step `c` a Flow step, stored as `step`) and its live child at `step`'s
    attempt `step.retry_count` (or its recorded one), `reruns` times rerun by a user."""
    flow = make_flow([job_step("a"), child_step("c")], name=parent)
    flow = flow.model_copy(update={"status": JobFlowStatus(phase="Running", steps=(step,))})
    name = step.job_ref.name if step.job_ref is not None else job_name(parent, "c", 0)
    audit = Audit(retries=tuple(Retry(id=f"r{i}", steps=("x",)) for i in range(reruns)))
    child = JobFlow.model_validate(
        {"metadata": {"name": name, "namespace": "default", "uid": uid}, "spec": {"steps": []}}
    ).model_copy(update={"status": JobFlowStatus(phase=phase, audit=audit)})
    return flow, {name: as_job(child)}


def recorded(phase: str, message: str, retry_count: int = 0) -> StepStatus:
    name = job_name("flow", "c", retry_count)
    ref = ObjectRef(name=name, kind="JobFlow", uid="u1")
    return StepStatus(name="c", phase=phase, retry_count=retry_count, job_ref=ref, message=message)


def test_a_child_flow_a_user_reran_is_not_deleted_by_its_parent() -> None:
    """`zen-flow retry <child>` sets a Failed child Running again: its step ended with the child's own
    failure (no delete of the controller's), so nothing was refused and nothing is sent."""
    failed = "child flow flow-c-x failed: step s: Job failed: main: exit code 1"
    for step in (
        recorded(StepPhase.FAILED, failed),  # continueOnFailure or allowFailure: the parent runs on
        recorded(StepPhase.RETRYING, f"attempt 1 failed: {failed}", 0),  # during its backoff
    ):
        assert undeleted(*with_child(step, reruns=1)) == []
    # An earlier attempt's child, rerun by a user since: its status says so.
    running = StepStatus(name="c", phase=StepPhase.RUNNING, retry_count=1)
    flow, jobs = with_child(running, reruns=1)
    assert undeleted(flow, jobs) == []


def test_a_timed_out_child_flow_whose_delete_failed_is_deleted_again() -> None:
    flow, jobs = with_child(recorded(StepPhase.FAILED, "timed out after 60s"))
    assert [(d.name, d.reason) for d in undeleted(flow, jobs)] == [
        (job_name("flow", "c", 0), f"{ENDED_ATTEMPT}: timed out after 60s")
    ]
    retrying = recorded(StepPhase.RETRYING, "attempt 1 failed: timed out after 60s")
    assert len(undeleted(*with_child(retrying))) == 1
    # Its retry started beside it: an earlier attempt's child, never rerun, still runs.
    flow, jobs = with_child(StepStatus(name="c", phase=StepPhase.RUNNING, retry_count=1))
    assert [d.name for d in undeleted(flow, jobs)] == [job_name("flow", "c", 0)]


def test_a_job_under_a_recorded_name_that_is_not_the_recorded_one_is_left_alone() -> None:
    """Someone else's Job under the name a Failed step records (another uid): not the flow's to stop."""
    sim = Simulator(make_flow([job_step("a", timeoutSeconds=60), job_step("b")]), T0)
    sim.reconcile()
    sim.advance(61)
    refused(sim)
    ref = sim.flow.status.step("a").job_ref
    assert ref is not None
    assert ref.uid
    assert [d.name for d in undeleted(sim.flow, sim.jobs)] == [job("a")]
    other = sim.jobs[job("a")]
    forged = {**sim.jobs, job("a"): replace(other, metadata=replace(other.metadata, uid="someone-else"))}
    assert undeleted(sim.flow, forged) == []
    # Asked for already by another rule of the plan: not asked twice.
    assert undeleted(sim.flow, sim.jobs, [DeleteJob(job("a"), "a", "the flow has ended")]) == []


def test_an_ended_flows_recorded_job_is_deleted_as_its_ended_attempt_not_as_a_stray() -> None:
    """The last step timed out, its delete refused, and the flow ended: the Job the status records is
    deleted again, but never told as one the status does not record (StrayJobDeleted)."""
    sim = Simulator(make_flow([job_step("a", timeoutSeconds=60)]), T0)
    sim.reconcile()
    sim.advance(61)
    refused(sim)
    assert sim.flow.status.phase == "Failed"
    again = sim.preview()
    assert deletes(again) == [(job("a"), f"{ENDED_ATTEMPT}: timed out after 60s")]
    assert not [e for e in again.events if e.reason == STRAY_EVENT]
    sim.reconcile()
    assert job("a") not in sim.jobs
    assert deletes(sim.reconcile()) == []


def test_an_ended_flows_live_child_is_deleted_whatever_ended_its_step() -> None:
    """Nothing of an ended flow runs on behind it: its child reran by a user too (as a stray before)."""
    flow, jobs = with_child(recorded(StepPhase.FAILED, "child flow flow-c-x failed: boom"), reruns=1)
    ended = flow.model_copy(update={"status": flow.status.model_copy(update={"phase": "Failed"})})
    result = terminal_plan(ended, T0, jobs.values())
    assert [a.name for a in result.actions if isinstance(a, DeleteJob)] == list(jobs)
    assert not [e for e in result.events if e.reason == STRAY_EVENT]
