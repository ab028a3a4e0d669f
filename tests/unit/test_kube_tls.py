"""The client over real TLS on loopback: big answers arrive whole with the smaller TLS read chunk."""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from zen_flow.kube import KubeClient, load_config
from zen_flow.kube.transport import TLS_READ_CHUNK, WATCH_TLS_READ_CHUNK
from zen_flow_dev.cluster.pki import create_ca, issue_serving_cert

# A LIST page of 500 Jobs is ~10 MB; 3 MB is dozens of read chunks.
BIG = {"items": [{"name": f"job-{i:05d}", "data": "x" * 300} for i in range(10_000)]}


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[Path]:
    """A loopback HTTPS server answering /big; yields a kubeconfig for it."""
    ca = create_ca(tmp_path / "pki")
    cert, key = issue_serving_cert(ca, tmp_path / "pki", ["127.0.0.1"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def big(_: web.Request) -> web.Response:
        return web.json_response(BIG)

    done = asyncio.Event()

    async def watch(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for i in range(3):
            event = {"type": "ADDED", "object": {"metadata": {"name": f"f{i}", "resourceVersion": str(i)}}}
            await response.write(json.dumps(event).encode() + b"\n")
        await done.wait()  # held open, as the apiserver holds a watch, until the test ends
        return response

    app = web.Application()
    app.router.add_get("/big", big)
    app.router.add_get("/watch", watch)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": f"https://127.0.0.1:{port}",
                            "certificate-authority": str(tmp_path / "pki" / "ca.crt"),
                        },
                    }
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    try:
        yield path
    finally:
        done.set()
        await runner.cleanup()


async def test_big_answers_arrive_whole_over_tls(tls_server: Path) -> None:
    async with KubeClient(await load_config(str(tls_server))) as client:
        answers = await asyncio.gather(*(client.request_raw("GET", "/big") for _ in range(8)))
    assert all(json.loads(raw) == BIG for raw in answers)
    # Every pooled connection keeps one read buffer of this size for its life (256 KiB in asyncio).
    assert asyncio.sslproto.SSLProtocol.max_size == TLS_READ_CHUNK


async def test_a_watch_reads_in_larger_chunks(tls_server: Path) -> None:
    async with (
        KubeClient(await load_config(str(tls_server))) as client,
        client.stream("/watch", [], timeout_seconds=5) as events,
    ):
        names = [(await anext(events)).object["metadata"]["name"] for _ in range(3)]
        # One socket read per event-loop pass: a watch drains up to this much per pass.
        transport = events._content._protocol.transport  # type: ignore[attr-defined]
        assert transport._ssl_protocol.max_size == WATCH_TLS_READ_CHUNK
    assert names == ["f0", "f1", "f2"]
    assert asyncio.sslproto.SSLProtocol.max_size == TLS_READ_CHUNK  # only the watch's connection
