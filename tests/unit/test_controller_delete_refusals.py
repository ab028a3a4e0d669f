"""A Job delete the apiserver refuses for now (403: an admission policy or webhook that denies DELETE,
RBAC; a 5xx; no answer) no longer discards its plan: the status is still written (the timed-out step, the
Jobs created), a Warning `DeleteForbidden`/`DeleteFailed` names the Job (never `CreateForbidden`),
condition JobDeleteFailing says so, the error is raised for the queue's backoff, and the next plans send
the delete again until it passes. The controller runs its real worker loop against FakeApiServer."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from controller_rig import Rig
from test_controller_create_refusals import turns

from zen_flow.core.naming import job_name
from zen_flow.kube.errors import from_status
from zen_flow.planner.jobs import build_job
from zen_flow.planner.lifecycle import ENDED_REASON
from zen_flow_dev.testing.flows import job_step, make_flow

RETRY = {"limit": 1, "backoff": {"duration": "1s", "type": "Fixed"}}
SLOW = make_flow(
    [job_step("a", timeoutSeconds=60, retryPolicy=RETRY), job_step("b")], name="slow", namespace="team"
)
ONCE = make_flow([job_step("a", timeoutSeconds=60), job_step("b")], name="once", namespace="team")
RETAINED = make_flow(
    [job_step("a"), job_step("b")],
    name="kept",
    namespace="team",
    execution_policy={"jobRetention": "FailedOnly", "ttlSecondsAfterFinished": 86400},
)
RELEASE = make_flow(
    [job_step("build"), job_step("cleanup", **{"finally": True})],
    name="rel",
    namespace="team",
    execution_policy={"activeDeadlineSeconds": 60},
)

WEBHOOK_DENIED = 'admission webhook "jobs.example.com" denied the request: no deletes during the freeze'
# A ValidatingAdmissionPolicy without a `reason` answers 422 (Invalid), as the real apiserver does.
POLICY = (
    "jobs.batch \"x\" is forbidden: ValidatingAdmissionPolicy 'freeze' with binding 'freeze' denied "
    "request: Jobs are not deleted during the freeze"
)
WEBHOOK = 'Internal error occurred: failed calling webhook "jobs.example.com": connection refused'
ANSWERS: dict[str, Callable[[], Exception]] = {
    "403": lambda: from_status(
        403, {"kind": "Status", "code": 403, "reason": "Forbidden", "message": WEBHOOK_DENIED}
    ),
    "422": lambda: from_status(422, {"kind": "Status", "code": 422, "reason": "Invalid", "message": POLICY}),
    "500": lambda: from_status(500, {"kind": "Status", "code": 500, "message": WEBHOOK}),
    "no answer": lambda: TimeoutError("the apiserver did not answer"),
}


def refuse_deletes(rig: Rig, answer: Callable[[], Exception]) -> tuple[list[str], Callable[[], None]]:
    """Job deletes fail with `answer()`; returns the names tried so far and what lifts the refusal."""
    real = rig.api.delete_job
    tried: list[str] = []
    refusing = [True]

    async def delete(namespace: str, name: str, uid: str = "") -> None:
        tried.append(name)
        if refusing:
            raise answer()
        await real(namespace, name, uid)

    rig.api.delete_job = delete  # type: ignore[method-assign]
    return tried, refusing.clear


def events(rig: Rig, reason: str) -> list[str]:
    return [message for _, r, message in rig.api.events if r == reason]


def condition(rig: Rig) -> tuple[str, str, str] | None:
    cond = next((c for c in rig.flow.status.conditions if c.type == "JobDeleteFailing"), None)
    return (cond.status, cond.reason, cond.message or "") if cond is not None else None


def live(rig: Rig) -> list[str]:
    return sorted(name for _, name in rig.api.jobs)


def failures(rig: Rig, reason: str) -> float:
    found = rig.metrics.registry.get_sample_value("zen_flow_job_delete_failures_total", {"reason": reason})
    return found or 0.0


@pytest.mark.parametrize("answer", list(ANSWERS))
@pytest.mark.parametrize("rig", [SLOW], indirect=True)
async def test_a_timed_out_jobs_refused_delete_still_records_the_timeout(rig: Rig, answer: str) -> None:
    await turns(rig, 1)
    assert (rig.step("a"), rig.step("b")) == ("Running", "Running")
    first, other = rig.job("a"), rig.job("b")
    tried, lift = refuse_deletes(rig, ANSWERS[answer])
    errors = rig.count("zen_flow_reconcile_total", "error")
    await turns(rig, 60, 1)
    # The timeout is recorded although its delete failed, and so is everything else the flow does.
    a = rig.flow.status.step("a")
    assert a is not None
    assert a.phase == "Retrying"
    assert "timed out after 60s" in (a.message or "")
    assert (rig.step("b"), rig.job("b")) == ("Running", other)
    assert first in tried
    assert first in live(rig)  # its Job runs on...
    assert rig.count("zen_flow_reconcile_total", "error") > errors  # ...and the error went to the backoff
    assert failures(rig, "timeout") >= 1
    # Its next attempt starts on time, beside it; the old Job's delete is sent again by each look.
    await turns(rig, 10)
    assert rig.step("a") == "Running"
    assert rig.job("a") != first
    sent = tried.count(first)
    await turns(rig, 10)
    assert tried.count(first) > sent
    assert first in live(rig)
    # Told as a failed delete naming the Job and the answer, never as a refused create.
    reason = "DeleteForbidden" if answer in ("403", "422") else "DeleteFailed"
    told = events(rig, reason)
    assert told
    assert all(first in message for message in told)
    said = {"403": WEBHOOK_DENIED, "422": POLICY, "500": WEBHOOK}.get(answer, "no answer")
    assert said in told[0]
    assert not events(rig, "CreateForbidden")
    assert not events(rig, "CreateFailed")
    cond = condition(rig)
    assert cond is not None
    assert cond[:2] == ("True", reason)
    assert first in cond[2]
    # The delete passes: the Job goes, the condition clears, and the flow goes on to its end.
    lift()
    rig.api.finish_job("team", rig.job("a"))
    await turns(rig, 10)
    assert first not in live(rig)
    assert rig.step("a") == "Succeeded"
    cond = condition(rig)
    assert cond is not None
    assert cond[:2] == ("False", "JobsDeleted")
    rig.api.finish_job("team", other)
    await turns(rig, 1)
    assert rig.flow.status.phase == "Succeeded"


@pytest.mark.parametrize("rig", [ONCE], indirect=True)
async def test_a_failed_steps_timed_out_job_is_deleted_again_until_it_goes(rig: Rig) -> None:
    """No retry: the step is Failed for good (its Job still recorded), b runs on."""
    await turns(rig, 1)
    first = rig.job("a")
    tried, lift = refuse_deletes(rig, ANSWERS["403"])
    await turns(rig, 60, 1)
    a = rig.flow.status.step("a")
    assert a is not None
    assert a.phase == "Failed"
    assert "timed out after 60s" in (a.message or "")
    assert rig.step("b") == "Running"
    sent = tried.count(first)
    await turns(rig, 10)
    assert tried.count(first) > sent
    assert events(rig, "DeleteForbidden")
    lift()
    await turns(rig, 10)
    assert first not in live(rig)
    rig.api.finish_job("team", rig.job("b"))
    await turns(rig, 1)
    assert rig.flow.status.phase == "Failed"
    assert live(rig) == [rig.job("b")]


@pytest.mark.parametrize("rig", [SLOW], indirect=True)
async def test_a_single_5xx_on_a_delete_is_not_told(rig: Rig) -> None:
    """A blip its retry gets past: the status is written, the delete sent again, nothing said."""
    await turns(rig, 1)
    first = rig.job("a")
    real = rig.api.delete_job
    answers = [ANSWERS["500"]()]

    async def delete(namespace: str, name: str, uid: str = "") -> None:
        if answers:
            raise answers.pop()
        await real(namespace, name, uid)

    rig.api.delete_job = delete  # type: ignore[method-assign]
    await turns(rig, 60, 1)
    assert "timed out after 60s" in (rig.flow.status.step("a").message or "")
    await turns(rig, 1)
    assert first not in live(rig)
    assert not events(rig, "DeleteFailed")
    assert condition(rig) is None


@pytest.mark.parametrize("rig", [RETAINED], indirect=True)
async def test_a_refused_job_retention_delete_is_sent_again(rig: Rig) -> None:
    await turns(rig, 1)
    done = rig.job("a")
    tried, lift = refuse_deletes(rig, ANSWERS["422"])
    rig.api.finish_job("team", done)
    await turns(rig, 5)
    assert rig.step("a") == "Succeeded"
    assert done in tried
    assert done in live(rig)
    sent = tried.count(done)
    await turns(rig, 30)
    assert tried.count(done) > sent
    assert failures(rig, "succeeded") >= 2
    assert any(done in message for message in events(rig, "DeleteForbidden"))
    lift()
    await turns(rig, 1000)
    assert done not in live(rig)
    assert rig.step("b") == "Running"


@pytest.mark.parametrize("rig", [RELEASE], indirect=True)
async def test_an_ended_flows_refused_deletes_are_sent_again_and_told_once_done(rig: Rig) -> None:
    """The deadline ends the flow: build's Job and a Job someone made under the finally step's name
    (a stray) are deleted. Refused, the flow's end is written all the same; the stray's
    `StrayJobDeleted` waits for the delete that passes."""
    api = rig.api
    await turns(rig, 1)
    build = rig.job("build")
    forged = job_name("rel", "cleanup", 0)
    await api.create_job("team", build_job(rig.flow, rig.flow.spec.steps[1], forged, 0))
    tried, lift = refuse_deletes(rig, ANSWERS["403"])
    await turns(rig, 60, 1)
    await turns(rig, 1)
    assert rig.flow.status.phase == "Failed"
    assert {build, forged} <= set(tried)
    assert {build, forged} <= set(live(rig))
    assert not events(rig, "StrayJobDeleted")
    assert {m.split(" ")[1] for m in events(rig, "DeleteForbidden")} == {build, forged}
    lift()
    await turns(rig, 1000)
    assert live(rig) == []
    assert events(rig, "StrayJobDeleted").count(f"Job {forged} (step cleanup) deleted: {ENDED_REASON}") == 1
    # build's Job is the one its step records: deleted as its ended attempt's, never told as a stray.
    assert not [m for m in events(rig, "StrayJobDeleted") if build in m]
