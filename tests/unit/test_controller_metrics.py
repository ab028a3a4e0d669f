"""What the controller's metrics tell whoever scrapes them, with its real worker loop against
FakeApiServer (controller_rig.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from controller_rig import Rig

from zen_flow.api import Job
from zen_flow.api.constants import ANNOTATION_STOP, APPROVE_PREFIX
from zen_flow.kube.errors import from_status
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step

BLOCKED = make_flow([job_step("a")], name="blocked", namespace="team")
INVALID = make_flow([job_step("a", "missing")], name="invalid", namespace="team")  # an unknown dependency
GATED = make_flow(
    [job_step("backup"), manual_step("gate", "backup"), job_step("migrate", "gate")],
    name="gated",
    namespace="team",
)

# lint's failure is tolerated (allowFailure), test's is not.
CI = make_flow(
    [job_step("build"), job_step("lint", "build", allowFailure=True), job_step("test", "build")],
    name="ci",
    namespace="team",
)


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
    # And `kubectl describe` says why the flow does not move.
    assert any(
        reason == "CreateForbidden" and "exceeded quota" in message for _, reason, message in rig.api.events
    )
    # The retries back off to 1000 s apart: hours with few failed creates, the flow counted all along.
    for _ in range(8):
        await rig.settle(900)
        assert creates_failing(rig) == 1
    assert rig.count("zen_flow_job_creates_total", "error") > 10
    refusing.clear()  # the quota is raised
    rig.api.sync()  # the status written meanwhile (step a refused, condition JobCreateFailing)
    await rig.settle(1000)
    rig.api.sync()
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


@pytest.mark.parametrize("rig", [BLOCKED], indirect=True)
async def test_a_flow_deleted_while_its_create_was_in_flight_no_longer_counts_as_failing(rig: Rig) -> None:
    rig.metrics.watch_job_creates(rig.controller.creates_failing)
    release, entered = asyncio.Event(), asyncio.Event()

    async def refused_after_the_delete(namespace: str, body: dict[str, Any]) -> Job:
        entered.set()
        await release.wait()
        raise from_status(403, {"kind": "Status", "code": 403, "reason": "Forbidden", "message": "quota"})

    rig.api.create_job = refused_after_the_delete  # type: ignore[method-assign]
    rig.api.sync()
    await rig.settle()
    await asyncio.wait_for(entered.wait(), 1)
    flow = rig.flow
    rig.api.flows.pop(rig.key)
    rig.api.sync()  # the informer brings the delete while the create waits for its answer
    rig.controller.on_flow_deleted(flow)
    release.set()
    await rig.settle(10)
    assert creates_failing(rig) is None


@pytest.mark.parametrize("rig", [GATED], indirect=True)
async def test_step_duration_is_the_run_time_of_jobs_not_the_wait_for_an_approval(rig: Rig) -> None:
    api = rig.api
    api.sync()
    await rig.settle()
    await rig.settle(60)  # the backup runs a minute
    api.finish_job("team", rig.job("backup"))
    api.sync()
    await rig.settle()
    api.sync()
    assert rig.step("gate") == "PendingApproval"
    await rig.settle(6 * 3600)  # a human approves six hours later
    api.update_flow(rig.key, lambda f: f.model_copy(update={"metadata": f.metadata.model_copy(
        update={"annotations": {**f.metadata.annotations, APPROVE_PREFIX + "gate": "true"}})}))  # fmt: skip
    api.sync()
    await rig.settle()
    api.sync()
    await rig.settle(30)  # the migration runs half a minute
    api.finish_job("team", rig.job("migrate"))
    api.sync()
    await rig.settle()
    assert rig.flow.status.phase == "Succeeded"
    succeeded = {"namespace": "team", "result": "Succeeded"}
    registry = rig.metrics.registry
    assert registry.get_sample_value("zen_flow_step_duration_seconds_count", succeeded) == 2
    ran = [rig.flow.status.step(name) for name in ("backup", "migrate")]
    seconds = sum((s.completion_time - s.start_time).total_seconds() for s in ran if s)  # type: ignore[operator]
    assert registry.get_sample_value("zen_flow_step_duration_seconds_sum", succeeded) == seconds < 120
    # The gate still counts as a step that succeeded; its wait was zen_flow_approvals_pending's to show.
    transitions = {"namespace": "team", "phase": "Succeeded"}
    assert registry.get_sample_value("zen_flow_step_transitions_total", transitions) == 3
    # The flow's own duration is end to end: the six hours waiting for the approval included.
    status = rig.flow.status
    took = (status.completion_time - status.start_time).total_seconds()  # type: ignore[operator]
    assert took > 6 * 3600
    assert registry.get_sample_value("zen_flow_jobflow_duration_seconds_count", transitions) == 1
    assert registry.get_sample_value("zen_flow_jobflow_duration_seconds_sum", transitions) == took


@pytest.mark.parametrize("rig", [INVALID], indirect=True)
async def test_a_flow_that_never_started_has_no_duration(rig: Rig) -> None:
    rig.api.sync()
    await rig.settle()
    assert rig.flow.status.phase == "Failed"
    failed = {"namespace": rig.flow.metadata.namespace, "phase": "Failed"}
    registry = rig.metrics.registry
    assert registry.get_sample_value("zen_flow_jobflow_completions_total", failed) == 1
    assert registry.get_sample_value("zen_flow_jobflow_duration_seconds_count", failed) is None


@pytest.mark.parametrize("rig", [INVALID], indirect=True)
async def test_an_invalid_flow_is_counted_once_not_at_every_reconcile_of_it(rig: Rig) -> None:
    rig.api.sync()
    await rig.settle()
    assert rig.flow.status.phase == "Failed"
    for _ in range(3):  # the event of our own write, then a user's label each time: reconciled again
        rig.api.sync()
        await rig.settle()
        rig.api.update_flow(rig.key, lambda f: f.model_copy(update={"metadata": f.metadata.model_copy(
            update={"labels": {**f.metadata.labels, "touched": str(rig.clock.monotonic())}})}))  # fmt: skip
    assert rig.count("zen_flow_reconcile_total", "ok") + rig.count("zen_flow_reconcile_total", "requeue") >= 4
    assert rig.count("zen_flow_reconcile_total", "invalid") == 1


def failures(rig: Rig) -> tuple[float | None, float | None]:
    """The namespace's steps that entered Failed, and those of them whose failure allowFailure tolerated."""
    registry = rig.metrics.registry
    failed = registry.get_sample_value(
        "zen_flow_step_transitions_total", {"namespace": "team", "phase": "Failed"}
    )
    allowed = registry.get_sample_value("zen_flow_step_failures_allowed_total", {"namespace": "team"})
    return failed, allowed


async def finish(rig: Rig, step: str, *, succeeded: bool) -> None:
    rig.api.finish_job("team", rig.job(step), succeeded=succeeded)
    rig.api.sync()
    await rig.settle()
    rig.api.sync()
    await rig.settle()


@pytest.mark.parametrize("rig", [CI], indirect=True)
async def test_a_failure_allow_failure_tolerated_is_counted_apart_from_the_others(rig: Rig) -> None:
    rig.api.sync()
    await rig.settle()
    # Both at 0 from the namespace's first step on: its first failure, tolerated or not, must be an
    # increase of each (ZenFlowStepsFailing subtracts one from the other; increase() misses a series'
    # first sample, so a Failed series born at 1 would lose a failure the other counts).
    assert failures(rig) == (0, 0)
    succeeded = {"namespace": "team", "phase": "Succeeded"}
    assert rig.metrics.registry.get_sample_value("zen_flow_step_transitions_total", succeeded) == 0
    await finish(rig, "build", succeeded=True)
    await finish(rig, "lint", succeeded=False)
    assert rig.step("lint") == "Failed"
    assert failures(rig) == (1, 1)
    await finish(rig, "test", succeeded=False)
    assert rig.flow.status.phase == "Failed"
    assert failures(rig) == (2, 1)  # test's failure is one of the flow's: counted as failed only


@pytest.mark.parametrize("rig", [CI], indirect=True)
async def test_a_step_a_stop_ended_is_no_tolerated_failure_in_the_metrics(rig: Rig) -> None:
    rig.api.sync()
    await rig.settle()
    await finish(rig, "build", succeeded=True)
    assert rig.step("lint") == "Running"
    rig.api.update_flow(rig.key, lambda f: f.model_copy(update={"metadata": f.metadata.model_copy(
        update={"annotations": {**f.metadata.annotations, ANNOTATION_STOP: "true"}})}))  # fmt: skip
    rig.api.sync()
    await rig.settle()
    rig.api.sync()
    await rig.settle()
    assert rig.flow.status.phase == "Failed"
    assert rig.step("lint") == "Failed"
    assert failures(rig) == (2, 0)  # lint and test, both stopped: neither failed on its own


# lint runs beside build; test's Job is refused, which fails the flow flow-wide.
BESIDE = make_flow(
    [job_step("lint", allowFailure=True), job_step("build"), job_step("test", "build")],
    name="ci",
    namespace="team",
)


@pytest.mark.parametrize("rig", [BESIDE], indirect=True)
async def test_a_step_a_flow_wide_failure_ended_is_no_tolerated_failure_in_the_metrics(rig: Rig) -> None:
    rig.api.sync()
    await rig.settle()
    assert (rig.step("lint"), rig.step("build")) == ("Running", "Running")

    async def invalid(namespace: str, body: dict[str, Any]) -> Job:
        raise from_status(422, {"kind": "Status", "code": 422, "reason": "Invalid", "message": "no"})

    rig.api.create_job = invalid  # type: ignore[method-assign]
    await finish(rig, "build", succeeded=True)
    assert rig.flow.status.phase == "Failed"
    assert rig.step("lint") == "Failed"  # ended with the flow, its Job stopped: not a failure of its own
    assert failures(rig) == (2, 0)  # lint's and test's


@pytest.mark.parametrize("rig", [BLOCKED], indirect=True)
async def test_a_flow_gone_unseen_stops_counting_as_failing_at_the_memory_sweep(rig: Rig) -> None:
    # Its failing creates are kept by its UID, with the rest the controller keeps of it: whatever way the
    # flow goes (its delete event, or the sweep, for a flow gone without one), they go with it.
    rig.metrics.watch_job_creates(rig.controller.creates_failing)
    refuse_creates(rig)
    rig.api.sync()
    await rig.settle()
    assert creates_failing(rig) == 1
    rig.api.remove_flow(rig.key)  # its delete event not handled
    assert rig.controller.memory.sweep(rig.api.flows.values()) >= 1
    assert creates_failing(rig) is None


@pytest.mark.parametrize("rig", [BLOCKED], indirect=True)
async def test_a_namespaces_flow_completions_are_exported_at_0_before_its_first_flow_ends(rig: Rig) -> None:
    # increase() misses a counter's first sample: a Failed series born at 1 with the namespace's first
    # failure (after every failover too: a new leader counts afresh) would hide it from
    # ZenFlowJobFlowsFailing, whose "at least 3 in an hour" then needs a fourth.
    registry = rig.metrics.registry
    failed = {"namespace": "team", "phase": "Failed"}
    rig.api.sync()
    await rig.settle()
    assert rig.flow.status.phase == "Running"
    succeeded = {"namespace": "team", "phase": "Succeeded"}
    assert registry.get_sample_value("zen_flow_jobflow_completions_total", failed) == 0
    assert registry.get_sample_value("zen_flow_jobflow_completions_total", succeeded) == 0
    rig.api.finish_job("team", rig.job("a"), succeeded=False)
    for _ in range(2):
        rig.api.sync()
        await rig.settle()
    assert rig.flow.status.phase == "Failed"
    assert registry.get_sample_value("zen_flow_jobflow_completions_total", failed) == 1


@pytest.mark.parametrize("rig", [INVALID], indirect=True)
async def test_failure_series_are_at_0_from_the_flows_sight_before_its_first_write(rig: Rig) -> None:
    # The flow fails at its first status write (invalid), the namespace's first: a Failed series made
    # at 0 by that very write is scraped at 1 already, and increase() misses the failure (after every
    # failover too). Made when the cache shows the flow (a standby's cache too, long before it leads),
    # every scrape from then on sees 0 until the failure.
    registry = rig.metrics.registry
    failed = {"namespace": "team", "phase": "Failed"}
    rig.api.sync()  # the informer delivers the flow; no reconcile has run yet
    assert registry.get_sample_value("zen_flow_jobflow_completions_total", failed) == 0
    succeeded = {"namespace": "team", "phase": "Succeeded"}
    assert registry.get_sample_value("zen_flow_jobflow_completions_total", succeeded) == 0
    assert registry.get_sample_value("zen_flow_step_transitions_total", failed) == 0
    assert registry.get_sample_value("zen_flow_step_failures_allowed_total", {"namespace": "team"}) == 0
    await rig.settle()
    assert rig.flow.status.phase == "Failed"
    assert registry.get_sample_value("zen_flow_jobflow_completions_total", failed) == 1
