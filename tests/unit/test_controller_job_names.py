"""Controller: a step's Job name found taken (waited for, adopted or failed saying whose), a Job missing
from the cache, and an unobserved expectation looked at again."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from scripted_controller_rig import T0, Fake, controller

from zen_flow.api import JobFlowStatus
from zen_flow.api.constants import API_VERSION
from zen_flow.api.job import JOB
from zen_flow.controller.executor import JobNameTaken
from zen_flow.controller.metrics import Metrics
from zen_flow.core import jsonpatch
from zen_flow.core.naming import job_name
from zen_flow.kube.errors import AlreadyExists
from zen_flow.machinery.expectations import EXPECTATIONS_TIMEOUT, Expectations
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator


def taken(fake: Fake, step: str, owner: dict[str, Any] | None) -> str:
    """The create of `step`'s Job finds its name taken by a Job of `owner` (an ownerReference)."""
    name = job_name(fake.flow.metadata.name, step, 0)
    fake.create_errors[step] = AlreadyExists(409, "AlreadyExists", f'jobs.batch "{name}" already exists')
    refs = [owner] if owner is not None else []
    meta = {"name": name, "namespace": "default", "uid": f"old-{step}", "ownerReferences": refs}
    fake.existing[name] = JOB.validate_python({"metadata": meta})
    return name


def stored(fake: Fake) -> None:
    """The last status write in the flow cache, as its watch event brings it."""
    document = {"metadata": {"resourceVersion": "1"}, "status": fake.flow.status.to_wire()}
    status = JobFlowStatus.model_validate(jsonpatch.apply(document, fake.ops[-1])["status"])
    meta = fake.flow.metadata.model_copy(update={"resource_version": str(len(fake.patches) + 1)})
    fake.flow = fake.flow.model_copy(update={"metadata": meta, "status": status})


def flow_ref(name: str, uid: str) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "JobFlow", "name": name, "uid": uid, "controller": True}


async def test_a_job_of_a_deleted_flow_of_the_same_name_is_waited_for_not_adopted() -> None:
    # `kubectl delete jf f && kubectl apply -f f.yaml`: the old Job awaits the garbage collector.
    fake, clock = Fake(make_flow([job_step("a")])), FakeClock()
    taken(fake, "a", flow_ref(fake.flow.metadata.name, "the-deleted-flow"))
    expectations, metrics = Expectations(clock), Metrics()
    ctrl = controller(fake, clock, expectations=expectations, metrics=metrics)
    with pytest.raises(JobNameTaken, match="a deleted flow's of the same name"):
        await ctrl.reconcile(fake.flow.key)
    # No step recorded as Running on a Job that is not the flow's: Pending, saying why.
    (step,) = fake.patches[-1]["status"]["steps"]
    assert (step["phase"], step.get("jobRef")) == ("Pending", None)
    assert "is on its way out" in step["message"]
    assert expectations.satisfied(fake.flow.metadata.uid)  # the retry plans again, now
    assert metrics.registry.get_sample_value("zen_flow_job_creates_total", {"result": "taken"}) == 1
    [(kind, reason, message)] = fake.events  # what `kubectl describe` shows of why the flow waits
    assert (kind, reason) == ("Warning", "JobNameTaken")
    assert "a deleted flow's of the same name awaiting the garbage collector" in message
    del fake.create_errors["a"]  # collected
    stored(fake)
    ctrl.on_flow_event(fake.flow)
    await ctrl.reconcile(fake.flow.key)
    assert fake.created == ["a"]
    assert fake.patches[-1]["status"]["steps"][0]["phase"] == "Running"


async def test_a_job_name_held_by_another_owner_fails_the_flow_saying_whose() -> None:
    # Orphaned (`kubectl delete jf --cascade=orphan`) or anyone else's: waiting would never end.
    fake, clock = Fake(make_flow([job_step("a"), job_step("b")])), FakeClock()
    name = taken(fake, "a", None)
    assert await controller(fake, clock).reconcile(fake.flow.key) is not None
    status = fake.patches[-1]["status"]
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "JobRejected"
    assert (
        f"step a: Job {name} already exists and is not this flow's (owned by no controller)"
        in failed["message"]
    )
    assert fake.created == ["b"]
    assert fake.deleted == [next(s for s in status["steps"] if s["name"] == "b")["jobRef"]["name"]]


async def test_a_job_held_by_another_groups_jobflow_of_the_flows_name_fails_the_flow_saying_whose() -> None:
    # Another project's JobFlow kind is no deleted flow of ours: waiting for its Job would never end.
    fake, clock = Fake(make_flow([job_step("a")])), FakeClock()
    owner = {**flow_ref(fake.flow.metadata.name, "theirs"), "apiVersion": "batch.example.com/v1"}
    name = taken(fake, "a", owner)
    await controller(fake, clock).reconcile(fake.flow.key)  # not raised: no JobNameTaken to retry
    status = fake.patches[-1]["status"]
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "JobRejected"
    owned = f"owned by JobFlow {fake.flow.metadata.name} (batch.example.com/v1)"
    assert f"step a: Job {name} already exists and is not this flow's ({owned})" in failed["message"]
    assert fake.created == []


async def test_our_own_job_found_under_its_name_is_adopted() -> None:
    # A create whose answer was lost: the retried POST finds the Job it made.
    fake, clock = Fake(make_flow([job_step("a")])), FakeClock()
    taken(fake, "a", flow_ref(fake.flow.metadata.name, fake.flow.metadata.uid))
    metrics = Metrics()
    await controller(fake, clock, metrics=metrics).reconcile(fake.flow.key)
    (step,) = fake.patches[-1]["status"]["steps"]
    assert (step["phase"], step["jobRef"]["uid"]) == ("Running", "old-a")
    assert metrics.registry.get_sample_value("zen_flow_job_creates_total", {"result": "adopted"}) == 1


async def test_our_own_job_being_deleted_is_waited_for_not_adopted() -> None:
    # A create whose answer was lost, and the Job deleted since (foreground, a finalizer): adopted, it
    # vanished under the step, which failed as "deleted outside zen-flow".
    fake, clock = Fake(make_flow([job_step("a")])), FakeClock()
    name = taken(fake, "a", flow_ref(fake.flow.metadata.name, fake.flow.metadata.uid))
    job = fake.existing[name]
    fake.existing[name] = replace(job, metadata=replace(job.metadata, deletion_timestamp=T0))
    expectations = Expectations(clock)
    ctrl = controller(fake, clock, expectations=expectations)
    with pytest.raises(JobNameTaken, match="is on its way out"):
        await ctrl.reconcile(fake.flow.key)
    (step,) = fake.patches[-1]["status"]["steps"]  # the step is not recorded as running on it
    assert (step["phase"], step.get("jobRef")) == ("Pending", None)
    assert expectations.satisfied(fake.flow.metadata.uid)
    del fake.create_errors["a"]  # gone: the retry creates the step's Job afresh
    stored(fake)
    ctrl.on_flow_event(fake.flow)
    await ctrl.reconcile(fake.flow.key)
    assert fake.created == ["a"]
    (step,) = fake.patches[-1]["status"]["steps"]
    assert step["phase"] == "Running"
    assert step["jobRef"]["uid"] != "old-a"


async def test_our_own_finished_job_being_deleted_is_adopted_with_its_outcome() -> None:
    # The TTL-after-finished controller deletes a Job in the foreground: it lingers marked deleted, and
    # its outcome is final. Waiting for it would run the step a second time.
    fake, clock = Fake(make_flow([job_step("a")])), FakeClock()
    name = taken(fake, "a", flow_ref(fake.flow.metadata.name, fake.flow.metadata.uid))
    owners = [flow_ref(fake.flow.metadata.name, fake.flow.metadata.uid)]
    meta = {"name": name, "uid": "old-a", "ownerReferences": owners, "deletionTimestamp": T0.isoformat()}
    finished = {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}
    fake.existing[name] = JOB.validate_python({"metadata": meta, "status": finished})
    await controller(fake, clock).reconcile(fake.flow.key)
    (step,) = fake.patches[-1]["status"]["steps"]
    assert (step["phase"], step["jobRef"]["uid"]) == ("Running", "old-a")  # its outcome is read next
    assert fake.created == []


@pytest.mark.parametrize(("age", "waits"), [(2, True), (600, True), (None, False)])
async def test_a_running_steps_job_missing_from_the_cache_is_asked_for_before_it_is_called_deleted(
    age: float | None, waits: bool
) -> None:
    # A new leader whose Job watch has not yet brought the Job the old leader created: taking it for
    # deleted failed the step (or ran it again beside it). A Job of the flow's is waited for, however old
    # (test_plan_runner_unseen_jobs.py: for how long, and what then); one the apiserver lacks too was
    # deleted: that fails as before.
    sim = Simulator(make_flow([job_step("a")]), T0)
    sim.reconcile()
    (name,) = sim.running()
    fake, clock = Fake(sim.flow, jobs=[]), FakeClock(wall_start=sim.now + timedelta(seconds=age or 0))
    if age is not None:
        meta = {"name": name, "namespace": "default", "uid": "uid-a", "creationTimestamp": T0.isoformat()}
        meta["ownerReferences"] = [flow_ref(fake.flow.metadata.name, fake.flow.metadata.uid)]
        fake.existing[name] = JOB.validate_python({"metadata": meta})
    requeue = await controller(fake, clock).reconcile(fake.flow.key)
    if waits:
        assert (requeue, fake.patches) == (1.0, [])
    else:
        (step,) = fake.patches[-1]["status"]["steps"]
        assert (step["phase"], step["message"]) == (
            "Failed",
            f"Job {name} not found (deleted outside zen-flow)",
        )


async def test_an_unobserved_expectation_is_looked_at_again_when_it_expires() -> None:
    fake, clock = Fake(make_flow([job_step("a")])), FakeClock()
    expectations = Expectations(clock)
    expectations.expect_creations(fake.flow.metadata.uid, ["never-seen"])
    clock.jump(100)
    requeue = await controller(fake, clock, expectations=expectations).reconcile(fake.flow.key)
    assert requeue == pytest.approx(EXPECTATIONS_TIMEOUT - 100)
    assert fake.patches == []
