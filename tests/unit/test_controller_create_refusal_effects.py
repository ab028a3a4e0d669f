"""What a create refused for now (controller/executor.py, planner/create_refusals.py) must not disturb:
the plan's own timers (another step's timeout, the progress deadline), the Jobs built from steps edited
before the start was recorded, a retried step's reason, and a condition that a single blip does not flap.
The controller runs its real worker loop against FakeApiServer."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from controller_rig import Rig, running
from test_controller_create_refusals import ALONE, FAN, QUOTA, WEBHOOK, failing, refuse_step, turns

from zen_flow import planner
from zen_flow.api import Job, JobFlow
from zen_flow.controller.first_jobs import FirstJobs
from zen_flow.kube.errors import from_status
from zen_flow.planner import CreateJob, plan
from zen_flow_dev.testing.flows import job_step, make_flow

T0 = datetime(2025, 1, 1, tzinfo=UTC)

TIMER = make_flow([job_step("a", timeoutSeconds=1500), job_step("b")], name="timer", namespace="team")
RETRIED = make_flow(
    [job_step("a", retryPolicy={"limit": 3, "backoff": {"duration": "1s", "type": "Fixed"}})],
    name="retried",
    namespace="team",
)


def events(rig: Rig, reason: str) -> list[str]:
    return [message for _, r, message in rig.api.events if r == reason]


@pytest.mark.parametrize("rig", [TIMER], indirect=True)
async def test_another_steps_timeout_fires_on_time_while_a_create_is_refused(rig: Rig) -> None:
    """The refused reconcile's backoff grows to 1000 s; a's timeout (1500 s) must not wait for it."""
    refuse_step(rig, "b", 403, QUOTA)
    elapsed = 0.0
    while elapsed < 4000:
        await turns(rig, 5, 1)
        elapsed += 5
        if "timed out" in (rig.flow.status.step("a").message or ""):
            break
    assert 1500 <= elapsed <= 1520


async def test_progressing_goes_false_while_a_create_is_refused() -> None:
    """Each retry plans b's start, a phase change that never happens: the deadline counts from the last
    real change (c's start), as it would without the refusal."""
    async with running(FAN, progress_deadline=600) as rig:
        refuse_step(rig, "b", 403, QUOTA)
        await turns(rig, 1)
        rig.api.finish_job("team", rig.job("a"))
        await turns(rig, 5)
        assert rig.step("c") == "Running"
        elapsed = 0.0
        while elapsed < 2000 and not events(rig, "ProgressDeadlineExceeded"):
            await turns(rig, 10, 1)
            elapsed += 10
        assert elapsed <= 640
        progressing = next(c for c in rig.flow.status.conditions if c.type == "Progressing")
        assert (progressing.status, progressing.reason) == ("False", "ProgressDeadlineExceeded")
        assert rig.step("b") == "Pending"


def edited(flow: JobFlow) -> JobFlow:
    (a,) = flow.spec.steps
    template = {**a.template, "metadata": {"annotations": {"version": "2"}}}
    meta = flow.metadata.model_copy(update={"generation": flow.metadata.generation + 1})
    steps = (a.model_copy(update={"template": template}),)
    return flow.model_copy(update={"spec": flow.spec.model_copy(update={"steps": steps}), "metadata": meta})


@pytest.mark.parametrize("rig", [ALONE], indirect=True)
async def test_an_edit_after_a_create_with_no_answer_replaces_its_job(rig: Rig) -> None:
    """The Job was made but the answer lost: the status says not started, so admission lets the steps be
    edited; the Job built from the old step must not be adopted for the new one."""
    real = rig.api.create_job
    lost = [True]

    async def create(namespace: str, body: dict[str, Any]) -> Job:
        job = await real(namespace, body)
        if lost:
            lost.clear()
            raise TimeoutError()
        return job

    rig.api.create_job = create  # type: ignore[method-assign]
    rig.api.sync()
    await rig.settle(0.001)
    assert rig.flow.status.start_time is None
    (name,) = rig.api.job_creates
    old = rig.api.jobs[("team", name)].metadata.uid
    rig.api.update_flow(rig.key, edited)
    await turns(rig, 100, 4)
    # The old Job deleted, and the step's Job (of the same name) built anew from the edited step.
    assert events(rig, "StepsChanged")
    assert rig.step("a") == "Running"
    assert rig.job("a") == name
    assert rig.api.jobs[("team", name)].metadata.uid != old
    assert rig.flow.status.step("a").job_ref.uid != old


@pytest.mark.parametrize("rig", [ALONE], indirect=True)
async def test_replacing_the_jobs_of_edited_steps_does_not_forget_that_creates_fail(rig: Rig) -> None:
    """A create got no answer, the step was edited, its Job replaced: deleting it says nothing of whether
    creates pass, so the 5xx of the new Job's create is a second failure in a row, not a first blip."""
    real = rig.api.create_job
    answers: list[Exception] = [
        TimeoutError(),
        from_status(500, {"kind": "Status", "code": 500, "message": WEBHOOK}),
    ]

    async def create(namespace: str, body: dict[str, Any]) -> Job:
        if not answers:
            return await real(namespace, body)
        failure = answers.pop(0)
        if isinstance(failure, TimeoutError):
            await real(namespace, body)  # made, but the answer lost
        raise failure

    rig.api.create_job = create  # type: ignore[method-assign]
    rig.api.sync()
    await rig.settle(0.001)
    assert rig.flow.status.start_time is None
    rig.api.update_flow(rig.key, edited)
    await turns(rig, 100, 4)
    assert events(rig, "StepsChanged")
    assert not answers  # the new Job's create was answered 500
    assert failing(rig) is not None  # said, and JobCreateFailing set (it may have cleared since)
    assert events(rig, "CreateFailed")


@pytest.mark.parametrize("rig", [RETRIED], indirect=True)
async def test_a_refused_retry_keeps_why_its_last_attempt_failed(rig: Rig) -> None:
    await turns(rig, 1)
    lift = refuse_step(rig, "a", 403, QUOTA)
    rig.api.finish_job("team", rig.job("a"), succeeded=False)
    await turns(rig, 5, 6)
    held = rig.flow.status.step("a")
    assert held.phase == "Retrying"
    assert (held.message or "").startswith(f"Job create refused: 403 {QUOTA}")
    why = (held.message or "").partition("; before: ")[2]
    assert why
    lift()
    await turns(rig, 1000, 4)
    running_ = rig.flow.status.step("a")
    assert running_.phase == "Running"
    assert running_.message == f"attempt 2; {why}"


def suspended(flow: JobFlow) -> JobFlow:
    meta = flow.metadata.model_copy(update={"generation": flow.metadata.generation + 1})
    return flow.model_copy(update={"spec": flow.spec.model_copy(update={"suspend": True}), "metadata": meta})


@pytest.mark.parametrize("rig", [FAN], indirect=True)
async def test_a_flow_suspended_while_a_create_is_refused_claims_no_created_jobs(rig: Rig) -> None:
    refuse_step(rig, "b", 403, QUOTA)
    await turns(rig, 1)
    assert failing(rig) is not None
    rig.api.update_flow(rig.key, suspended)
    await turns(rig, 50, 4)
    cond = failing(rig)
    assert cond is not None
    assert cond[0] == "False"
    assert cond[1] != "JobsCreated"
    assert "refused" not in (rig.flow.status.step("b").message or "")


@pytest.mark.parametrize("rig", [FAN], indirect=True)
async def test_a_single_webhook_failure_does_not_flap_the_condition(rig: Rig) -> None:
    real = rig.api.create_job
    once = [True]

    async def create(namespace: str, body: dict[str, Any]) -> Job:
        if once and body["metadata"]["labels"]["workflow.kube-zen.io/step"] == "b":
            once.clear()
            raise from_status(500, {"kind": "Status", "code": 500, "message": WEBHOOK})
        return await real(namespace, body)

    rig.api.create_job = create  # type: ignore[method-assign]
    await turns(rig, 1, 6)
    assert rig.step("b") == "Running"
    assert failing(rig) is None
    assert not events(rig, "CreateFailed")


@pytest.mark.parametrize("rig", [TIMER, FAN], indirect=True)
async def test_the_plans_own_wakeup_does_not_undo_the_backoff(rig: Rig) -> None:
    """The refused reconcile keeps the plan's wakeup (a's timeout), beside the backoff: not one more
    create per plan than the backoff allows."""
    refuse_step(rig, "b", 500, WEBHOOK)
    await turns(rig, 1)
    before = rig.count("zen_flow_job_creates_total", "error")
    for _ in range(60):
        await turns(rig, 10, 1)
    assert 1 <= rig.count("zen_flow_job_creates_total", "error") - before <= 12


@pytest.mark.parametrize("rig", [FAN], indirect=True)
async def test_the_condition_clears_after_a_restart_forgot_the_failures(rig: Rig) -> None:
    lift = refuse_step(rig, "b", 500, WEBHOOK)
    await turns(rig, 1, 6)
    assert failing(rig) is not None
    assert failing(rig)[0] == "True"
    rig.controller._executor.forget(rig.key)  # what a restarted controller knows of the failures before
    lift()
    await turns(rig, 1000, 4)
    assert rig.step("b") == "Running"
    assert failing(rig)[:2] == ("False", "JobsCreated")


def test_first_jobs_told_twice_keep_every_job() -> None:
    """A create with no answer is told first, a failed status write of the same flow's other Jobs next:
    an edit replaces both."""
    flow = make_flow([job_step("a"), job_step("b")], name="two", namespace="team")
    actions = plan(flow, [], T0).actions
    names = {a.step: a.body["metadata"]["name"] for a in actions if isinstance(a, CreateJob)}
    first = FirstJobs()
    first.unrecorded(flow, {names["a"]: ""}, actions)
    first.unrecorded(flow, {names["b"]: "uid-b"}, actions)
    changed = flow.model_copy(update={"spec": flow.spec.model_copy(update={"arguments": {"x": "1"}})})
    assert sorted(d.step for d in first.outdated(changed)) == ["a", "b"]


@pytest.mark.parametrize("rig", [FAN], indirect=True)
async def test_a_plan_waking_every_second_retries_a_refused_create_at_most_every_ten_seconds(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plan whose own wakeup is short (a substitution budget's one second, a pod read) must not turn
    the refused create into one request a second per flow: its timers wait for the floor instead."""
    real = planner.refused_creates
    monkeypatch.setattr(planner, "refused_creates", lambda *a, **k: replace(real(*a, **k), requeue_after=0.5))
    refuse_step(rig, "b", 500, WEBHOOK)
    for _ in range(60):  # the backoff's own first tries, milliseconds to seconds apart
        await turns(rig, 1, 1)
    before = rig.count("zen_flow_job_creates_total", "error")
    for _ in range(60):
        await turns(rig, 1, 1)
    assert 1 <= rig.count("zen_flow_job_creates_total", "error") - before <= 7
