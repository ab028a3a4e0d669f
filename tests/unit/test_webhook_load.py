"""The webhook under one client's load (webhook/connections.py, bodies.py, review_threads.py): a client
holding every connection alive does not keep a new one out, half-sent bodies cannot take the process's
memory, and one namespace's flood of reviews does not put another namespace's review behind it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient
from test_webhook_server import issue, review
from validation_samples import base_flow

from zen_flow.webhook import handlers
from zen_flow.webhook.connections import ConnectionGuard, ConnectionLimits
from zen_flow.webhook.review import validate_review_decisions
from zen_flow.webhook.review_threads import ReviewLimits
from zen_flow.webhook.server import BODIES, REVIEW_THREADS, WebhookServer, create_webhook_app
from zen_flow_dev.cluster.pki import CertificateAuthority

# Generous: each wait ends as soon as its condition holds.
DEADLINE = 10.0


async def until(condition: Callable[[], bool], what: str, within: float = DEADLINE) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not within {within}s: {what}"
        await asyncio.sleep(0.01)


class Load:
    """The load hooks the server reports through (webhook/pressure.py), recorded."""

    def __init__(self) -> None:
        self.refused: list[str] = []
        self.evicted: list[str] = []
        self.shed: list[str] = []

    def review_done(self, webhook: str, allowed: bool, seconds: float) -> None: ...
    def cert_reloaded(self, ok: bool, not_after: float | None) -> None: ...
    def connections_open(self, count: int) -> None: ...
    def connection_refused(self, limit: str) -> None:
        self.refused.append(limit)

    def connection_evicted(self, limit: str) -> None:
        self.evicted.append(limit)

    def connection_timed_out(self) -> None: ...
    def body_bytes(self, held: int) -> None: ...
    def review_shed(self, reason: str) -> None:
        self.shed.append(reason)

    def review_waited(self, seconds: float) -> None: ...


class HeldTemplates:
    """A template store whose reads wait until the test lets them go: the review asking stays under way."""

    def __init__(self) -> None:
        self.asked = 0
        self.release = asyncio.Event()

    async def get(self, namespace: str, name: str, *, cluster: bool = False) -> dict[str, Any] | None:
        self.asked += 1
        await self.release.wait()
        return None


@pytest.fixture
async def serve(tmp_path: Path, ca: CertificateAuthority) -> AsyncIterator[Callable[..., Any]]:
    servers: list[WebhookServer] = []

    async def start(**kwargs: Any) -> WebhookServer:
        cert_dir = tmp_path / "certs"
        if not cert_dir.exists():
            issue(ca, cert_dir)
        server = WebhookServer(cert_dir, reload_interval=3600, **kwargs)
        await server.start("127.0.0.1", 0)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
OPENED: list[asyncio.StreamWriter] = []


@pytest.fixture(autouse=True)
async def _close_connections() -> AsyncIterator[None]:
    """Every connection a test opened is closed after it (some are the server's to close, some ours)."""
    yield
    while OPENED:
        writer = OPENED.pop()
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
            await writer.wait_closed()


async def connect(port: int, trust: ssl.SSLContext | None = None, source: str = "127.0.0.1") -> Conn:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=trust, local_addr=(source, 0))
    OPENED.append(writer)
    return reader, writer


async def healthz(conn: Conn) -> bool:
    """GET /healthz on a kept-alive connection: answered?"""
    reader, writer = conn
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(DEADLINE):
            return (await reader.readuntil(b"ok\n")).startswith(b"HTTP/1.1 200")
    except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
        return False


async def served(port: int, trust: ssl.SSLContext, source: str = "127.0.0.1") -> bool:
    """Does a new connection from `source` get an answer to GET /healthz?"""
    try:
        conn = await connect(port, trust, source)
    except (ConnectionError, ssl.SSLError, OSError):
        return False
    try:
        return await healthz(conn)
    finally:
        conn[1].close()


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        async with asyncio.timeout(DEADLINE):
            while await reader.read(1024):
                pass
    except TimeoutError:
        return False
    except (ConnectionError, ssl.SSLError):
        pass
    return True


def head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def naming_template(namespace: str = "team-a") -> bytes:
    """A create naming a template: the mutating webhook reads it (HeldTemplates holds the read)."""
    flow = {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "JobFlow",
        "metadata": {"name": "nightly", "namespace": namespace},
        "spec": {"templateRef": {"name": "build"}},
    }
    body = review(flow)
    body["request"]["namespace"] = namespace
    return json.dumps(body).encode()


async def under_review(port: int, trust: ssl.SSLContext, source: str = "127.0.0.1") -> Conn:
    conn = await connect(port, trust, source)
    body = naming_template()
    conn[1].write(head("/mutate-jobflow", len(body)) + body)
    await conn[1].drain()
    return conn


# --- connections -----------------------------------------------------------------------------------------

FOUR = ConnectionLimits(max_connections=4, request_timeout=5.0, handshake_timeout=5.0, keepalive_timeout=60.0)


async def test_a_client_keeping_every_connection_alive_does_not_keep_a_new_one_out(
    serve: Callable[..., Any], trust: ssl.SSLContext
) -> None:
    # The red team's hog: every connection the server allows, each kept alive by a request now and
    # then. The newcomer (the apiserver) was closed unanswered for as long as the hog went on.
    server = await serve(limits=FOUR)
    held = [await connect(server.port, trust) for _ in range(FOUR.max_connections)]
    for conn in held:
        assert await healthz(conn)
    assert server.guard.open == FOUR.max_connections
    assert await served(server.port, trust)
    # The connection that had waited longest for its next request made way; the others still serve.
    assert await closed_by_server(held[0][0])
    assert (server.guard.evicted, server.guard.refused) == (1, 0)
    assert all([await healthz(conn) for conn in held[1:]])


async def test_a_connection_that_just_sent_a_request_is_not_the_one_closed(
    serve: Callable[..., Any], trust: ssl.SSLContext
) -> None:
    server = await serve(
        limits=ConnectionLimits(max_connections=2, request_timeout=5.0, keepalive_timeout=60.0)
    )
    first, second = await connect(server.port, trust), await connect(server.port, trust)
    assert [await healthz(first), await healthz(second)] == [True, True]
    body = json.dumps(review(base_flow())).encode()
    first[1].write(head("/validate-jobflow", len(body)) + body[:100])  # a request begins on the older one
    await first[1].drain()
    await until(lambda: server.bodies.held == len(body), "the request's body being read")
    assert await served(server.port, trust)
    assert await closed_by_server(second[0])
    first[1].write(body[100:])
    async with asyncio.timeout(DEADLINE):
        assert (await first[0].readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")


async def test_a_new_connection_is_refused_only_while_every_connection_has_a_request_under_review(
    serve: Callable[..., Any], trust: ssl.SSLContext
) -> None:
    templates, load = HeldTemplates(), Load()
    server = await serve(limits=FOUR, templates=templates, metrics=load)
    busy = [await under_review(server.port, trust) for _ in range(FOUR.max_connections)]
    await until(lambda: templates.asked == FOUR.max_connections, "every connection's review under way")
    assert not await served(server.port, trust)
    assert load.refused == ["total"]
    templates.release.set()
    for reader, _ in busy:
        async with asyncio.timeout(DEADLINE):
            assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
    assert await served(server.port, trust)
    assert load.evicted == ["total"]  # one of the four, idle since its answer


async def test_one_address_holds_at_most_its_share_and_gives_way_to_itself(
    serve: Callable[..., Any], trust: ssl.SSLContext
) -> None:
    templates, load = HeldTemplates(), Load()
    limits = ConnectionLimits(max_connections=8, max_connections_per_ip=2, request_timeout=5.0)
    server = await serve(limits=limits, templates=templates, metrics=load)
    for _ in range(2):
        await under_review(server.port, trust, "127.0.0.1")
    await until(lambda: templates.asked == 2, "both reviews under way")
    assert not await served(server.port, trust, "127.0.0.1")  # its share is taken, none of it idle
    assert await served(server.port, trust, "127.0.0.2")  # another address is let in
    assert load.refused == ["per_ip"]
    await until(lambda: server.guard.open == 2, "the other address's connection closed")
    idle = [await connect(server.port, trust, "127.0.0.2") for _ in range(2)]
    assert all([await healthz(conn) for conn in idle])
    assert await served(server.port, trust, "127.0.0.2")  # over its share: its own idle one made way
    assert await closed_by_server(idle[0][0])
    assert load.evicted == ["per_ip"]
    templates.release.set()


# --- request bodies --------------------------------------------------------------------------------------


# As WebhookServer runs the app: a request answered unread closes its connection at once.
UNLINGERING = {"lingering_time": 0}


def padded_review(size: int, namespace: str = "team-a") -> bytes:
    """A valid review of about `size` bytes (an annotation pads it)."""
    flow = base_flow()
    flow["metadata"]["annotations"] = {"note": ""}
    body = review(flow)
    body["request"]["namespace"] = namespace
    pad = size - len(json.dumps(body))
    flow["metadata"]["annotations"]["note"] = "x" * max(pad, 0)
    return json.dumps(body).encode()


async def test_bodies_past_the_budget_are_answered_503_unread_until_the_held_ones_go(
    aiohttp_client: Any,
) -> None:
    client: TestClient[Any, Any] = await aiohttp_client(
        create_webhook_app(max_body_bytes=64_000, body_budget=100_000), server_kwargs=UNLINGERING
    )
    bodies = client.app[BODIES]
    # Half-sent bodies, each stalled: the first is held, the others would pass the budget.
    stalled = []
    for _ in range(5):
        reader, writer = await connect(client.port)
        writer.write(head("/validate-jobflow", 60_000) + b"x" * 1000)
        await writer.drain()
        stalled.append((reader, writer))
    await until(lambda: bodies.held == 60_000, "the first stalled body held")
    for reader, _ in stalled[1:]:
        async with asyncio.timeout(DEADLINE):
            answer = await reader.read(4096)
        assert answer.startswith(b"HTTP/1.1 503")
        assert b"Retry-After: 1" in answer
    assert bodies.held == 60_000
    large = padded_review(50_000)
    resp = await client.post("/validate-jobflow", data=large, headers={"Content-Type": "application/json"})
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"
    assert "busy" in (await resp.json())["error"]
    small = padded_review(2_000)  # still within the budget beside the held one
    resp = await client.post("/validate-jobflow", data=small, headers={"Content-Type": "application/json"})
    assert (await resp.json())["response"]["allowed"] is True
    stalled[0][1].close()  # its client gives up: its share of the budget comes back
    await until(lambda: bodies.held == 0, "the budget given back")
    resp = await client.post("/validate-jobflow", data=large, headers={"Content-Type": "application/json"})
    assert (await resp.json())["response"]["allowed"] is True


async def test_the_budget_comes_back_whatever_becomes_of_the_request(aiohttp_client: Any) -> None:
    guard = ConnectionGuard(ConnectionLimits(request_timeout=0.5))
    app = create_webhook_app(max_body_bytes=64_000, body_budget=100_000, guard=guard)
    client: TestClient[Any, Any] = await aiohttp_client(app, server_kwargs=UNLINGERING)
    bodies = client.app[BODIES]
    json_headers = {"Content-Type": "application/json"}
    # answered: allowed, denied, 400 (not a review), 413 (too large)
    assert (
        await client.post("/validate-jobflow", data=padded_review(3_000), headers=json_headers)
    ).status == 200
    assert bodies.held == 0
    assert (await client.post("/validate-jobflow", data=b"{not json", headers=json_headers)).status == 400
    assert bodies.held == 0
    assert (await client.post("/validate-jobflow", data=b"x" * 70_000, headers=json_headers)).status == 413
    assert bodies.held == 0
    # a body that never arrives whole (the deadline), one whose client goes away, one sent in chunks
    reader, writer = await connect(client.port)
    writer.write(head("/validate-jobflow", 10_000) + b"x" * 10)
    async with asyncio.timeout(DEADLINE):
        assert (await reader.read(4096)).startswith(b"HTTP/1.1 408")
    assert bodies.held == 0
    reader, writer = await connect(client.port)
    writer.write(head("/validate-jobflow", 10_000) + b"x" * 10)
    await until(lambda: bodies.held == 10_000, "the body held")
    writer.close()
    await until(lambda: bodies.held == 0, "the budget given back when the client went away")

    async def chunks() -> AsyncIterator[bytes]:
        body = padded_review(3_000)
        yield body[:1000]
        yield body[1000:]

    resp = await client.post("/validate-jobflow", data=chunks(), headers=json_headers)
    assert (await resp.json())["response"]["allowed"] is True
    assert bodies.held == 0


# --- review threads --------------------------------------------------------------------------------------


class Gate:
    """A validator whose reviews of `held` wait until the test opens the gate; the others pass."""

    def __init__(self, held: str) -> None:
        self.held = f'"namespace": "{held}"'.encode()
        self.open = threading.Event()
        self.inside = 0  # reviews of `held` under way now
        self.most = 0  # at once, at most
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, body: bytes) -> Any:
        self.threads.add(threading.current_thread().name)
        if self.held in body:
            with self._lock:
                self.inside += 1
                self.most = max(self.most, self.inside)
            try:
                assert self.open.wait(60)
            finally:
                with self._lock:
                    self.inside -= 1
        return validate_review_decisions(body)


def in_namespace(namespace: str, uid: str) -> dict[str, Any]:
    flow = base_flow()
    flow["metadata"]["namespace"] = namespace
    body = review(flow)
    body["request"].update(uid=uid, namespace=namespace)
    return body


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Gate:
    gate = Gate("team-a")
    monkeypatch.setattr(handlers, "validate_review_decisions", gate)
    return gate


async def test_another_namespaces_review_is_not_behind_one_namespaces_flood(
    aiohttp_client: Any, gate: Gate
) -> None:
    load = Load()
    client: TestClient[Any, Any] = await aiohttp_client(create_webhook_app(metrics=load))
    threads = client.app[REVIEW_THREADS]
    flood = [
        asyncio.create_task(client.post("/validate-jobflow", json=in_namespace("team-a", f"a-{i}")))
        for i in range(40)  # more than any default executor's threads (at most 32)
    ]
    try:
        await until(lambda: gate.inside >= 1, "team-a's first review under way")
        await until(lambda: threads.waiting("team-a") == 39, "team-a's others waiting for their turn")
        async with asyncio.timeout(2.0):  # within the queue wait: team-a's reviews are all still there
            resp = await client.post("/validate-jobflow", json=in_namespace("team-b", "b"))
            answer = (await resp.json())["response"]
        assert answer == {"uid": "b", "allowed": True}
        assert (gate.inside, gate.most) == (1, 1)  # team-a held one thread at a time, the other was free
        assert all(name.startswith("zen-flow-admission") for name in gate.threads)
    finally:
        gate.open.set()
        answers = [(await (await task).json())["response"] for task in flood]
    assert all(a["allowed"] for a in answers)
    assert load.shed == []


async def test_a_review_that_finds_no_thread_in_time_is_denied_429_at_once(
    aiohttp_client: Any, gate: Gate
) -> None:
    load = Load()
    app = create_webhook_app(reviews=ReviewLimits(threads=2, per_namespace=1, max_wait=0.3), metrics=load)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    first = asyncio.create_task(client.post("/validate-jobflow", json=in_namespace("team-a", "a-1")))
    try:
        await until(lambda: gate.inside >= 1, "team-a's first review under way")
        started = time.monotonic()
        resp = await client.post("/validate-jobflow", json=in_namespace("team-a", "a-2"))
        answer = (await resp.json())["response"]
        assert time.monotonic() - started < DEADLINE / 2
        assert (answer["uid"], answer["allowed"]) == ("a-2", False)
        status = answer["status"]
        assert (status["code"], status["reason"], status["details"]) == (
            429,
            "TooManyRequests",
            {"retryAfterSeconds": 1},
        )
        assert "busy" in status["message"]
        assert "'team-a'" in status["message"]
        assert load.shed == ["queue_wait"]
        resp = await client.post("/validate-jobflow", json=in_namespace("team-b", "b"))
        assert (await resp.json())["response"]["allowed"] is True
    finally:
        gate.open.set()
    assert (await (await first).json())["response"]["allowed"] is True


# --- settings and metrics --------------------------------------------------------------------------------


def test_the_limits_are_settings_checked_at_start_up(tmp_path: Path, ca: CertificateAuthority) -> None:
    from zen_flow import config
    from zen_flow.cli import build_parser
    from zen_flow.controller.metrics import Metrics
    from zen_flow.controller.replica_servers import webhook_server
    from zen_flow.kube.client import KubeClient
    from zen_flow.setting_checks import LARGEST_REVIEW_BYTES
    from zen_flow.webhook.bodies import MAX_BODY_BYTES

    cert_dir = tmp_path / "certs"
    issue(ca, cert_dir)
    flags = [
        "run",
        f"--webhook-cert-dir={cert_dir}",
        "--webhook-max-connections=300",
        "--webhook-max-connections-per-ip=0",
        "--webhook-body-budget-bytes=33554432",
        "--webhook-review-threads=4",
        "--webhook-namespace-review-threads=2",
        "--webhook-queue-wait-seconds=2.5",
    ]
    settings = config.load(build_parser().parse_args(flags), env={})
    runtime = webhook_server(settings, Metrics(), cast("KubeClient", object()))
    assert runtime is not None
    server = runtime.server
    assert (server.guard.limits.max_connections, server.guard.limits.max_connections_per_ip) == (300, 0)
    assert server.bodies.limit == 32 * 1024 * 1024
    assert server.review_threads.limits == ReviewLimits(threads=4, per_namespace=2, max_wait=2.5)
    # The defaults, from the environment as from flags.
    env = config.load(None, env={"ZEN_FLOW_WEBHOOK_QUEUE_WAIT_SECONDS": "1.5"})
    assert (env.webhook_max_connections, env.webhook_max_connections_per_ip) == (128, 96)
    assert (env.webhook_review_threads, env.webhook_namespace_review_threads) == (2, 1)
    assert env.webhook_queue_wait_seconds == 1.5
    # A budget that could never hold the largest body, a namespace share above the threads, no wait.
    assert LARGEST_REVIEW_BYTES == MAX_BODY_BYTES
    for name, value, problem in [
        ("WEBHOOK_BODY_BUDGET_BYTES", "3000000", f"must be >= {MAX_BODY_BYTES}"),
        ("WEBHOOK_NAMESPACE_REVIEW_THREADS", "3", "between 1 and it"),
        ("WEBHOOK_QUEUE_WAIT_SECONDS", "0", "must be > 0"),
        ("WEBHOOK_MAX_CONNECTIONS_PER_IP", "-1", "0: no cap"),
    ]:
        with pytest.raises(ValueError, match=re.escape(problem)):
            config.load(None, env={f"ZEN_FLOW_{name}": value})


def test_prometheus_exports_the_load_series_from_zero() -> None:
    from zen_flow.controller.metrics import Metrics
    from zen_flow.webhook.telemetry import PrometheusWebhookMetrics

    metrics = Metrics()
    sample = metrics.registry.get_sample_value
    for limit in ("total", "per_ip"):
        assert sample("zen_flow_webhook_connections_refused_total", {"limit": limit}) == 0
        assert sample("zen_flow_webhook_connections_evicted_total", {"limit": limit}) == 0
    for reason in ("body_budget", "queue_wait"):
        assert sample("zen_flow_webhook_shed_total", {"reason": reason}) == 0
    hooks = PrometheusWebhookMetrics(metrics)
    hooks.connections_open(7)
    hooks.connection_refused("per_ip")
    hooks.connection_evicted("total")
    hooks.connection_timed_out()
    hooks.body_bytes(4096)
    hooks.review_shed("queue_wait")
    hooks.review_waited(0.2)
    assert sample("zen_flow_webhook_connections") == 7
    assert sample("zen_flow_webhook_connections_refused_total", {"limit": "per_ip"}) == 1
    assert sample("zen_flow_webhook_connections_evicted_total", {"limit": "total"}) == 1
    assert sample("zen_flow_webhook_connections_timed_out_total") == 1
    assert sample("zen_flow_webhook_body_bytes") == 4096
    assert sample("zen_flow_webhook_shed_total", {"reason": "queue_wait"}) == 1
    assert sample("zen_flow_webhook_review_thread_wait_seconds_count") == 1
