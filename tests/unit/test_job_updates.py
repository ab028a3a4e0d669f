"""A Job update that no plan can see (a counter moved, the Job's start time or an interim condition such as
`SuccessCriteriaMet` came) wakes no reconcile; one that a plan can see does. The guarantee behind it is
checked on the planner itself: such an update never changes the plan, but for when a Job that turned
pending (no ready pod) has its pods looked at, which the controller schedules from the update, and for a
wait its step's message names that ends, which the controller plans at once."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from zen_flow.api import Job, JobFlow
from zen_flow.api.meta import Condition
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.reconciler import Controller
from zen_flow.machinery.expectations import Expectations
from zen_flow.machinery.workqueue import WorkQueue
from zen_flow.planner import PendingJob, PodWait, pending, plan, plan_sees_change, pods_moved
from zen_flow.planner.pod_waits import NO_POD, wait_part, without_wait
from zen_flow_dev.testing.apiserver_fake import FakeApiServer
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2026, 12, 2, 7, tzinfo=UTC)
FLOW = make_flow([job_step("a"), job_step("b", "a"), job_step("c", "b")])
# Its first step times out after 300 s, counted from its Job's creation.
TIMED_FLOW = make_flow([job_step("a", timeoutSeconds=300), job_step("b", "a")], name="timed")


def running_sim(flow: JobFlow = FLOW) -> Simulator:
    sim = Simulator(flow, T0)
    sim.reconcile()
    return sim


def with_counters(job: Job, active: int, ready: int | None, succeeded: int, failed: int) -> Job:
    status = replace(job.status, active=active, ready=ready, succeeded=succeeded, failed=failed)
    return replace(job, status=status)


counters = st.tuples(st.integers(0, 3), st.none() | st.integers(0, 3), st.integers(0, 3), st.integers(0, 3))
# What the Job controller sets while a Job runs, before (or beside) its terminal Complete or Failed.
interim_conditions = st.lists(
    st.builds(
        Condition,
        type=st.sampled_from(["SuccessCriteriaMet", "FailureTarget", "Progressing"]),
        status=st.sampled_from(["True", "False", "Unknown"]),
        reason=st.sampled_from(["", "CompletionsReached", "BackoffLimitExceeded"]),
        last_transition_time=st.just(T0),
    ),
    max_size=3,
)


WAITS = (
    "",  # its pod runs
    "pod unschedulable: 0/3 nodes are available: 3 Insufficient cpu.",
    "pod waiting: container main ImagePullBackOff: Back-off pulling image",
    NO_POD,
)
# What the controller's last read of a pending Job's pods found (seconds after T0: read, since, first seen).
pod_waits = st.builds(
    lambda message, read, since, seen, uncounted, succeeded: (
        message,
        read,
        since,
        seen,
        uncounted,
        succeeded,
    ),
    st.sampled_from(WAITS),
    st.integers(0, 900),
    st.none() | st.integers(0, 900),
    st.none() | st.integers(0, 900),
    st.booleans(),
    st.integers(0, 1),
)


def looked(
    job: Job, seen_at: int, found: tuple[str, int, int | None, int | None, bool, int] | None, now: int
) -> PendingJob:
    """What the controller knows of the pending `job` at T0 + `now`: seen pending at T0 + `seen_at`, its
    pods last read as `found` says (None: not yet), at the latest now."""
    if found is None:
        return PendingJob(job.metadata.uid, T0 + timedelta(seconds=seen_at))
    message, read, since, seen, uncounted, succeeded = found
    read = min(max(read, seen_at), now)
    wait = PodWait(
        read_at=T0 + timedelta(seconds=read),
        job_uid=job.metadata.uid,
        running=not message,
        message=message,
        reason="NoPod" if message == NO_POD else "Waiting" if message else "",
        since=None if since is None or not message else T0 + timedelta(seconds=since),
        seen_since=None if seen is None else T0 + timedelta(seconds=min(seen, read)),
        uncounted=uncounted,
        succeeded=succeeded,
    )
    return PendingJob(job.metadata.uid, T0 + timedelta(seconds=seen_at), wait)


@given(
    st.sampled_from([FLOW, TIMED_FLOW]),
    counters,
    counters,
    st.none() | st.integers(0, 600),
    interim_conditions,
    st.sampled_from([5, 299, 301, 900]),
    st.integers(0, 300),
    st.none() | pod_waits,
)
def test_an_update_a_plan_cannot_see_never_changes_the_plan_but_to_end_a_wait_it_plans_for(
    flow: JobFlow,
    before_values: tuple[int, int | None, int, int],
    values: tuple[int, int | None, int, int],
    started_after: int | None,
    conditions: list[Condition],
    later: int,
    seen_at: int,
    found: tuple[str, int, int | None, int | None, bool, int] | None,
) -> None:
    sim = running_sim(flow)
    (name,) = sim.running()
    old = with_counters(sim.jobs[name], *before_values)
    assert old.metadata.creation_timestamp is not None  # the apiserver always sets it
    start = None if started_after is None else T0 + timedelta(seconds=started_after)
    new = with_counters(old, *values)
    new = replace(new, status=replace(new.status, start_time=start, conditions=tuple(conditions)))
    assert not plan_sees_change(old, new)
    now = sim.now + timedelta(seconds=later)
    # What the controller knows of the Job before the update, and after its informer's handler saw it
    # (controller/pod_reads.py: a Job no longer pending is forgotten; its pods moving are noted).
    seen_at = min(seen_at, later)
    look = looked(old, seen_at, found, later) if pending(old) else None
    pods_before = {name: look} if look is not None else {}
    pods_after: dict[str, PendingJob] = {}
    if pending(new):
        kept = look or PendingJob(new.metadata.uid, now)
        pods_after[name] = replace(kept, moved_at=now) if look and pods_moved(old, new) else kept
    # The flow as the plans before the update left it (the step's message may name the wait).
    stored = plan(sim.flow, [old], now, pods=pods_before)
    flow_now = sim.flow.model_copy(update={"status": stored.status})
    before = plan(flow_now, [old], now, pods=pods_before)
    after = plan(flow_now, [new], now, pods=pods_after)
    assert after.actions == before.actions
    if after.status != before.status:
        # Only a wait the step's message named ended (its Job no longer pending): the controller plans
        # such an update at once (`watched`: its last read found its pod waiting).
        was, now_step = before.status.step("a"), after.status.step("a")
        assert was is not None
        assert wait_part(was.message) is not None
        assert now_step == replace(was, message=without_wait(was.message))
        steps = tuple(now_step if s.name == "a" else s for s in before.status.steps)
        assert after.status == before.status.model_copy(update={"steps": steps})
        assert pending(old)
        assert not pending(new)
        assert look is not None
        assert look.wait is not None
        assert not look.wait.running
    if pending(old) == pending(new) and not (pending(new) and pods_moved(old, new)):
        assert after.requeue_after == before.requeue_after
    # Else only when the step's pods are next looked at moved (planner/pending_pods.py): the controller
    # schedules that look from the update itself (below), it plans nothing at once.


def test_what_a_plan_reads_is_seen() -> None:
    sim = running_sim()
    (name,) = sim.running()
    old = sim.jobs[name]
    complete = Condition(type="Complete", status="True", last_transition_time=T0)
    finished = replace(old, status=replace(old.status, conditions=(complete,)))
    failed = replace(
        old, status=replace(old.status, conditions=(complete.model_copy(update={"type": "Failed"}),))
    )
    deleting = replace(old, metadata=replace(old.metadata, deletion_timestamp=T0))
    replaced = replace(old, metadata=replace(old.metadata, uid="another"))
    # Held suspended by a queue such as Kueue, and resumed: the step says so, and its timeout restarts.
    held = replace(
        old, status=replace(old.status, conditions=(complete.model_copy(update={"type": "Suspended"}),))
    )
    resumed = replace(
        held,
        status=replace(
            held.status, conditions=(held.status.conditions[0].model_copy(update={"status": "False"}),)
        ),
    )
    for new in (finished, failed, deleting, replaced, held):
        assert plan_sees_change(old, new)
    assert plan_sees_change(held, resumed)
    # A step's timeout counts from the Job's creation; its start only stands in for a Job without one.
    uncreated = replace(old, metadata=replace(old.metadata, creation_timestamp=None))
    assert plan_sees_change(uncreated, replace(uncreated, status=replace(old.status, start_time=T0)))
    assert not plan_sees_change(old, replace(old, status=replace(old.status, start_time=T0)))


def controller_of(sim: Simulator) -> tuple[Controller, WorkQueue[str], Metrics, Job]:
    """A controller over a fake apiserver holding `sim`'s flow; also its queue, metrics and running Job."""
    clock = FakeClock()
    api = FakeApiServer(clock)
    api.create_flow(sim.flow)
    api.sync()  # the controller's cache holds the flow
    (name,) = sim.running()
    job = sim.jobs[name]
    owner = job.metadata.owner_references[0].model_copy(update={"uid": api.flows[sim.flow.key].metadata.uid})
    job = replace(job, metadata=replace(job.metadata, owner_references=(owner,)))
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    metrics = Metrics()
    ctrl = Controller(
        flows=api, jobs=api, api=api, queue=queue, expectations=Expectations(clock), events=api,
        clock=clock, metrics=metrics,
    )  # fmt: skip
    return ctrl, queue, metrics, job


def completed(job: Job) -> Job:
    complete = Condition(type="Complete", status="True", last_transition_time=T0)
    return replace(job, status=replace(job.status, conditions=(complete,)))


def test_the_controller_wakes_a_flow_only_for_updates_a_plan_can_see() -> None:
    ctrl, queue, metrics, job = controller_of(running_sim())
    ctrl.on_job_event(with_counters(job, 1, 1, 0, 0), job)
    assert len(queue) == 0
    assert metrics.registry.get_sample_value("zen_flow_job_updates_ignored_total") == 1
    # The Job controller's interim condition before Complete, and the Job's start time: nothing to plan.
    criteria = Condition(type="SuccessCriteriaMet", status="True", last_transition_time=T0)
    ctrl.on_job_event(replace(job, status=replace(job.status, start_time=T0, conditions=(criteria,))), job)
    assert len(queue) == 0
    assert metrics.registry.get_sample_value("zen_flow_job_updates_ignored_total") == 2
    ctrl.on_job_event(completed(job), job)
    assert len(queue) == 1


def test_a_job_of_a_flow_this_controller_does_not_run_wakes_no_reconcile() -> None:
    # Another controller instance's flow (Jobs are not selected by --instance-id): a reconcile of it
    # would find no flow, yet count as a reconcile (zen_flow_reconcile_total, its duration, the queue).
    sim = running_sim()
    ctrl, queue, metrics, job = controller_of(sim)
    owner = job.metadata.owner_references[0].model_copy(update={"name": "team-b-flow", "uid": "team-b"})
    theirs = replace(job, metadata=replace(job.metadata, owner_references=(owner,)))
    ctrl.on_job_event(theirs)
    ctrl.on_job_event(completed(theirs), theirs)
    ctrl.on_job_event(completed(theirs), deleted=True)
    assert len(queue) == 0
    assert metrics.registry.get_sample_value("zen_flow_job_updates_ignored_total") == 0
    # The flow's own Jobs still wake it; and a flow that arrives after its Jobs (a relabel to this
    # instance, a fresh start) is woken by its own event.
    ctrl.on_job_event(completed(job), job)
    assert len(queue) == 1


def test_a_flow_whose_jobs_are_seen_before_it_is_woken_by_its_own_event() -> None:
    # A fresh start (or a flow relabelled to this instance): the Job informer may deliver a flow's Jobs
    # before the flow informer delivers the flow; its own add event then wakes it.
    sim = running_sim()
    clock = FakeClock()
    api = FakeApiServer(clock)
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    ctrl = Controller(
        flows=api, jobs=api, api=api, queue=queue, expectations=Expectations(clock), events=api,
        clock=clock, metrics=Metrics(),
    )  # fmt: skip
    api.on_flow, api.on_job = ctrl.on_flow_event, ctrl.on_job_event
    flow = api.create_flow(sim.flow)
    for job in sim.jobs.values():
        owner = job.metadata.owner_references[0].model_copy(update={"uid": flow.metadata.uid})
        api.jobs[(job.metadata.namespace, job.metadata.name)] = replace(
            job, metadata=replace(job.metadata, owner_references=(owner,))
        )
    api.sync(flows=False)
    assert len(queue) == 0
    api.sync()
    assert len(queue) == 1


async def test_a_running_flows_finished_step_is_reconciled_before_flows_that_have_not_started() -> None:
    """A burst of new flows must not hold a running flow's next step behind all their first reconciles."""
    sim = running_sim()
    ctrl, queue, _, job = controller_of(sim)
    new_flows = [make_flow([job_step("a")], name=f"new-{i}") for i in range(20)]
    for flow in new_flows:
        ctrl.on_flow_event(flow)
    ctrl.on_job_event(completed(job), job)
    assert await queue.get() == sim.flow.key
    queue.done(sim.flow.key)
    assert await queue.get() == new_flows[0].key  # the new flows keep their order
    # A flow that has started is work in progress: its own status echo is not held behind new flows.
    assert sim.flow.status.start_time is not None
    ctrl.on_flow_event(sim.flow)
    assert await queue.get() == sim.flow.key
