"""A flow whose status the apiserver refuses for good, its failure write too (a CRD rolled back under a
stored flow it no longer admits: every write of that object gets 422): the controller leaves the flow as
it is, no Job created or deleted again, until the flow changes or a slow retry finds its write accepted.
It once deleted the Jobs it had just created, and as the status never recorded them, created them again
at the next reconcile, forever. The controller runs its real worker loop against FakeApiServer."""

from __future__ import annotations

from typing import Any

import pytest
from controller_rig import Rig

from zen_flow.api import JobFlow
from zen_flow.controller.status_holds import RETRY_CAP_SECONDS
from zen_flow.kube.errors import from_status
from zen_flow_dev.testing.flows import job_step, make_flow

CHAIN = make_flow([job_step("a"), job_step("b", "a")], name="chain", namespace="team")
REFUSAL = (
    'JobFlow.workflow.kube-zen.io "chain" is invalid: spec.steps[1].type: Unsupported value: "Flow": '
    'supported values: "Job", "Manual"'
)


def refuse_status_writes(rig: Rig, name: str) -> tuple[list[str], list[str]]:
    """Every status write of flow `name` is refused with 422 (while the returned switch holds "on");
    returns the switch and the Jobs deleted, in order."""
    api, switch, deleted = rig.api, ["on"], []
    real_patch, real_delete = api.patch_flow_status, api.delete_job

    async def patch(namespace: str, flow: str, ops: list[dict[str, Any]]) -> str:
        if flow == name and switch:
            raise from_status(422, {"kind": "Status", "code": 422, "reason": "Invalid", "message": REFUSAL})
        return await real_patch(namespace, flow, ops)

    async def delete(namespace: str, job: str, uid: str = "") -> None:
        # The Job watch delivered its create before this delete (as a real one does, event by event).
        api.sync(flows=False)
        deleted.append(job)
        await real_delete(namespace, job, uid)

    api.patch_flow_status = patch  # type: ignore[method-assign]
    api.delete_job = delete  # type: ignore[method-assign]
    return switch, deleted


def held_gauge(rig: Rig) -> float | None:
    return rig.metrics.registry.get_sample_value("zen_flow_jobflows_status_held", {"namespace": "team"})


async def rounds(rig: Rig, n: int, seconds: float = 1.0) -> None:
    for _ in range(n):
        rig.api.sync()
        await rig.settle(seconds)


@pytest.mark.parametrize("rig", [CHAIN], indirect=True)
async def test_a_flow_whose_every_status_write_is_refused_is_left_alone_not_churned(rig: Rig) -> None:
    rig.metrics.watch_status_held(rig.controller.status_held)
    _, deleted = refuse_status_writes(rig, "chain")
    await rounds(rig, 3)
    await rounds(rig, 8, RETRY_CAP_SECONDS / 2)  # its slow retries, refused again
    assert rig.count("zen_flow_status_patches_total", "refused") >= 5
    # Job a was created once (its name is the flow's own: a write accepted later adopts it), and never
    # deleted: no create/delete loop, no Job killed while the status says nothing of it.
    assert len(rig.api.job_creates) == 1
    assert deleted == []
    assert rig.api.jobs  # it runs on
    warnings = [m for t, r, m in rig.api.events if (t, r) == ("Warning", "StatusRejected")]
    assert len(warnings) == 1  # told once per cause, not per retry
    assert "spec.steps[1].type" in warnings[0]  # the apiserver's words name the field
    assert held_gauge(rig) == 1
    assert rig.flow.status.phase is None  # nothing stored


@pytest.mark.parametrize("rig", [CHAIN], indirect=True)
async def test_a_held_flow_goes_on_once_a_slow_retry_finds_its_write_accepted(rig: Rig) -> None:
    rig.metrics.watch_status_held(rig.controller.status_held)
    switch, deleted = refuse_status_writes(rig, "chain")
    await rounds(rig, 3)
    writes_refused = rig.count("zen_flow_status_patches_total", "refused")
    switch.clear()  # the CRD rolled forward: the stored object is valid again (its version did not move)
    await rounds(rig, 3)
    assert rig.count("zen_flow_status_patches_total", "refused") == writes_refused  # not retried yet
    await rounds(rig, 2, RETRY_CAP_SECONDS)
    assert rig.step("a") == "Running"  # the Job created before the refusal, recorded and adopted
    assert len(rig.api.job_creates) == 1
    rig.api.finish_job("team", rig.job("a"))
    await rounds(rig, 4)
    assert rig.step("b") == "Running"
    assert len(rig.api.job_creates) == 2
    assert deleted == []
    assert held_gauge(rig) is None


@pytest.mark.parametrize("rig", [CHAIN], indirect=True)
async def test_a_held_flow_that_changes_is_looked_at_again_at_once(rig: Rig) -> None:
    switch, _ = refuse_status_writes(rig, "chain")
    await rounds(rig, 3)
    switch.clear()
    # A user touches the flow (a label): a new resourceVersion, so the hold lifts without waiting.
    rig.api.update_flow(rig.key, lambda f: f.model_copy(update={"metadata": f.metadata.model_copy(
        update={"labels": {**f.metadata.labels, "retry": "now"}})}))  # fmt: skip
    await rounds(rig, 3)
    assert rig.step("a") == "Running"
    assert len(rig.api.job_creates) == 1


@pytest.mark.parametrize("rig", [CHAIN], indirect=True)
async def test_other_flows_are_not_held_with_the_refused_one(rig: Rig) -> None:
    refuse_status_writes(rig, "chain")
    other = rig.api.create_flow(make_flow([job_step("x")], name="other", namespace="team"))
    await rounds(rig, 4)
    assert rig.api.flows[other.key].status.phase == "Running"


@pytest.mark.parametrize("rig", [CHAIN], indirect=True)
async def test_an_edit_of_a_held_flows_steps_replaces_its_unrecorded_jobs(rig: Rig) -> None:
    # The edit that lifts the hold (it removes what the apiserver refused) changes step a's command: the
    # Job created before the refusals, never recorded, was built from the old one and is not adopted.
    switch, deleted = refuse_status_writes(rig, "chain")
    await rounds(rig, 3)
    (old_job,) = rig.api.job_creates
    switch.clear()

    def edited(flow: JobFlow) -> JobFlow:
        a, b = flow.spec.steps
        template = {**(a.template or {}), "metadata": {"annotations": {"version": "2"}}}
        steps = (a.model_copy(update={"template": template}), b)
        meta = flow.metadata.model_copy(update={"generation": flow.metadata.generation + 1})
        return flow.model_copy(
            update={"spec": flow.spec.model_copy(update={"steps": steps}), "metadata": meta}
        )

    rig.api.update_flow(rig.key, edited)
    await rounds(rig, 4)
    assert deleted == [old_job]
    assert rig.api.job_creates == [old_job, old_job]  # the same name, made again from the edited step
    assert rig.step("a") == "Running"
