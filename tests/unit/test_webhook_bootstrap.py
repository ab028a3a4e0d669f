"""A replica whose webhook certificate is not there yet (its Secret not issued, or mounted empty as an
optional volume): the webhook server still starts, the replica's /readyz answers 503 naming the missing
certificate, and once the files appear it serves HTTPS and becomes ready, without a restart."""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
from aiohttp.test_utils import TestClient
from cryptography import x509

from zen_flow.config import Settings
from zen_flow.controller.health import create_health_app
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.replica_servers import replica_probes, webhook_server
from zen_flow.kube.client import KubeClient
from zen_flow.machinery.clock import SystemClock
from zen_flow_dev.cluster.pki import create_ca, issue_serving_cert

DEADLINE = 10.0


def synced_informer() -> Any:
    return SimpleNamespace(has_synced=True, last_error=None, last_progress=time.monotonic())


async def until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_a_replica_started_before_its_certificate_is_unready_until_the_files_appear(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    cert_dir = tmp_path / "certs"
    cert_dir.mkdir()  # what an optional Secret volume gives before the Secret exists: an empty directory
    settings = Settings(webhook_addr="127.0.0.1:0", webhook_cert_dir=str(cert_dir))
    metrics = Metrics()
    kube = cast("KubeClient", object())  # nothing is read from the apiserver here
    webhook = webhook_server(settings, metrics, kube, reload_interval=0.05)
    assert webhook is not None, "the webhook server must be built even before its certificate exists"
    informer = synced_informer()
    probes = replica_probes(informer, informer, informer, webhook, SystemClock())
    health: TestClient[Any, Any] = await aiohttp_client(
        create_health_app(metrics, probes.liveness, probes.readiness)
    )

    serving = asyncio.create_task(webhook.serve(settings.webhook_addr))
    try:
        await until(lambda: _true(webhook.server.listening), "the webhook server to listen")
        ready = await health.get("/readyz")
        assert ready.status == 503
        assert "webhook-tls: webhook certificate not loaded" in await ready.text()

        ca = create_ca(tmp_path / "ca")
        cert, _ = issue_serving_cert(ca, cert_dir, ["127.0.0.1"], name="tls")

        async def ready_now() -> bool:
            return (await health.get("/readyz")).status == 200

        await until(ready_now, "the replica to become ready once the certificate appeared")
        trust = ssl.create_default_context(cafile=str(ca.cert_path))
        async with aiohttp.ClientSession() as session:
            url = f"https://127.0.0.1:{webhook.server.port}/healthz"
            async with session.get(url, ssl=trust) as resp:
                assert resp.status == 200
        _, writer = await asyncio.open_connection("127.0.0.1", webhook.server.port, ssl=trust)
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        await writer.wait_closed()
        served = x509.load_der_x509_certificate(der).serial_number
        assert served == x509.load_pem_x509_certificate(cert.read_bytes()).serial_number
    finally:
        serving.cancel()
        await asyncio.wait([serving])


async def _true(value: bool) -> bool:
    return value
