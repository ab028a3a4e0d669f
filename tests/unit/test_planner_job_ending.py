"""Planner: a step whose Job the Job controller has decided (Kubernetes 1.31+: `SuccessCriteriaMet` or
`FailureTarget` first, `Complete` or `Failed` once the Job's remaining pods have terminated) is not ended
by its timeout meanwhile: it ends as the Job does, or, when the terminal condition is late (pods stuck
terminating), from the interim condition (planner/job_verdicts.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from zen_flow.api.flow_status import StepStatus
from zen_flow.api.meta import Condition
from zen_flow.planner import DeleteJob
from zen_flow.planner.job_verdicts import ENDING_MARGIN_SECONDS
from zen_flow_dev.testing.flows import job_step, job_template, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2026, 5, 4, 8, tzinfo=UTC)
TIMEOUT = 60
DUE = TIMEOUT + 1  # timestamps are whole seconds: the timeout fires a second late at most, never early
POD_GRACE = 30  # the pods' terminationGracePeriodSeconds, unless the template sets it
FAIL_JOB = "Container main failed with exit code 42 matching FailJob rule at index 0"
NOT_RETRIED = "not retried (a FailJob rule of its podFailurePolicy marked it final)"


def started(grace: int | None = None, **fields: Any) -> tuple[Simulator, str]:
    template = job_template()
    if grace is not None:
        template["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = grace
    train = job_step("train", template=template, timeoutSeconds=TIMEOUT, **fields)
    sim = Simulator(make_flow([train, job_step("publish", "train")], name="ml"), T0)
    sim.reconcile()
    (name,) = sim.running()
    return sim, name


def decide(
    sim: Simulator,
    name: str,
    type_: str = "SuccessCriteriaMet",
    reason: str = "CompletionsReached",
    message: str = "",
    messages: dict[str, str] | None = None,
) -> None:
    """The Job controller's interim condition (`SuccessCriteriaMet`, `FailureTarget`) on the Job `name`:
    its outcome decided, `complete` or `fail` comes once its remaining pods terminated. `messages`: the
    termination messages of its succeeded (or failed) pod, readable from now."""
    if messages is not None:
        sim.pod_messages[name] = messages
    job = sim.jobs[name]
    cond = Condition(
        type=type_, status="True", reason=reason, message=message, last_transition_time=sim.stamp()
    )
    success = type_ == "SuccessCriteriaMet"
    status = replace(
        job.status,
        conditions=(*job.status.conditions, cond),
        succeeded=1 if success else job.status.succeeded,
        failed=job.status.failed if success else job.status.failed + 1,
    )
    sim.jobs[name] = replace(job, status=status)


def at(sim: Simulator, seconds: int) -> None:
    """Move the clock to T0 + `seconds`."""
    sim.advance((T0 + timedelta(seconds=seconds) - sim.now).total_seconds())


def step(sim: Simulator, name: str = "train") -> StepStatus:
    found = sim.flow.status.step(name)
    assert found is not None
    return found


def deletes(sim: Simulator) -> list[DeleteJob]:
    return [a for plan in sim.plans for a in plan.actions if isinstance(a, DeleteJob)]


def test_a_job_that_met_its_success_criteria_before_the_timeout_succeeds_when_it_completes_after_it() -> None:
    sim, job = started()
    at(sim, 58)
    decide(sim, job)  # its last pods still terminate (a successPolicy's leftovers)
    at(sim, DUE)
    sim.reconcile()
    assert step(sim).phase == "Running"
    assert not deletes(sim)
    at(sim, 70)
    sim.complete(job)
    sim.reconcile()
    assert step(sim).phase == "Succeeded"
    sim.reconcile()
    assert step(sim, "publish").phase == "Running"
    assert not deletes(sim)


def test_a_fail_job_rule_that_matched_before_the_timeout_stays_final_after_it() -> None:
    sim, job = started(retryPolicy={"limit": 2})
    at(sim, 58)
    decide(sim, job, "FailureTarget", "PodFailurePolicy", FAIL_JOB)
    at(sim, DUE)
    sim.reconcile()
    assert step(sim).phase == "Running"
    at(sim, 70)
    sim.fail(job, "PodFailurePolicy", FAIL_JOB)
    sim.reconcile()
    assert step(sim).phase == "Failed"
    assert step(sim).message == f"attempt 1 failed, {NOT_RETRIED}: Job failed: PodFailurePolicy: {FAIL_JOB}"
    assert not deletes(sim)


def test_pods_that_never_terminate_end_the_step_from_its_success_criteria_with_its_outputs() -> None:
    output = {"name": "model", "valueFrom": {"terminationMessage": {"containerName": "main"}}}
    sim, job = started(outputs={"parameters": [output]})
    at(sim, 58)
    decide(sim, job, messages={"main": "s3://models/7"})  # its other pod is on a node that went away
    at(sim, DUE)
    sim.reconcile()
    assert step(sim).phase == "Running"
    backstop = 58 + POD_GRACE + ENDING_MARGIN_SECONDS + 1
    assert sim.last.requeue_after == backstop - DUE
    at(sim, backstop - 1)
    sim.reconcile()
    assert step(sim).phase == "Running"
    at(sim, backstop)
    sim.reconcile()
    done = step(sim)
    assert done.phase == "Succeeded"
    assert done.outputs is not None
    assert [(p.name, p.value) for p in done.outputs.parameters] == [("model", "s3://models/7")]
    assert done.message == (
        f"its Job's SuccessCriteriaMet condition (CompletionsReached) decided it; its pods had not "
        f"terminated {POD_GRACE + ENDING_MARGIN_SECONDS}s later"
    )
    assert not deletes(sim)
    sim.reconcile()
    assert step(sim, "publish").phase == "Running"


def test_pods_that_never_terminate_end_the_step_from_its_failure_target_final_or_retried() -> None:
    backstop = 58 + POD_GRACE + ENDING_MARGIN_SECONDS + 1
    late = f"; its pods had not terminated {POD_GRACE + ENDING_MARGIN_SECONDS}s after FailureTarget"
    sim, job = started(retryPolicy={"limit": 2})
    at(sim, 58)
    decide(sim, job, "FailureTarget", "PodFailurePolicy", FAIL_JOB)
    at(sim, backstop)
    sim.reconcile()
    assert step(sim).phase == "Failed"
    assert step(sim).message == (
        f"attempt 1 failed, {NOT_RETRIED}: Job failed: PodFailurePolicy: {FAIL_JOB}{late}"
    )
    sim, job = started(retryPolicy={"limit": 2})
    at(sim, 58)
    limit = "Job has reached the specified backoff limit"
    decide(sim, job, "FailureTarget", "BackoffLimitExceeded", limit)
    at(sim, backstop)
    sim.reconcile()
    assert step(sim).phase == "Retrying"
    assert step(sim).message == f"attempt 1 failed: Job failed: BackoffLimitExceeded: {limit}{late}"
    assert not deletes(sim)


def test_the_wait_for_the_terminal_condition_is_the_pods_own_grace_period_and_a_margin() -> None:
    sim, job = started(grace=300)
    at(sim, 58)
    decide(sim, job)
    at(sim, DUE)
    sim.reconcile()
    assert sim.last.requeue_after == 58 + 300 + ENDING_MARGIN_SECONDS + 1 - DUE


def test_the_jobs_own_deadline_is_the_timeout_said_once_its_pods_are_gone() -> None:
    # The Job's activeDeadlineSeconds is the step's timeout: the Job controller marks it FailureTarget
    # (DeadlineExceeded) then, and Failed once its pods have terminated.
    sim, job = started()
    at(sim, TIMEOUT)
    decide(sim, job, "FailureTarget", "DeadlineExceeded", "Job was active longer than specified deadline")
    at(sim, DUE)
    sim.reconcile()
    assert step(sim).phase == "Running"
    at(sim, 75)
    sim.fail(job, "DeadlineExceeded", "Job was active longer than specified deadline")
    sim.reconcile()
    assert (step(sim).phase, step(sim).message) == ("Failed", f"timed out after {TIMEOUT}s")
    assert not deletes(sim)


def test_the_flows_deadline_stops_a_step_whose_job_is_ending() -> None:
    # activeDeadlineSeconds is a hard stop for the whole flow: nothing outlives it.
    train = job_step("train", timeoutSeconds=TIMEOUT)
    sim = Simulator(make_flow([train], name="ml", execution_policy={"activeDeadlineSeconds": 90}), T0)
    sim.reconcile()
    (job,) = sim.running()
    at(sim, 58)
    decide(sim, job)
    at(sim, DUE)
    sim.reconcile()
    assert step(sim).phase == "Running"
    at(sim, 91)
    sim.reconcile()
    assert sim.phase == "Failed"
    assert [d.name for d in deletes(sim)] == [job]


def test_a_job_deleted_while_it_ends_after_the_timeout_is_not_said_to_have_timed_out() -> None:
    # No plan deletes a Job for its step's timeout once it is ending: someone else did.
    sim, job = started()
    sim.instant_delete = False
    at(sim, 58)
    decide(sim, job)
    at(sim, DUE)
    sim.reconcile()
    sim.delete(job)
    at(sim, 62)
    sim.reconcile()
    assert step(sim).phase == "Failed"
    assert step(sim).message == f"Job {job} was deleted outside zen-flow"


OUTCOMES = [
    ("SuccessCriteriaMet", "CompletionsReached", "Succeeded"),
    ("FailureTarget", "PodFailurePolicy", "Failed"),
    ("FailureTarget", "BackoffLimitExceeded", "Retrying"),
]


@given(
    st.sampled_from(OUTCOMES),
    st.integers(1, TIMEOUT - 1),
    st.none() | st.integers(0, 240),
    st.none() | st.integers(0, 120),
)
def test_a_decided_job_ends_its_step_as_decided_never_by_the_timeout(
    outcome: tuple[str, str, str], decided_at: int, terminal_after: int | None, grace: int | None
) -> None:
    # The Job controller decides before the timeout; its terminal condition follows after `terminal_after`
    # (None: never: pods stuck terminating). Only the terminal condition wakes a reconcile (the interim
    # one does not: planner/observed.py); the plans' own wake-ups drive the rest.
    type_, reason, phase = outcome
    sim, job = started(grace=grace, retryPolicy={"limit": 2})
    events: list[tuple[int, bool]] = [(decided_at, False)]
    if terminal_after is not None:
        events.append((decided_at + terminal_after, True))
    while step(sim).phase == "Running" and sim.now < T0 + timedelta(hours=1):
        wake = sim.now + timedelta(seconds=sim.last.requeue_after or 3600)
        waking = [T0 + timedelta(seconds=t) for t, wakes in events if wakes]
        now = min([wake, *waking])
        while events and T0 + timedelta(seconds=events[0][0]) <= now:
            when, terminal = events.pop(0)
            at(sim, when)
            if not terminal:
                decide(sim, job, type_, reason, "decided")
            elif type_ == "SuccessCriteriaMet":
                sim.complete(job)
            else:
                sim.fail(job, reason, "decided")
        sim.now = now
        sim.reconcile()
    backstop = decided_at + (POD_GRACE if grace is None else grace) + ENDING_MARGIN_SECONDS + 1
    ends = max(DUE, backstop)
    if terminal_after is not None:
        ends = min(ends, decided_at + terminal_after)
    assert not deletes(sim)
    assert step(sim).phase == phase
    assert sim.now == T0 + timedelta(seconds=ends)
    if phase != "Succeeded":
        assert "timed out" not in (step(sim).message or "")
