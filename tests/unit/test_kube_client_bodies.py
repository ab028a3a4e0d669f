"""The bodies the kube client sends are JSON with every non-ASCII and control character escaped. The
quantity rule relies on it (validation/formats.py, _parse_quantity): the apiserver trims only the raw
text between a quantity's quotes, so an escaped no-break space is refused as admission refuses it; sent
raw, Go's TrimSpace would take it, and admission would refuse what the apiserver accepts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from zen_flow.kube import ClientOptions, JobClient, JobFlowClient, KubeClient, KubeConfig

QUANTITY = "\u00a0\u30001Gi\t\n"
MESSAGE = "étape \u2003 finie\r"
CREATED = {"metadata": {"name": "j", "namespace": "ns", "uid": "u"}, "spec": {"template": {"spec": {}}}}


@pytest.fixture
async def bodies() -> AsyncIterator[tuple[list[bytes], KubeClient]]:
    sent: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        sent.append(await request.read())
        answer = CREATED if request.method == "POST" else {"metadata": {"resourceVersion": "2"}}
        return web.json_response(answer, status=201 if request.method == "POST" else 200)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app)
    await server.start_server()
    config = KubeConfig(host=str(server.make_url("")).rstrip("/"), source="test")
    async with KubeClient(config, ClientOptions(timeout=2.0)) as client:
        yield sent, client
    await server.close()


Send = Callable[[KubeClient], Awaitable[Any]]
JOB = {
    "metadata": {"name": "j"},
    "spec": {
        "template": {
            "spec": {"containers": [{"name": "main", "resources": {"limits": {"memory": QUANTITY}}}]}
        }
    },
}
STATUS = [{"op": "replace", "path": "/status/message", "value": MESSAGE}]


@pytest.mark.parametrize(
    ("send", "value"),
    [
        (lambda kube: JobClient(kube).create("ns", JOB), QUANTITY),
        (lambda kube: JobFlowClient(kube).patch_status("ns", "flow", STATUS), MESSAGE),
    ],
    ids=["job-create", "status-patch"],
)
async def test_a_request_body_escapes_every_character_outside_printable_ascii(
    bodies: tuple[list[bytes], KubeClient], send: Send, value: str
) -> None:
    sent, kube = bodies
    await send(kube)
    (body,) = sent
    assert all(32 <= byte < 127 for byte in body), body  # no raw tab, newline or no-break space
    assert json.dumps(value) in body.decode("ascii")  # each as its \\u escape: "\u00a0\u30001Gi\t\n"
