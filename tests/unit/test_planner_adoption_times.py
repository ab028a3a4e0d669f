"""A Job taken over after a lost status write (its create landed, the write recording it did not: a
kill, a failover, a restart hours later) started when it was created, not when the controller came back
and adopted it: the step's startTime and attemptStartTime, and the flow's startTime when the status has
none, are the Job's creationTimestamp (never later than the plan's now). The outage then adds nothing to
the flow's activeDeadlineSeconds, its finally grace, or the step's timeoutSeconds, which counts from the
Job's creation as the Job's own activeDeadlineSeconds does. Retry attempts and matrix items alike."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from zen_flow.core.matrix import effective_flow
from zen_flow.planner import CreateJob
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
RETRIES: dict[str, Any] = {"limit": 2, "backoff": {"duration": "10s", "type": "Fixed"}}
FINALLY: dict[str, Any] = {"finally": True}


def times(sim: Simulator, step: str) -> tuple[datetime | None, datetime | None]:
    """(startTime, attemptStartTime) of `step`."""
    found = sim.flow.status.step(step)
    assert found is not None
    return found.start_time, found.attempt_start_time


def test_an_adopted_job_starts_its_step_and_the_flow_deadline_when_it_was_created() -> None:
    # Red team 4, finding 3: created at 00:00, adopted at 00:15 with a 600 s flow deadline. The Job has run
    # for 900 s: the flow is past its deadline, and fails in the plan that adopts it.
    sim = Simulator(make_flow([job_step("a")], execution_policy={"activeDeadlineSeconds": 600}), T0)
    sim.reconcile(write_status=False)  # the Job is created at T0; the status write recording it is lost
    (name,) = sim.running()
    sim.advance(900)  # the controller comes back (or a standby takes over) 15 minutes later
    sim.reconcile()
    assert sim.flow.status.start_time == T0
    assert times(sim, "a")[0] == T0
    assert sim.phase == "Failed"
    assert sim.flow.status.message == "flow deadline of 600s exceeded"
    assert sim.running() == []  # its Job is deleted with it
    assert sim.created == [name]


def test_a_short_outage_keeps_the_flow_deadline_where_the_first_plan_put_it() -> None:
    sim = Simulator(make_flow([job_step("a")], execution_policy={"activeDeadlineSeconds": 600}), T0)
    sim.reconcile(write_status=False)
    sim.advance(15)  # a failover
    adopted = sim.reconcile()
    assert sim.phase == "Running"
    assert sim.flow.status.start_time == T0
    assert times(sim, "a") == (T0, T0)
    assert adopted.requeue_after == 585  # the deadline is 600 s after the Job's creation, not the adoption
    sim.advance(585)
    sim.reconcile()
    assert sim.phase == "Failed"
    assert sim.flow.status.message == "flow deadline of 600s exceeded"


def test_an_adopted_jobs_step_timeout_counts_from_its_creation_as_the_jobs_own_deadline_does() -> None:
    sim = Simulator(make_flow([job_step("a", timeoutSeconds=300)]), T0)
    sim.reconcile(write_status=False)
    sim.advance(200)
    adopted = sim.reconcile()
    assert times(sim, "a") == (T0, T0)
    assert adopted.requeue_after == 101  # a second more for the cut creationTimestamp (`after_cut`)
    sim.advance(101)
    sim.reconcile()
    a = sim.flow.status.step("a")
    assert a is not None
    assert (a.phase, a.message) == ("Failed", "timed out after 300s")


def test_an_adopted_job_deleted_for_its_timeout_by_a_plan_whose_write_was_lost_ends_as_a_timeout() -> None:
    # The plan that adopts the Job finds it past its timeout and deletes it; its write is lost too. The
    # next plan finds the Job being deleted and no status recording it: the attempt timed out, as that
    # plan said, and is not run again under its name once the Job is gone.
    sim = Simulator(make_flow([job_step("a", timeoutSeconds=60)]), T0, instant_delete=False)
    sim.reconcile(write_status=False)
    (name,) = sim.running()
    sim.advance(120)
    sim.reconcile(write_status=False)
    assert sim.jobs[name].deleting
    sim.reconcile()
    a = sim.flow.status.step("a")
    assert a is not None
    assert (a.phase, a.message) == ("Failed", "timed out after 60s")
    sim.collect()
    sim.reconcile()
    assert sim.created == [name]


def test_the_finally_grace_counts_from_the_adopted_jobs_creation() -> None:
    policy = {"activeDeadlineSeconds": 600, "finallyGraceSeconds": 100}
    flow = make_flow([job_step("a"), job_step("cleanup", **FINALLY)], execution_policy=policy)
    sim = Simulator(flow, T0)
    sim.reconcile(write_status=False)
    (name,) = sim.running()
    sim.advance(550)  # past the grace point (T0 + 500) by the Job's creation, not by the adoption
    sim.reconcile()
    a = sim.flow.status.step("a")
    assert a is not None
    assert a.phase == "Failed"
    assert (a.message or "").startswith("flow deadline: the last 100s")
    assert name not in sim.running()
    sim.reconcile()
    assert [a.step for a in sim.last.actions if isinstance(a, CreateJob)] == ["cleanup"]


def test_an_adopted_retry_attempt_starts_its_attempt_when_it_was_created() -> None:
    sim = Simulator(make_flow([job_step("a", retryPolicy=RETRIES)]), T0)
    sim.reconcile()
    (first,) = sim.running()
    sim.advance(5)
    sim.fail(first)
    sim.reconcile()  # Retrying, the retry due at T0 + 16 s
    sim.advance(11)
    retried = T0 + timedelta(seconds=16)
    sim.reconcile(write_status=False)  # its Job is created; the write recording the attempt is lost
    (second,) = sim.running()
    assert second.endswith("-r1")
    sim.advance(3600)  # a restart an hour later
    sim.reconcile()
    a = sim.flow.status.step("a")
    assert a is not None
    assert (a.phase, a.retry_count) == ("Running", 1)
    assert times(sim, "a") == (T0, retried)  # the step began with its first attempt, this one at its create
    assert sim.flow.status.start_time == T0


def test_adopted_matrix_items_start_when_their_jobs_were_created() -> None:
    matrix = {"parameters": [{"name": "shard", "values": ["0", "1"]}]}
    flow = effective_flow(
        make_flow([job_step("build", matrix=matrix)], execution_policy={"activeDeadlineSeconds": 3600})
    )
    sim = Simulator(flow, T0)
    sim.reconcile(write_status=False)
    _, second = sorted(sim.running())
    later = T0 + timedelta(seconds=60)  # the second item's Job was created a minute after the first's
    job = sim.jobs[second]
    sim.jobs[second] = replace(job, metadata=replace(job.metadata, creation_timestamp=later))
    sim.advance(1800)
    adopted = sim.reconcile()
    assert sim.flow.status.start_time == T0  # the flow began with its first Job
    assert {times(sim, "build-0"), times(sim, "build-1")} == {(T0, T0), (later, later)}
    assert adopted.requeue_after == 1800


def test_a_retry_adopted_under_a_cluster_clock_behind_starts_no_earlier_than_it_was_due() -> None:
    # Review item 4: the cluster's clock 120 s behind the controller's. The retry, due at T0 + 16 s by the
    # controller's clock, is stamped created at T0 - 104 s; adopted 4 s later it had not timed out.
    sim = Simulator(make_flow([job_step("a", timeoutSeconds=120, retryPolicy=RETRIES)]), T0, skew=-120)
    sim.reconcile()
    (first,) = sim.running()
    sim.advance(5)
    sim.fail(first)
    sim.reconcile()  # Retrying, due T0 + 16 s
    sim.advance(11)
    sim.reconcile(write_status=False)  # -r1 created; the write recording it lost
    sim.advance(4)  # a failover moments later
    sim.reconcile()
    a = sim.flow.status.step("a")
    assert a is not None
    assert (a.phase, a.retry_count) == ("Running", 1)
    assert times(sim, "a") == (T0, T0 + timedelta(seconds=16))


def test_a_dependent_adopted_under_a_clock_behind_starts_no_earlier_than_its_dependency_ended() -> None:
    flow = make_flow([job_step("a"), job_step("b", dependencies=["a"], timeoutSeconds=60)])
    sim = Simulator(flow, T0, skew=-300)
    sim.reconcile()
    (first,) = sim.running()
    sim.advance(30)
    sim.complete(first)
    sim.reconcile(write_status=False)  # a's end and b's Job in one plan, its write lost
    sim.advance(10)
    sim.reconcile()  # the cluster stamped b's Job 300 s before a ended, by the controller's clock
    a, b = sim.flow.status.step("a"), sim.flow.status.step("b")
    assert a is not None
    assert b is not None
    assert a.completion_time is not None
    assert a.completion_time >= T0 + timedelta(seconds=30)
    assert b.phase == "Running"
    assert times(sim, "b") == (a.completion_time, a.completion_time)


@given(
    outage=st.integers(0, 7200),
    deadline=st.integers(1, 3600),
    skew=st.integers(-120, 120),
    timeout=st.none() | st.integers(1, 3600),
)
def test_an_outage_never_moves_the_deadlines_of_an_adopted_job(
    outage: int, deadline: int, skew: int, timeout: int | None
) -> None:
    """Whatever the outage, and the cluster's clock ahead or behind: the flow and its step start at the
    Job's creation (no later than the adoption), and the flow's deadline and the step's timeout end the
    adopting plan's run exactly when that much time has passed since."""
    fields = {"timeoutSeconds": timeout} if timeout is not None else {}
    flow = make_flow([job_step("a", **fields)], execution_policy={"activeDeadlineSeconds": deadline})
    sim = Simulator(flow, T0, skew=skew)
    sim.reconcile(write_status=False)
    (name,) = sim.running()
    created = sim.jobs[name].metadata.creation_timestamp
    assert created is not None
    sim.advance(outage)
    sim.reconcile()
    began = min(sim.now, created)
    assert sim.flow.status.start_time == began
    a = sim.flow.status.step("a")
    assert a is not None
    assert a.start_time == began
    flow_over = sim.now >= began + timedelta(seconds=deadline)
    # Never before the Job's creation, the second it was cut to included (`Observation.began`).
    step_over = timeout is not None and sim.now >= created + timedelta(seconds=timeout + 1)
    assert (sim.phase == "Failed") == (flow_over or step_over)
    if step_over:
        assert (a.phase, a.message) == ("Failed", f"timed out after {timeout}s")
    elif flow_over:
        assert sim.flow.status.message == f"flow deadline of {deadline}s exceeded"
    else:
        assert (a.phase, a.attempt_start_time) == ("Running", began)
