"""The HTTP layer (status codes, limits, probes) and HTTPS with in-place certificate rotation."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from cryptography import x509
from validation_samples import base_flow

from zen_flow.webhook.connections import ConnectionLimits
from zen_flow.webhook.server import MAX_BODY_BYTES, WebhookServer, create_webhook_app
from zen_flow_dev.cluster.pki import CertificateAuthority, issue_serving_cert

UID = "b0a3d0a8-0000-4000-8000-000000000001"


def review(obj: Any, operation: str = "CREATE") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": UID, "operation": operation, "userInfo": {"username": "alice"}, "object": obj},
    }


class RecordingMetrics:
    def __init__(self) -> None:
        self.reviews: list[tuple[str, bool]] = []
        self.reloads: list[tuple[bool, float | None]] = []

    def review_done(self, webhook: str, allowed: bool, seconds: float) -> None:
        assert seconds >= 0
        self.reviews.append((webhook, allowed))

    def cert_reloaded(self, ok: bool, not_after: float | None) -> None:
        self.reloads.append((ok, not_after))

    # The load hooks (webhook/pressure.py; test_webhook_load.py records them).
    def connections_open(self, count: int) -> None: ...
    def connection_refused(self, limit: str) -> None: ...
    def connection_evicted(self, limit: str) -> None: ...
    def connection_timed_out(self) -> None: ...
    def body_bytes(self, held: int) -> None: ...
    def review_shed(self, reason: str) -> None: ...
    def review_waited(self, seconds: float) -> None: ...


@pytest.fixture
def metrics() -> RecordingMetrics:
    return RecordingMetrics()


@pytest.fixture
async def client(aiohttp_client: Any, metrics: RecordingMetrics) -> TestClient[Any, Any]:
    app = create_webhook_app(metrics=metrics)
    test_client: TestClient[Any, Any] = await aiohttp_client(app)
    return test_client


# --- plain HTTP layer ----------------------------------------------------------------------------------


async def test_validate_answers_200_with_the_decision(
    client: TestClient[Any, Any], metrics: RecordingMetrics
) -> None:
    resp = await client.post("/validate-jobflow", json=review(base_flow()))
    assert resp.status == 200
    body = await resp.json()
    assert body["response"] == {"uid": UID, "allowed": True}
    broken = base_flow()
    broken["spec"]["steps"] = []
    resp = await client.post("/validate-jobflow", json=review(broken))
    assert resp.status == 200
    assert (await resp.json())["response"]["status"]["code"] == 422
    assert metrics.reviews == [("validate", True), ("validate", False)]


async def test_mutate_answers_with_a_patch(client: TestClient[Any, Any]) -> None:
    resp = await client.post("/mutate-jobflow", json=review(base_flow()))
    assert resp.status == 200
    body = await resp.json()
    assert body["response"]["patchType"] == "JSONPatch"


@pytest.mark.parametrize("path", ["/validate-jobflow", "/mutate-jobflow"])
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not JSON"),
        (b"", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"kind": "Pod"}).encode(), "AdmissionReview"),
        (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(), "no request"),
        (
            json.dumps(
                {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}
            ).encode(),
            "no uid",
        ),
        (b'{"request":' + b"[" * 100_000, "not JSON"),
    ],
    ids=["garbage", "empty", "array", "pod", "no-request", "no-uid", "deep"],
)
async def test_malformed_bodies_get_400_with_a_message(
    client: TestClient[Any, Any], path: str, body: bytes, message: str
) -> None:
    resp = await client.post(path, data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert message in (await resp.json())["error"]


async def test_oversized_body_gets_413(aiohttp_client: Any) -> None:
    test_client = await aiohttp_client(create_webhook_app(max_body_bytes=4096))
    resp = await test_client.post("/validate-jobflow", data=b"x" * 5000)
    assert resp.status == 413


async def test_the_default_limit_fits_an_update_of_two_large_flows(client: TestClient[Any, Any]) -> None:
    assert MAX_BODY_BYTES > 3 * 1024 * 1024
    flow = base_flow()
    flow["metadata"]["annotations"] = {"note": "x" * (1400 * 1024)}
    body = review(flow, "UPDATE")
    body["request"]["oldObject"] = flow
    payload = io.BytesIO(json.dumps(body).encode())
    resp = await client.post("/validate-jobflow", data=payload, headers={"Content-Type": "application/json"})
    assert resp.status == 200
    assert (await resp.json())["response"]["allowed"] is True


async def test_get_on_a_review_path_is_405(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/validate-jobflow")).status == 405


async def test_healthz_and_readyz(aiohttp_client: Any) -> None:
    reason: list[str | None] = ["no certificate yet"]
    test_client = await aiohttp_client(create_webhook_app(ready=lambda: reason[0]))
    assert (await test_client.get("/healthz")).status == 200
    resp = await test_client.get("/readyz")
    assert resp.status == 503
    assert "no certificate yet" in await resp.text()
    reason[0] = None
    assert (await test_client.get("/readyz")).status == 200


# --- HTTPS and certificate rotation --------------------------------------------------------------------


def issue(ca: CertificateAuthority, cert_dir: Path, host: str = "127.0.0.1") -> int:
    """Write tls.crt/tls.key for `host` into cert_dir; returns the new certificate's serial."""
    cert_path, _ = issue_serving_cert(ca, cert_dir, [host, "localhost"], name="tls")
    return x509.load_pem_x509_certificate(cert_path.read_bytes()).serial_number


async def peer_serial(port: int, context: ssl.SSLContext) -> int:
    """A new TLS handshake with the server; the serial of the certificate it presented."""
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der).serial_number
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.fixture
async def https(
    tmp_path: Path, ca: CertificateAuthority, metrics: RecordingMetrics
) -> AsyncIterator[WebhookServer]:
    cert_dir = tmp_path / "certs"
    issue(ca, cert_dir)
    server = WebhookServer(cert_dir, reload_interval=3600, metrics=metrics)
    await server.start("127.0.0.1", 0)
    yield server
    await server.stop()


async def test_https_serves_reviews_to_a_client_trusting_the_ca(
    https: WebhookServer, trust: ssl.SSLContext
) -> None:
    async with aiohttp.ClientSession() as session:
        url = f"https://127.0.0.1:{https.port}"
        async with session.get(url + "/readyz", ssl=trust) as resp:
            assert resp.status == 200
        async with session.post(url + "/validate-jobflow", json=review(base_flow()), ssl=trust) as resp:
            assert (await resp.json())["response"]["allowed"] is True


async def test_a_client_not_trusting_the_ca_is_refused(https: WebhookServer) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        await peer_serial(https.port, ssl.create_default_context())


async def test_rotated_certificate_is_served_to_new_handshakes_without_restart(
    https: WebhookServer,
    ca: CertificateAuthority,
    trust: ssl.SSLContext,
    tmp_path: Path,
    metrics: RecordingMetrics,
) -> None:
    first = await peer_serial(https.port, trust)
    async with aiohttp.ClientSession() as session:  # a keep-alive connection opened before the rotation
        url = f"https://127.0.0.1:{https.port}/validate-jobflow"

        async def admit() -> bool:
            async with session.post(url, json=review(base_flow()), ssl=trust) as resp:
                return bool(resp.status == 200 and (await resp.json())["response"]["allowed"])

        assert await admit()
        second = issue(ca, tmp_path / "certs")
        assert second != first
        assert await peer_serial(https.port, trust) == first  # nothing changes before the check
        assert https.certs.check() is True
        assert await peer_serial(https.port, trust) == second
        assert await admit()  # the server kept running and serving
        assert https.certs.check() is False  # unchanged files: no reload
    assert [ok for ok, _ in metrics.reloads] == [True, True]
    assert all(after is not None and after > time.time() for _, after in metrics.reloads)


async def test_the_poller_picks_up_a_rotation_while_requests_keep_succeeding(
    tmp_path: Path, ca: CertificateAuthority, trust: ssl.SSLContext
) -> None:
    cert_dir = tmp_path / "certs"
    first = issue(ca, cert_dir)
    server = WebhookServer(cert_dir, reload_interval=0.01)
    await server.start("127.0.0.1", 0)
    failures: list[BaseException] = []
    served = 0

    async def keep_requesting(session: aiohttp.ClientSession) -> None:
        nonlocal served
        url = f"https://127.0.0.1:{server.port}/validate-jobflow"
        while True:
            try:
                async with session.post(url, json=review(base_flow()), ssl=trust) as resp:
                    assert resp.status == 200
                    served += 1
            except (AssertionError, aiohttp.ClientError, ssl.SSLError) as exc:
                failures.append(exc)
            await asyncio.sleep(0)

    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            load = asyncio.create_task(keep_requesting(session))
            second = issue(ca, cert_dir)
            deadline = time.monotonic() + 10
            while (await peer_serial(server.port, trust)) != second:
                assert time.monotonic() < deadline, "the rotated certificate was not picked up"
            before = served
            while served < before + 3:  # and requests still go through on new connections
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            load.cancel()
            await asyncio.wait([load])
        assert first != second
        assert failures == []
    finally:
        await server.stop()


async def test_a_broken_pair_keeps_the_old_certificate(
    https: WebhookServer, trust: ssl.SSLContext, tmp_path: Path, metrics: RecordingMetrics
) -> None:
    serving = await peer_serial(https.port, trust)
    (tmp_path / "certs" / "tls.key").write_text(
        "-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n"
    )
    assert https.certs.check() is False
    assert https.certs.last_error is not None
    assert https.certs.check() is False  # the same broken pair is not counted twice
    assert [ok for ok, _ in metrics.reloads] == [True, False]
    assert await peer_serial(https.port, trust) == serving
    assert https.not_ready_reason() is None


async def test_the_server_starts_before_the_certificate_exists(
    tmp_path: Path, ca: CertificateAuthority, trust: ssl.SSLContext
) -> None:
    cert_dir = tmp_path / "not-yet"
    server = WebhookServer(cert_dir, reload_interval=3600)
    await server.start("127.0.0.1", 0)
    try:
        reason = server.not_ready_reason()
        assert reason is not None
        assert "certificate not loaded" in reason
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await peer_serial(server.port, trust)
        serial = issue(ca, cert_dir)
        assert server.certs.check() is True
        assert server.not_ready_reason() is None
        assert await peer_serial(server.port, trust) == serial
    finally:
        await server.stop()


def test_prometheus_hooks_count_reviews_reloads_and_expiry() -> None:
    from zen_flow.controller.metrics import Metrics
    from zen_flow.webhook.server import WebhookMetrics
    from zen_flow.webhook.telemetry import PrometheusWebhookMetrics

    registry = Metrics()
    hooks: WebhookMetrics = PrometheusWebhookMetrics(registry)
    hooks.review_done("validate", False, 0.002)
    hooks.cert_reloaded(True, 1_900_000_000.0)
    hooks.cert_reloaded(False, None)
    text = registry.render().decode()
    assert 'zen_flow_webhook_requests_total{allowed="false",webhook="validate"} 1.0' in text
    assert 'zen_flow_webhook_cert_reloads_total{result="success"} 1.0' in text
    assert 'zen_flow_webhook_cert_reloads_total{result="failure"} 1.0' in text
    assert "zen_flow_webhook_cert_expiry_timestamp_seconds 1.9e+09" in text


def test_the_first_failed_reload_is_an_increase_of_a_series_scraped_at_zero(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    # A broken pair is counted once. Had the failure series first appeared at 1, increase() would see no
    # increase and ZenFlowWebhookCertificateReloadFailing would miss a single failed renewal.
    from zen_flow.controller.metrics import Metrics
    from zen_flow.webhook.telemetry import PrometheusWebhookMetrics
    from zen_flow.webhook.tls import CertReloader

    metrics = Metrics()
    issue(ca, tmp_path)
    certs = CertReloader(tmp_path, metrics=PrometheusWebhookMetrics(metrics))
    assert certs.check() is True
    failures = {"result": "failure"}
    assert metrics.registry.get_sample_value("zen_flow_webhook_cert_reloads_total", failures) == 0
    (tmp_path / "tls.key").write_text("-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    assert certs.check() is False
    assert metrics.registry.get_sample_value("zen_flow_webhook_cert_reloads_total", failures) == 1


@pytest.mark.parametrize(
    ("addr", "expected"),
    [("0.0.0.0:9443", ("0.0.0.0", 9443)), (":9443", ("0.0.0.0", 9443)), ("[::1]:8443", ("::1", 8443))],
)
def test_split_address(addr: str, expected: tuple[str, int]) -> None:
    from zen_flow.addresses import split_addr

    assert split_addr(addr) == expected


# A superscript or another script's digits pass isdigit(); int() refuses the one and reads the other.
@pytest.mark.parametrize(
    "addr",
    [
        "9443",
        "host:",
        "host:https",
        ":70000",
        "::1:8443",
        "[::1:8443",
        ":\N{SUPERSCRIPT TWO}",
        ":\u0668\u0660",
    ],
)
def test_split_address_rejects_garbage(addr: str) -> None:
    from zen_flow.addresses import split_addr

    with pytest.raises(ValueError, match=r"host:port|brackets"):
        split_addr(addr)


@pytest.mark.parametrize("flag", ["--metrics-addr", "--webhook-addr"])
def test_both_listen_addresses_are_checked_at_start_up_by_the_same_rules(flag: str) -> None:
    from zen_flow.cli import build_parser
    from zen_flow.config import load

    args = build_parser().parse_args(["run", flag, "localhost:http"])
    with pytest.raises(ValueError, match=f"{flag}: 'localhost:http' is not host:port"):
        load(args, env={})


async def test_runtime_serves_until_cancelled(
    tmp_path: Path, ca: CertificateAuthority, trust: ssl.SSLContext
) -> None:
    from zen_flow.controller.metrics import Metrics
    from zen_flow.webhook.runtime import WebhookRuntime

    cert_dir = tmp_path / "certs"
    serial = issue(ca, cert_dir)
    runtime = WebhookRuntime(cert_dir, Metrics())
    task = asyncio.create_task(runtime.serve("127.0.0.1:0"))
    deadline = time.monotonic() + 10
    while not runtime.server.listening:
        assert time.monotonic() < deadline, "the webhook did not start"
        await asyncio.sleep(0.01)
    assert runtime.tls_problem() is None
    port = runtime.server.port
    assert await peer_serial(port, trust) == serial
    task.cancel()
    await asyncio.wait([task])
    assert task.cancelled()
    assert not runtime.server.listening
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_listening_only_once_the_port_is_bound(
    tmp_path: Path, ca: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The listener is created after an await of the runner's setup: a caller polling `listening` (as the
    # test above does) must never see it true before `port` can be read, however slow the bind.
    cert_dir = tmp_path / "certs"
    issue(ca, cert_dir)
    loop = asyncio.get_running_loop()
    bind = loop.create_server
    may_bind = asyncio.Event()

    async def slow_bind(*args: Any, **kwargs: Any) -> asyncio.Server:
        await may_bind.wait()
        return await bind(*args, **kwargs)

    monkeypatch.setattr(loop, "create_server", slow_bind)
    server = WebhookServer(cert_dir, reload_interval=3600)
    task = asyncio.create_task(server.start("127.0.0.1", 0))
    for _ in range(50):  # the runner's setup finishes within a few turns of the loop
        await asyncio.sleep(0)
        assert not server.listening
    may_bind.set()
    await task
    assert server.listening
    assert server.port > 0
    await server.stop()
    assert not server.listening


# --- slow clients and too many connections ---------------------------------------------------------------

TIGHT = ConnectionLimits(max_connections=4, request_timeout=0.5, handshake_timeout=0.5, keepalive_timeout=1.0)


@pytest.fixture
async def tight(tmp_path: Path, ca: CertificateAuthority) -> AsyncIterator[WebhookServer]:
    cert_dir = tmp_path / "certs"
    issue(ca, cert_dir)
    server = WebhookServer(cert_dir, reload_interval=3600, limits=TIGHT)
    await server.start("127.0.0.1", 0)
    yield server
    await server.stop()


async def _closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """True once the server closes the connection (EOF or reset), False if it is still open at `within`."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(1024):
                pass
    except TimeoutError:
        return False
    except (ConnectionResetError, ssl.SSLError):
        pass
    return True


async def _answered(port: int, trust: ssl.SSLContext) -> bool:
    """Does a new connection get an answer to GET /healthz?"""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=trust)
    except (ConnectionResetError, ssl.SSLError, OSError):
        return False
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(5):
            return bool(await reader.read(1024))
    except (ConnectionResetError, ssl.SSLError, OSError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(ConnectionResetError, ssl.SSLError, OSError):
            await writer.wait_closed()


async def test_a_connection_that_never_sends_a_request_is_closed(
    tight: WebhookServer, trust: ssl.SSLContext
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", tight.port, ssl=trust)
    try:
        assert await _closed_by_server(reader, within=TIGHT.request_timeout * 10)
    finally:
        writer.close()
    assert tight.guard.timed_out == 1


async def test_a_request_head_dribbled_in_byte_by_byte_is_cut_off(
    tight: WebhookServer, trust: ssl.SSLContext
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", tight.port, ssl=trust)
    head = b"POST /validate-jobflow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"

    async def dribble() -> None:
        for byte in head:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)  # the attack is slowness itself: one byte per 50 ms

    sender = asyncio.create_task(dribble())
    try:
        assert await _closed_by_server(reader, within=TIGHT.request_timeout * 10)
    finally:
        sender.cancel()
        writer.close()
    assert tight.guard.timed_out == 1


async def test_connections_that_send_nothing_make_way_for_a_new_one_at_the_cap(
    tmp_path: Path, ca: CertificateAuthority, trust: ssl.SSLContext
) -> None:
    # Silent connections held every place once, and a newcomer was closed unanswered; now the one that
    # has waited longest is closed for it (test_webhook_load.py: the caps, and when a newcomer is refused).
    # The deadlines are the defaults: none of them must close a silent connection first.
    cert_dir = tmp_path / "certs"
    issue(ca, cert_dir)
    server = WebhookServer(cert_dir, reload_interval=3600, limits=ConnectionLimits(max_connections=4))
    await server.start("127.0.0.1", 0)
    idle = [await asyncio.open_connection("127.0.0.1", server.port, ssl=trust) for _ in range(4)]
    try:
        deadline = time.monotonic() + 5
        while server.guard.open < 4:  # handshakes finish in the server's loop
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert await _answered(server.port, trust)
        assert await _closed_by_server(idle[0][0], within=5)
        assert (server.guard.evicted, server.guard.refused) == (1, 0)
    finally:
        for _, writer in idle:
            writer.close()
        await server.stop()


async def test_a_keep_alive_connection_serves_several_reviews_then_idles_out(
    tight: WebhookServer, trust: ssl.SSLContext
) -> None:
    async with aiohttp.ClientSession() as session:
        url = f"https://127.0.0.1:{tight.port}/validate-jobflow"
        for _ in range(3):  # one connection, re-armed after each response
            async with session.post(url, json=review(base_flow()), ssl=trust) as resp:
                assert resp.status == 200
        assert tight.guard.open == 1
        deadline = time.monotonic() + TIGHT.keepalive_timeout * 10
        while tight.guard.open:
            assert time.monotonic() < deadline, "an idle keep-alive connection was never closed"
            await asyncio.sleep(0.05)
