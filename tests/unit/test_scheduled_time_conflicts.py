"""A scheduled time edited before the flow's start was recorded (admission refuses the edit only once the
flow started) replaces the first Jobs, which rendered the old value as `{{.JobFlow.ScheduledTime}}`:
FirstJobs counts it among what every first Job was built from, so every attempt renders one value."""

from __future__ import annotations

from typing import Any

import pytest
from controller_rig import Rig

from zen_flow.api import JobFlow
from zen_flow.api.constants import ANNOTATION_SCHEDULED_TIME
from zen_flow.api.job import Job
from zen_flow_dev.testing.flows import job_step, job_template, make_flow

NIGHT, OTHER_NIGHT = "2026-12-07T02:30:00Z", "2026-12-08T02:30:00Z"


def loader() -> dict[str, object]:
    body = job_template()
    body["spec"]["template"]["spec"]["containers"][0]["args"] = ["--night={{.JobFlow.ScheduledTime}}"]
    return body


NIGHTLY = make_flow(
    [job_step("load", template=loader())],
    name="nightly",
    namespace="team",
    annotations={ANNOTATION_SCHEDULED_TIME: NIGHT},
)


@pytest.mark.parametrize("rig", [NIGHTLY], indirect=True)
async def test_a_scheduled_time_edited_before_the_start_was_recorded_replaces_the_first_jobs(
    rig: Rig,
) -> None:
    api = rig.api
    nights: list[list[str]] = []  # the args of every Job created, in order
    create_job = api.create_job

    async def recording(namespace: str, body: dict[str, Any]) -> Job:
        nights.append(body["spec"]["template"]["spec"]["containers"][0]["args"])
        return await create_job(namespace, body)

    api.create_job = recording  # type: ignore[method-assign]
    api.sync()

    def moved(flow: JobFlow) -> JobFlow:
        annotations = {**flow.metadata.annotations, ANNOTATION_SCHEDULED_TIME: OTHER_NIGHT}
        return flow.model_copy(
            update={"metadata": flow.metadata.model_copy(update={"annotations": annotations})}
        )

    api.update_flow(rig.key, moved)
    await rig.settle()
    assert api.refused == ["409 Conflict"]
    api.sync()
    await rig.settle()
    assert [job for _, job in api.jobs] == []  # the Job that rendered the old night is gone
    assert ("Normal", "StepsChanged") in {(t, r) for t, r, _ in api.events}
    api.sync()
    await rig.settle()
    api.sync()
    assert rig.step("load") == "Running"
    # Every Job that runs renders the night the flow holds: none was kept with the old one.
    assert nights == [[f"--night={NIGHT}"], [f"--night={OTHER_NIGHT}"]]
    assert len(api.jobs) == 1
