"""A flow or CronJobFlow written for a newer zen-flow (a key or an enum value its CRD has and ours does
not: during a rolling upgrade the new CRD is in, and an old replica may lead) is not run by this release
and not failed: condition Valid=Unknown (NewerSchema) names the field, and it waits, unplanned, for a
controller that knows it. It once ran such a flow without what it did not know (a step's allowFailure
read as absent) or failed it InvalidSpec on an unknown value."""

from __future__ import annotations

from typing import Any

import pytest
from controller_rig import Rig
from test_cron_controller import Cluster, running  # noqa: F401  (the fixture)

from zen_flow.api.jobflow import JobFlow
from zen_flow.api.meta import Condition
from zen_flow.controller.metrics import Metrics
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
