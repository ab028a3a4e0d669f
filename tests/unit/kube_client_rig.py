"""The scripted HTTP apiserver the zen_flow.kube tests run against (FakeApiserver: each request
answered by the next handler the test queued), its answers, and a KubeClient on it whose sleeps return at
once (InstantClock)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from zen_flow.kube import ClientOptions, KubeClient, KubeConfig
from zen_flow.machinery.clock import SystemClock

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class InstantClock(SystemClock):
    """Real time, except that sleeps return at once and are recorded (retry waits, throttling)."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


class FakeApiserver:
    def __init__(self) -> None:
        # (method, path, headers, query, body)
        self.requests: list[tuple[str, str, dict[str, str], dict[str, str], bytes]] = []
        self.answers: list[Handler] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append((request.method, request.path, dict(request.headers), dict(request.query), body))
        return await self.answers.pop(0)(request)

    def answer(self, *handlers: Handler) -> None:
        self.answers.extend(handlers)


def reply(status: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(body or {}, status=status, headers=headers)

    return handler


def status_body(code: int, reason: str, message: str = "", **details: Any) -> dict[str, Any]:
    return {
        "kind": "Status",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
        "details": details,
    }


@pytest.fixture(name="fake")
async def fake_fixture() -> AsyncIterator[tuple[FakeApiserver, TestServer]]:
    api = FakeApiserver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", api.handle)
    server = TestServer(app)
    await server.start_server()
    yield api, server
    await server.close()


@pytest.fixture(name="clock")
def clock_fixture() -> InstantClock:
    return InstantClock()


@pytest.fixture(name="kube")
async def kube_fixture(
    fake: tuple[FakeApiserver, TestServer], clock: InstantClock
) -> AsyncIterator[KubeClient]:
    _, server = fake
    host = str(server.make_url("")).rstrip("/")
    config = KubeConfig(host=host, source="test")
    async with KubeClient(config, ClientOptions(timeout=2.0), clock=clock) as client:
        yield client


@pytest.fixture(name="api")
def api_fixture(fake: tuple[FakeApiserver, TestServer]) -> FakeApiserver:
    return fake[0]


def watch_lines(*events: dict[str, Any]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for event in events:
            await response.write(json.dumps(event).encode() + b"\n")
        await response.write_eof()
        return response

    return handler
