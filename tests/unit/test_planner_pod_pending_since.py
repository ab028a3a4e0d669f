"""Planner: from when a pod's wait counts towards podPendingTimeoutSeconds: pods that ran and ended, pods
being deleted, the Job controller's lag, clock skew, and the attempt's last progress (pod_pending_rig)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pod_pending_rig import (
    T0,
    UNSCHEDULABLE,
    completions,
    deletes,
    ended,
    job_spec,
    pod,
    run_for,
    stamp,
    started,
    step,
    unschedulable,
)

from zen_flow.api.meta import Condition
from zen_flow.api.pod import Pod
from zen_flow.planner.pending_pods import STUCK_AFTER_SECONDS
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

# --- when a wait counts from: pods that ran and ended, pods being deleted, the Job controller's lag -------


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
