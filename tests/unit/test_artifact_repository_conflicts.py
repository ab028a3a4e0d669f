"""A repository edited before the flow's start was recorded (the admission update rule lets it through
then) replaces the first Jobs, which would store their outputs in the repository no longer named:
FirstJobs counts it among what every first Job was built from, as locks and stepDefaults."""

from __future__ import annotations

import pytest
from controller_rig import Rig

from zen_flow.api import JobFlow
from zen_flow_dev.testing.flows import job_step, make_flow

STORING = make_flow(
    [job_step("build", outputs={"artifacts": [{"name": "out", "path": "/work/out"}]})],
    name="stored",
    namespace="team",
    artifact_repository={"s3": {"bucket": "old-bucket"}},
)


@pytest.mark.parametrize("rig", [STORING], indirect=True)
async def test_a_repository_edited_before_the_start_was_recorded_replaces_the_first_jobs(rig: Rig) -> None:
    api = rig.api
    api.sync()

    def moved(flow: JobFlow) -> JobFlow:
        repository = flow.spec.artifact_repository
        assert repository is not None
        assert repository.s3 is not None
        s3 = repository.s3.model_copy(update={"bucket": "new-bucket"})
        spec = flow.spec.model_copy(update={"artifact_repository": repository.model_copy(update={"s3": s3})})
        meta = flow.metadata.model_copy(update={"generation": flow.metadata.generation + 1})
        return flow.model_copy(update={"spec": spec, "metadata": meta})

    api.update_flow(rig.key, moved)
    await rig.settle()
    assert api.refused == ["409 Conflict"]
    api.sync()
    await rig.settle()
    assert [job for _, job in api.jobs] == []  # the Job storing into old-bucket is gone
    assert ("Normal", "StepsChanged") in {(t, r) for t, r, _ in api.events}
    api.sync()
    await rig.settle()
    api.sync()
    assert rig.step("build") == "Running"
    assert len(api.job_creates) == 2
