"""The controller's CloudEvents (`--cloudevents-sink`): each transition goes out once, after the status
write that records it; a write refused as stale (409) announces nothing, and its retry announces it once.
The controller runs its real worker loop against FakeApiServer; the sink's sender runs too."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest
from controller_rig import running

from zen_flow.controller.cloud_event_sink import CloudEventSink
from zen_flow.controller.metrics import Metrics
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


async def test_transitions_go_out_once_after_the_status_write_that_records_them() -> None:
    receiver = Receiver()
    sink = CloudEventSink("http://sink.example/", clock=FakeClock(), metrics=Metrics(), post=receiver.post)
    sender = asyncio.create_task(sink.run())
    async with running(CHAIN, cloud_events=sink) as rig:
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
    sender.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sender
    assert receiver.seen() == [
        ("started.v1", "chain"),
        ("step.started.v1", "a"),
        ("step.succeeded.v1", "a"),
        ("step.started.v1", "b"),
        ("step.succeeded.v1", "b"),
        ("succeeded.v1", "chain"),
    ]
    assert len({id_ for *_, id_ in receiver.got}) == 6
