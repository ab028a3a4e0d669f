"""Planner: what a flow leaves behind. executionPolicy.ttlStrategy (how long a finished flow stays, by its
outcome) and executionPolicy.jobRetention (which attempts keep their Jobs), on a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from zen_flow.api.constants import ANNOTATION_RETRIED_BY, ANNOTATION_RETRY
from zen_flow.core import jsonpatch
from zen_flow.core.naming import job_name
from zen_flow.planner import CreateJob, DeleteFlow, DeleteJob, Plan
from zen_flow.webhook.mutation import default_ops
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
DAY, WEEK = 86400, 7 * 86400


def admitted(policy: dict[str, Any]) -> dict[str, Any]:
    """`policy` as stored: the mutating webhook adds its defaults (ttlSecondsAfterFinished among them)."""
    manifest = {"spec": {"executionPolicy": policy}}
    result: dict[str, Any] = jsonpatch.apply(manifest, default_ops(manifest))["spec"]["executionPolicy"]
    return result


def finished(policy: dict[str, Any], outcome: str) -> tuple[Simulator, Plan]:
    """A one-step flow run to `outcome` ("Succeeded" or "Failed"); the plan that ended it."""
    sim = Simulator(make_flow([job_step("a")], execution_policy=policy), T0)
    sim.reconcile()
    (job,) = sim.running()
    if outcome == "Succeeded":
        sim.complete(job)
    else:
        sim.fail(job)
    done = sim.reconcile()
    assert sim.phase == outcome
    return sim, done


def deletes(result: Plan) -> list[str]:
    return [a.name for a in result.actions if isinstance(a, DeleteJob)]


# --- ttlStrategy ----------------------------------------------------------------------------------------

STRATEGY = {"secondsAfterSuccess": 3600, "secondsAfterFailure": WEEK}


@pytest.mark.parametrize(
    ("policy", "outcome", "seconds", "field"),
    [
        ({}, "Succeeded", DAY, "ttlSecondsAfterFinished"),
        ({}, "Failed", DAY, "ttlSecondsAfterFinished"),
        ({"ttlSecondsAfterFinished": 600}, "Succeeded", 600, "ttlSecondsAfterFinished"),
        ({"ttlSecondsAfterFinished": 600}, "Failed", 600, "ttlSecondsAfterFinished"),
        # The strategy wins over the default the webhook writes into every flow, for each outcome.
        (admitted({"ttlStrategy": STRATEGY}), "Succeeded", 3600, "ttlStrategy.secondsAfterSuccess"),
        (admitted({"ttlStrategy": STRATEGY}), "Failed", WEEK, "ttlStrategy.secondsAfterFailure"),
        # ...and over a value the user set.
        (
            {"ttlSecondsAfterFinished": 600, "ttlStrategy": STRATEGY},
            "Failed",
            WEEK,
            "ttlStrategy.secondsAfterFailure",
        ),
        # An outcome the strategy leaves out falls back to ttlSecondsAfterFinished.
        (
            {"ttlSecondsAfterFinished": 600, "ttlStrategy": {"secondsAfterSuccess": 0}},
            "Succeeded",
            0,
            "ttlStrategy.secondsAfterSuccess",
        ),
        (
            {"ttlSecondsAfterFinished": 600, "ttlStrategy": {"secondsAfterSuccess": 0}},
            "Failed",
            600,
            "ttlSecondsAfterFinished",
        ),
        (
            admitted({"ttlStrategy": {"secondsAfterFailure": WEEK}}),
            "Succeeded",
            DAY,
            "ttlSecondsAfterFinished",
        ),
        ({"ttlStrategy": {}}, "Failed", DAY, "ttlSecondsAfterFinished"),
    ],
)
def test_the_finished_flow_is_deleted_after_the_ttl_of_its_outcome(
    policy: dict[str, Any], outcome: str, seconds: int, field: str
) -> None:
    sim, done = finished(policy, outcome)
    assert not any(isinstance(a, DeleteFlow) for a in done.actions)
    assert done.requeue_after == seconds  # woken when the TTL expires, not polled
    if seconds:
        sim.advance(seconds - 1)
        waiting = sim.reconcile()
        assert waiting.actions == ()
        assert waiting.requeue_after == 1
        sim.advance(1)
    result = sim.reconcile()
    assert result.actions == (DeleteFlow(f"{field}={seconds}s expired"),)


def test_the_webhook_default_leaves_the_strategy_as_written() -> None:
    policy = admitted({"ttlStrategy": STRATEGY})
    assert policy["ttlStrategy"] == STRATEGY
    assert policy["ttlSecondsAfterFinished"] == DAY


def test_an_invalid_flow_waits_the_failure_ttl() -> None:
    # A dependency on no step: the flow fails at once (InvalidSpec), and is kept as long as a failure.
    flow = make_flow(
        [job_step("a", "ghost")], execution_policy={"ttlStrategy": {"secondsAfterFailure": WEEK}}
    )
    sim = Simulator(flow, T0)
    result = sim.reconcile()
    assert sim.phase == "Failed"
    assert result.requeue_after == WEEK


# --- jobRetention ---------------------------------------------------------------------------------------


def attempt(step: str, n: int) -> str:
    return job_name("flow", step, n)


def retried(retention: str | None, **fields: Any) -> Simulator:
    policy = {} if retention is None else {"jobRetention": retention}
    step = job_step("a", retryPolicy={"limit": 2, "backoff": {"duration": "10s", "type": "Fixed"}}, **fields)
    return Simulator(make_flow([step], execution_policy=policy), T0)


def fail_and_retry(sim: Simulator, n: int) -> tuple[Plan, Plan]:
    """Attempt `n` fails; the plan that starts attempt n+1, and the one after it."""
    sim.fail(attempt("a", n))
    waiting = sim.reconcile()
    assert deletes(waiting) == []  # Retrying: no next attempt yet, the failed one keeps its Job
    sim.advance(waiting.requeue_after)
    starting = sim.reconcile()
    assert [a.name for a in starting.actions if isinstance(a, CreateJob)] == [attempt("a", n + 1)]
    return starting, sim.reconcile()


def test_last_attempt_deletes_each_superseded_attempt_once_the_next_one_exists() -> None:
    sim = retried("LastAttempt")
    sim.reconcile()
    starting, after = fail_and_retry(sim, 0)
    # Not in the plan that creates the next attempt's Job (a refused create would leave no logs at all)...
    assert deletes(starting) == []
    # ...but in the first plan that sees it.
    assert [(a.name, a.step) for a in after.actions if isinstance(a, DeleteJob)] == [(attempt("a", 0), "a")]
    assert set(sim.jobs) == {attempt("a", 1)}
    starting, after = fail_and_retry(sim, 1)
    assert deletes(starting) == []
    assert deletes(after) == [attempt("a", 1)]
    sim.complete(attempt("a", 2))
    done = sim.reconcile()
    assert sim.phase == "Succeeded"
    assert deletes(done) == []
    assert set(sim.jobs) == {attempt("a", 2)}  # the last attempt's Job stays, with its outputs and logs
    status = sim.flow.status.step("a")
    assert status is not None
    assert status.job_ref is not None
    assert status.job_ref.name == attempt("a", 2)


@pytest.mark.parametrize("retention", [None, "All"])
def test_by_default_every_attempt_keeps_its_job(retention: str | None) -> None:
    sim = retried(retention)
    sim.reconcile()
    for n in (0, 1):
        starting, after = fail_and_retry(sim, n)
        assert deletes(starting) == deletes(after) == []
    sim.complete(attempt("a", 2))
    sim.reconcile()
    assert sim.phase == "Succeeded"
    assert set(sim.jobs) == {attempt("a", n) for n in range(3)}


def test_a_superseded_job_still_going_is_not_deleted_again() -> None:
    # A timed-out attempt: its Job is deleted for the timeout and lingers while its pods stop.
    sim = retried("LastAttempt", timeoutSeconds=5)
    sim.instant_delete = False
    sim.reconcile()
    sim.advance(6)
    timed_out = sim.reconcile()
    assert deletes(timed_out) == [attempt("a", 0)]
    sim.advance(timed_out.requeue_after)
    sim.reconcile()
    assert attempt("a", 1) in sim.jobs
    assert sim.jobs[attempt("a", 0)].deleting
    assert deletes(sim.reconcile()) == []  # unfinished, and already on its way out


def test_a_rerun_supersedes_the_failed_attempt_and_keeps_the_succeeded_steps_jobs() -> None:
    flow = make_flow([job_step("a"), job_step("b", "a")], execution_policy={"jobRetention": "LastAttempt"})
    sim = Simulator(flow, T0)
    sim.reconcile()
    sim.complete(attempt("a", 0))
    sim.reconcile()
    sim.fail(attempt("b", 0))
    sim.reconcile()
    assert sim.phase == "Failed"
    assert set(sim.jobs) == {attempt("a", 0), attempt("b", 0)}  # a failure keeps its Job until rerun
    sim.annotate(ANNOTATION_RETRY, "1")
    sim.annotate(ANNOTATION_RETRIED_BY, "alice")
    starting = sim.reconcile()
    assert deletes(starting) == []
    assert deletes(sim.reconcile()) == [attempt("b", 0)]
    # Step a's Job (what b's inputs would read) stays: a is not rerun, its attempt is superseded by none.
    assert set(sim.jobs) == {attempt("a", 0), attempt("b", 1)}


def test_a_rerun_taken_back_before_it_is_recorded_leaves_the_failed_attempts_job() -> None:
    sim = Simulator(make_flow([job_step("a")], execution_policy={"jobRetention": "LastAttempt"}), T0)
    sim.reconcile()
    sim.fail(attempt("a", 0))
    sim.reconcile()
    assert sim.phase == "Failed"
    sim.annotate(ANNOTATION_RETRY, "1")
    sim.annotate(ANNOTATION_RETRIED_BY, "alice")
    # The rerun's plans create the next attempt's Job, then take it over, their status writes lost...
    assert [a.name for a in sim.reconcile(write_status=False).actions] == [attempt("a", 1)]
    assert deletes(sim.reconcile(write_status=False)) == []  # ...and the status never recorded it
    sim.annotate(ANNOTATION_RETRY, None)  # the request taken back: the rerun never happened
    assert deletes(sim.reconcile()) == [attempt("a", 1)]  # a stray of the ended flow
    assert sim.phase == "Failed"
    status = sim.flow.status.step("a")
    assert status is not None
    assert status.job_ref is not None
    assert status.job_ref.name == attempt("a", 0)
    assert attempt("a", 0) in sim.jobs  # the failure it records keeps its Job and logs


@pytest.mark.parametrize("retention", ["LastAttempt", "FailedOnly"])
@pytest.mark.parametrize("running", [False, True], ids=["ended", "running"])
def test_a_superseded_attempt_goes_when_its_successor_settled_before_any_plan_saw_it_run(
    retention: str, running: bool
) -> None:
    # The plan that creates the retry's Job loses its status write; the Job finishes before the next
    # plan, which takes it over and marks the step Succeeded: no plan ever walks it Running.
    retries = {"limit": 2, "backoff": {"duration": "10s", "type": "Fixed"}}
    steps = [job_step("a", retryPolicy=retries), *([job_step("b")] if running else [])]
    sim = Simulator(make_flow(steps, execution_policy={"jobRetention": retention}), T0)
    sim.reconcile()
    sim.fail(attempt("a", 0))
    sim.advance(sim.reconcile().requeue_after)
    starting = sim.reconcile(write_status=False)
    assert [a.name for a in starting.actions if isinstance(a, CreateJob)] == [attempt("a", 1)]
    sim.complete(attempt("a", 1))
    taken_over = sim.reconcile()
    assert sim.flow.status.step("a").phase == "Succeeded"  # type: ignore[union-attr]
    assert deletes(taken_over) == []  # the status it read does not record attempt 1 yet
    sim.reconcile()  # reads the success stored (the ended flow's plan, or b's flow still running)
    assert sim.phase == ("Running" if running else "Succeeded")
    assert attempt("a", 0) not in sim.jobs
