"""Planner: a Running step whose pod does not run says why, and fails after podPendingTimeoutSeconds
(planner/pending_pods.py, planner/pod_watch.py). Time is the simulator's: looks are scheduled (the plan's
requeue), never polled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from zen_flow.api.flow_status import StepStatus
from zen_flow.api.pod import Pod
from zen_flow.planner import DeleteJob
from zen_flow.planner.pending_pods import READS_PER_PLAN, STUCK_AFTER_SECONDS, first_look_after, pods_to_read
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
UNSCHEDULABLE = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."


def stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(owner: dict[str, Any], created: datetime, **status: Any) -> Pod:
    return Pod.model_validate(
        {"metadata": {"creationTimestamp": stamp(created), "ownerReferences": [owner]}, "status": status}
    )


def unschedulable(owner: dict[str, Any], created: datetime = T0) -> Pod:
    cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": UNSCHEDULABLE}
    return pod(owner, created, phase="Pending", conditions=[cond])


def pulling(owner: dict[str, Any], reason: str, message: str, created: datetime = T0) -> Pod:
    waiting = {"name": "main", "state": {"waiting": {"reason": reason, "message": message}}}
    scheduled = {"type": "PodScheduled", "status": "True"}
    return pod(owner, created, phase="Pending", conditions=[scheduled], containerStatuses=[waiting])


def step(sim: Simulator, name: str = "a") -> StepStatus:
    found = sim.flow.status.step(name)
    assert found is not None
    return found


def events(sim: Simulator, reason: str) -> list[str]:
    return [e.message for plan in sim.plans for e in plan.events if e.reason == reason]


def started(flow_steps: list[dict[str, Any]], **policy: Any) -> tuple[Simulator, str]:
    sim = Simulator(make_flow(flow_steps, execution_policy=policy or None), T0)
    sim.reconcile()
    (name,) = sim.running()
    return sim, name


def test_a_step_whose_pod_no_node_fits_says_so_once_it_has_waited_a_while() -> None:
    sim, job = started([job_step("a")])
    sim.stick(job, [unschedulable(sim.owner(job))])
    sim.advance(STUCK_AFTER_SECONDS)
    sim.reconcile()
    assert step(sim).message is None
    assert sim.pod_reads == []
    assert sim.last.requeue_after == 1  # the look is scheduled (a second late at most, as timeouts)
    sim.advance(sim.last.requeue_after)
    sim.reconcile()
    assert sim.pod_reads == [job]
    assert step(sim).phase == "Running"
    assert step(sim).message == f"pod unschedulable: {UNSCHEDULABLE}"
    assert events(sim, "StepPodStuck") == [f"step a: pod unschedulable: {UNSCHEDULABLE}"]
    assert sim.last.requeue_after == 30  # looked at again in half a minute, not at every reconcile


def test_the_message_stays_while_the_cause_does_and_goes_when_the_pod_runs() -> None:
    sim, job = started([job_step("a")])
    owner = sim.owner(job)
    sim.stick(job, [pulling(owner, "ErrImagePull", "manifest unknown")])
    sim.advance(31)
    sim.reconcile()
    said = step(sim).message
    assert said == "pod waiting: container main ErrImagePull: manifest unknown"
    # The kubelet's next words for the same cause: no status write, no second event.
    sim.stick(job, [pulling(owner, "ImagePullBackOff", 'Back-off pulling image "x"')])
    sim.advance(sim.last.requeue_after)
    before = sim.flow.status
    sim.reconcile()
    assert sim.pod_reads == [job, job]
    assert sim.flow.status is before
    assert len(events(sim, "StepPodStuck")) == 1
    # Its pod runs now (the image was pushed): the message goes with the next plan.
    sim.stick(job, [], ready=1)
    sim.reconcile()
    assert step(sim).message is None
    assert sim.last.requeue_after is None  # nothing more to look at


def test_a_step_stuck_past_its_bound_fails_at_the_bound_and_its_retry_is_a_new_job() -> None:
    retry = {"limit": 1, "backoff": {"duration": "10s"}}
    sim, job = started([job_step("a", podPendingTimeoutSeconds=60, retryPolicy=retry)])
    sim.stick(job, [unschedulable(sim.owner(job))])
    sim.advance(31)
    sim.reconcile()
    assert step(sim).message == f"pod unschedulable: {UNSCHEDULABLE}"
    assert sim.last.requeue_after == 30  # the bound: 60 s after the Job's creation (+1: whole seconds)
    sim.advance(29)  # T0 + 60
    sim.reconcile()
    assert step(sim).phase == "Running"
    assert sim.last.requeue_after == 1
    sim.advance(1)  # T0 + 61: read again (the pod may have started since) and still stuck
    sim.reconcile()
    assert sim.pod_reads == [job, job]
    assert DeleteJob(job, "a", "PodPendingTimeout") in sim.last.actions
    failed = step(sim)
    assert failed.phase == "Retrying"
    assert failed.message == (
        f"attempt 1 failed: PodPendingTimeout: no pod running for 60s; pod unschedulable: {UNSCHEDULABLE}"
    )
    assert events(sim, "PodPendingTimeout") == [f"step a: {failed.message}"]
    sim.advance(sim.last.requeue_after)
    sim.reconcile()
    assert step(sim).phase == "Running"
    assert step(sim).retry_count == 1
    (retried,) = sim.running()
    assert retried != job
    # The second attempt lands where it runs.
    sim.stick(retried, [], ready=1)
    sim.complete(retried)
    sim.reconcile()
    assert sim.phase == "Succeeded"


def test_the_flows_bound_applies_to_every_job_step_unless_the_step_sets_its_own() -> None:
    sim = Simulator(
        make_flow(
            [job_step("a"), job_step("b", podPendingTimeoutSeconds=300), manual_step("gate", "a")],
            execution_policy={"podPendingTimeoutSeconds": 10},
        ),
        T0,
    )
    sim.reconcile()
    a, b = sorted(sim.running())
    sim.stick(a, [pulling(sim.owner(a), "InvalidImageName", "bad name")])
    sim.stick(b, [pulling(sim.owner(b), "InvalidImageName", "bad name")])
    assert first_look_after(sim.flow) == 10  # the controller's look after a Job's first report
    sim.advance(11)
    sim.reconcile()
    assert step(sim, "a").phase == "Failed"
    assert step(sim, "a").message == (
        "PodPendingTimeout: no pod running for 10s; pod waiting: container main InvalidImageName: bad name"
    )
    # The failing flow waits for b, whose own bound is longer: it is named stuck, then fails at it.
    sim.advance(20)
    sim.reconcile()
    assert step(sim, "b").phase == "Running"
    assert step(sim, "b").message == "pod waiting: container main InvalidImageName: bad name"
    sim.advance(270)
    sim.reconcile()
    assert step(sim, "b").phase == "Failed"
    assert sim.phase == "Failed"


def test_a_pod_that_runs_is_never_failed_and_a_new_pod_starts_the_count_again() -> None:
    sim, job = started([job_step("a", podPendingTimeoutSeconds=60)])
    owner = sim.owner(job)
    downloading = {"name": "fetch", "state": {"running": {"startedAt": stamp(T0)}}}
    sim.stick(job, [pod(owner, T0, phase="Pending", initContainerStatuses=[downloading])])
    for _ in range(10):  # ten minutes of an init container's download: never stuck
        sim.advance(60)
        sim.reconcile()
    assert step(sim).phase == "Running"
    assert step(sim).message is None
    # Its pod failed and the Job made another, which waits: it counts from that pod's creation.
    replaced = T0 + timedelta(minutes=10)
    sim.stick(job, [unschedulable(owner, created=replaced)])
    sim.reconcile()
    assert step(sim).message is None  # it has waited for no time yet
    sim.advance(59)
    sim.reconcile()
    assert step(sim).phase == "Running"
    assert step(sim).message == f"pod unschedulable: {UNSCHEDULABLE}"
    sim.advance(2)
    sim.reconcile()
    assert step(sim).phase == "Failed"


def test_a_read_made_before_the_bound_never_fails_a_step() -> None:
    # The read due at the bound was not made (too many were due, or it failed): the last one predates
    # the bound, the pod may run since: the step waits for a read, asked for a few seconds later.
    sim, job = started([job_step("a", podPendingTimeoutSeconds=40)])
    sim.stick(job, [unschedulable(sim.owner(job))])
    sim.advance(31)
    sim.reconcile()
    assert sim.pod_reads == [job]
    sim.pods.clear()  # from now on reads are dropped: keep the old one
    sim.advance(20)
    flow, jobs = sim.flow, list(sim.jobs.values())
    assert pods_to_read(flow, jobs, sim.now, sim.pod_waits) == (job,)
    from zen_flow.planner import plan

    result = plan(flow, jobs, sim.now, pods=sim.pod_waits)
    assert not result.actions
    assert result.requeue_after == 5


def test_no_more_than_a_few_jobs_are_read_per_plan_the_longest_waiting_first() -> None:
    sim = Simulator(make_flow([job_step(f"s{i:02}") for i in range(12)]), T0)
    sim.reconcile()
    names = sorted(sim.running())
    for name in names:
        sim.stick(name, [unschedulable(sim.owner(name))])
    sim.advance(31)
    due = pods_to_read(sim.flow, list(sim.jobs.values()), sim.now, {})
    assert len(due) == READS_PER_PLAN
    sim.reconcile()
    assert sim.pod_reads == list(due)
    assert sim.last.requeue_after == 5  # the others soon
    sim.advance(5)
    sim.reconcile()
    assert sorted(sim.pod_reads) == names  # the other four, each read once


def test_a_job_the_job_controller_has_not_reported_on_is_not_looked_at() -> None:
    sim, _job = started([job_step("a", podPendingTimeoutSeconds=5)])
    sim.advance(600)
    sim.reconcile()
    assert step(sim).phase == "Running"
    assert sim.pod_reads == []
