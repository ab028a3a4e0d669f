"""Planner: a Running step whose pod does not run says why, and fails after podPendingTimeoutSeconds
(planner/pending_pods.py, planner/pod_watch.py). Time is the simulator's: looks are scheduled (the plan's
requeue), never polled."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zen_flow.api.flow_status import StepStatus
from zen_flow.api.meta import Condition
from zen_flow.api.pod import Pod
from zen_flow.planner import DeleteJob, DueRead
from zen_flow.planner.pending_pods import READS_PER_PLAN, STUCK_AFTER_SECONDS, first_look_after, pods_to_read
from zen_flow_dev.testing.flows import job_step, job_template, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
# The Job controller's finalizer on its pods until it has counted their end.
JOB_TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
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
    sim.stick(job, [unschedulable(owner, created=replaced)], failed=1)
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
    assert pods_to_read(flow, jobs, sim.now, sim.pending_jobs) == (DueRead(job, decisive=True),)
    from zen_flow.planner import plan

    result = plan(flow, jobs, sim.now, pods=sim.pending_jobs)
    assert not result.actions
    assert result.requeue_after == 5


def test_no_more_than_a_few_jobs_are_read_per_plan_the_longest_waiting_first() -> None:
    sim = Simulator(make_flow([job_step(f"s{i:02}") for i in range(12)]), T0)
    sim.reconcile()
    names = sorted(sim.running())
    for name in names:
        sim.stick(name, [unschedulable(sim.owner(name))])
    sim.advance(31)
    due = pods_to_read(sim.flow, list(sim.jobs.values()), sim.now, sim.pending_jobs)
    assert len(due) == READS_PER_PLAN
    sim.reconcile()
    assert sim.pod_reads == [read.job for read in due]
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


# --- when a wait counts from: pods that ran and ended, pods being deleted, the Job controller's lag -------


def ended(
    owner: dict[str, Any],
    created: datetime,
    finished: datetime,
    *,
    phase: str = "Failed",
    uncounted: bool = False,
    deleting: datetime | None = None,
) -> Pod:
    """A pod of the Job that ran and ended at `finished`; `uncounted`: the Job controller has not counted
    it yet (its tracking finalizer is still on it)."""
    code = 0 if phase == "Succeeded" else 1
    term = {"name": "main", "state": {"terminated": {"exitCode": code, "finishedAt": stamp(finished)}}}
    meta: dict[str, Any] = {"creationTimestamp": stamp(created), "ownerReferences": [owner]}
    if uncounted:
        meta["finalizers"] = [JOB_TRACKING_FINALIZER]
    if deleting is not None:
        meta["deletionTimestamp"] = stamp(deleting)
    return Pod.model_validate({"metadata": meta, "status": {"phase": phase, "containerStatuses": [term]}})


def run_for(sim: Simulator, seconds: int, name: str = "a") -> datetime | None:
    """Let the controller's wake-ups drive the flow for `seconds` (each plan's requeue, at least every 30
    s, as other events would): when step `name` stopped Running, or None."""
    end = sim.now + timedelta(seconds=seconds)
    while sim.now < end:
        if step(sim, name).phase != "Running":
            return sim.now
        wait = sim.last.requeue_after or 30
        sim.advance(min(wait, 30, (end - sim.now).total_seconds()))
        sim.reconcile()
    return sim.now if step(sim, name).phase != "Running" else None


def deletes(sim: Simulator) -> list[DeleteJob]:
    return [a for plan in sim.plans for a in plan.actions if isinstance(a, DeleteJob)]


def test_a_pod_that_ran_then_failed_counts_from_its_end_and_its_replacement_from_its_creation() -> None:
    # The Job's own backoffLimit: its pod ran 20 minutes and failed; the Job controller waits its pod
    # backoff (10 s, 20 s, ... up to 6 minutes) before it makes another. The wait counts from the failure,
    # not from the attempt's start 20 minutes before.
    sim, job = started([job_step("a", podPendingTimeoutSeconds=120)])
    owner = sim.owner(job)
    sim.stick(job, [], ready=1)
    sim.advance(20 * 60)
    sim.reconcile()
    failed_at = sim.now
    first = ended(owner, T0, failed_at)
    sim.stick(job, [first], ready=0, active=0, failed=1)
    assert run_for(sim, 100) is None
    assert not deletes(sim)
    # Its replacement, made after the backoff, waits for a node: it counts from its creation.
    made = sim.now
    sim.stick(job, [first, unschedulable(owner, created=made)], ready=0, active=1, failed=1)
    failed = run_for(sim, 300)
    assert failed is not None
    assert made + timedelta(seconds=120) <= failed <= made + timedelta(seconds=122)
    assert step(sim).message == (
        f"PodPendingTimeout: no pod running for 120s; pod unschedulable: {UNSCHEDULABLE}"
    )


def test_a_pod_being_deleted_holds_the_count_and_no_pod_counts_from_the_controllers_first_sight() -> None:
    # podReplacementPolicy: Failed: an evicted pod terminates (a 30 s grace period) before the Job makes
    # another; the Job has no pod that waits, and the attempt began an hour ago.
    sim, job = started([job_step("a", podPendingTimeoutSeconds=300)])
    owner = sim.owner(job)
    sim.stick(job, [], ready=1)
    sim.advance(3600)
    sim.reconcile()
    evicted = sim.now
    running = {"name": "main", "state": {"running": {"startedAt": stamp(T0)}}}
    leaving = Pod.model_validate(
        {
            "metadata": {
                "creationTimestamp": stamp(T0),
                "deletionTimestamp": stamp(evicted + timedelta(seconds=30)),
                "ownerReferences": [owner],
            },
            "status": {"phase": "Running", "containerStatuses": [running]},
        }
    )
    sim.stick(job, [leaving], ready=0)
    sim.advance(31)
    sim.reconcile()
    assert sim.pod_reads == [job]
    assert step(sim).phase == "Running"
    assert step(sim).message is None  # its pod is on its way out, within its grace period: no wait yet
    # It is gone and no other came (a quota refuses it): the bound counts from the first read that
    # found no pod, which is as much as the controller saw.
    sim.stick(job, [], ready=0, active=0)
    failed = run_for(sim, 600)
    assert failed is not None
    assert failed >= evicted + timedelta(seconds=31 + 300)
    assert not [d for d in deletes(sim) if sim.now - failed > timedelta(0)]


def test_a_pod_that_succeeded_before_its_job_says_complete_never_fails_the_step() -> None:
    # A one-pod Job: its pod succeeded, the Job controller dropped it from `ready` and has yet to count it
    # and say Complete (a busy controller-manager): the step is no more stuck than finished.
    sim, job = started([job_step("a", podPendingTimeoutSeconds=5)])
    owner = sim.owner(job)
    sim.stick(job, [], ready=1)
    sim.advance(600)
    sim.reconcile()
    done_at = sim.now
    sim.stick(job, [ended(owner, T0, done_at, phase="Succeeded", uncounted=True)], ready=0, active=0)
    assert run_for(sim, 60) is None
    # Its finalizer off, not counted yet: still not a wait.
    sim.stick(job, [ended(owner, T0, done_at, phase="Succeeded")], ready=0, active=0)
    assert run_for(sim, 60) is None
    assert not deletes(sim)
    assert step(sim).message is None
    # Counted, with the interim condition before Complete: the Job is ending, nothing is read.
    met = Condition(type="SuccessCriteriaMet", status="True", last_transition_time=sim.now)
    counted = sim.jobs[job]
    sim.jobs[job] = replace(counted, status=replace(counted.status, succeeded=1, conditions=(met,)))
    reads = len(sim.pod_reads)
    assert run_for(sim, 60) is None
    assert len(sim.pod_reads) == reads
    sim.complete(job)
    sim.reconcile()
    assert step(sim).phase == "Succeeded"
    assert not deletes(sim)


def completions(n: int | str) -> dict[str, Any]:
    """A step's Job template field: its `completions`."""
    return job_spec(completions=n)


def job_spec(**fields: int | str | None) -> dict[str, Any]:
    """A step's Job template with these Job spec fields (`completions`, `parallelism`)."""
    return {"template": {**job_template(), "spec": {**job_template()["spec"], **fields}}}


def test_a_work_queue_whose_sibling_pod_never_runs_after_a_success_fails_its_bound() -> None:
    # A work queue (completions unset, parallelism 2): one pod ran ten minutes and succeeded, its sibling
    # never got a node. Kubernetes completes such a Job only once every pod has ended, so the sibling holds
    # the step Running: the bound counts from the success, as after any pod's end, and fails the attempt.
    sim, job = started([job_step("a", podPendingTimeoutSeconds=60, **job_spec(parallelism=2))])
    owner = sim.owner(job)
    sim.stick(job, [unschedulable(owner)], ready=1, active=2)
    sim.advance(600)
    sim.reconcile()
    done_at = sim.now
    sim.stick(job, [ended(owner, T0, done_at, phase="Succeeded"), unschedulable(owner)], succeeded=1)
    failed = run_for(sim, 200)
    assert failed is not None
    assert done_at + timedelta(seconds=60) <= failed <= done_at + timedelta(seconds=62)
    assert (
        step(sim).message == f"PodPendingTimeout: no pod running for 60s; pod unschedulable: {UNSCHEDULABLE}"
    )
    assert [d.reason for d in deletes(sim)] == ["PodPendingTimeout"]


def test_a_job_that_counted_its_success_before_saying_complete_never_fails_the_step() -> None:
    # The Job controller counted the pod's success (its finalizer off) and has yet to write Complete (or
    # SuccessCriteriaMet): a step's bound passing meanwhile is no wait, whether its status still counts
    # the pod active or not; nor, for a Job of three completions, a count of three; nor, for one whose
    # completions an expression fills (not known here), or for a work queue (completions unset, parallelism
    # over 1, or one an expression fills), a count of one with no pod active. A parallelism of 1, or null
    # (Kubernetes' default: 1), is one pod's Job: its one success is its last, active or not.
    cases: list[tuple[dict[str, Any], dict[str, int]]] = [
        ({}, {"succeeded": 1}),
        ({}, {"succeeded": 1, "active": 0}),
        (job_spec(parallelism=1), {"succeeded": 1}),
        (job_spec(parallelism=None), {"succeeded": 1}),
        (completions(3), {"succeeded": 3, "active": 0}),
        (completions("{{ params.n }}"), {"succeeded": 1, "active": 0}),
        (job_spec(parallelism=3), {"succeeded": 1, "active": 0}),
        (job_spec(parallelism="{{ params.n }}"), {"succeeded": 1, "active": 0}),
    ]
    for extra, counts in cases:
        sim, job = started([job_step("a", podPendingTimeoutSeconds=60, **extra)])
        owner = sim.owner(job)
        sim.stick(job, [], ready=1)
        sim.advance(600)
        sim.reconcile()
        sim.stick(job, [ended(owner, T0, sim.now, phase="Succeeded")], ready=0, **counts)
        assert run_for(sim, 200) is None, (extra, counts)
        assert not deletes(sim)
        assert step(sim).message is None


def test_several_completions_whose_next_pod_never_comes_fail_a_bound_after_the_last_success() -> None:
    # Three completions, one at a time: the first pod ran ten minutes and succeeded, and the next is never
    # made (a ResourceQuota refuses it). The wait counts from that success, the last progress of the
    # attempt, not from its start; a next pod made a little late is no wait.
    sim, job = started([job_step("a", podPendingTimeoutSeconds=60, **completions(3))])
    owner = sim.owner(job)
    sim.stick(job, [], ready=1)
    sim.advance(600)
    sim.reconcile()
    first_done = sim.now
    first = ended(owner, T0, first_done, phase="Succeeded")
    sim.stick(job, [first], ready=0, succeeded=1, active=0)
    assert run_for(sim, 80) is None  # the next pod is late: said, not failed (its bound is 92 s on)
    assert (step(sim).message or "").startswith("no pod: ")
    sim.stick(job, [first], ready=1, succeeded=1, active=1)  # the second pod made, and it runs
    sim.reconcile()
    assert step(sim).message is None
    sim.advance(300)
    sim.reconcile()
    second_done = sim.now
    done = [first, ended(owner, first_done, second_done, phase="Succeeded")]
    sim.stick(job, done, ready=0, succeeded=2, active=0)
    failed = run_for(sim, 300)
    assert failed is not None
    # The first read that found no pod, 31 s after the success, and the bound from it (whole seconds).
    first_read = second_done + timedelta(seconds=31)
    assert first_read + timedelta(seconds=60) <= failed <= first_read + timedelta(seconds=62)
    assert step(sim).message == (
        "PodPendingTimeout: no pod running for 60s; no pod: the Job has no pod that is not finished "
        "(see its events: kubectl describe job)"
    )
    assert [d.reason for d in deletes(sim)] == ["PodPendingTimeout"]


def test_a_fail_job_failure_the_job_controller_has_yet_to_count_stays_final() -> None:
    # The pod failed with an exit code a FailJob rule of its podFailurePolicy names: not to be retried.
    # Until the Job controller has counted it (it says FailureTarget, then Failed) no timeout turns it
    # into a PodPendingTimeout, which the step's retryPolicy would retry.
    retry = {"limit": 2, "backoff": {"duration": "10s"}}
    sim, job = started([job_step("a", podPendingTimeoutSeconds=5, retryPolicy=retry)])
    owner = sim.owner(job)
    sim.stick(job, [], ready=1)
    sim.advance(600)
    sim.reconcile()
    failed_at = sim.now
    sim.stick(job, [ended(owner, T0, failed_at, uncounted=True)], ready=0, active=0)
    assert run_for(sim, 60) is None
    # Counted (its finalizer off), its verdict on the way: the Job says FailureTarget before Failed.
    sim.pods[job] = [ended(owner, T0, failed_at)]
    target = Condition(
        type="FailureTarget", status="True", reason="PodFailurePolicy", last_transition_time=sim.now
    )
    counted = sim.jobs[job]
    sim.jobs[job] = replace(counted, status=replace(counted.status, failed=1, conditions=(target,)))
    assert run_for(sim, 60) is None
    sim.jobs[job] = counted
    sim.fail(job, reason="PodFailurePolicy", message="Container main for pod x failed with exit code 1")
    sim.reconcile()
    assert step(sim).phase == "Failed"
    assert "not retried" in (step(sim).message or "")
    assert not deletes(sim)


def test_pods_are_first_read_30_seconds_after_the_job_turned_pending_not_after_its_attempt_began() -> None:
    sim, job = started([job_step("a")])
    owner = sim.owner(job)
    sim.stick(job, [], ready=1)
    sim.advance(600)
    sim.reconcile()
    # Its pod failed and its replacement waits: the Job has no ready pod from now on.
    sim.stick(job, [unschedulable(owner, created=sim.now)], ready=0, failed=1)
    sim.reconcile()
    sim.advance(30)
    sim.reconcile()
    assert sim.pod_reads == []
    sim.advance(1)
    sim.reconcile()
    assert sim.pod_reads == [job]
    assert step(sim).message == f"pod unschedulable: {UNSCHEDULABLE}"


def test_a_job_with_no_pod_at_all_fails_once_the_controller_has_found_none_for_the_whole_bound() -> None:
    # A ResourceQuota refuses its pod: there is nothing to say since when, but what the controller saw.
    sim, job = started([job_step("a", podPendingTimeoutSeconds=60)])
    sim.stick(job, [], ready=0, active=0)
    failed = run_for(sim, 300)
    assert sim.pod_reads[0] == job
    first_read = T0 + timedelta(seconds=31)
    assert failed is not None
    assert first_read + timedelta(seconds=60) <= failed <= first_read + timedelta(seconds=62)
    assert "no pod: " in (step(sim).message or "")


# --- clock skew ------------------------------------------------------------------------------------------


def test_a_cluster_clock_behind_the_controllers_never_makes_a_step_fail_early() -> None:
    # The apiserver's and kubelets' clocks are 20 s behind the controller's: a pod made when the Job turned
    # pending says it was made 20 s before.
    sim, job = started([job_step("a", podPendingTimeoutSeconds=60)])
    sim.skew = -20.0
    owner = sim.owner(job)
    sim.stick(job, [], ready=1)
    sim.advance(600)
    sim.reconcile()
    turned = sim.now
    sim.stick(job, [unschedulable(owner, created=turned - timedelta(seconds=20))], ready=0, failed=1)
    failed = run_for(sim, 300)
    assert failed is not None
    assert turned + timedelta(seconds=60) <= failed <= turned + timedelta(seconds=62)


def test_a_container_that_stops_while_the_job_stays_pending_counts_by_the_controllers_clock() -> None:
    # No Job update says it (the Job has had no ready pod all along): the kubelet's time of the crash,
    # 20 s behind, is moved by how far behind the cluster showed itself when it stamped the Job.
    sim = Simulator(make_flow([job_step("a", podPendingTimeoutSeconds=60)]), T0, skew=-20.0)
    sim.reconcile()
    (job,) = sim.running()
    owner = sim.owner(job)
    running = {"name": "main", "state": {"running": {"startedAt": stamp(T0)}}}
    sim.stick(job, [pod(owner, T0 - timedelta(seconds=20), phase="Running", containerStatuses=[running])])
    assert run_for(sim, 100) is None
    crashed = sim.now  # by the controller's clock; the kubelet says 20 s earlier
    looping = {
        "name": "main",
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting"}},
        "lastState": {"terminated": {"exitCode": 1, "finishedAt": stamp(crashed - timedelta(seconds=20))}},
    }
    sim.pods[job] = [pod(owner, T0 - timedelta(seconds=20), phase="Running", containerStatuses=[looping])]
    failed = run_for(sim, 900)
    assert failed is not None
    assert failed >= crashed + timedelta(seconds=60)


# --- how often pods are read -------------------------------------------------------------------------------


def test_a_pod_that_runs_and_is_never_ready_is_read_less_and_less_often() -> None:
    # Its readiness probe fails for an hour: it runs, it is not stuck, and nothing about it changes.
    sim, job = started([job_step("a")])
    owner = sim.owner(job)
    running = {"name": "main", "state": {"running": {"startedAt": stamp(T0)}}}
    unready = {"type": "Ready", "status": "False"}
    sim.stick(job, [pod(owner, T0, phase="Running", containerStatuses=[running], conditions=[unready])])
    sim.reconcile()  # the controller's look, which it schedules when the Job turns pending
    end = sim.now + timedelta(hours=1)
    plans = len(sim.plans)
    while sim.now < end:  # woken only by its own plans' requeues
        assert sim.last.requeue_after is not None
        sim.advance(sim.last.requeue_after)
        sim.reconcile()
    assert step(sim).phase == "Running"
    assert step(sim).message is None
    assert 10 <= len(sim.pod_reads) <= 20  # 30 s, 60 s, 120 s, 240 s, then every 5 minutes (not 120)
    assert len(sim.plans) - plans == len(sim.pod_reads)  # no plan but for a read


def test_a_cause_that_does_not_change_is_read_less_and_less_often_but_the_bound_still_gets_its_read() -> None:
    sim, job = started([job_step("a", podPendingTimeoutSeconds=1800)])
    sim.stick(job, [unschedulable(sim.owner(job))])
    failed = run_for(sim, 3600)
    assert failed is not None
    assert T0 + timedelta(seconds=1800) <= failed <= T0 + timedelta(seconds=1802)
    assert len(sim.pod_reads) <= 12  # every 30 s would be 60
    # The reads that only word a message come from the apiserver's cache; the one at the bound does not.
    assert sim.cached_pod_reads == sim.pod_reads[:-1]


def test_a_job_whose_pods_come_and_go_is_read_soon_after_whatever_the_last_read_found() -> None:
    sim, job = started([job_step("a")])
    owner = sim.owner(job)
    running = {"name": "main", "state": {"running": {"startedAt": stamp(T0)}}}
    unready = {"type": "Ready", "status": "False"}
    sim.stick(job, [pod(owner, T0, phase="Running", containerStatuses=[running], conditions=[unready])])
    run_for(sim, 1200)  # read every 5 minutes by now
    reads = len(sim.pod_reads)
    # Its pod failed and the Job made another, which no node takes: the Job's counts say so.
    sim.stick(job, [unschedulable(owner, created=sim.now)], failed=1)
    run_for(sim, 32)
    assert len(sim.pod_reads) == reads + 1
    assert step(sim).message == f"pod unschedulable: {UNSCHEDULABLE}"


# --- the step's message ------------------------------------------------------------------------------------


def test_a_retried_step_keeps_what_its_message_said_before_while_its_pod_waits_and_after() -> None:
    retry = {"limit": 2, "backoff": {"duration": "10s"}}
    sim, job = started([job_step("a", retryPolicy=retry)])
    sim.fail(job)
    sim.reconcile()
    sim.advance(11)
    sim.reconcile()
    (retried,) = sim.running()
    history = "attempt 2; attempt 1 failed: Job failed: BackoffLimitExceeded: Job has failed"
    assert step(sim).message == history
    sim.stick(retried, [unschedulable(sim.owner(retried), created=sim.now)])
    sim.advance(31)
    sim.reconcile()
    assert step(sim).message == f"{history}; now pod unschedulable: {UNSCHEDULABLE}"
    assert events(sim, "StepPodStuck") == [f"step a: pod unschedulable: {UNSCHEDULABLE}"]
    # Its pod runs: only the wait goes.
    sim.stick(retried, [], ready=1)
    sim.reconcile()
    assert step(sim).message == history


# --- the bound counts from the attempt's last progress ------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(2, 4),
    st.integers(1, 120),
    st.lists(st.tuples(st.integers(0, 400), st.integers(1, 900)), min_size=4, max_size=4),
)
def test_a_job_of_several_completions_fails_only_for_a_gap_without_progress_longer_than_its_bound(
    count: int, bound: int, pods: list[tuple[int, int]]
) -> None:
    # One pod at a time: before each, a gap with no pod at all (the Job controller's backlog, a quota),
    # then the pod runs and succeeds. The step fails in a gap only once the gap has lasted the bound (never
    # earlier: the last success, or the attempt's start, is the last progress), and surely once it has
    # lasted the bound after the first read that found no pod; a Job that counted all its completions is
    # never failed while its Complete comes.
    sim, job = started([job_step("a", podPendingTimeoutSeconds=bound, **completions(count))])
    owner = sim.owner(job)
    done: list[Pod] = []
    for gap, runs in pods[:count]:
        progress = sim.now
        sim.stick(job, done, ready=0, active=0, succeeded=len(done))
        sim.reconcile()  # the Job's update plans the flow
        failed = run_for(sim, gap)
        if failed is not None:
            assert failed >= progress + timedelta(seconds=bound)
            assert step(sim).message == (
                f"PodPendingTimeout: no pod running for {bound}s; no pod: the Job has no pod that is not "
                "finished (see its events: kubectl describe job)"
            )
            return
        latest = progress + timedelta(seconds=min(STUCK_AFTER_SECONDS, bound) + 1 + bound + 2)
        assert sim.now < latest, "a gap past the bound after the first read that found no pod"
        started_at = sim.now
        sim.stick(job, done, ready=1, active=1, succeeded=len(done))
        sim.reconcile()
        assert run_for(sim, runs) is None
        done.append(ended(owner, started_at, sim.now, phase="Succeeded"))
    sim.stick(job, done, ready=0, active=0, succeeded=len(done))
    sim.reconcile()
    assert run_for(sim, 300) is None
    assert not deletes(sim)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(2, 4), st.integers(1, 120), st.integers(1, 900), st.integers(0, 300))
def test_a_work_queue_fails_only_for_a_sibling_left_pending_past_its_bound_after_a_success(
    parallelism: int, bound: int, runs: int, siblings_end: int
) -> None:
    # A work queue: one pod runs and succeeds while its siblings never get a node; they end (are deleted,
    # fail) `siblings_end` seconds after the success, or not before the step fails. The step fails only
    # once they have waited the bound past the success, surely by then (a second late at most), and never
    # once they have all ended: the Job's Complete comes.
    sim, job = started([job_step("a", podPendingTimeoutSeconds=bound, **job_spec(parallelism=parallelism))])
    owner = sim.owner(job)
    siblings = [unschedulable(owner) for _ in range(parallelism - 1)]
    sim.stick(job, siblings, ready=1, active=parallelism)
    sim.reconcile()
    assert run_for(sim, runs) is None
    done_at = sim.now
    done = ended(owner, T0, done_at, phase="Succeeded")
    sim.stick(job, [done, *siblings], succeeded=1, active=len(siblings))
    sim.reconcile()
    failed = run_for(sim, siblings_end)
    if failed is not None:
        assert done_at + timedelta(seconds=bound) <= failed <= done_at + timedelta(seconds=bound + 2)
        assert step(sim).message == (
            f"PodPendingTimeout: no pod running for {bound}s; pod unschedulable: {UNSCHEDULABLE}"
        )
        return
    assert sim.now < done_at + timedelta(seconds=bound + 2), "siblings pending past the bound"
    gone = [ended(owner, T0, sim.now) for _ in siblings]
    sim.stick(job, [done, *gone], succeeded=1, failed=len(gone), active=0)
    sim.reconcile()
    assert run_for(sim, 300) is None
    assert not deletes(sim)
