"""Events as `kubectl describe` shows them: a repeat folds into the first Event (count, lastTimestamp), as
client-go's correlator does; reasons the operator left out cost nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from zen_flow.api import JobFlow
from zen_flow.api.meta import ObjectMeta, format_time
from zen_flow.kube import ClientOptions, EventRecorder, KubeClient, KubeConfig
from zen_flow.kube.events import AGGREGATE_SECONDS
from zen_flow.planner.events import ROUTINE_STEP_EVENTS
from zen_flow_dev.testing.clock import FakeClock


class EventStore:
    """The apiserver's side for core/v1 Events: create, merge-patch by name, 404 for a name it lacks."""

    def __init__(self) -> None:
        self.events: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.method)
        if request.method == "POST":
            event = await request.json()
            self.events[event["metadata"]["name"]] = event
            return web.json_response(event, status=201)
        name = request.match_info["name"]
        if name not in self.events:
            return web.json_response({"kind": "Status", "code": 404, "reason": "NotFound"}, status=404)
        self.events[name].update(await request.json())
        return web.json_response(self.events[name])


@pytest.fixture
async def store() -> AsyncIterator[tuple[EventStore, str]]:
    events = EventStore()
    app = web.Application()
    app.router.add_post("/api/v1/namespaces/{ns}/events", events.handle)
    app.router.add_patch("/api/v1/namespaces/{ns}/events/{name}", events.handle)
    server = TestServer(app)
    await server.start_server()
    yield events, str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
async def recorder_parts(
    store: tuple[EventStore, str],
) -> AsyncIterator[tuple[EventStore, KubeClient, FakeClock]]:
    clock = FakeClock()
    async with KubeClient(
        KubeConfig(host=store[1], source="test"), ClientOptions(timeout=2.0), clock=clock
    ) as kube:
        yield store[0], kube, clock


def flow(uid: str = "u1") -> JobFlow:
    return JobFlow(metadata=ObjectMeta(name="f", namespace="ns", uid=uid, resource_version="3"))


async def test_a_repeated_event_is_one_event_with_a_count(
    recorder_parts: tuple[EventStore, KubeClient, FakeClock],
) -> None:
    store, kube, clock = recorder_parts
    recorder = EventRecorder(kube, clock=clock)
    start = clock.now()
    for _ in range(3):
        await recorder.record(flow(), "Warning", "StatusRejected", "status too large")
        clock.jump(30)
    (event,) = store.events.values()
    assert event["count"] == 3
    # First and last as they happened: the third send came 60 s after the first.
    assert (event["firstTimestamp"], event["lastTimestamp"]) == (
        format_time(start),
        format_time(start + timedelta(seconds=60)),
    )
    assert store.requests == ["POST", "PATCH", "PATCH"]


async def test_other_messages_other_flows_and_old_repeats_are_new_events(
    recorder_parts: tuple[EventStore, KubeClient, FakeClock],
) -> None:
    store, kube, clock = recorder_parts
    recorder = EventRecorder(kube, clock=clock)
    await recorder.record(flow(), "Warning", "StepFailed", "step a failed")
    await recorder.record(flow(), "Warning", "StepFailed", "step b failed")  # another message
    await recorder.record(
        flow("u2"), "Warning", "StepFailed", "step a failed"
    )  # a flow of the same name, again
    clock.jump(AGGREGATE_SECONDS + 1)
    await recorder.record(flow(), "Warning", "StepFailed", "step a failed")  # past the window
    assert store.requests == ["POST"] * 4
    assert [e["count"] for e in store.events.values()] == [1, 1, 1, 1]


async def test_a_repeat_of_an_expired_event_creates_it_again(
    recorder_parts: tuple[EventStore, KubeClient, FakeClock],
) -> None:
    store, kube, clock = recorder_parts
    recorder = EventRecorder(kube, clock=clock)
    await recorder.record(flow(), "Normal", "FlowRetried", "rerun r1")
    store.events.clear()  # the apiserver's one-hour TTL, or someone deleted it
    await recorder.record(flow(), "Normal", "FlowRetried", "rerun r1")
    assert store.requests == ["POST", "PATCH", "POST"]
    (event,) = store.events.values()
    assert event["count"] == 1


async def test_skipped_reasons_are_never_sent(
    recorder_parts: tuple[EventStore, KubeClient, FakeClock],
) -> None:
    store, kube, clock = recorder_parts
    recorder = EventRecorder(kube, clock=clock, skip=ROUTINE_STEP_EVENTS, max_pending=1)
    recorder.emit(flow(), "Normal", "StepStarted", "step a: created Job f-a-1")
    recorder.emit(flow(), "Normal", "StepSucceeded", "step a succeeded")
    recorder.emit(flow(), "Warning", "StepFailed", "step b failed")  # the queue's one place is still free
    assert recorder.dropped == 0
    assert store.requests == []
