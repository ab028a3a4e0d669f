"""A graceful stop (`workflow.kube-zen.io/stop: RunFinally`) through the controller over FakeApiServer: its
deletes follow the status write that records the stop (planner.DeleteJob `after_write`), so a write that
fails leaves the Jobs running for the next plan, which stops the flow again and runs its finally steps."""

from __future__ import annotations

import pytest
from controller_rig import Rig, applied_then

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


def unstopped(flow: JobFlow) -> JobFlow:
    kept = {
        k: v
        for k, v in flow.metadata.annotations.items()
        if k not in (ANNOTATION_STOP, ANNOTATION_STOPPED_BY)
    }
    return flow.model_copy(update={"metadata": flow.metadata.model_copy(update={"annotations": kept})})


async def running(rig: Rig) -> str:
    """a's Job created and recorded running: its name."""
    rig.api.sync()
    await rig.settle(0)
    (a,) = rig.api.job_creates
    for _ in range(2):
        rig.api.sync()
        await rig.settle()
    assert rig.step("a") == "Running"
    return a


@pytest.mark.parametrize("rig", [TIDY], indirect=True)
async def test_a_graceful_stop_whose_delete_fails_after_its_write_still_says_so_and_deletes_next(
    rig: Rig,
) -> None:
    # The write recording the stop landed, the delete sent after it answered 503: the stop's Warning
    # events are still told (the next plan, reading the stored stop, tells nothing), and the next
    # reconcile deletes the Job.
    api = rig.api
    a = await running(rig)
    real = api.delete_job
    fails = [unavailable()]

    async def delete(namespace: str, name: str, uid: str = "") -> None:
        if fails:
            raise fails.pop(0)
        await real(namespace, name, uid)

    api.delete_job = delete  # type: ignore[method-assign]
    api.update_flow(rig.key, stopped)
    api.sync()
    await rig.settle(0)
    assert (rig.step("a"), ("team", a) in api.jobs) == ("Failed", True)
    for _ in range(4):
        await rig.settle()
        api.sync()
    assert ("Warning", "StepFailed", "step a failed: stopped by alice") in api.events
    assert [e[1] for e in api.events].count("FlowStopped") == 1
    assert ("team", a) not in api.jobs
    assert rig.step("cleanup") == "Running"


@pytest.mark.parametrize("rig", [TIDY], indirect=True)
async def test_a_stop_taken_back_after_its_write_landed_in_doubt_still_deletes_what_it_stopped(
    rig: Rig,
) -> None:
    # The write answered 503 but landed: a is stored Failed "stopped by alice", its delete never went
    # out. The stop, taken back now, cannot undo that: a's Job is deleted, not left running beside cleanup.
    api = rig.api
    a = await running(rig)
    api.update_flow(rig.key, stopped)
    applied_then(api, unavailable())
    api.sync()
    await rig.settle(0)
    assert (rig.step("a"), ("team", a) in api.jobs) == ("Failed", True)
    api.update_flow(rig.key, unstopped)
    for _ in range(4):
        await rig.settle()
        api.sync()
    assert rig.step("cleanup") == "Running"
    assert ("team", a) not in api.jobs
