"""Events as `kubectl describe` shows them: a repeat folds into the first Event (count, lastTimestamp), as
client-go's correlator does; reasons the operator left out cost nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from zen_flow.api import JobFlow
from zen_flow.api.meta import ObjectMeta, format_time
from zen_flow.kube import ClientOptions, EventRecorder, KubeClient, KubeConfig
from zen_flow.kube.events import AGGREGATE_SECONDS, COMBINED, SIMILAR_EVENTS
from zen_flow.planner.events import ROUTINE_STEP_EVENTS
from zen_flow_dev.testing.clock import FakeClock


class EventStore:
    """The apiserver's side for core/v1 Events: create, merge-patch by name, 404 for a name it lacks."""

    def __init__(self) -> None:
        self.events: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []
        self.answered = asyncio.Event()  # set at each request

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.method)
        self.answered.set()
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


async def test_a_burst_of_similar_events_of_one_flow_is_ten_events_the_last_combined(
    recorder_parts: tuple[EventStore, KubeClient, FakeClock],
) -> None:
    # A 500-step fan-out failing at once: as client-go's aggregator, nine Events as they are, then one
    # combined Event that says the latest, with the count of all the others.
    store, kube, clock = recorder_parts
    recorder = EventRecorder(kube, clock=clock)
    for i in range(500):
        recorder.emit(flow(), "Warning", "StepFailed", f"step s{i} failed")
    await _drain(recorder, store, sends=SIMILAR_EVENTS)
    events = list(store.events.values())
    assert [e["message"] for e in events[:9]] == [f"step s{i} failed" for i in range(9)]
    combined = events[9]
    assert (combined["message"], combined["count"]) == (f"{COMBINED}step s499 failed", 491)
    assert store.requests == ["POST"] * SIMILAR_EVENTS
    # Another reason, or another flow, is not combined with them.
    recorder.emit(flow(), "Warning", "FlowFailed", "step s0 failed")
    recorder.emit(flow("u2"), "Warning", "StepFailed", "step s600 failed")
    await _drain(recorder, store, sends=SIMILAR_EVENTS + 2)
    assert [e["message"] for e in list(store.events.values())[10:]] == ["step s0 failed", "step s600 failed"]


async def test_the_combined_event_goes_on_counting_and_says_the_latest(
    recorder_parts: tuple[EventStore, KubeClient, FakeClock],
) -> None:
    store, kube, clock = recorder_parts
    recorder = EventRecorder(kube, clock=clock)
    for i in range(11):
        await recorder.record(flow(), "Warning", "StepFailed", f"step s{i} failed")
    await recorder.record(flow(), "Warning", "StepFailed", "step s3 failed")  # seen before, now combined
    assert store.requests == ["POST"] * 10 + ["PATCH"] * 2
    combined = list(store.events.values())[-1]
    assert (combined["message"], combined["count"]) == (f"{COMBINED}step s3 failed", 3)
    clock.jump(AGGREGATE_SECONDS + 1)  # a quiet window later, messages are new Events again
    await recorder.record(flow(), "Warning", "StepFailed", "step s20 failed")
    assert list(store.events.values())[-1]["message"] == "step s20 failed"


async def _drain(recorder: EventRecorder, store: EventStore, *, sends: int) -> None:
    """Run the sender until `sends` requests reached the store (5 s at most)."""
    task = asyncio.create_task(recorder.run())
    try:
        async with asyncio.timeout(5):
            while len(store.requests) < sends:
                store.answered.clear()
                await store.answered.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
