"""A long-running controller forgets deleted flows: whatever way a flow goes (deleted while one of its
requests is in flight, by its TTL, by someone else once finished, re-created under its name while the
watch was away), nothing of it stays in memory: no per-flow state, no queue timer. A leak here grows with
every deletion, for as long as the controller runs (churn_rig.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from churn_rig import DAY, JOB_READ, NS, SCENARIOS, Churn, churning
from test_controller_archive_logs import KEY as ARCHIVED
from test_controller_archive_logs import end_flow
from test_controller_archive_logs import rig as archive_rig

from zen_flow.api import Job
from zen_flow.kube.errors import from_status
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow


def forgotten(churn: Churn) -> None:
    """Nothing is kept of the flows, all deleted: no state by flow, no timer, no key waiting."""
    assert churn.api.flows == {}
    assert churn.controller.memory.uids() == set()
    assert (churn.queue.delayed, churn.clock.pending_timers, len(churn.queue)) == (0, 0, 0)
    assert churn.controller.creates_failing() == []


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_a_deleted_flow_leaves_nothing_behind(scenario: str) -> None:
    async with churning() as churn:
        for n in range(3):
            await churn.cycle(f"f{n}", scenario)
        forgotten(churn)
        if scenario == JOB_READ:  # no reconcile error (it was a KeyError), no warning, no retry
            assert churn.errors() == 0


async def test_hundreds_of_flows_churned_leave_nothing_behind() -> None:
    # Every way in turn, a few hundred flows: the next writer that keeps something of a flow after its
    # delete event fails here, whichever structure it uses (Controller.memory).
    cycles = 15 * len(SCENARIOS)
    async with churning() as churn:
        for n in range(cycles):
            await churn.cycle(f"f{n}", SCENARIOS[n % len(SCENARIOS)])
        forgotten(churn)


async def test_a_pending_job_of_a_flow_re_created_under_its_name_keeps_nothing_of_the_old_flow() -> None:
    # The old flow's Job waits for the garbage collector while its pods come and go: the new flow's key
    # hears of it, but what the controller notes of a pending Job belongs to the old flow, gone for good.
    async with churning() as churn:
        api = churn.api
        old = api.create_flow(make_flow([job_step("s0")], name="nightly", namespace=NS))
        api.sync()
        await churn.settle()
        (job,) = [n for (_, n) in api.jobs]
        api.remove_flow(old.key)
        new = api.create_flow(make_flow([job_step("s1")], name="nightly", namespace=NS))
        api.sync()
        await churn.settle()
        api.report_pods(NS, job, ready=0, active=1)  # the old flow's Job, pending
        api.sync()
        await churn.settle()
        assert churn.controller.memory.uids() <= {new.metadata.uid}


async def test_the_queue_timers_show_on_a_gauge_and_a_deleted_flows_go() -> None:
    async with churning() as churn:
        churn.metrics.watch_queue(churn.queue)
        api = churn.api

        def delayed() -> float | None:
            return churn.metrics.registry.get_sample_value(
                "zen_flow_workqueue_delayed_keys", {"name": "test"}
            )

        flow = api.create_flow(
            make_flow([job_step("s0")], name="nightly", namespace=NS, execution_policy=DAY)
        )
        api.sync()
        await churn.settle()
        api.sync()
        (job,) = [n for (_, n) in api.jobs]
        api.finish_job(NS, job)
        api.sync()
        await churn.settle()
        assert delayed() == 1  # its TTL, a day from now
        api.remove_flow(flow.key)  # a history limit deletes it
        api.sync()
        await churn.settle()
        assert delayed() == 0


async def test_a_flow_deleted_while_its_archive_record_is_read_keeps_no_log_attempts() -> None:
    clock = FakeClock()
    api, ctrl, archive, _, _, _ = archive_rig(clock)
    read = api.get_flow

    async def deleted_during_the_read(namespace: str, name: str) -> Mapping[str, Any] | None:
        raw = await read(namespace, name)
        api.flows.pop(f"{namespace}/{name}", None)  # a namespace deletion, its event seen meanwhile
        api.sync()
        return raw

    writers = asyncio.create_task(archive.run())
    try:
        await end_flow(api, ctrl)
        api.get_flow = deleted_during_the_read  # type: ignore[method-assign]
        for _ in range(3):
            await ctrl.reconcile(ARCHIVED)
            await clock.advance(1)
            api.sync()
        assert ARCHIVED not in api.flows
        assert ctrl.memory.uids() == set()
    finally:
        writers.cancel()


async def test_a_flow_re_created_under_its_name_does_not_inherit_the_old_ones_failing_creates() -> None:
    # The old flow is deleted, and another made under its name, while its Job create waits for an answer
    # that is a 503. The new flow's own first 503 is then a first one (a blip its retry gets past, not
    # said), not taken for a repeat of the old flow's.
    async with churning() as churn:
        api, real = churn.api, churn.api.create_job
        answers = ["re-created meanwhile", "503"]

        async def create(namespace: str, body: dict[str, Any]) -> Job:
            if not answers:
                return await real(namespace, body)
            if answers.pop(0) == "re-created meanwhile":
                api.remove_flow(f"{NS}/nightly")
                api.create_flow(make_flow([job_step("s0")], name="nightly", namespace=NS))
                api.sync()  # the delete and add events, handled while the create is in flight
            raise from_status(503, {"kind": "Status", "code": 503, "reason": "ServiceUnavailable"})

        api.create_job = create  # type: ignore[method-assign]
        api.create_flow(make_flow([job_step("s0")], name="nightly", namespace=NS))
        for _ in range(3):
            api.sync()
            await churn.settle()
        assert not answers  # both 503s answered: the old flow's create, then the new flow's first
        assert api.flows[f"{NS}/nightly"].status.phase == "Running"
        assert [reason for _, reason, _ in api.events if reason.startswith("Create")] == []
