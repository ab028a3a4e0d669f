"""zen_flow.kube against a scripted HTTP apiserver: paths, headers, errors, retries, watch decoding."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from test_planner_artifacts import S3, T0, created

from zen_flow import __version__
from zen_flow.api import JobFlow
from zen_flow.api.job import labels_of
from zen_flow.api.meta import ObjectMeta
from zen_flow.api.transfer import TRANSFER_NAMES
from zen_flow.kube import (
    AlreadyExists,
    ApiError,
    ClientOptions,
    Conflict,
    EventRecorder,
    Expired,
    Invalid,
    JobClient,
    JobFlowClient,
    KubeClient,
    KubeConfig,
    LeaseClient,
    NotFound,
    TooManyRequests,
    TransportError,
    load_config,
)
from zen_flow.kube.credentials import TokenFile
from zen_flow.kube.errors import from_response
from zen_flow.kube.memo_caches import ConfigMapData, MemoCacheClient
from zen_flow.kube.pods import JobPod, PodClient, PodLogs
from zen_flow.kube.transport import METADATA_ONLY
from zen_flow.machinery.clock import SystemClock
from zen_flow.machinery.leader import ConflictError, LeaseRecord
from zen_flow.planner.archive_logs import step_containers
from zen_flow.planner.reports import INTERRUPTED, exit_summary, first_exit_code
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

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


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeApiserver, TestServer]]:
    api = FakeApiserver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", api.handle)
    server = TestServer(app)
    await server.start_server()
    yield api, server
    await server.close()


@pytest.fixture
def clock() -> InstantClock:
    return InstantClock()


@pytest.fixture
async def kube(fake: tuple[FakeApiserver, TestServer], clock: InstantClock) -> AsyncIterator[KubeClient]:
    _, server = fake
    host = str(server.make_url("")).rstrip("/")
    config = KubeConfig(host=host, source="test")
    async with KubeClient(config, ClientOptions(timeout=2.0), clock=clock) as client:
        yield client


@pytest.fixture
def api(fake: tuple[FakeApiserver, TestServer]) -> FakeApiserver:
    return fake[0]


async def test_requests_identify_zen_flow_by_user_agent(api: FakeApiserver, kube: KubeClient) -> None:
    api.answer(reply(200, {"metadata": {"name": "x"}}))
    await JobFlowClient(kube).get("ns", "x")
    method, path, headers, _, _ = api.requests[0]
    assert (method, path) == ("GET", "/apis/workflow.kube-zen.io/v1alpha1/namespaces/ns/jobflows/x")
    assert headers["User-Agent"] == f"zen-flow/{__version__}"


async def test_status_patch_is_a_json_patch_on_the_status_subresource(
    api: FakeApiserver, kube: KubeClient
) -> None:
    written = {"metadata": {"resourceVersion": "8", "managedFields": [{"manager": "zen-flow"}]}, "spec": {}}
    api.answer(reply(200, written))
    patch = [
        {"op": "replace", "path": "/metadata/resourceVersion", "value": "7"},
        {"op": "add", "path": "/status/phase", "value": "Running"},
    ]
    result = await JobFlowClient(kube).patch_status("ns", "flow", patch)
    method, path, headers, query, body = api.requests[0]
    assert (method, path) == (
        "PATCH",
        "/apis/workflow.kube-zen.io/v1alpha1/namespaces/ns/jobflows/flow/status",
    )
    assert headers["Content-Type"] == "application/json-patch+json"
    # Answered with the metadata only where the apiserver can, the whole object otherwise.
    assert headers["Accept"] == METADATA_ONLY
    assert query["fieldManager"] == "zen-flow"
    assert json.loads(body) == patch
    assert result == "8"  # the new resourceVersion, all the caller needs of the whole object


async def test_a_status_patch_answer_without_a_resource_version_is_a_transport_error(
    api: FakeApiserver, kube: KubeClient
) -> None:
    api.answer(reply(200, {"kind": "Status"}))
    with pytest.raises(TransportError, match="unexpected answer"):
        await JobFlowClient(kube).patch_status("ns", "flow", [])


async def test_create_job_that_exists_raises_already_exists(api: FakeApiserver, kube: KubeClient) -> None:
    api.answer(reply(409, status_body(409, "AlreadyExists", 'jobs.batch "j" already exists')))
    with pytest.raises(AlreadyExists) as info:
        await JobClient(kube).create("ns", {"metadata": {"name": "j"}})
    assert isinstance(info.value, Conflict)
    assert info.value.status == 409
    assert len(api.requests) == 1  # a verdict, not retried


async def test_plain_conflict_is_not_already_exists(api: FakeApiserver, kube: KubeClient) -> None:
    api.answer(reply(409, status_body(409, "Conflict", "the object has been modified")))
    with pytest.raises(Conflict) as info:
        await JobFlowClient(kube).patch_status("ns", "flow", [])
    assert not isinstance(info.value, AlreadyExists)


async def test_create_job_returns_the_cached_model(api: FakeApiserver, kube: KubeClient) -> None:
    created = {
        "metadata": {"name": "j", "namespace": "ns", "uid": "u", "managedFields": [{"manager": "zen-flow"}]},
        "spec": {"template": {"spec": {"containers": []}}},
    }
    api.answer(reply(201, created))
    job = await JobClient(kube).create("ns", {"metadata": {"name": "j"}})
    assert job.metadata.uid == "u"  # from the whole Job, should an apiserver not answer metadata only
    _, path, headers, query, _ = api.requests[0]
    assert path == "/apis/batch/v1/namespaces/ns/jobs"
    assert query["fieldManager"] == "zen-flow"
    assert headers["Accept"] == METADATA_ONLY


async def test_a_job_read_alone_keeps_its_labels(api: FakeApiserver, kube: KubeClient) -> None:
    # What says why the label-selected cache lacks a Job of the controller's own: its label removed.
    meta = {"name": "j", "namespace": "ns", "uid": "u", "labels": {"app.kubernetes.io/managed-by": "x"}}
    api.answer(reply(200, {"kind": "PartialObjectMetadata", "metadata": meta}))
    job = await JobClient(kube).get("ns", "j")
    assert (job.metadata.uid, labels_of(job)) == ("u", {"app.kubernetes.io/managed-by": "x"})
    _, path, headers, _, _ = api.requests[0]
    assert path == "/apis/batch/v1/namespaces/ns/jobs/j"
    assert headers["Accept"] == METADATA_ONLY


async def test_delete_job_propagates_in_background_with_uid_precondition(
    api: FakeApiserver, kube: KubeClient
) -> None:
    api.answer(reply(200, {"kind": "Status", "status": "Success"}), reply(404, status_body(404, "NotFound")))
    jobs = JobClient(kube)
    await jobs.delete("ns", "j", uid="u1")
    with pytest.raises(NotFound):
        await jobs.delete("ns", "j")
    method, path, _, _, body = api.requests[0]
    assert (method, path) == ("DELETE", "/apis/batch/v1/namespaces/ns/jobs/j")
    assert json.loads(body) == {"propagationPolicy": "Background", "preconditions": {"uid": "u1"}}


async def test_a_job_label_is_merged_on_its_uid_alone(api: FakeApiserver, kube: KubeClient) -> None:
    # A Job that lost its managed-by label gets it back: only that label, only on that Job.
    api.answer(reply(200, {"kind": "PartialObjectMetadata", "metadata": {"name": "j"}}))
    await JobClient(kube).label("ns", "j", {"app.kubernetes.io/managed-by": "zen-flow"}, "u1")
    method, path, headers, _, body = api.requests[0]
    assert (method, path) == ("PATCH", "/apis/batch/v1/namespaces/ns/jobs/j")
    assert headers["Content-Type"] == "application/merge-patch+json"
    assert json.loads(body) == {
        "metadata": {"uid": "u1", "labels": {"app.kubernetes.io/managed-by": "zen-flow"}}
    }


async def test_transient_errors_are_retried_briefly(
    api: FakeApiserver, kube: KubeClient, clock: InstantClock
) -> None:
    api.answer(
        reply(503, status_body(503, "ServiceUnavailable")),
        reply(429, status_body(429, "TooManyRequests"), headers={"Retry-After": "1"}),
        reply(200, {"metadata": {"name": "x"}}),
    )
    assert await JobFlowClient(kube).get("ns", "x") == {"metadata": {"name": "x"}}
    assert len(api.requests) == 3
    assert len(clock.slept) == 2
    assert clock.slept[1] == 1.0  # Retry-After honoured
    assert all(0 < s <= 2.0 for s in clock.slept)


async def test_retries_give_up_after_a_few_attempts(api: FakeApiserver, kube: KubeClient) -> None:
    api.answer(*[reply(429, status_body(429, "TooManyRequests", retryAfterSeconds=30))] * 3)
    with pytest.raises(TooManyRequests) as info:
        await JobFlowClient(kube).get("ns", "x")
    assert info.value.retry_after == 30
    assert len(api.requests) == 3


async def test_client_errors_are_not_retried(api: FakeApiserver, kube: KubeClient) -> None:
    api.answer(reply(403, status_body(403, "Forbidden", "no")))
    with pytest.raises(ApiError) as info:
        await JobFlowClient(kube).get("ns", "x")
    assert (info.value.status, info.value.reason) == (403, "Forbidden")
    assert len(api.requests) == 1


async def test_a_hung_request_times_out(api: FakeApiserver, fake: tuple[FakeApiserver, TestServer]) -> None:
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.json_response({})

    api.answer(hang)
    _, server = fake
    host = str(server.make_url("")).rstrip("/")
    config = KubeConfig(host=host, source="test")
    async with KubeClient(config, ClientOptions(timeout=0.2), clock=InstantClock()) as client:
        with pytest.raises(TransportError, match=r"^GET /api/v1/namespaces: TimeoutError$"):
            await client.request("GET", "/api/v1/namespaces", retry=False)
    release.set()


async def test_an_unreachable_apiserver_is_said_in_words() -> None:
    # What `zen-flow get` prints after "cannot reach the apiserver:" (not the exception's nested repr).
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = KubeConfig(host=f"http://127.0.0.1:{port}", source="test")
    async with KubeClient(config, ClientOptions(timeout=5), clock=InstantClock()) as client:
        with pytest.raises(TransportError) as info:
            await client.request("GET", "/api/v1/namespaces", retry=False)
    said = str(info.value)
    assert said.startswith(
        f"GET /api/v1/namespaces: ClientConnectorError: Cannot connect to host 127.0.0.1:{port}"
    )
    assert "ConnectionKey(" not in said


async def test_list_follows_continue_tokens_and_keeps_the_snapshot_rv(
    api: FakeApiserver, kube: KubeClient
) -> None:
    api.answer(
        reply(
            200,
            {
                "metadata": {"resourceVersion": "100", "continue": "t1"},
                "items": [{"metadata": {"name": "a"}}],
            },
        ),
        reply(200, {"metadata": {"resourceVersion": "100"}, "items": [{"metadata": {"name": "b"}}]}),
    )
    result = await JobClient(kube).list(None)
    assert [i["metadata"]["name"] for i in result.items] == ["a", "b"]
    assert result.resource_version == "100"
    first, second = api.requests
    assert first[1] == "/apis/batch/v1/jobs"
    assert first[3] == {"labelSelector": "app.kubernetes.io/managed-by=zen-flow", "limit": "500"}
    assert second[3]["continue"] == "t1"


async def test_list_decodes_each_page_before_asking_for_the_next(
    api: FakeApiserver, kube: KubeClient
) -> None:
    page = {"metadata": {"resourceVersion": "100", "continue": "t1"}, "items": [{"metadata": {"name": "a"}}]}
    api.answer(reply(200, page), reply(200, {"metadata": {"resourceVersion": "100"}, "items": [{}, {}]}))
    seen: list[tuple[str, int]] = []

    class Names:
        """Decodes nothing fast (page/event None): the client's fallback calls `item` per object."""

        def item(self, raw: dict[str, Any]) -> str | None:
            name = raw.get("metadata", {}).get("name")
            seen.append((name or "?", len(api.requests)))
            return name  # None: dropped

        def page(self, raw: bytes) -> None:
            return None

        def event(self, raw: bytes) -> None:
            return None

    result = await JobClient(kube).list(None, decoder=Names())
    assert result.items == ("a",)
    assert result.resource_version == "100"
    # "a" was decoded while only the first page had been requested; the nameless ones were dropped.
    assert seen == [("a", 1), ("?", 2), ("?", 2)]


async def test_an_expired_continue_token_restarts_the_list_in_pages_then_in_one(
    api: FakeApiserver, kube: KubeClient
) -> None:
    first_page = reply(
        200,
        {"metadata": {"resourceVersion": "100", "continue": "t1"}, "items": [{"metadata": {"name": "a"}}]},
    )
    expired = reply(410, status_body(410, "Expired", "continue token expired"))
    api.answer(
        first_page,
        expired,
        first_page,  # the restart, in pages: one unpaginated answer would hold the whole list at once
        expired,
        reply(200, {"metadata": {"resourceVersion": "300"}, "items": [{"metadata": {"name": "b"}}]}),
    )
    result = await JobFlowClient(kube).list("ns", "")
    assert [i["metadata"]["name"] for i in result.items] == ["b"]
    assert result.resource_version == "300"
    assert api.requests[0][3]["limit"] == "100"  # JobFlows are big: smaller pages than Jobs
    assert [(q.get("limit"), q.get("continue")) for _, _, _, q, _ in api.requests] == [
        ("100", None),
        ("100", "t1"),
        ("100", None),
        ("100", "t1"),
        (None, None),  # twice expired: one full list, as client-go's pager falls back to
    ]


def watch_lines(*events: dict[str, Any]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for event in events:
            await response.write(json.dumps(event).encode() + b"\n")
        await response.write_eof()
        return response

    return handler


async def test_watch_decodes_events_and_bookmarks(api: FakeApiserver, kube: KubeClient) -> None:
    api.answer(
        watch_lines(
            {"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "11"}}},
            {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}},
        )
    )
    async with JobClient(kube).watch("ns", "10", 300) as stream:
        events = [(e.type, e.resource_version) async for e in stream]
    assert events == [("ADDED", "11"), ("BOOKMARK", "12")]
    _, path, _, query, _ = api.requests[0]
    assert path == "/apis/batch/v1/namespaces/ns/jobs"
    assert query == {
        "labelSelector": "app.kubernetes.io/managed-by=zen-flow",
        "watch": "true",
        "allowWatchBookmarks": "true",
        "resourceVersion": "10",
        "timeoutSeconds": "300",
    }


async def test_watch_reads_events_larger_than_aiohttps_line_limit(
    api: FakeApiserver, kube: KubeClient
) -> None:
    # A JobFlow of a few hundred steps is a watch line of several hundred KB (aiohttp's default: 128 KB).
    steps = [{"name": f"s{i}", "template": {"spec": {"x": "y" * 900}}} for i in range(600)]
    big = {"metadata": {"name": "big", "resourceVersion": "12"}, "spec": {"steps": steps}}
    api.answer(watch_lines({"type": "ADDED", "object": big}))
    async with JobFlowClient(kube).watch("ns", "1", timeout_seconds=300) as stream:
        events = [event async for event in stream]
    assert len(json.dumps(big)) > 500_000
    assert [(e.type, e.resource_version, len(e.object["spec"]["steps"])) for e in events] == [
        ("ADDED", "12", 600)
    ]


async def test_watch_error_event_410_raises_expired(api: FakeApiserver, kube: KubeClient) -> None:
    api.answer(
        watch_lines(
            {"type": "ERROR", "object": status_body(410, "Expired", "too old resource version: 5 (90)")}
        )
    )
    async with JobClient(kube).watch("ns", "5", 300) as stream:
        with pytest.raises(Expired):
            await anext(stream)


async def test_watch_refused_with_an_http_error_raises_it(api: FakeApiserver, kube: KubeClient) -> None:
    api.answer(reply(403, status_body(403, "Forbidden", "cannot watch jobs")))
    with pytest.raises(ApiError, match="Forbidden"):
        async with JobClient(kube).watch(None, "5", 300):
            pass


def flow() -> JobFlow:
    return JobFlow(metadata=ObjectMeta(name="f", namespace="ns", uid="u1", resource_version="3"))


async def test_event_names_the_flow_and_errors_are_swallowed(api: FakeApiserver, kube: KubeClient) -> None:
    api.answer(reply(201, {}), reply(403, status_body(403, "Forbidden")))
    recorder = EventRecorder(kube, clock=InstantClock(), instance="pod-1")
    await recorder.record(flow(), "Warning", "StepFailed", "step a failed")
    await recorder.record(flow(), "Normal", "Ignored", "the apiserver refuses this one")  # must not raise
    method, path, _, _, body = api.requests[0]
    assert (method, path) == ("POST", "/api/v1/namespaces/ns/events")
    sent = json.loads(body)
    assert sent["metadata"]["name"].startswith("f.")
    assert sent["involvedObject"] == {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "JobFlow",
        "name": "f",
        "namespace": "ns",
        "uid": "u1",
        "resourceVersion": "3",
    }
    assert (sent["type"], sent["reason"], sent["reportingComponent"]) == ("Warning", "StepFailed", "zen-flow")
    assert sent["source"] == {"component": "zen-flow", "host": "pod-1"}


async def test_emit_queues_and_run_sends(api: FakeApiserver, kube: KubeClient) -> None:
    sent = asyncio.Event()

    async def accept(request: web.Request) -> web.StreamResponse:
        sent.set()
        return web.json_response({}, status=201)

    api.answer(accept)
    recorder = EventRecorder(kube, clock=InstantClock(), max_pending=1)
    recorder.emit(flow(), "Normal", "Started", "go")
    recorder.emit(flow(), "Normal", "Dropped", "queue is full")
    assert recorder.dropped == 1
    task = asyncio.create_task(recorder.run())
    async with asyncio.timeout(5):
        await sent.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_queued_event_does_not_keep_its_flow_alive(api: FakeApiserver, kube: KubeClient) -> None:
    posted: list[dict[str, Any]] = []
    sent = asyncio.Event()

    async def accept(request: web.Request) -> web.StreamResponse:
        posted.append(await request.json())
        sent.set()
        return web.json_response({}, status=201)

    api.answer(accept)
    recorder = EventRecorder(kube, clock=InstantClock())
    old_version = flow()
    references = sys.getrefcount(old_version)
    recorder.emit(old_version, "Normal", "StepStarted", "a started")
    assert sys.getrefcount(old_version) == references  # the queue holds what the Event needs, not the flow
    task = asyncio.create_task(recorder.run())
    async with asyncio.timeout(5):
        await sent.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    meta = old_version.metadata
    assert posted[0]["involvedObject"]["name"] == meta.name
    assert posted[0]["involvedObject"]["uid"] == meta.uid
    assert posted[0]["involvedObject"]["resourceVersion"] == meta.resource_version


LEASE = {
    "metadata": {"name": "zen-flow", "namespace": "ns", "resourceVersion": "8"},
    "spec": {
        "holderIdentity": "pod-a",
        "leaseDurationSeconds": 15,
        "acquireTime": "2030-01-01T00:00:00.000000Z",
        "renewTime": "2030-01-01T00:00:05.250000Z",
        "leaseTransitions": 2,
    },
}


async def test_lease_store_round_trips_micro_times(api: FakeApiserver, kube: KubeClient) -> None:
    api.answer(reply(404, status_body(404, "NotFound")), reply(200, LEASE), reply(201, LEASE))
    leases = LeaseClient(kube)
    assert await leases.get("zen-flow", "ns") is None
    record = await leases.get("zen-flow", "ns")
    assert record == LeaseRecord(
        name="zen-flow",
        namespace="ns",
        holder_identity="pod-a",
        lease_duration_seconds=15,
        acquire_time=datetime(2030, 1, 1, tzinfo=UTC),
        renew_time=datetime(2030, 1, 1, 0, 0, 5, 250000, tzinfo=UTC),
        lease_transitions=2,
        resource_version="8",
    )
    await leases.create(record)
    sent = json.loads(api.requests[2][4])
    assert sent["spec"]["renewTime"] == "2030-01-01T00:00:05.250000Z"
    assert sent["metadata"] == {"name": "zen-flow", "namespace": "ns"}


async def test_lease_update_is_conditional_and_409_is_the_elector_conflict(
    api: FakeApiserver, kube: KubeClient
) -> None:
    api.answer(reply(409, status_body(409, "Conflict", "the object has been modified")))
    record = LeaseRecord(name="zen-flow", namespace="ns", holder_identity="pod-b", resource_version="8")
    with pytest.raises(ConflictError):
        await LeaseClient(kube).update(record)
    method, path, headers, _, body = api.requests[0]
    assert (method, path) == ("PATCH", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/zen-flow")
    assert headers["Content-Type"] == "application/merge-patch+json"
    sent = json.loads(body)
    assert sent["metadata"] == {"resourceVersion": "8"}
    assert sent["spec"]["holderIdentity"] == "pod-b"
    assert sent["spec"]["renewTime"] is None


async def test_shard_leases_carry_the_label_they_are_listed_by_and_deletes_are_conditional(
    api: FakeApiserver, kube: KubeClient
) -> None:
    labels = {"workflow.kube-zen.io/sharded-lease": "zf"}
    api.answer(
        reply(201, LEASE),
        reply(200, {"items": [LEASE]}),
        reply(200, {}),
        reply(409, status_body(409, "Conflict", "the resourceVersion changed")),
    )
    leases = LeaseClient(kube, labels=labels, selector="workflow.kube-zen.io/sharded-lease=zf")
    record = LeaseRecord(name="zf-shard-0", namespace="ns", holder_identity="pod-a")
    await leases.create(record)
    assert json.loads(api.requests[0][4])["metadata"]["labels"] == labels
    listed = await leases.list("ns")
    assert [r.holder_identity for r in listed] == ["pod-a"]
    method, path, _, query, _ = api.requests[1]
    assert (method, path) == ("GET", "/apis/coordination.k8s.io/v1/namespaces/ns/leases")
    assert query["labelSelector"] == "workflow.kube-zen.io/sharded-lease=zf"
    stale = LeaseRecord(name="zf-member-abc", namespace="ns", resource_version="8")
    await leases.delete(stale)
    await leases.delete(stale)  # renewed meanwhile: 409, nothing to do
    method, path, _, _, body = api.requests[2]
    assert (method, path) == ("DELETE", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/zf-member-abc")
    assert json.loads(body) == {"preconditions": {"resourceVersion": "8"}}


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


async def test_load_config_reads_an_explicit_kubeconfig(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    config = await load_config(str(path))
    assert config.host == "https://127.0.0.1:6443"
    assert config.source == str(path)


async def test_relist_at_an_rv_is_not_older_than_it_in_pages(api: FakeApiserver, kube: KubeClient) -> None:
    api.answer(
        reply(200, {"metadata": {"resourceVersion": "60", "continue": "t1"}, "items": []}),
        reply(200, {"metadata": {"resourceVersion": "60"}, "items": []}),
    )
    result = await JobFlowClient(kube).list("ns", "55")
    assert result.resource_version == "60"
    # In pages: resourceVersionMatch spelt out keeps "not older than" with a limit (KEP-2523); the next
    # pages name only their continue token (the apiserver refuses an RV or a match beside one: 422).
    assert [q for _, _, _, q, _ in api.requests] == [
        {"resourceVersion": "55", "resourceVersionMatch": "NotOlderThan", "limit": "100"},
        {"limit": "100", "continue": "t1"},
    ]


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (404, status_body(404, "NotFound"), NotFound),
        (409, status_body(409, "AlreadyExists"), AlreadyExists),
        (409, status_body(409, "Conflict"), Conflict),
        (410, status_body(410, "Gone"), Expired),
        (422, status_body(422, "Invalid", "spec.template: Required value"), Invalid),
        (429, status_body(429, "TooManyRequests"), TooManyRequests),
        # A relist at an RV the watch cache has not reached yet: client-go treats it like Expired.
        (
            504,
            status_body(
                504, "Timeout", "Too large resource version", causes=[{"reason": "ResourceVersionTooLarge"}]
            ),
            Expired,
        ),
        (504, status_body(504, "Timeout", "request timed out"), ApiError),
    ],
)
def test_status_codes_map_to_exception_classes(
    status: int, body: dict[str, Any], expected: type[ApiError]
) -> None:
    error = from_response(status, json.dumps(body).encode())
    assert type(error) is expected
    assert error.status == status


def test_an_unreadable_error_body_still_maps_by_status() -> None:
    error = from_response(503, b"<html>upstream connect error</html>")
    assert error.status == 503
    assert error.transient
    assert "upstream" in error.message


async def test_a_401_refetches_rotating_credentials_and_retries_once(
    fake: tuple[FakeApiserver, TestServer], clock: InstantClock, tmp_path: Path
) -> None:
    api, server = fake
    token = tmp_path / "token"
    token.write_text("old")
    host = str(server.make_url("")).rstrip("/")
    config = KubeConfig(host=host, source="test", credentials=TokenFile(token, clock=clock))
    api.answer(reply(401, status_body(401, "Unauthorized")), reply(200, {"kind": "Namespace"}))
    async with KubeClient(config, ClientOptions(timeout=2.0), clock=clock) as client:
        await client.request("GET", "/api/v1/namespaces/a")  # reads "old" at first use
        token.write_text("new")
        api.answer(reply(401, status_body(401, "Unauthorized")), reply(401, status_body(401, "Unauthorized")))
        with pytest.raises(ApiError) as caught:
            await client.request("GET", "/api/v1/namespaces/b")
    assert caught.value.status == 401
    auth = [headers.get("Authorization") for _, _, headers, _, _ in api.requests]
    # First call: refused, token re-read (unchanged), sent again. Second: refused twice, not a third time.
    assert auth == ["Bearer old", "Bearer old", "Bearer old", "Bearer new"]


async def test_a_watch_refused_with_401_refreshes_rotating_credentials_for_the_next_attempt(
    fake: tuple[FakeApiserver, TestServer], clock: InstantClock, tmp_path: Path
) -> None:
    api, server = fake
    token = tmp_path / "token"
    token.write_text("old")
    host = str(server.make_url("")).rstrip("/")
    config = KubeConfig(host=host, source="test", credentials=TokenFile(token, clock=clock))
    api.answer(reply(401, status_body(401, "Unauthorized")), reply(401, status_body(401, "Unauthorized")))
    async with KubeClient(config, ClientOptions(timeout=2.0), clock=clock) as client:
        with pytest.raises(ApiError, match="Unauthorized"):
            async with JobClient(client).watch(None, "5", 300):
                pass
        token.write_text("rotated")  # the kubelet projected a new token meanwhile
        with pytest.raises(ApiError):
            async with JobClient(client).watch(None, "5", 300):
                pass
    auth = [headers.get("Authorization") for _, _, headers, _, _ in api.requests]
    # Without the refresh the second watch would still carry "old" (the file is re-read only every minute).
    assert auth == ["Bearer old", "Bearer rotated"]


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


async def test_a_steps_messages_come_only_from_a_pod_its_job_controls(
    api: FakeApiserver, kube: KubeClient
) -> None:
    # Job names are predictable: anyone who may create pods can label one with a step's Job name and
    # finish it last. Its "termination message" must not become the step's outputs or artifact report.
    def pod(owner: str | None, finished: str, message: str) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": f"p-{message}"}
        if owner is not None:
            meta["ownerReferences"] = [
                {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": owner, "controller": True}
            ]
        terminated = {"exitCode": 0, "message": message, "finishedAt": finished}
        return {
            "metadata": meta,
            "status": {
                "phase": "Succeeded",
                "containerStatuses": [{"name": "main", "state": {"terminated": terminated}}],
            },
        }

    api.answer(
        reply(
            200,
            {
                "metadata": {"resourceVersion": "9"},
                "items": [
                    pod("job-uid", "2026-12-05T10:00:00Z", "real"),
                    pod(None, "2026-12-05T10:00:05Z", "forged"),
                    pod("another-job", "2026-12-05T10:00:09Z", "other"),
                ],
            },
        )
    )
    messages = await PodClient(kube).termination_messages("ns", "j", job_uid="job-uid", succeeded=True)
    assert messages == {"main": "real"}
    assert api.requests[0][3] == {"labelSelector": "batch.kubernetes.io/job-name=j"}


async def test_a_pending_jobs_pods_are_listed_by_its_label_and_read_for_why_they_wait(
    api: FakeApiserver, kube: KubeClient
) -> None:
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "job-uid", "controller": True}
    waiting = {"name": "main", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off"}}}
    stuck = {
        "metadata": {"name": "p", "creationTimestamp": "2026-12-05T10:00:00Z", "ownerReferences": [owner]},
        "spec": {"containers": [{"name": "main", "image": "busybox:nope"}]},
        "status": {"phase": "Pending", "containerStatuses": [waiting]},
    }
    api.answer(reply(200, {"metadata": {"resourceVersion": "9"}, "items": [stuck]}))
    (pod,) = await PodClient(kube).pods_of("ns", "j")
    assert api.requests[0][3] == {"labelSelector": "batch.kubernetes.io/job-name=j"}
    assert pod.owned_by("job-uid")
    state = pod.status.container_statuses[0].state.waiting
    assert state is not None
    assert (state.reason, state.message) == ("ImagePullBackOff", "Back-off")
    # A read that only words a message comes from the apiserver's watch cache: no etcd read.
    api.answer(reply(200, {"metadata": {"resourceVersion": "9"}, "items": []}))
    assert await PodClient(kube).pods_of("ns", "j", cached=True) == ()
    assert api.requests[1][3] == {"labelSelector": "batch.kubernetes.io/job-name=j", "resourceVersion": "0"}


async def test_a_failed_pod_says_how_its_containers_ended(api: FakeApiserver, kube: KubeClient) -> None:
    # What a user debugging a failed step needs first: the exit code, and OOMKilled.
    def ended(name: str, code: int, reason: str) -> dict[str, Any]:
        terminated = {"exitCode": code, "reason": reason, "finishedAt": "2026-12-05T10:00:00Z"}
        return {"name": name, "state": {"terminated": terminated}}

    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "job-uid", "controller": True}
    failed = {
        "metadata": {"name": "p", "ownerReferences": [owner]},
        "status": {
            "phase": "Failed",
            "initContainerStatuses": [ended("setup", 0, "Completed")],
            "containerStatuses": [ended("main", 137, "OOMKilled"), ended("sidecar", 2, "Error")],
        },
    }
    api.answer(reply(200, {"metadata": {"resourceVersion": "9"}, "items": [failed]}))
    messages = await PodClient(kube).termination_messages("ns", "j", job_uid="job-uid", succeeded=False)
    assert messages == {
        "setup": "",
        "main": "",
        "sidecar": "",
        "exit:main": "exit code 137 (OOMKilled)",
        "exit:sidecar": "exit code 2",
    }


async def test_a_failed_pods_main_containers_exit_code_comes_before_its_sidecars(
    api: FakeApiserver, kube: KubeClient
) -> None:
    # retryPolicy.expression's lastRetry.exitCode is the first failing container's: a sidecar (an init
    # container that restarts: zen-flow's own uploader, a user's proxy) killed at the pod's end is not it.
    def ended(name: str, code: int) -> dict[str, Any]:
        return {
            "name": name,
            "state": {"terminated": {"exitCode": code, "finishedAt": "2026-12-05T10:00:00Z"}},
        }

    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "job-uid", "controller": True}
    failed = {
        "metadata": {"name": "p", "ownerReferences": [owner]},
        "spec": {
            "initContainers": [
                {"name": "zf-artifacts-in"},
                {"name": "zf-artifacts-out", "restartPolicy": "Always"},
                {"name": "proxy", "restartPolicy": "Always"},
            ],
            "containers": [{"name": "main"}],
        },
        "status": {
            "phase": "Failed",
            "initContainerStatuses": [
                ended("zf-artifacts-in", 0),
                ended("zf-artifacts-out", 137),
                ended("proxy", 143),
            ],
            "containerStatuses": [ended("main", 2)],
        },
    }
    api.answer(reply(200, {"metadata": {"resourceVersion": "9"}, "items": [failed]}))
    messages = await PodClient(kube).termination_messages("ns", "j", job_uid="job-uid", succeeded=False)
    assert messages is not None
    assert first_exit_code(messages) == 2
    assert (
        exit_summary(messages) == "main: exit code 2; zf-artifacts-out: exit code 137; proxy: exit code 143"
    )


async def test_a_failed_jobs_read_says_which_nodes_its_failed_pods_ran_on(
    api: FakeApiserver, kube: KubeClient
) -> None:
    # retryPolicy's nodeAntiAffinity: the same list gives each failed pod's spec.nodeName, oldest first,
    # a node failed on again among the newest; a pod never scheduled, or not the Job's own, adds none.
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "job-uid", "controller": True}

    def failed(
        name: str, node: str | None, at: str, owners: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        ended = {"name": "main", "state": {"terminated": {"exitCode": 1, "finishedAt": at}}}
        spec: dict[str, Any] = {"containers": [{"name": "main"}]}
        if node is not None:
            spec["nodeName"] = node
        return {
            "metadata": {"name": name, "ownerReferences": [owner] if owners is None else owners},
            "spec": spec,
            "status": {"phase": "Failed", "containerStatuses": [ended] if node else []},
        }

    items = [
        failed("p3", "node-a", "2026-12-05T10:00:03Z"),
        failed("p1", "node-a", "2026-12-05T10:00:01Z"),
        failed("p2", "node-b", "2026-12-05T10:00:02Z"),
        failed("p0", None, "2026-12-05T10:00:00Z"),
        failed("forged", "node-x", "2026-12-05T10:00:09Z", owners=[]),
    ]
    api.answer(reply(200, {"metadata": {"resourceVersion": "9"}, "items": items}))
    messages = await PodClient(kube).termination_messages("ns", "j", job_uid="job-uid", succeeded=False)
    assert messages is not None
    assert messages["nodes:"] == "node-b node-a"
    assert len(api.requests) == 1  # no read of its own


async def test_nodes_that_did_not_fail_their_pods_are_not_named(api: FakeApiserver, kube: KubeClient) -> None:
    # A pod being deleted (the Job controller removing a parallel Job's siblings), one disrupted
    # (preempted, evicted, its node drained) or one its own activeDeadlineSeconds ended: its node is not
    # to blame, so a retry need not avoid it.
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "job-uid", "controller": True}

    def failed(name: str, node: str, **extra: Any) -> dict[str, Any]:
        ended = {
            "name": "main",
            "state": {"terminated": {"exitCode": 1, "finishedAt": "2026-12-05T10:00:01Z"}},
        }
        pod: dict[str, Any] = {
            "metadata": {"name": name, "ownerReferences": [owner]},
            "spec": {"containers": [{"name": "main"}], "nodeName": node},
            "status": {"phase": "Failed", "containerStatuses": [ended]},
        }
        for part, fields in extra.items():
            pod[part].update(fields)
        return pod

    disrupted = {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}
    items = [
        failed("bad", "node-bad"),
        failed("sibling", "node-a", metadata={"deletionTimestamp": "2026-12-05T10:00:05Z"}),
        failed("preempted", "node-b", status={"conditions": [disrupted]}),
        failed("late", "node-c", status={"reason": "DeadlineExceeded"}),
    ]
    api.answer(reply(200, {"metadata": {"resourceVersion": "9"}, "items": items}))
    messages = await PodClient(kube).termination_messages("ns", "j", job_uid="job-uid", succeeded=False)
    assert messages is not None
    assert messages["nodes:"] == "node-bad"


async def test_a_failed_pod_that_never_ran_to_an_exit_of_its_own_says_what_ended_it(
    api: FakeApiserver, kube: KubeClient
) -> None:
    # retryPolicy.expression's lastRetry.status: "Error" when the last failed pod was evicted or
    # preempted (a DisruptionTarget condition) or ended by its activeDeadlineSeconds, whatever its
    # containers' exit codes; a pod whose container exited on its own says nothing more.
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "job-uid", "controller": True}

    def failed(**status: Any) -> dict[str, Any]:
        ended = {
            "name": "main",
            "state": {"terminated": {"exitCode": 137, "finishedAt": "2026-12-05T10:00:01Z"}},
        }
        return {
            "metadata": {"name": "p", "ownerReferences": [owner]},
            "spec": {"containers": [{"name": "main"}], "nodeName": "n"},
            "status": {"phase": "Failed", "containerStatuses": [ended], **status},
        }

    disrupted = {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}
    for status, said in [
        ({"conditions": [disrupted]}, "DisruptionTarget"),
        ({"reason": "DeadlineExceeded"}, "DeadlineExceeded"),
        ({}, None),
    ]:
        api.answer(reply(200, {"metadata": {"resourceVersion": "9"}, "items": [failed(**status)]}))
        messages = await PodClient(kube).termination_messages("ns", "j", job_uid="job-uid", succeeded=False)
        assert messages is not None
        assert messages.get(INTERRUPTED) == said
        assert messages["exit:main"] == "exit code 137"


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


async def test_a_memoize_cache_is_read_with_its_labels_and_written_by_a_merge_patch_with_removals(
    api: FakeApiserver, kube: KubeClient
) -> None:
    # The labels say whether it is a cache at all; a save sets its entry and removes others (null).
    labels = {"workflow.kube-zen.io/memo-cache": "true"}
    api.answer(reply(200, {"metadata": {"name": "c", "labels": labels}, "data": {"memo-a": "x", "n": 1}}))
    found = await MemoCacheClient(kube).read("ns", "c")
    assert found == ConfigMapData(labels, {"memo-a": "x"})
    api.answer(reply(200, {"metadata": {"name": "c"}}))
    await MemoCacheClient(kube).store("ns", "c", {"memo-b": "y", "memo-a": None})
    method, path, headers, _, body = api.requests[1]
    assert (method, path) == ("PATCH", "/api/v1/namespaces/ns/configmaps/c")
    assert headers["Content-Type"] == "application/merge-patch+json"
    assert json.loads(body) == {"data": {"memo-b": "y", "memo-a": None}}


async def test_the_log_archive_reads_the_containers_of_the_pods_its_job_controls_not_init_ones(
    api: FakeApiserver, kube: KubeClient
) -> None:
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "job-uid", "controller": True}
    spec = {"initContainers": [{"name": "setup"}], "containers": [{"name": "main"}, {"name": "sidecar"}]}
    pods = [
        {"metadata": {"name": "p-1", "ownerReferences": [owner]}, "spec": spec},
        {"metadata": {"name": "p-forged"}, "spec": spec},  # wears the label only
    ]
    api.answer(reply(200, {"metadata": {"resourceVersion": "9"}, "items": pods}))
    found = await PodLogs(kube).job_pods("ns", "j", "job-uid")
    assert found == [JobPod("p-1", ("main", "sidecar"))]  # as `zen-flow logs` shows them


async def test_an_artifact_steps_transfer_containers_are_never_read_so_no_restart_finds_theirs_missing(
    api: FakeApiserver, kube: KubeClient
) -> None:
    """zen-flow's transfer containers are init containers (the downloader; the uploader a native sidecar),
    which the log archive does not read: a pod of an artifact step is read for exactly the containers
    its step's template names, what the check after a restart (`step_containers`, controller/
    log_archiver.py) expects of the logs stored before it. No transfer container's log is written, so
    none can be left unwritten by a restart and go unflagged in the record."""
    http = {"name": "seed", "http": {"url": "https://example.com/seed.csv"}, "path": "/in/seed.csv"}
    out = {"name": "app", "path": "/out/app.txt", "s3": S3}
    flow = make_flow([job_step("b", inputs={"artifacts": [http]}, outputs={"artifacts": [out]})])
    sim = Simulator(flow, T0)
    sim.reconcile()
    spec = created(sim, "b")["spec"]["template"]["spec"]
    assert TRANSFER_NAMES - {"zf-artifacts"} <= {c["name"] for c in spec["initContainers"]}
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "job-uid", "controller": True}
    api.answer(
        reply(200, {"items": [{"metadata": {"name": "p-1", "ownerReferences": [owner]}, "spec": spec}]})
    )
    (pod,) = await PodLogs(kube).job_pods("ns", "j", "job-uid")
    assert pod.containers == step_containers(flow, "b") == ("main",)
