"""What the controller's metrics tell whoever scrapes them, with its real worker loop against
FakeApiServer (controller_rig.py)."""

from __future__ import annotations

from typing import Any

import pytest
from controller_rig import Rig

from zen_flow.api import Job
from zen_flow.kube.errors import from_status
from zen_flow_dev.testing.flows import job_step, make_flow

BLOCKED = make_flow([job_step("a")], name="blocked", namespace="team")


def creates_failing(rig: Rig) -> float | None:
    return rig.metrics.registry.get_sample_value(
        "zen_flow_jobflows_job_creates_failing", {"namespace": "team"}
    )


def refuse_creates(rig: Rig) -> list[str]:
    """Job creates answer 403 "exceeded quota" (a ResourceQuota) until the returned list is emptied."""
    create = rig.api.create_job
    refusing = ["quota"]

    async def quota(namespace: str, body: dict[str, Any]) -> Job:
        if refusing:
            message = 'jobs.batch "x" is forbidden: exceeded quota: no-jobs, requested: count/jobs.batch=1'
            raise from_status(403, {"kind": "Status", "code": 403, "reason": "Forbidden", "message": message})
        return await create(namespace, body)

    rig.api.create_job = quota  # type: ignore[method-assign]
    return refusing


@pytest.mark.parametrize("rig", [BLOCKED], indirect=True)
async def test_a_flow_whose_job_creates_are_refused_counts_as_failing_until_one_succeeds(rig: Rig) -> None:
    rig.metrics.watch_job_creates(rig.controller.creates_failing)
    refusing = refuse_creates(rig)
    rig.api.sync()
    await rig.settle()
    assert creates_failing(rig) == 1
    # The retries back off to 1000 s apart: hours with few failed creates, the flow counted all along.
    for _ in range(8):
        await rig.settle(900)
        assert creates_failing(rig) == 1
    assert rig.count("zen_flow_job_creates_total", "error") > 10
    refusing.clear()  # the quota is raised
    await rig.settle(1000)
    assert rig.step("a") == "Running"
    assert creates_failing(rig) is None


@pytest.mark.parametrize("rig", [BLOCKED], indirect=True)
async def test_a_deleted_flow_no_longer_counts_as_failing(rig: Rig) -> None:
    rig.metrics.watch_job_creates(rig.controller.creates_failing)
    refuse_creates(rig)
    rig.api.sync()
    await rig.settle()
    assert creates_failing(rig) == 1
    rig.controller.on_flow_deleted(rig.flow)
    assert creates_failing(rig) is None
