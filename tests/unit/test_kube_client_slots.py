"""How many requests zen_flow.kube sends at once (kube_client_rig): every request waits for the limiter,
requests in flight are bounded (watches are not), and one namespace's slow requests leave slots to the
others."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kube_client_rig import FakeApiserver, InstantClock, reply, watch_lines
from kube_client_rig import api_fixture as api_fixture  # the `api` fixture
from kube_client_rig import clock_fixture as clock_fixture  # the `clock` fixture
from kube_client_rig import fake_fixture as fake_fixture  # the `fake` fixture

from zen_flow.api import JobFlow
from zen_flow.api.meta import ObjectMeta
from zen_flow.kube import ClientOptions, EventRecorder, KubeClient, KubeConfig


async def test_every_request_waits_for_the_limiter(fake: tuple[FakeApiserver, TestServer]) -> None:
    api, server = fake

    class Counting:
        def __init__(self) -> None:
            self.acquired = 0

        async def acquire(self) -> None:
            self.acquired += 1

    limiter = Counting()
    api.answer(reply(200, {}), watch_lines())
    host = str(server.make_url("")).rstrip("/")
    config = KubeConfig(host=host, source="test")
    async with KubeClient(config, clock=InstantClock(), limiter=limiter) as client:
        await client.request("GET", "/api/v1/namespaces")
        async with client.stream("/api/v1/namespaces", (), timeout_seconds=300) as stream:
            assert [e async for e in stream] == []
    assert limiter.acquired == 2


async def test_requests_in_flight_are_bounded_but_watches_are_not(
    fake: tuple[FakeApiserver, TestServer], clock: InstantClock
) -> None:
    api, server = fake
    release = asyncio.Event()
    slots_full, too_many = asyncio.Event(), asyncio.Event()
    in_flight = 0
    most = 0

    async def slow(request: web.Request) -> web.StreamResponse:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        if in_flight == 2:
            slots_full.set()
        if in_flight > 2:
            too_many.set()
        await release.wait()
        in_flight -= 1
        return web.json_response({})

    async def open_watch(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await release.wait()  # stays open like a quiet watch
        return response

    host = str(server.make_url("")).rstrip("/")
    options = ClientOptions(timeout=5.0, max_concurrent_requests=2)
    async with KubeClient(KubeConfig(host=host, source="test"), options, clock=clock) as client:
        api.answer(*[open_watch] * 3)
        async with contextlib.AsyncExitStack() as watches:
            for _ in range(3):  # more watches than request slots: none of them takes a slot
                await watches.enter_async_context(
                    client.stream("/apis/batch/v1/jobs", (), timeout_seconds=300)
                )
            api.answer(*[slow] * 5)
            calls = [asyncio.create_task(client.request("GET", f"/api/v1/namespaces/n{i}")) for i in range(5)]
            async with asyncio.timeout(5):
                await slots_full.wait()
            # Negative check: while two are held, no third request may reach the server.
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await too_many.wait()
            release.set()
            async with asyncio.timeout(5):
                await asyncio.gather(*calls)
    assert most == 2


async def test_one_namespaces_slow_requests_leave_slots_to_the_others(
    api: FakeApiserver, fake: tuple[FakeApiserver, TestServer], clock: InstantClock
) -> None:
    # A tenant's Job creates wait on its namespace's slow admission webhook (10-30 s each). They may hold
    # three quarters of the client's request slots, never all: another tenant's write goes out at once.
    _, server = fake
    release, share_reached = asyncio.Event(), asyncio.Event()
    reached: list[str] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        reached.append(request.path)
        if len(reached) == 3:
            share_reached.set()
        if "/namespaces/slow/jobs" in request.path:
            await release.wait()
        return web.json_response({"metadata": {"name": "j"}})

    host = str(server.make_url("")).rstrip("/")
    options = ClientOptions(timeout=5.0, max_concurrent_requests=4)
    async with KubeClient(KubeConfig(host=host, source="test"), options, clock=clock) as client:
        api.answer(*[answer] * 8)
        slow = [
            asyncio.create_task(client.request("POST", "/apis/batch/v1/namespaces/slow/jobs", body={}))
            for _ in range(6)
        ]
        async with asyncio.timeout(5):
            await share_reached.wait()
            await client.request("POST", "/apis/batch/v1/namespaces/quiet/jobs", body={})
            # The one Event sender serves every namespace: an Event of the slow namespace does not queue
            # behind its creates (every other tenant's Events would wait behind it).
            slow_flow = JobFlow(metadata=ObjectMeta(name="f", namespace="slow", uid="u1"))
            await EventRecorder(client, clock=clock).record(slow_flow, "Warning", "StepFailed", "x")
        assert reached[-1] == "/api/v1/namespaces/slow/events"
        assert sum("/slow/jobs" in path for path in reached) == 3, "the slow namespace holds its share only"
        release.set()
        async with asyncio.timeout(5):
            await asyncio.gather(*slow)
