"""Planner: a Running step whose pod does not run says why, and fails after podPendingTimeoutSeconds
(planner/pending_pods.py, planner/pod_watch.py); how often its pods are read. Time is the simulator's:
looks are scheduled (the plan's requeue), never polled."""

from __future__ import annotations

from datetime import timedelta

from pod_pending_rig import (
    T0,
    UNSCHEDULABLE,
    events,
    pod,
    pulling,
    run_for,
    stamp,
    started,
    step,
    unschedulable,
)

from zen_flow.api.pod import Pod
from zen_flow.planner import DeleteJob, DueRead
from zen_flow.planner.pending_pods import READS_PER_PLAN, STUCK_AFTER_SECONDS, first_look_after, pods_to_read
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator


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


def test_a_step_whose_only_running_container_is_its_uploader_fails_its_bound_naming_the_pull_error() -> None:
    # Every step with output artifacts has zen-flow's uploader, a native sidecar that starts first and runs
    # beside the step's containers: it running is not the step's pod running.
    sim, job = started([job_step("a", podPendingTimeoutSeconds=120)])
    uploader = {"name": "zf-artifacts-out", "state": {"running": {"startedAt": stamp(T0)}}}
    main = {"name": "main", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off"}}}
    stuck = Pod.model_validate(
        {
            "metadata": {"creationTimestamp": stamp(T0), "ownerReferences": [sim.owner(job)]},
            "spec": {"initContainers": [{"name": "zf-artifacts-out", "restartPolicy": "Always"}]},
            "status": {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "initContainerStatuses": [uploader],
                "containerStatuses": [main],
            },
        }
    )
    sim.stick(job, [stuck])
    failed = run_for(sim, 300)
    assert failed is not None
    assert failed <= T0 + timedelta(seconds=122)
    assert step(sim).phase == "Failed"
    assert step(sim).message == (
        "PodPendingTimeout: no pod running for 120s; pod waiting: container main ImagePullBackOff: Back-off"
    )
