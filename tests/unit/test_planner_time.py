"""Planner: retries with backoff, step timeouts, the flow deadline and TTL — all scheduled, not polled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from zen_flow.api.jobflow import Backoff, RetryPolicy
from zen_flow.planner import CreateJob, DeleteFlow, DeleteJob, parse_duration, retry_delay
from zen_flow.planner.steps import HELD
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def step(sim: Simulator, name: str = "a") -> Any:
    status = sim.flow.status.step(name)
    assert status is not None
    return status


def reasons(sim: Simulator) -> list[str]:
    return [e.reason for e in sim.last.events]


# --- durations and backoff ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10),
        ("1m30s", 90),
        ("2h", 7200),
        ("1.5h", 5400),
        ("0", 0),
        ("1h2m3s4ms", 3723.004),
    ],
)
def test_parse_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "s", "1x", "1m 30s", "abc"])
def test_reject_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def policy(type_: str | None = None, **backoff: Any) -> RetryPolicy:
    return RetryPolicy(limit=10, backoff=Backoff(type=type_, **backoff))


@pytest.mark.parametrize(
    ("retry_policy", "expected"),
    [
        (policy("Exponential", duration="10s"), [10, 20, 40, 80]),
        (policy("Exponential", duration="1s", factor=3.0), [1, 3, 9, 27]),
        (policy("Linear", duration="5s"), [5, 10, 15, 20]),
        (policy("Fixed", duration="7s"), [7, 7, 7, 7]),
        (policy(), [10, 20, 40, 80]),
        (RetryPolicy(), [10, 20, 40, 80]),
        (policy("Exponential", duration="bogus"), [10, 20, 40, 80]),
    ],
)
def test_backoff_types(retry_policy: RetryPolicy, expected: list[float]) -> None:
    assert [retry_delay(retry_policy, n) for n in range(4)] == expected


def test_backoff_is_capped() -> None:
    assert retry_delay(policy("Exponential", duration="10s"), 20) == 3600
    assert retry_delay(policy("Linear", duration="10m"), 100) == 3600
    assert retry_delay(policy("Exponential", duration="10s", maxDuration="1m"), 5) == 60
    assert retry_delay(policy("Exponential", duration="10s"), 10**9) == 3600  # no overflow
    # A duration above the default cap is cut to it (API.md says so; nothing else warns).
    assert retry_delay(policy("Fixed", duration="2h"), 0) == 3600
    assert retry_delay(policy("Fixed", duration="2h", maxDuration="3h"), 0) == 7200


# --- retries --------------------------------------------------------------------------------------------


def retrying_flow(**retry: Any) -> Simulator:
    return Simulator(make_flow([job_step("a", retryPolicy=retry), job_step("b", "a")]), T0)


def test_failed_attempt_retries_after_the_backoff_with_a_new_job() -> None:
    sim = retrying_flow(limit=2, backoff={"type": "Fixed", "duration": "30s"})
    sim.reconcile()
    first = sim.running()[0]
    sim.fail(first)
    result = sim.reconcile()
    assert result.actions == ()
    assert step(sim).phase == "Retrying"
    # The failure's time is cut to the second (T0 stands for T0 up to T0 + 1 s): never less than 30 s.
    assert step(sim).next_retry_time == T0 + timedelta(seconds=31)
    assert result.requeue_after == 31
    assert reasons(sim) == ["StepRetrying"]
    sim.advance(30)
    assert sim.reconcile().actions == ()
    sim.advance(1)
    result = sim.reconcile()
    created = [a for a in result.actions if isinstance(a, CreateJob)]
    assert [(a.step, a.attempt) for a in created] == [("a", 1)]
    assert created[0].name != first
    assert created[0].name.endswith("-r1")
    assert first in sim.jobs  # the old attempt is kept for its logs
    assert (step(sim).phase, step(sim).retry_count) == ("Running", 1)
    assert step(sim).job_ref.name == created[0].name
    assert step(sim).start_time == T0  # set once, at the first attempt
    assert reasons(sim) == ["StepStarted"]
    sim.complete(created[0].name)
    sim.reconcile()
    assert step(sim).phase == "Succeeded"


def test_the_flow_message_says_when_a_retrying_step_tries_again_and_why() -> None:
    # status.steps[].nextRetryTime is in no printer column: MESSAGE (status.message) says it.
    retry = {"limit": 2, "backoff": {"type": "Fixed", "duration": "30s"}}
    sim = Simulator(
        make_flow([job_step("a", retryPolicy=retry), job_step("b", retryPolicy={"limit": 1})]), T0
    )
    sim.reconcile()
    a, b = sim.running()
    sim.fail(a)
    sim.reconcile()
    assert sim.flow.status.message == (
        "running: b; step a retrying at 2025-01-01T00:00:31Z (attempt 2 of 3): "
        "Job failed: BackoffLimitExceeded: Job has failed"
    )
    assert sim.reconcile().status is sim.flow.status  # the same words until something changes: no write
    sim.advance(5)
    sim.fail(b)  # its default backoff: 10 s
    sim.reconcile()
    assert sim.flow.status.message == "retrying: a at 2025-01-01T00:00:31Z, b at 2025-01-01T00:00:16Z"
    sim.advance(26)
    sim.reconcile()
    assert sim.flow.status.message == "running: a, b"


def test_retries_stop_at_the_limit() -> None:
    sim = retrying_flow(limit=2, backoff={"type": "Fixed", "duration": "1s"})
    sim.reconcile()
    for _ in range(3):
        sim.fail(sim.running()[0])
        sim.reconcile()
        sim.advance(2)
        sim.reconcile()
    assert step(sim).phase == "Failed"
    assert step(sim).retry_count == 2
    assert "retries exhausted: 2/2" in step(sim).message
    assert sim.phase == "Failed"
    assert len(sim.created) == 3
    assert len(set(sim.created)) == 3


def test_a_failure_a_failjob_rule_marked_final_is_not_retried_but_others_are() -> None:
    # The user's podFailurePolicy said exit code 42 is for good (FailJob): retrying it would run the same
    # failure again; a plain failure of the same step is still retried.
    sim = retrying_flow(limit=3, backoff={"type": "Fixed", "duration": "1s"})
    sim.reconcile()
    sim.fail(sim.running()[0])  # BackoffLimitExceeded: retried
    sim.reconcile()
    sim.advance(2)
    sim.reconcile()
    assert step(sim).retry_count == 1
    matched = "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 0"
    sim.fail(sim.running()[0], reason="PodFailurePolicy", message=matched)
    sim.reconcile()
    sim.advance(60)
    sim.reconcile()
    assert (step(sim).phase, sim.phase, len(sim.created)) == ("Failed", "Failed", 2)
    assert step(sim).message == (
        "attempt 2 failed, not retried (a FailJob rule of its podFailurePolicy marked it final): "
        f"Job failed: PodFailurePolicy: {matched}"
    )


def test_limit_zero_means_no_retry() -> None:
    sim = retrying_flow(limit=0)
    sim.reconcile()
    sim.fail(sim.running()[0])
    sim.reconcile()
    assert step(sim).phase == "Failed"
    assert sim.phase == "Failed"


def test_no_retry_policy_means_no_retry() -> None:
    sim = Simulator(make_flow([job_step("a")]), T0)
    sim.reconcile()
    sim.fail(sim.running()[0], message="boom")
    sim.reconcile()
    assert step(sim).phase == "Failed"
    assert step(sim).message == "Job failed: BackoffLimitExceeded: boom"


def test_retry_policy_without_limit_retries_three_times() -> None:
    sim = retrying_flow(backoff={"type": "Fixed", "duration": "1s"})
    sim.reconcile()
    attempts = 1
    while not sim.terminal:
        if sim.running():
            sim.fail(sim.running()[0])
        sim.reconcile()
        sim.advance(1)
        sim.reconcile()
        attempts = len(sim.created)
    assert attempts == 4


def test_the_flow_wide_backoff_limit_is_a_budget() -> None:
    # continueOnFailure keeps fail-fast out of the way: each step spends the budget on its own.
    retry = {"limit": 5, "backoff": {"type": "Fixed", "duration": "1s"}}
    steps = [job_step(n, retryPolicy=retry, continueOnFailure=True) for n in "xy"]
    sim = Simulator(make_flow(steps, execution_policy={"backoffLimit": 3}), T0)
    sim.reconcile()
    for _ in range(10):
        for name in sim.running():
            sim.fail(name)
        sim.reconcile()
        sim.advance(1)
        sim.reconcile()
        if sim.terminal:
            break
    total = sum(s.retry_count for s in sim.flow.status.steps)
    assert total == 3
    assert sim.phase == "Failed"
    assert any("backoffLimit=3 used up" in (s.message or "") for s in sim.flow.status.steps)


def test_two_failures_at_once_do_not_overdraw_the_budget() -> None:
    steps = [job_step(n, retryPolicy={"limit": 5}, continueOnFailure=True) for n in "xy"]
    sim = Simulator(make_flow(steps, execution_policy={"backoffLimit": 1}), T0)
    sim.reconcile()
    for name in sim.running():
        sim.fail(name)
    sim.reconcile()
    assert [s.phase for s in sim.flow.status.steps] == ["Retrying", "Failed"]


def test_a_final_failure_cancels_pending_retries() -> None:
    # Fail-fast: once a step failed for good, no new Job starts, retries included.
    steps = [job_step("x", retryPolicy={"limit": 5}), job_step("y")]
    sim = Simulator(make_flow(steps), T0)
    sim.reconcile()
    for name in sim.running():
        sim.fail(name)
    result = sim.reconcile()
    assert result.actions == ()
    assert sim.phase == "Failed"
    x = step(sim, "x")
    assert x.phase == "Failed"
    assert "not retried" in x.message


def test_retry_waits_while_suspended() -> None:
    sim = retrying_flow(limit=2, backoff={"type": "Fixed", "duration": "5s"})
    sim.reconcile()
    sim.fail(sim.running()[0])
    sim.reconcile()
    sim.set_suspend(True)
    sim.advance(60)
    result = sim.reconcile()
    assert result.actions == ()
    assert result.requeue_after is None
    assert sim.phase == "Suspended"
    sim.set_suspend(False)
    result = sim.reconcile()
    assert [a.attempt for a in result.actions if isinstance(a, CreateJob)] == [1]
    assert "FlowResumed" in reasons(sim)


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


# --- flow deadline --------------------------------------------------------------------------------------


def test_flow_deadline_stops_everything() -> None:
    flow = make_flow(
        [
            job_step("a"),
            job_step("b"),
            job_step("c", "a"),
            job_step("d", retryPolicy={"limit": 3, "backoff": {"duration": "1h"}}),
        ],
        execution_policy={"activeDeadlineSeconds": 100},
    )
    sim = Simulator(flow, T0)
    first = sim.reconcile()
    assert first.requeue_after == 100
    job_d = next(n for n in sim.running() if "-d-" in n)
    sim.fail(job_d)
    sim.advance(50)
    sim.complete(next(n for n in sim.running() if "-a-" in n))
    result = sim.reconcile()
    assert result.requeue_after == 50
    sim.advance(50)
    result = sim.reconcile()
    deleted = sorted(a.step for a in result.actions if isinstance(a, DeleteJob))
    assert deleted == ["b", "c"]
    assert sim.phase == "Failed"
    assert {s.name: s.phase for s in sim.flow.status.steps} == {
        "a": "Succeeded",
        "b": "Failed",
        "c": "Failed",
        "d": "Failed",
    }
    failed = next(c for c in sim.flow.status.conditions if c.type == "Failed")
    assert failed.reason == "DeadlineExceeded"
    assert "FlowDeadlineExceeded" in reasons(sim)


def test_work_that_finished_before_the_deadline_keeps_its_outcome_when_seen_late() -> None:
    # The Jobs end at +90 s of a 100 s deadline; the controller (restarting, or behind) looks at +100 s.
    flow = make_flow(
        [job_step("a"), job_step("b", continueOnFailure=True)],
        execution_policy={"activeDeadlineSeconds": 100},
    )
    ok, failed = Simulator(flow, T0), Simulator(flow, T0)
    for sim in (ok, failed):
        sim.reconcile()
        sim.advance(90)
        a, b = sim.running()
        sim.complete(a)
        (sim.complete if sim is ok else sim.fail)(b)
        sim.advance(10)
        result = sim.reconcile()
        assert not any(isinstance(x, DeleteJob) for x in result.actions)
        assert "FlowDeadlineExceeded" not in reasons(sim)
        assert result.requeue_after == 86400  # the TTL, from now
    assert (ok.phase, ok.flow.status.message) == ("Succeeded", "all 2 steps succeeded")
    assert "FlowSucceeded" in reasons(ok)
    assert failed.phase == "Failed"
    assert next(c for c in failed.flow.status.conditions if c.type == "Failed").reason == "StepFailed"


def test_deadline_never_touches_a_finished_flow() -> None:
    sim = Simulator(make_flow([job_step("a")], execution_policy={"activeDeadlineSeconds": 10}), T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.reconcile()
    assert sim.phase == "Succeeded"
    sim.advance(1000)
    result = sim.reconcile()
    assert sim.phase == "Succeeded"
    assert result.status is sim.flow.status


# --- TTL ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ttl", "expected"), [(None, 86400), (3600, 3600), (0, 0)])
def test_ttl_deletes_the_finished_flow(ttl: int | None, expected: int) -> None:
    policy = {} if ttl is None else {"ttlSecondsAfterFinished": ttl}
    sim = Simulator(make_flow([job_step("a")], execution_policy=policy), T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    done = sim.reconcile()
    assert sim.phase == "Succeeded"
    assert done.requeue_after == expected
    assert not any(isinstance(a, DeleteFlow) for a in done.actions)
    if expected:
        sim.advance(expected - 1)
        waiting = sim.reconcile()
        assert waiting.actions == ()
        assert waiting.requeue_after == 1
        sim.advance(1)
    result = sim.reconcile()
    assert [type(a) for a in result.actions] == [DeleteFlow]
    assert result.requeue_after is None
    assert result.status is sim.flow.status
