"""A graceful stop (`workflow.kube-zen.io/stop: RunFinally`) through the controller over FakeApiServer: its
deletes follow the status write that records the stop (planner.DeleteJob `after_write`), so a write that
fails leaves the Jobs running for the next plan, which stops the flow again and runs its finally steps."""

from __future__ import annotations

import pytest
from controller_rig import Rig

from zen_flow.api import JobFlow
from zen_flow.api.constants import ANNOTATION_STOP, ANNOTATION_STOPPED_BY
from zen_flow.kube.errors import from_status
from zen_flow_dev.testing.flows import job_step, make_flow

TIDY = make_flow([job_step("a"), job_step("cleanup", **{"finally": True})], name="tidy", namespace="team")


def unavailable() -> Exception:
    return from_status(503, {"message": "etcdserver: leader changed"})


def stopped(flow: JobFlow) -> JobFlow:
    annotations = {**flow.metadata.annotations, ANNOTATION_STOP: "RunFinally", ANNOTATION_STOPPED_BY: "alice"}
    return flow.model_copy(update={"metadata": flow.metadata.model_copy(update={"annotations": annotations})})


@pytest.mark.parametrize("rig", [TIDY], indirect=True)
async def test_a_graceful_stop_whose_writes_fail_deletes_nothing_until_one_lands(rig: Rig) -> None:
    # The first plan's write failed: a's Job is all that says the flow started. The stop's write failed
    # too: had its delete gone out, the next plan found a flow that never ran, and skipped cleanup.
    api = rig.api
    api.sync()
    api.status_errors.append(unavailable())
    await rig.settle(0)
    (a,) = api.job_creates
    assert rig.flow.status.start_time is None
    api.status_errors.append(unavailable())
    api.update_flow(rig.key, stopped)
    api.sync()
    await rig.settle(0)
    assert ("team", a) in api.jobs
    for _ in range(3):
        await rig.settle()
        api.sync()
    assert ("team", a) not in api.jobs
    assert (rig.step("a"), rig.step("cleanup")) == ("Failed", "Running")
    assert [name.split("-")[1] for name in api.job_creates] == ["a", "cleanup"]
