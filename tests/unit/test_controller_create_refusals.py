"""A Job create the apiserver keeps refusing without a verdict for good (403: a ResourceQuota, an admission
policy; 5xx: a failing webhook) holds back its own step only: the plan's other creates, its deletes and
its status write go on, the refused step stays Pending saying why, and condition JobCreateFailing tells
`kubectl wait` and dashboards. The controller runs its real worker loop against FakeApiServer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from controller_rig import Rig

from zen_flow.api import Job
from zen_flow.kube.errors import from_status
from zen_flow.validation import has_started
from zen_flow_dev.testing.flows import job_step, make_flow

FAN = make_flow([job_step("a"), job_step("b"), job_step("c", "a")], name="fan", namespace="team")
RUNNING = make_flow(
    [job_step("a"), job_step("b", "a"), job_step("c", "a"), job_step("d", "b")], name="run", namespace="team"
)
TIMED = make_flow([job_step("a", timeoutSeconds=60), job_step("b")], name="timed", namespace="team")
ALONE = make_flow([job_step("a")], name="alone", namespace="team")
RETAINED = make_flow(
    [job_step("a"), job_step("b"), job_step("c")],
    name="q",
    namespace="team",
    execution_policy={"jobRetention": "FailedOnly", "ttlSecondsAfterFinished": 86400},
)

QUOTA = 'jobs.batch "x" is forbidden: exceeded quota: team-quota, requested: count/jobs.batch=1'
WEBHOOK = 'Internal error occurred: failed calling webhook "policy.example.com": connection refused'


def refuse_step(rig: Rig, step: str, status: int, message: str) -> Callable[[], None]:
    """Creates of `step`'s Job answer `status`; returns what lifts the refusal."""
    real = rig.api.create_job
    refusing = [True]

    async def create(namespace: str, body: dict[str, Any]) -> Job:
        if refusing and body["metadata"]["labels"]["workflow.kube-zen.io/step"] == step:
            raise from_status(status, {"kind": "Status", "code": status, "message": message})
        return await real(namespace, body)

    rig.api.create_job = create  # type: ignore[method-assign]
    return refusing.clear


def created(rig: Rig, step: str) -> list[str]:
    return [n for n in rig.api.job_creates if n.split("-")[1] == step]


def failing(rig: Rig) -> tuple[str, str, str] | None:
    cond = next((c for c in rig.flow.status.conditions if c.type == "JobCreateFailing"), None)
    return (cond.status, cond.reason, cond.message) if cond is not None else None


async def turns(rig: Rig, seconds: float, n: int = 3) -> None:
    for _ in range(n):
        rig.api.sync()
        await rig.settle(seconds)


@pytest.mark.parametrize(("status", "said"), [(403, QUOTA), (500, WEBHOOK)])
@pytest.mark.parametrize("rig", [FAN], indirect=True)
async def test_one_refused_create_holds_back_its_step_only(rig: Rig, status: int, said: str) -> None:
    lift = refuse_step(rig, "b", status, said)
    await turns(rig, 1)
    # a's Job runs and the status says so: the flow started (admission now refuses spec.steps edits).
    assert rig.step("a") == "Running"
    assert rig.flow.status.start_time is not None
    assert has_started(await rig.api.get_flow("team", "fan") or {})
    b = rig.flow.status.step("b")
    assert b is not None
    assert b.phase == "Pending"
    assert b.job_ref is None
    assert b.message == f"Job create refused: {status} {said}"
    cond = failing(rig)
    assert cond is not None
    assert cond[0] == "True"
    assert "step b" in cond[2]
    assert said in cond[2]
    # a finishes: c starts and is recorded, while b's create is still refused.
    rig.api.finish_job("team", rig.job("a"))
    await turns(rig, 30)
    assert (rig.step("a"), rig.step("c")) == ("Succeeded", "Running")
    assert rig.step("b") == "Pending"
    lift()
    await turns(rig, 1000)
    assert rig.step("b") == "Running"
    cond = failing(rig)
    assert cond is not None
    assert cond[:2] == ("False", "JobsCreated")
    assert not (rig.flow.status.step("b").message or "").startswith("Job create refused")


@pytest.mark.parametrize("rig", [ALONE], indirect=True)
async def test_a_flow_whose_only_create_is_refused_has_not_started(rig: Rig) -> None:
    lift = refuse_step(rig, "a", 403, QUOTA)
    await turns(rig, 1)
    # Nothing runs: the flow is Pending, not started (its steps stay editable), and says why.
    assert rig.flow.status.phase == "Pending"
    assert rig.flow.status.start_time is None
    assert not has_started(await rig.api.get_flow("team", "alone") or {})
    assert rig.flow.status.step("a").message == f"Job create refused: 403 {QUOTA}"
    assert failing(rig) is not None
    assert failing(rig)[:2] == ("True", "CreateForbidden")
    assert not any(reason == "StepStarted" for _, reason, _ in rig.api.events)
    lift()
    await turns(rig, 1000)
    assert rig.flow.status.phase == "Running"
    assert rig.step("a") == "Running"


@pytest.mark.parametrize("rig", [RUNNING], indirect=True)
async def test_a_running_flow_records_its_steps_while_one_branch_is_refused(rig: Rig) -> None:
    await turns(rig, 1)
    assert rig.step("a") == "Running"
    lift = refuse_step(
        rig, "c", 403, 'admission webhook "validation.gatekeeper.sh" denied the request: [allowed-repos]'
    )
    rig.api.finish_job("team", rig.job("a"))
    await turns(rig, 30)
    assert (rig.step("a"), rig.step("b"), rig.step("c")) == ("Succeeded", "Running", "Pending")
    rig.api.finish_job("team", rig.job("b"))
    await turns(rig, 600)
    assert (rig.step("b"), rig.step("d")) == ("Succeeded", "Running")
    # d's start is when its Job was created, not when a later plan took it over.
    d = rig.flow.status.step("d")
    job = rig.api.jobs[("team", rig.job("d"))]
    assert d.start_time is not None
    assert job.metadata.creation_timestamp is not None
    assert abs(d.start_time - job.metadata.creation_timestamp) < timedelta(seconds=2)
    lift()
    await turns(rig, 1000)
    assert rig.step("c") == "Running"


@pytest.mark.parametrize("rig", [TIMED], indirect=True)
async def test_a_plan_whose_create_fails_still_sends_its_deletes(rig: Rig) -> None:
    refuse_step(rig, "b", 500, WEBHOOK)
    await turns(rig, 60)
    a = created(rig, "a")
    assert a
    assert ("team", a[0]) not in rig.api.jobs
    assert rig.flow.status.step("a").message is not None
    assert "timed out" in (rig.flow.status.step("a").message or "")
    # A webhook's repeated 500 says why in a Warning event, as a quota's 403 does.
    assert any(
        kind == "Warning" and reason == "CreateFailed" and WEBHOOK in message
        for kind, reason, message in rig.api.events
    )


def quota(rig: Rig, limit: int) -> None:
    """A ResourceQuota of `limit` Jobs in the namespace, refusing as the apiserver does."""
    real = rig.api.create_job

    async def create(namespace: str, body: dict[str, Any]) -> Job:
        used = sum(1 for ns, _ in rig.api.jobs if ns == namespace)
        if used >= limit:
            name = body["metadata"]["name"]
            message = (
                f'jobs.batch "{name}" is forbidden: exceeded quota: jobs, requested: count/jobs.batch=1, '
                f"used: count/jobs.batch={used}, limited: count/jobs.batch={limit}"
            )
            raise from_status(403, {"kind": "Status", "code": 403, "reason": "Forbidden", "message": message})
        return await real(namespace, body)

    rig.api.create_job = create  # type: ignore[method-assign]


@pytest.mark.parametrize("rig", [RETAINED], indirect=True)
async def test_a_job_quota_with_failed_only_retention_frees_itself(rig: Rig) -> None:
    """The deletes of succeeded steps' Jobs (jobRetention FailedOnly) free the quota the third step
    waits for: they go out although its create is refused."""
    quota(rig, 2)
    await turns(rig, 1)
    first = list(rig.api.job_creates)
    assert len(first) == 2
    assert failing(rig) is not None
    assert failing(rig)[0] == "True"
    for name in first:
        rig.api.finish_job("team", name)
    await turns(rig, 1000, 6)
    assert len(rig.api.job_creates) == 3
    rig.api.finish_job("team", rig.api.job_creates[2])
    await turns(rig, 5)
    assert rig.flow.status.phase == "Succeeded"
    assert not rig.api.jobs


@pytest.mark.parametrize("rig", [FAN, ALONE], indirect=True)
async def test_a_create_refused_again_and_again_writes_the_status_once(rig: Rig) -> None:
    """Each retry plans the refused step's start anew, at its own time: what it writes must not change
    with it (progress and estimate times), or every retry would write, and its watch event bring the
    next retry at once instead of after the backoff."""
    refuse_step(rig, "b" if len(rig.flow.spec.steps) > 1 else "a", 403, QUOTA)
    await turns(rig, 1)
    written = rig.count("zen_flow_status_patches_total", "written")
    attempts = rig.count("zen_flow_job_creates_total", "error")
    await turns(rig, 100, 5)
    assert rig.count("zen_flow_job_creates_total", "error") > attempts  # tried again...
    assert rig.count("zen_flow_status_patches_total", "written") == written  # ...nothing new to write
