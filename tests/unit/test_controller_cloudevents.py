"""The controller's CloudEvents (`--cloudevents-sink`): each transition goes out once, after the status
write that records it; a write refused as stale (409) announces nothing, and its retry announces it once;
a write applied whose answer was lost announces its transitions once the cache shows it; a flow failed by
a status the apiserver refuses announces failed.v1. The controller runs its real worker loop against
FakeApiServer; the sink's sender runs too."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
from controller_rig import Rig, applied_then, running
from structlog.testing import capture_logs

from zen_flow.controller.cloud_event_sink import CloudEventSink
from zen_flow.controller.metrics import Metrics
from zen_flow.kube.errors import from_status
from zen_flow_dev.testing.apiserver_fake import conflict
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow

CHAIN = make_flow([job_step("a"), job_step("b", "a")], name="chain", namespace="team")
P = "dev.kube-zen.jobflow."


class Receiver:
    def __init__(self) -> None:
        self.got: list[tuple[str, str, str]] = []  # (type, subject, id)

    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> int:
        self.got.append((headers["ce-type"].removeprefix(P), headers["ce-subject"], headers["ce-id"]))
        return 202

    def seen(self) -> list[tuple[str, str]]:
        return [(type_, subject) for type_, subject, _ in self.got]


@asynccontextmanager
async def announcing(receiver: Receiver, *, step_events: bool = True) -> AsyncIterator[Rig]:
    """The controller rig running CHAIN with a sink that posts to `receiver`, its sender running until
    the rig stops (a sender that crashed fails the test as it is awaited). `step_events`: as
    --cloudevents-step-events."""
    sink = CloudEventSink(
        "http://sink.example/",
        clock=FakeClock(),
        metrics=Metrics(),
        post=receiver.post,
        step_events=step_events,
    )
    sender = asyncio.create_task(sink.run())
    try:
        async with running(CHAIN, cloud_events=sink) as rig:
            yield rig
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender


async def test_transitions_go_out_once_after_the_status_write_that_records_them() -> None:
    receiver = Receiver()
    async with announcing(receiver) as rig:
        api = rig.api
        api.sync()
        await rig.settle()
        api.sync()
        assert receiver.seen() == [("started.v1", "chain"), ("step.started.v1", "a")]
        # Job a finishes while a user labels the flow: the controller plans from a flow one version old,
        # creates Job b, and its status write is refused. Nothing of that plan is announced.
        api.finish_job("team", rig.job("a"))
        api.update_flow(rig.key, lambda f: f.model_copy(update={"metadata": f.metadata.model_copy(
            update={"labels": {"owner": "data-team"}})}))  # fmt: skip
        api.sync(flows=False)
        await rig.settle()
        assert api.refused == ["409 Conflict"]
        assert len(receiver.got) == 2
        api.sync()  # the retry plans from the current version, writes, and announces
        await rig.settle()
        api.sync()
        api.finish_job("team", rig.job("b"))
        api.sync()
        await rig.settle()
        assert rig.flow.status.phase == "Succeeded"
    assert receiver.seen() == [
        ("started.v1", "chain"),
        ("step.started.v1", "a"),
        ("step.succeeded.v1", "a"),
        ("step.started.v1", "b"),
        ("step.succeeded.v1", "b"),
        ("succeeded.v1", "chain"),
    ]
    assert len({id_ for *_, id_ in receiver.got}) == 6


@pytest.mark.parametrize("last_answer", [None, TimeoutError("answer lost")], ids=["answered", "lost"])
async def test_without_step_events_a_two_step_flow_sends_only_its_start_and_its_success(
    last_answer: BaseException | None,
) -> None:
    # --cloudevents-step-events=false. "lost": the write that records the flow's success is applied but
    # its answer lost, so its CloudEvents wait for the cache to show it (and the step's stays out).
    receiver = Receiver()
    async with announcing(receiver, step_events=False) as rig:
        api = rig.api
        api.sync()
        await rig.settle()
        api.sync()
        api.finish_job("team", rig.job("a"))
        api.sync()
        await rig.settle()
        api.sync()
        assert rig.step("b") == "Running"
        applied = applied_then(api, last_answer) if last_answer is not None else None
        api.finish_job("team", rig.job("b"))
        api.sync()
        await rig.settle()
        if applied is not None:
            assert applied, "the write was made"
            assert receiver.seen() == [("started.v1", "chain")]  # in doubt: not sent yet
            api.sync()
            await rig.settle(2)
        assert rig.flow.status.phase == "Succeeded"
    assert receiver.seen() == [("started.v1", "chain"), ("succeeded.v1", "chain")]
    assert rig.controller._announcements.kept() == 0


@pytest.mark.parametrize(
    "answer", [TimeoutError("answer lost"), conflict("chain")], ids=["timeout", "409-to-a-retry"]
)
async def test_a_status_write_applied_whose_answer_was_lost_still_announces_its_transitions(
    answer: BaseException,
) -> None:
    receiver = Receiver()
    async with announcing(receiver) as rig:
        api = rig.api
        api.sync()
        await rig.settle()
        api.sync()
        applied = applied_then(api, answer)
        api.finish_job("team", rig.job("a"))
        api.sync()
        await rig.settle()
        assert applied, "the write was made"
        assert rig.step("a") == "Succeeded"  # stored, though the controller never heard so
        api.sync()  # the cache shows the write: the next reconcile finds nothing new to record
        await rig.settle(2)
        api.finish_job("team", rig.job("b"))
        api.sync()
        await rig.settle()
        assert rig.flow.status.phase == "Succeeded"
    assert receiver.seen() == [
        ("started.v1", "chain"),
        ("step.started.v1", "a"),
        ("step.succeeded.v1", "a"),
        ("step.started.v1", "b"),
        ("step.succeeded.v1", "b"),
        ("succeeded.v1", "chain"),
    ]


async def test_a_status_write_in_doubt_that_did_not_land_is_announced_once_by_its_retry() -> None:
    receiver = Receiver()
    async with announcing(receiver) as rig:
        api = rig.api
        api.sync()
        await rig.settle()
        api.sync()
        api.status_errors.append(TimeoutError("no answer"))  # not applied
        api.finish_job("team", rig.job("a"))
        api.sync()
        await rig.settle()
        assert rig.step("a") == "Running"
        assert len(receiver.got) == 2
        for _ in range(3):  # the retry writes it, and announces it
            await rig.settle(2)
            api.sync()
        assert rig.step("b") == "Running"
    assert receiver.seen() == [
        ("started.v1", "chain"),
        ("step.started.v1", "a"),
        ("step.succeeded.v1", "a"),
        ("step.started.v1", "b"),
    ]


async def test_a_flow_failed_by_a_refused_status_write_announces_its_failure() -> None:
    receiver = Receiver()
    with capture_logs():
        async with announcing(receiver) as rig:
            api = rig.api
            api.sync()
            await rig.settle()
            api.sync()
            api.status_errors.append(from_status(413, {"message": "request entity too large"}))
            api.finish_job("team", rig.job("a"))
            api.sync()
            for _ in range(3):
                await rig.settle(2)
                api.sync()
            assert rig.flow.status.phase == "Failed"
    assert receiver.seen() == [("started.v1", "chain"), ("step.started.v1", "a"), ("failed.v1", "chain")]
    assert [e for e in api.events if e[1] == "StatusRejected"]  # the Kubernetes Event as before


@pytest.mark.parametrize("answer", ["404", "no answer"])
async def test_a_flow_deleted_around_its_status_write_keeps_nothing_in_doubt(answer: str) -> None:
    # "404": the informer's delete is handled while the write is in flight, and the write answers 404.
    # "no answer": the write's answer is lost, then the flow is deleted. Either way nothing of the flow
    # stays in the controller's memory.
    with capture_logs():
        async with announcing(Receiver()) as rig:
            api = rig.api
            api.sync()
            await rig.settle()
            api.sync()
            flow = api.flows[rig.key]

            def delete() -> None:
                del api.flows[rig.key]
                api._cached_flows.pop(rig.key, None)
                rig.controller.on_flow_deleted(flow)

            async def patch(namespace: str, name: str, ops: list[dict[str, Any]]) -> str:
                if answer == "404":
                    delete()
                    raise from_status(404, {"reason": "NotFound", "message": f'"{name}" not found'})
                raise TimeoutError("no answer")

            api.patch_flow_status = patch  # type: ignore[method-assign]
            api.finish_job("team", rig.job("a"))
            api.sync(flows=False)
            await rig.settle()
            announcements = rig.controller._announcements
            if answer == "no answer":
                assert announcements.kept() == 1  # it may have landed: kept for the cache to tell
                delete()
            for _ in range(3):
                await rig.settle(2)
            assert announcements.kept() == 0
