"""Planner: step timeouts, Jobs held suspended, and a cluster clock behind the controller's — scheduled, not
polled."""

from __future__ import annotations

from datetime import timedelta

import pytest
from planner_time_rig import T0, reasons, step

from zen_flow.planner import CreateJob, DeleteJob
from zen_flow.planner.steps import HELD
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

# --- timeouts -------------------------------------------------------------------------------------------


def test_timeout_sets_the_job_deadline_and_is_enforced() -> None:
    sim = Simulator(make_flow([job_step("a", timeoutSeconds=60)]), T0)
    result = sim.reconcile()
    body = next(a for a in result.actions if isinstance(a, CreateJob)).body
    assert body["spec"]["activeDeadlineSeconds"] == 60
    # Counted from the second after the Job's creationTimestamp (whole seconds, cut down): never early.
    assert result.requeue_after == 61
    sim.advance(60)
    assert sim.reconcile().requeue_after == 1
    sim.advance(1)
    result = sim.reconcile()
    assert [type(a) for a in result.actions] == [DeleteJob]
    assert result.actions[0].reason == "timed out after 60s"  # type: ignore[union-attr]
    assert step(sim).phase == "Failed"
    assert step(sim).message == "timed out after 60s"
    assert reasons(sim)[:2] == ["StepTimedOut", "StepFailed"]
    assert sim.phase == "Failed"


def test_timed_out_attempt_is_retried_with_a_fresh_clock() -> None:
    sim = Simulator(
        make_flow(
            [
                job_step(
                    "a",
                    timeoutSeconds=60,
                    retryPolicy={"limit": 1, "backoff": {"type": "Fixed", "duration": "10s"}},
                )
            ]
        ),
        T0,
    )
    sim.reconcile()
    sim.advance(61)
    sim.reconcile()
    assert step(sim).phase == "Retrying"
    assert "StepTimedOut" in reasons(sim)
    sim.advance(11)
    result = sim.reconcile()
    assert any(isinstance(a, CreateJob) for a in result.actions)
    assert result.requeue_after == 61  # measured from the new attempt, not the step's first start
    sim.advance(30)
    sim.reconcile()
    assert step(sim).phase == "Running"


def test_a_timeout_never_fires_before_the_job_has_run_that_long() -> None:
    # The create happens 0.9 s into a second; the apiserver stores creationTimestamp cut down to it.
    sim = Simulator(make_flow([job_step("a", timeoutSeconds=2)]), T0 + timedelta(seconds=0.9))
    sim.reconcile()
    sim.advance(1.6)  # the Job has run 1.6 s, its creationTimestamp says 2.5 s
    assert not any(isinstance(a, DeleteJob) for a in sim.reconcile().actions)
    assert step(sim).phase == "Running"
    sim.advance(0.5)  # 2.1 s: at most a second late
    assert [type(a) for a in sim.reconcile().actions] == [DeleteJob]
    assert step(sim).message == "timed out after 2s"


def test_the_jobs_own_deadline_reads_as_the_same_timeout() -> None:
    # The Job controller's activeDeadlineSeconds (= timeoutSeconds) may stop the Job before zen-flow does.
    sim = Simulator(make_flow([job_step("a", timeoutSeconds=60)]), T0)
    sim.reconcile()
    sim.advance(60)
    sim.fail(
        sim.running()[0], reason="DeadlineExceeded", message="Job was active longer than specified deadline"
    )
    result = sim.reconcile()
    assert not any(isinstance(a, DeleteJob) for a in result.actions)  # already stopped
    assert step(sim).message == "timed out after 60s"
    assert reasons(sim)[:2] == ["StepTimedOut", "StepFailed"]


@pytest.mark.parametrize("instant_delete", [True, False])
def test_a_timeout_whose_status_write_was_lost_still_reads_as_a_timeout(instant_delete: bool) -> None:
    # The plan that deleted the Job for its timeout lost its status write: the next plan finds the Job
    # gone (or going) and must not blame someone outside zen-flow for it.
    sim = Simulator(make_flow([job_step("a", timeoutSeconds=30)]), T0, instant_delete=instant_delete)
    sim.reconcile()
    sim.advance(40)
    sim.reconcile(write_status=False)
    sim.reconcile()
    assert (step(sim).phase, step(sim).message) == ("Failed", "timed out after 30s")
    assert reasons(sim)[:2] == ["StepTimedOut", "StepFailed"]


def test_a_retrys_timeout_whose_status_write_was_lost_still_reads_as_a_timeout() -> None:
    # The status records when each attempt began (attemptStartTime), so a retry's lost timeout is known too.
    policy = {"limit": 1, "backoff": {"type": "Fixed", "duration": "1s"}}
    sim = Simulator(make_flow([job_step("a", timeoutSeconds=30, retryPolicy=policy)]), T0)
    sim.reconcile()
    sim.fail(sim.running()[0])
    sim.reconcile()
    sim.advance(2)
    sim.reconcile()
    assert step(sim).attempt_start_time == T0 + timedelta(seconds=2)
    sim.advance(40)
    sim.reconcile(write_status=False)
    sim.reconcile()
    assert (step(sim).phase, step(sim).message) == (
        "Failed",
        "attempt 2 failed: timed out after 30s (retries exhausted: 1/1)",
    )
    assert step(sim).attempt_start_time is None  # only while Running


def test_a_job_deleted_outside_is_not_taken_for_a_timeout_that_never_ran() -> None:
    # A retry's Job deleted 20 s into its attempt (its first attempt began 52 s earlier), and a Job held
    # suspended past its timeout then deleted: both say who deleted them, not "timed out".
    policy = {"limit": 1, "backoff": {"type": "Fixed", "duration": "1s"}}
    sim = Simulator(make_flow([job_step("a", timeoutSeconds=60, retryPolicy=policy)]), T0)
    sim.reconcile()
    sim.advance(50)
    sim.fail(sim.running()[0])
    sim.reconcile()
    sim.advance(2)
    sim.reconcile()
    sim.advance(20)
    sim.vanish(sim.running()[0])
    sim.reconcile()
    assert step(sim).message is not None
    assert "not found (deleted outside zen-flow)" in step(sim).message
    assert "StepTimedOut" not in reasons(sim)
    for instant in (True, False):
        held = Simulator(make_flow([job_step("a", timeoutSeconds=60)]), T0, instant_delete=instant)
        held.reconcile()
        (job,) = held.running()
        held.hold(job)
        held.reconcile()
        held.advance(600)
        held.delete(job)
        held.reconcile()
        assert "deleted outside zen-flow" in (step(held).message or ""), step(held).message


def test_a_suspended_job_holds_its_step_without_the_timeout_running() -> None:
    # What Kueue does: the Job waits suspended until the queue admits it, and may be preempted (suspended
    # again) later. Like the Job's own activeDeadlineSeconds, the step's timeout counts only from a resume.
    sim = Simulator(
        make_flow([job_step("a", timeoutSeconds=60, retryPolicy={"limit": 1}), job_step("b", "a")]), T0
    )
    sim.reconcile()
    (job,) = sim.running()
    sim.hold(job)
    sim.reconcile()
    assert (step(sim).phase, step(sim).message) == ("Running", HELD)
    assert sim.flow.status.message == "held (Job suspended): a"
    sim.advance(600)  # ten timeouts in the queue
    result = sim.reconcile()
    assert not result.actions
    assert step(sim).phase == "Running"
    assert result.requeue_after is None  # the resume wakes the flow
    sim.hold(job, suspended=False)  # admitted at T0 + 600 s
    result = sim.reconcile()
    assert (step(sim).message, sim.flow.status.message) == (None, "running: a")
    assert result.requeue_after == 61
    sim.advance(30)
    sim.hold(job)  # preempted after 30 s of run time
    sim.reconcile()
    sim.advance(300)
    sim.hold(job, suspended=False)
    assert sim.reconcile().requeue_after == 61  # the resume wakes the flow; the timeout counts from it
    sim.advance(59)
    assert not sim.reconcile().actions
    sim.advance(2)
    assert [type(a) for a in sim.reconcile().actions] == [DeleteJob]
    assert step(sim).phase == "Retrying"
    assert step(sim).retry_count == 0


def test_a_held_retry_keeps_what_its_message_said() -> None:
    sim = Simulator(make_flow([job_step("a", retryPolicy={"limit": 2, "backoff": {"duration": "1s"}})]), T0)
    sim.reconcile()
    sim.fail(sim.running()[0])
    sim.reconcile()
    sim.advance(2)
    sim.reconcile()
    said = step(sim).message
    assert said is not None
    assert said.startswith("attempt 2;")
    sim.hold(sim.running()[0])
    sim.reconcile()
    assert step(sim).message == f"{HELD}; {said}"
    sim.hold(sim.running()[0], suspended=False)
    sim.reconcile()
    assert step(sim).message == said
    sim.complete(sim.running()[0])
    sim.reconcile()
    assert sim.phase == "Succeeded"


def test_a_stopped_flow_deletes_its_held_job() -> None:
    sim = Simulator(make_flow([job_step("a")]), T0)
    sim.reconcile()
    (job,) = sim.running()
    sim.hold(job)
    sim.reconcile()
    sim.annotate("workflow.kube-zen.io/stop", "no longer needed")
    result = sim.reconcile()
    assert [(type(a), getattr(a, "name", None)) for a in result.actions] == [(DeleteJob, job)]
    assert sim.phase == "Failed"


# --- clocks: the cluster's (Job timestamps) may be behind the controller's ---------------------------


def timeout_deleted(sim: Simulator) -> bool:
    return any(isinstance(a, DeleteJob) for a in sim.reconcile().actions)


def test_a_cluster_clock_behind_ours_never_fires_a_timeout_early() -> None:
    # The apiserver and the Job controller run 30 s behind the controller: the Job's creationTimestamp
    # says it has run 30 s longer than it has. Every attempt, and the run after a resume, gets its 60 s.
    retry = {"limit": 2, "backoff": {"type": "Fixed", "duration": "10s"}}
    sim = Simulator(make_flow([job_step("a", timeoutSeconds=60, retryPolicy=retry)]), T0, skew=-30)
    assert sim.reconcile().requeue_after == 61
    sim.advance(60)
    assert not timeout_deleted(sim)
    sim.advance(1)
    assert timeout_deleted(sim)
    assert step(sim).phase == "Retrying"
    sim.advance(11)
    sim.reconcile()  # the second attempt's Job
    sim.advance(60)
    assert not timeout_deleted(sim)
    sim.advance(1)
    assert timeout_deleted(sim)
    sim.advance(11)
    sim.reconcile()  # the third attempt: held by a queue, resumed 100 s later
    (job,) = sim.running()
    sim.hold(job)
    sim.reconcile()
    sim.advance(100)
    sim.hold(job, suspended=False)
    assert sim.reconcile().requeue_after == 61
    sim.advance(60)
    assert not timeout_deleted(sim)
    sim.advance(1)
    assert timeout_deleted(sim)
    assert step(sim).message == "attempt 3 failed: timed out after 60s (retries exhausted: 2/2)"


def test_a_cluster_clock_behind_ours_never_shortens_a_retry_delay() -> None:
    # The Job controller stamps the failure 30 s in the past: the delay counts from when we see it.
    retry = {"limit": 1, "backoff": {"type": "Fixed", "duration": "60s"}}
    sim = Simulator(make_flow([job_step("a", retryPolicy=retry)]), T0, skew=-30)
    sim.reconcile()
    sim.advance(100)
    sim.fail(sim.running()[0])
    assert sim.reconcile().requeue_after == 61
    assert step(sim).next_retry_time == T0 + timedelta(seconds=161)
    sim.advance(60)
    assert not any(isinstance(a, CreateJob) for a in sim.reconcile().actions)
    sim.advance(1)
    assert [a.attempt for a in sim.reconcile().actions if isinstance(a, CreateJob)] == [1]


def test_a_failure_seen_late_still_waits_its_whole_delay() -> None:
    # What a clock behind ours looks like from here: a failure the controller sees 30 s after its stamp
    # may have happened 30 s ago or just now. Counting from the sighting is never early.
    retry = {"limit": 1, "backoff": {"type": "Fixed", "duration": "60s"}}
    sim = Simulator(make_flow([job_step("a", retryPolicy=retry)]), T0)
    sim.reconcile()
    sim.fail(sim.running()[0])
    sim.advance(30)  # a restart, a backlog
    result = sim.reconcile()
    assert (step(sim).phase, result.requeue_after) == ("Retrying", 61)
    assert "StepRetrying" in reasons(sim)


def test_template_deadline_keeps_the_smaller_value_and_is_named_when_it_stops_the_job() -> None:
    template = job_step("a", timeoutSeconds=600)
    template["template"]["spec"]["activeDeadlineSeconds"] = 30
    sim = Simulator(make_flow([template]), T0)
    result = sim.reconcile()
    body = next(a for a in result.actions if isinstance(a, CreateJob)).body
    assert body["spec"]["activeDeadlineSeconds"] == 30
    sim.advance(30)
    sim.fail(
        sim.running()[0], reason="DeadlineExceeded", message="Job was active longer than specified deadline"
    )
    sim.reconcile()
    # Stopped after 30 s by the template's own deadline: not "timed out after 600s", not a step timeout.
    assert step(sim).message == (
        "Job failed: DeadlineExceeded: Job was active longer than specified deadline"
        " (the Job template's activeDeadlineSeconds: 30s)"
    )
    assert "StepTimedOut" not in reasons(sim)
