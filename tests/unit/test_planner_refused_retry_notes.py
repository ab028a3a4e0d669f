"""A retry whose Job create the apiserver refuses (planner.create_refusals) keeps why its attempt failed:
the refusal's note, however long the apiserver's answer, leaves the failure its exit code, and a flow
failure that ends the step meanwhile says the failure, not the refusal that no longer matters."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from zen_flow.api.constants import StepPhase
from zen_flow.planner import CreateJob, CreateRefusal, fail_invalid, refused_creates, with_create_condition
from zen_flow.planner.create_refusals import NOTES, REASON_CREATE_FORBIDDEN, unnoted
from zen_flow.planner.steps import MAX_MESSAGE
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RETRY = {"limit": 3, "backoff": {"type": "Fixed", "duration": "5s"}}
FAILURE = "attempt 1 failed: Job failed: main: exit code 3"
NAME = "nightly-warehouse-rebuild-for-the-team"  # its Jobs' names run to some 55 characters


def quota(job: str) -> str:
    """What the apiserver answers a Job create over a ResourceQuota (as the executor words it)."""
    return (
        f'Job create refused: 403 jobs.batch "{job}" is forbidden: exceeded quota: '
        "team-analytics-compute-resources-quota, requested: count/jobs.batch=1,limits.cpu=4, "
        "used: count/jobs.batch=20,limits.cpu=64, limited: count/jobs.batch=20,limits.cpu=64"
    )


def job_of(sim: Simulator, step: str) -> str:
    (job,) = [j for j in sim.running() if f"-{step}-" in j]
    return job


def refused_retry() -> Simulator:
    """`a` failed with exit code 3; the create of its next attempt is refused over a quota."""
    sim = Simulator(make_flow([job_step("a", retryPolicy=RETRY), job_step("b")], name=NAME, created=T0), T0)
    sim.reconcile()
    sim.fail(job_of(sim, "a"), messages={"exit:main": "exit code 3"})
    sim.reconcile()
    sim.advance(10)
    before = sim.flow.status
    planned = sim.preview()
    (create,) = [a for a in planned.actions if isinstance(a, CreateJob) and a.step == "a"]
    assert len(create.name) >= 50
    refusals = [CreateRefusal("a", REASON_CREATE_FORBIDDEN, quota(create.name))]
    result = refused_creates(sim.flow, planned, refusals, sim.now)
    status = with_create_condition(before, result.status, refusals, sim.now)
    sim.apply(replace(result, actions=tuple(a for a in result.actions if a is not create), status=status))
    return sim


def test_a_long_refusal_leaves_the_failure_its_exit_code() -> None:
    sim = refused_retry()
    a = sim.flow.status.step("a")
    assert a is not None
    assert a.phase == StepPhase.RETRYING
    message = a.message or ""
    assert message.startswith(f"{NOTES[0]}403 jobs.batch")
    assert len(message) <= MAX_MESSAGE
    # What its next attempt says again once the create passes (planner.starts).
    assert (unnoted(message) or "").startswith(FAILURE)


def test_a_flow_failure_ending_a_refused_retry_says_the_failure() -> None:
    sim = refused_retry()
    sim.fail(job_of(sim, "b"))
    sim.reconcile()
    a = sim.flow.status.step("a")
    assert a is not None
    assert a.phase == StepPhase.FAILED
    assert "refused" not in (a.message or "")
    assert FAILURE in (a.message or "")


def test_a_flow_wide_failure_ending_a_refused_retry_says_the_failure() -> None:
    sim = refused_retry()
    ended = fail_invalid(sim.flow, ["spec.steps[0].image: required"], sim.now)
    a = ended.status.step("a")
    assert a is not None
    assert a.phase == StepPhase.FAILED
    assert (a.message or "").startswith(f"flow-wide failure: the flow spec is invalid; {FAILURE}")


def test_the_same_refusal_with_other_words_leaves_the_steps_note_as_it_was() -> None:
    """A quota's answer counts what is used, a webhook's carries a request id: the same kind of answer
    (the same status) writes nothing new, since each write brings the flow back at once past the
    backoff; another kind of answer (no answer at all now) is said."""
    sim = refused_retry()
    said = sim.flow.status.step("a").message
    planned = sim.preview()
    (create,) = [a for a in planned.actions if isinstance(a, CreateJob) and a.step == "a"]
    used = quota(create.name).replace("is forbidden", "is forbidden (request 7f3a)")
    result = refused_creates(sim.flow, planned, [CreateRefusal("a", REASON_CREATE_FORBIDDEN, used)], sim.now)
    assert result.status.step("a").message == said
    lost = CreateRefusal("a", "CreateFailed", "Job create failed, no answer: connection reset")
    result = refused_creates(sim.flow, planned, [lost], sim.now)
    assert (result.status.step("a").message or "").startswith(lost.message)
