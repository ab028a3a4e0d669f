"""A flow or CronJobFlow written for a newer zen-flow (a key or an enum value its CRD has and ours does
not: during a rolling upgrade the new CRD is in, and an old replica may lead) is not run by this release
and not failed: condition Valid=Unknown (NewerSchema) names the field, and it waits, unplanned, for a
controller that knows it. It once ran such a flow without what it did not know (a step's allowFailure
read as absent) or failed it InvalidSpec on an unknown value."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from controller_rig import Rig
from test_cron_controller import Cluster, running  # noqa: F401  (the fixture)

from zen_flow.api.jobflow import JobFlow
from zen_flow.api.meta import Condition
from zen_flow.controller.metrics import Metrics
from zen_flow.kube.errors import from_status
from zen_flow.planner.newer_schema import NEWER_SCHEMA_RETRY_SECONDS
from zen_flow_dev.testing.clock import FakeClock, settle
from zen_flow_dev.testing.flows import flow_manifest, job_step


def newer_flow(name: str, change: Any) -> JobFlow:
    manifest = flow_manifest(name, "team", [job_step("a"), job_step("b", "a")])
    change(manifest["spec"])
    return JobFlow.model_validate(manifest)


def unknown_key(spec: dict[str, Any]) -> None:
    spec["steps"][1]["allowFailureFromTheFuture"] = True


def unknown_value(spec: dict[str, Any]) -> None:
    spec["executionPolicy"] = {"jobRetention": "KeepNothingFromTheFuture"}


def any_key_in_the_template(spec: dict[str, Any]) -> None:
    spec["steps"][0]["template"]["spec"]["template"]["spec"]["someFutureKubeField"] = {"x": 1}


def valid(flow: JobFlow) -> Condition:
    return next(c for c in flow.status.conditions if c.type == "Valid")


async def rounds(rig: Rig, n: int, seconds: float = 1.0) -> None:
    for _ in range(n):
        rig.api.sync()
        await rig.settle(seconds)


@pytest.mark.parametrize(
    ("rig", "field"),
    [
        (newer_flow("key", unknown_key), "spec.steps[1].allowFailureFromTheFuture: a field"),
        (newer_flow("value", unknown_value), 'spec.executionPolicy.jobRetention: "KeepNothingFromTheFuture"'),
    ],
    indirect=["rig"],
)
async def test_a_flow_written_for_a_newer_release_waits_unplanned_and_unfailed(rig: Rig, field: str) -> None:
    await rounds(rig, 3)
    assert rig.api.job_creates == []
    assert rig.flow.status.phase is None  # not failed, not started
    condition = valid(rig.flow)
    assert (condition.status, condition.reason) == ("Unknown", "NewerSchema")
    assert field in condition.message
    writes = rig.count("zen_flow_status_patches_total", "written")
    await rounds(rig, 3, NEWER_SCHEMA_RETRY_SECONDS)  # looked at again slowly: still the same verdict
    assert rig.api.job_creates == []
    assert rig.count("zen_flow_status_patches_total", "written") == writes  # said once


@pytest.mark.parametrize("rig", [newer_flow("key", unknown_key)], indirect=True)
async def test_a_running_flow_an_older_leader_finds_is_left_as_it_is(rig: Rig) -> None:
    # Started by the newer release: an older leader takes over mid-upgrade. Its Jobs run on untouched.
    rig.api.update_flow(rig.key, lambda f: f.model_copy(update={"metadata": f.metadata.model_copy(
        update={"generation": 2}), "spec": newer_flow("key", lambda s: None).spec}))  # fmt: skip
    await rounds(rig, 2)
    assert len(rig.api.job_creates) == 1  # this release knows this spec
    assert rig.step("a") == "Running"
    edited = newer_flow("key", unknown_key).spec
    rig.api.update_flow(rig.key, lambda f: f.model_copy(update={"metadata": f.metadata.model_copy(
        update={"generation": 3}), "spec": edited}))  # fmt: skip
    job = rig.job("a")
    rig.api.finish_job("team", job)
    await rounds(rig, 3)
    assert len(rig.api.job_creates) == 1  # b is not started by a release that does not know the flow
    assert rig.step("a") == "Running"  # nor is a's end recorded: the newer release will
    assert valid(rig.flow).status == "Unknown"
    assert rig.flow.status.phase == "Running"


@pytest.mark.parametrize("rig", [newer_flow("template", any_key_in_the_template)], indirect=True)
async def test_any_key_where_the_crd_keeps_any_key_is_run_as_ever(rig: Rig) -> None:
    await rounds(rig, 2)
    assert rig.step("a") == "Running"
    assert valid(rig.flow).status == "True"


async def test_a_cronjobflow_written_for_a_newer_release_makes_no_run(
    running: tuple[Cluster, FakeClock, Metrics],  # noqa: F811
) -> None:
    cluster, clock, _ = running
    cluster.add_cron("newer", concurrencyPolicy="ReplaceGentlyFromTheFuture")
    cluster.add_cron("known")
    await settle()
    await clock.advance(90)
    assert cluster.runs("newer") == []
    assert cluster.runs("known") != []
    condition = next(c for c in cluster.crons["ns/newer"].status.conditions if c.type == "Valid")
    assert (condition.status, condition.reason) == ("Unknown", "NewerSchema")
    assert 'spec.concurrencyPolicy: "ReplaceGentlyFromTheFuture"' in condition.message


# A CRD and a controller rolled back together: the CRD refuses a value the stored flow holds (its enum is
# the older release's, and validation does not ratchet an atomic list), so every write of the object, the
# Valid=Unknown (NewerSchema) one too, gets 422. It once failed every reconcile, backing off, the warning
# logged each time and nothing told on the flow.
ROLLED_BACK = (
    'JobFlow.workflow.kube-zen.io "value" is invalid: spec.executionPolicy.jobRetention: Unsupported '
    'value: "KeepNothingFromTheFuture": supported values: "All", "FailedOnly"'
)


def refuse_status_writes(rig: Rig, message: str) -> tuple[list[str], list[int]]:
    """Every status write is refused with 422 `message` while the returned switch holds "on"; returns
    the switch and the writes tried (one entry each)."""
    switch, tried, real = ["on"], [], rig.api.patch_flow_status

    async def patch(namespace: str, name: str, ops: list[dict[str, Any]]) -> str:
        tried.append(1)
        if switch:
            raise from_status(422, {"kind": "Status", "code": 422, "reason": "Invalid", "message": message})
        return await real(namespace, name, ops)

    rig.api.patch_flow_status = patch  # type: ignore[method-assign]
    return switch, tried


@pytest.mark.parametrize("rig", [newer_flow("value", unknown_value)], indirect=True)
async def test_a_newer_flow_whose_crd_refuses_its_status_is_told_once_and_looked_at_slowly(rig: Rig) -> None:
    switch, tried = refuse_status_writes(rig, ROLLED_BACK)
    await rounds(rig, 5)
    looks = len(tried)
    assert looks <= 2  # one look (a patch, then the whole status), not one per backoff step
    await rounds(rig, 3, NEWER_SCHEMA_RETRY_SECONDS)
    assert len(tried) <= looks + 3 * 2  # then as slowly as any newer flow
    told = [m for t, r, m in rig.api.events if (t, r) == ("Warning", "NewerSchema")]
    assert len(told) == 1  # once, however often it is looked at
    assert "422" in told[0]
    assert "spec.executionPolicy.jobRetention" in told[0]  # the apiserver's words name the field
    assert rig.count("zen_flow_reconcile_total", "error") == 0  # not a failing reconcile
    assert rig.api.job_creates == []
    assert rig.flow.status.phase is None
    # Edited, still refused: told again (a new generation); then the CRD rolled forward: marked at last.
    rig.api.update_flow(rig.key, lambda f: f.model_copy(update={"metadata": f.metadata.model_copy(
        update={"generation": 2})}))  # fmt: skip
    await rounds(rig, 2)
    assert len([r for _, r, _ in rig.api.events if r == "NewerSchema"]) == 2
    switch.clear()
    await rounds(rig, 1, NEWER_SCHEMA_RETRY_SECONDS)
    assert (valid(rig.flow).status, valid(rig.flow).reason) == ("Unknown", "NewerSchema")
    assert rig.api.job_creates == []


@pytest.mark.parametrize("rig", [newer_flow("value", unknown_value)], indirect=True)
async def test_a_newer_flow_deleted_while_its_status_was_refused_is_not_told_of(rig: Rig) -> None:
    # The user deletes the flow while its status write is in flight; the write is refused (422) and the
    # flow's delete event is seen meanwhile: no Warning Event about an object that is gone.

    async def patch(namespace: str, name: str, ops: list[dict[str, Any]]) -> str:
        if rig.key in rig.api.flows:
            rig.api.remove_flow(rig.key)
            rig.api.sync()
        raise from_status(422, {"kind": "Status", "code": 422, "reason": "Invalid", "message": ROLLED_BACK})

    rig.api.patch_flow_status = patch  # type: ignore[method-assign]
    await rounds(rig, 3)
    assert rig.key not in rig.api.flows
    assert [r for _, r, _ in rig.api.events if r == "NewerSchema"] == []
    assert rig.count("zen_flow_reconcile_total", "error") == 0


async def test_a_newer_cronjobflow_whose_crd_refuses_its_status_is_told_once(
    running: tuple[Cluster, FakeClock, Metrics],  # noqa: F811
) -> None:
    cluster, clock, _ = running
    real = cluster.patch_status
    refusal = 'CronJobFlow "newer" is invalid: spec.concurrencyPolicy: Unsupported value'

    async def patch(namespace: str, name: str, status: dict[str, Any], rv: str) -> None:
        if name == "newer":
            raise from_status(422, {"kind": "Status", "code": 422, "reason": "Invalid", "message": refusal})
        await real(namespace, name, status, rv)

    cluster.patch_status = patch  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as logs:
        cluster.add_cron("newer", concurrencyPolicy="ReplaceGentlyFromTheFuture")
        cluster.add_cron("known")
        await settle()
        for _ in range(4):
            await clock.advance(NEWER_SCHEMA_RETRY_SECONDS)
    assert cluster.runs("newer") == []
    assert cluster.runs("known") != []
    told = [m for name, reason, m in cluster.events if (name, reason) == ("newer", "NewerSchema")]
    assert len(told) == 1
    assert "spec.concurrencyPolicy" in told[0]
    assert not [e for e in logs if "reconcile failed" in e["event"]]  # no backoff, no warning each time
