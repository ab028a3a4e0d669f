"""A step whose Job name is held by a Job on its way out (being deleted in the foreground or behind a
finalizer that takes long, or a deleted flow's of the same name awaiting the garbage collector) holds back
its own step only, as a refused create does: the plan's other creates and its status write go on, the
step stays Pending naming the Job that holds its name, and the create is tried again soon. The controller
runs its real worker loop against FakeApiServer."""

from __future__ import annotations

import pytest
from controller_rig import Rig

from zen_flow.api.constants import API_VERSION
from zen_flow.api.job import JOB
from zen_flow.core.naming import job_name
from zen_flow.validation import has_started
from zen_flow_dev.testing.flows import job_step, make_flow

PAIR = make_flow([job_step("a"), job_step("b")], name="pair", namespace="team")


def squat(rig: Rig, step: str) -> str:
    """`step`'s Job name held by a Job being deleted: a deleted flow's of the same name, its finalizer
    not cleared yet. Returns the name."""
    name = job_name(rig.flow.metadata.name, step, 0)
    owner = {"apiVersion": API_VERSION, "kind": "JobFlow", "name": rig.flow.metadata.name,
             "uid": "the-deleted-flow", "controller": True}  # fmt: skip
    meta = {"name": name, "namespace": "team", "uid": "old", "ownerReferences": [owner],
            "deletionTimestamp": "2025-01-01T00:00:00Z", "finalizers": ["example.com/slow"]}  # fmt: skip
    rig.api.jobs[("team", name)] = JOB.validate_python({"metadata": meta})
    return name


async def turns(rig: Rig, seconds: float, n: int = 3) -> None:
    for _ in range(n):
        rig.api.sync()
        await rig.settle(seconds)


@pytest.mark.parametrize("rig", [PAIR], indirect=True)
async def test_a_name_held_by_a_job_being_deleted_holds_back_its_step_only(rig: Rig) -> None:
    name = squat(rig, "a")
    await turns(rig, 1)
    # b's Job runs and the status says so: the flow started.
    assert rig.step("b") == "Running"
    assert rig.flow.status.start_time is not None
    assert has_started(await rig.api.get_flow("team", "pair") or {})
    a = rig.flow.status.step("a")
    assert a is not None
    assert (a.phase, a.job_ref) == ("Pending", None)
    assert a.message is not None
    assert f"Job {name} already exists and is on its way out (being deleted" in a.message
    assert rig.flow.status.phase == "Running"
    assert "Job name taken by one being deleted: a" in (rig.flow.status.message or "")
    # No create is failing: the name is waited for, not refused.
    assert not any(c.type == "JobCreateFailing" for c in rig.flow.status.conditions)
    assert any(reason == "JobNameTaken" for _, reason, _ in rig.api.events)
    assert rig.count("zen_flow_job_creates_total", "taken") >= 1
    # The finalizer clears: the Job goes, and the retry (soon: the queue's backoff) creates a's own.
    job = rig.api.jobs.pop(("team", name))
    assert job.metadata.uid == "old"
    await turns(rig, 1)
    a = rig.flow.status.step("a")
    assert a is not None
    assert a.phase == "Running"
    assert a.job_ref is not None
    assert a.job_ref.uid != "old"
    assert a.message is None
    assert rig.api.job_creates.count(name) == 1


@pytest.mark.parametrize("rig", [PAIR], indirect=True)
async def test_a_name_held_for_ever_leaves_the_rest_of_the_flow_to_run_and_finish(rig: Rig) -> None:
    # A finalizer that never clears: the other step's outcome is recorded all the same.
    name = squat(rig, "a")
    await turns(rig, 1)
    rig.api.finish_job("team", rig.job("b"))
    await turns(rig, 1)
    assert rig.step("b") == "Succeeded"
    assert rig.step("a") == "Pending"
    assert rig.flow.status.phase == "Running"
    assert ("team", name) in rig.api.jobs
