"""The Kubernetes Events of a status write whose outcome is in doubt (no answer, a 5xx, a 409 to the
client's retry of an applied write) follow the rule of its CloudEvents: kept until the cache shows the
flow again, told if it shows exactly the status the write planned, and left to the retry's plan (which
tells them itself) if the write did not land. Each is told once either way, also when the cache lags
through more retries (each a 409, each in doubt) than are kept, and nothing stays kept once it caught
up. The controller runs its real worker loop against FakeApiServer, with and without a CloudEvents sink."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import pytest
from controller_rig import Rig, applied_then, running
from structlog.testing import capture_logs

from zen_flow.api import JobFlow
from zen_flow.controller.announcements import MAX_DOUBTS
from zen_flow.controller.cloud_event_sink import CloudEventSink
from zen_flow.controller.metrics import Metrics
from zen_flow_dev.testing.apiserver_fake import FakeApiServer, conflict
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow

CHAIN = make_flow([job_step("a"), job_step("b", "a")], name="chain", namespace="team")
TIMED = make_flow([job_step("a", timeoutSeconds=60)], name="timed", namespace="team")


def told(api: FakeApiServer) -> list[str]:
    """The reasons of the flow's Kubernetes Events, in order."""
    return [reason for _, reason, _ in api.events]


@asynccontextmanager
async def controller(*, sink: bool, flow: JobFlow = CHAIN) -> AsyncIterator[tuple[Rig, list[str]]]:
    """The rig running `flow`, with a CloudEvents sink whose receiver's types are the list, or none."""
    if not sink:
        async with running(flow) as rig:
            yield rig, []
        return
    got: list[str] = []

    async def post(url: str, headers: Mapping[str, str], body: bytes) -> int:
        got.append(headers["ce-type"].removeprefix("dev.kube-zen.jobflow."))
        return 202

    events = CloudEventSink("http://sink.example/", clock=FakeClock(), metrics=Metrics(), post=post)
    sender = asyncio.create_task(events.run())
    try:
        async with running(flow, cloud_events=events) as rig:
            yield rig, got
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender


@pytest.mark.parametrize("sink", [False, True], ids=["no-sink", "sink"])
@pytest.mark.parametrize(
    "answer", [TimeoutError("answer lost"), conflict("chain")], ids=["timeout", "409-to-a-retry"]
)
async def test_the_events_of_a_status_write_applied_whose_answer_was_lost_are_told_once_the_cache_shows_it(
    answer: BaseException, sink: bool
) -> None:
    async with controller(sink=sink) as (rig, cloud_events):
        api = rig.api
        api.sync()
        await rig.settle()
        api.sync()
        start = told(api)
        assert start == ["StepStarted", "FlowStarted"]
        applied = applied_then(api, answer)
        api.finish_job("team", rig.job("a"))
        api.sync()
        await rig.settle()
        assert applied, "the write was made"
        assert rig.step("a") == "Succeeded"  # stored, though the controller never heard so
        assert told(api) == start  # in doubt: not told yet
        api.sync()  # the cache shows the write: told now, and the next plan records nothing new
        await rig.settle(2)
        assert told(api) == [*start, "StepSucceeded", "StepStarted"]
        api.finish_job("team", rig.job("b"))
        api.sync()
        await rig.settle()
        assert rig.flow.status.phase == "Succeeded"
        assert rig.controller._announcements.kept() == 0
    assert told(api) == [*start, "StepSucceeded", "StepStarted", "StepSucceeded", "FlowSucceeded"]
    if sink:  # kept and told together with the CloudEvents of the same write
        assert cloud_events == [
            "started.v1", "step.started.v1", "step.succeeded.v1", "step.started.v1", "step.succeeded.v1",
            "succeeded.v1",
        ]  # fmt: skip


@pytest.mark.parametrize("sink", [False, True], ids=["no-sink", "sink"])
async def test_the_events_of_a_status_write_in_doubt_that_did_not_land_are_told_once_by_its_retry(
    sink: bool,
) -> None:
    with capture_logs() as logs:
        async with controller(sink=sink) as (rig, _):
            api = rig.api
            api.sync()
            await rig.settle()
            api.sync()
            api.status_errors.append(TimeoutError("no answer"))  # not applied
            api.finish_job("team", rig.job("a"))
            api.sync()
            await rig.settle()
            assert rig.step("a") == "Running"
            assert rig.controller._announcements.kept() == 1
            for _ in range(3):  # the retry writes it, and tells of it
                await rig.settle(2)
                api.sync()
            assert rig.step("b") == "Running"
            assert rig.controller._announcements.kept() == 0
    assert told(api) == ["StepStarted", "FlowStarted", "StepSucceeded", "StepStarted"]
    dropped = [e for e in logs if e["event"].startswith("status write in doubt did not land")]
    assert [(e["flow"], e["writes"]) for e in dropped] == [("team/chain", 1)]


async def test_a_step_timeout_of_a_status_write_whose_answer_was_lost_is_counted_once() -> None:
    async with controller(sink=False, flow=TIMED) as (rig, _):
        api = rig.api
        api.sync()
        await rig.settle()
        api.sync()
        applied = applied_then(api, TimeoutError("answer lost"))
        api.finish_job("team", rig.job("a"), succeeded=False, reason="DeadlineExceeded")
        api.sync()
        await rig.settle()
        assert applied, "the write was made"
        assert rig.flow.status.phase == "Failed"
        api.sync()
        await rig.settle(2)
    assert told(api).count("StepTimedOut") == 1
    timeouts = rig.metrics.registry.get_sample_value("zen_flow_step_timeouts_total", {"namespace": "team"})
    assert timeouts == 1


ONE = make_flow([job_step("a")], name="one", namespace="team")


@pytest.mark.parametrize("sink", [False, True], ids=["no-sink", "sink"])
async def test_a_write_that_landed_is_told_though_the_cache_lagged_through_more_retries_than_are_kept(
    sink: bool,
) -> None:
    async with controller(sink=sink, flow=ONE) as (rig, cloud_events):
        api = rig.api
        api.sync()
        await rig.settle()
        api.sync()
        applied_then(api, TimeoutError("answer lost"))
        api.finish_job("team", rig.job("a"))
        api.sync()
        with capture_logs() as logs:
            # Five minutes without the watch event: each retry from the stale cache gets a 409.
            await rig.settle(300)
        assert rig.controller._announcements.kept() == MAX_DOUBTS
        assert told(api) == ["StepStarted", "FlowStarted"]
        api.sync()  # the cache catches up: the write that landed, the first, is told
        await rig.settle(2)
        assert rig.controller._announcements.kept() == 0
    assert told(api) == ["StepStarted", "FlowStarted", "StepSucceeded", "FlowSucceeded"]
    if sink:
        assert cloud_events == ["started.v1", "step.started.v1", "step.succeeded.v1", "succeeded.v1"]
    not_kept = [e for e in logs if e["event"].startswith("status write in doubt not kept")]
    assert not_kept, "more retries than are kept"


async def test_a_step_timeout_whose_write_landed_while_the_cache_lagged_is_told_and_counted() -> None:
    async with controller(sink=False, flow=TIMED) as (rig, _):
        api = rig.api
        api.sync()
        await rig.settle()
        api.sync()
        applied_then(api, TimeoutError("answer lost"))
        api.finish_job("team", rig.job("a"), succeeded=False, reason="DeadlineExceeded")
        api.sync()
        await rig.settle(300)
        api.sync()
        await rig.settle(2)
        assert rig.flow.status.phase == "Failed"
    assert (told(api).count("StepTimedOut"), told(api).count("FlowFailed")) == (1, 1)
    timeouts = rig.metrics.registry.get_sample_value("zen_flow_step_timeouts_total", {"namespace": "team"})
    assert timeouts == 1


@pytest.mark.parametrize("sink", [False, True], ids=["no-sink", "sink"])
async def test_nothing_of_a_finished_flow_stays_kept_once_the_cache_caught_up(sink: bool) -> None:
    async with controller(sink=sink, flow=ONE) as (rig, _):
        api = rig.api
        api.sync()
        await rig.settle(0.9)  # the retries below span a second: not all plan the same status, as stored
        api.sync()
        applied_then(api, TimeoutError("answer lost"))
        api.finish_job("team", rig.job("a"))
        api.sync()
        await rig.settle(0.7)  # retries from the stale cache, each in doubt (a 409)
        assert 1 < rig.controller._announcements.kept() <= MAX_DOUBTS
        api.sync()
        await rig.settle(2)
        assert rig.flow.status.phase == "Succeeded"  # no write of it will come again
        assert rig.controller._announcements.kept() == 0
    assert told(api).count("FlowSucceeded") == 1
