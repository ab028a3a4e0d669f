"""KubeClient's `on_response` hook: one call per request sent, labelled the way the apiserver's audit does,
with the time the apiserver took apart from the time the request waited in the client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from zen_flow import config as settings
from zen_flow.controller.app import client_options
from zen_flow.kube import (
    ClientOptions,
    JobClient,
    JobFlowClient,
    KubeClient,
    KubeConfig,
    RequestRecord,
    request_labels,
)
from zen_flow.kube.errors import NotFound, TransportError
from zen_flow.machinery.clock import SystemClock

Call = tuple[str, str, int, int]


class InstantClock(SystemClock):
    async def sleep(self, seconds: float) -> None:
        return None


@pytest.fixture
async def server() -> AsyncIterator[tuple[TestServer, list[int]]]:
    """Answers every request with the next status of `statuses` (200 once they run out)."""
    statuses: list[int] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        status = statuses.pop(0) if statuses else 200
        if request.query.get("watch") == "true":
            response = web.StreamResponse(status=status)
            await response.prepare(request)
            return response  # an empty watch: the server closed it at once
        return web.json_response(
            {"metadata": {"name": "x", "uid": "u", "resourceVersion": "1"}}, status=status
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    test_server = TestServer(app)
    await test_server.start_server()
    yield test_server, statuses
    await test_server.close()


@pytest.fixture
async def observed(server: tuple[TestServer, list[int]]) -> AsyncIterator[tuple[KubeClient, list[Call]]]:
    host = str(server[0].make_url("")).rstrip("/")
    config = KubeConfig(host=host, source="test")
    calls: list[Call] = []

    def hook(r: RequestRecord) -> None:
        calls.append((r.verb, r.resource, r.code, r.sent))

    options = ClientOptions(timeout=2.0)
    async with KubeClient(config, options, clock=InstantClock(), on_response=hook) as client:
        yield client, calls


async def test_every_request_is_reported_with_verb_resource_code_and_bytes_sent(
    observed: tuple[KubeClient, list[Call]],
) -> None:
    kube, calls = observed
    flows, jobs = JobFlowClient(kube), JobClient(kube)
    ops = [{"op": "add", "path": "/status", "value": {}}]
    job = {"metadata": {"name": "x"}}
    await flows.get("ns", "x")
    await flows.patch_status("ns", "x", ops)
    await jobs.create("ns", job)
    await jobs.list("ns")
    async with jobs.watch(None, "1", timeout_seconds=5) as stream:
        assert [event async for event in stream] == []
    await jobs.delete("ns", "x")
    deleted = len(json.dumps({"propagationPolicy": "Background"}))
    assert calls == [
        ("get", "jobflows", 200, 0),
        ("patch", "jobflows/status", 200, len(json.dumps(ops))),
        ("create", "jobs", 200, len(json.dumps(job))),
        ("list", "jobs", 200, 0),
        ("watch", "jobs", 200, 0),
        ("delete", "jobs", 200, deleted),
    ]


async def test_each_retry_attempt_and_each_error_is_a_request(
    observed: tuple[KubeClient, list[Call]], server: tuple[TestServer, list[int]]
) -> None:
    kube, calls = observed
    server[1].extend([503, 200, 404])
    await JobFlowClient(kube).get("ns", "x")  # 503 is transient: retried once, then 200
    with pytest.raises(NotFound):
        await JobFlowClient(kube).get("ns", "x")
    assert calls == [("get", "jobflows", 503, 0), ("get", "jobflows", 200, 0), ("get", "jobflows", 404, 0)]


async def test_no_answer_is_reported_as_code_zero() -> None:
    calls: list[Call] = []
    # Nothing listens on port 9 of loopback (discard service): the connection is refused at once.
    config = KubeConfig(host="http://127.0.0.1:9", source="test")

    def hook(r: RequestRecord) -> None:
        calls.append((r.verb, r.resource, r.code, r.sent))

    options = ClientOptions(timeout=2.0, retry_attempts=1)
    async with KubeClient(config, options, clock=InstantClock(), on_response=hook) as kube:
        with pytest.raises(TransportError, match="jobflows"):
            await JobFlowClient(kube).get("ns", "x")
    assert calls == [("get", "jobflows", 0, 0)]


class ManualClock(SystemClock):
    """Time moves only when someone sleeps on it or a test handler says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def test_the_apiserver_s_time_and_the_wait_for_a_token_are_reported_apart() -> None:
    clock = ManualClock()

    async def handle(request: web.Request) -> web.StreamResponse:
        clock.now += 0.25  # the apiserver takes a quarter of a second to answer
        if request.query.get("watch") == "true":
            response = web.StreamResponse()
            await response.prepare(request)
            return response  # an empty watch: its time is the time to its headers
        return web.json_response({"metadata": {"name": "x", "uid": "u", "resourceVersion": "1"}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app)
    await server.start_server()
    records: list[RequestRecord] = []
    config = KubeConfig(host=str(server.make_url("")).rstrip("/"), source="test")
    options = ClientOptions(qps=1.0, burst=1, timeout=2.0)
    try:
        async with KubeClient(config, options, clock=clock, on_response=records.append) as kube:
            for _ in range(2):
                await JobFlowClient(kube).get("ns", "x")
            async with JobClient(kube).watch(None, "1", timeout_seconds=5) as stream:
                assert [event async for event in stream] == []
    finally:
        await server.close()
    # One token a second: the first request takes the burst's token; each later one waits for the rest
    # of the second (0.25 s of it went by while the one before was answered).
    assert [(r.verb, r.seconds, r.waited) for r in records] == [
        ("get", 0.25, 0.0),
        ("get", 0.25, 0.75),
        ("watch", 0.25, 0.75),
    ]


@pytest.mark.parametrize(
    ("method", "path", "watch", "expected"),
    [
        ("GET", "/apis/batch/v1/namespaces/ns/jobs", False, ("list", "jobs")),
        ("GET", "/apis/batch/v1/jobs", True, ("watch", "jobs")),
        ("GET", "/apis/batch/v1/namespaces/ns/jobs/j", False, ("get", "jobs")),
        (
            "PATCH",
            "/apis/workflow.kube-zen.io/v1alpha1/namespaces/ns/jobflows/f/status",
            False,
            ("patch", "jobflows/status"),
        ),
        ("POST", "/api/v1/namespaces/ns/events", False, ("create", "events")),
        ("PUT", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l", False, ("update", "leases")),
        ("DELETE", "/apis/batch/v1/namespaces/ns/jobs", False, ("deletecollection", "jobs")),
        ("GET", "/api/v1/namespaces/ns", False, ("get", "namespaces")),
        ("GET", "/api/v1/namespaces", False, ("list", "namespaces")),
    ],
)
def test_request_labels(method: str, path: str, watch: bool, expected: tuple[str, str]) -> None:
    assert request_labels(method, path, watch=watch) == expected


@pytest.mark.parametrize(
    ("env", "waits"),
    [
        # The default: no client-side limit (the apiserver's priority and fairness paces the controller),
        # so more requests than the old burst of 200 go out back to back.
        ({}, [0.0] * 250),
        # --qps 50 --burst 10: ten at once, then one every 1/50 s.
        ({"ZEN_FLOW_QPS": "50", "ZEN_FLOW_BURST": "10"}, [0.0] * 10 + [0.02] * 240),
    ],
    ids=["default", "qps-50"],
)
async def test_the_controller_s_client_waits_for_tokens_only_when_qps_is_set(
    server: tuple[TestServer, list[int]], env: dict[str, str], waits: list[float]
) -> None:
    records: list[RequestRecord] = []
    config = KubeConfig(host=str(server[0].make_url("")).rstrip("/"), source="test")
    options = client_options(settings.load(None, env=env))
    async with KubeClient(config, options, clock=ManualClock(), on_response=records.append) as kube:
        for _ in range(250):
            await JobFlowClient(kube).get("ns", "x")
    assert [round(r.waited, 6) for r in records] == waits


def test_a_negative_qps_is_refused_naming_the_flag() -> None:
    with pytest.raises(ValueError, match="--qps must be >= 0"):
        settings.load(None, env={"ZEN_FLOW_QPS": "-1"})
