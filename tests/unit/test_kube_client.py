"""zen_flow.kube against a scripted HTTP apiserver (kube_client_rig): paths, headers, errors, retries,
credentials."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kube_client_rig import FakeApiserver, InstantClock, reply, status_body
from kube_client_rig import api_fixture as api_fixture  # the `api` fixture
from kube_client_rig import clock_fixture as clock_fixture  # the `clock` fixture
from kube_client_rig import fake_fixture as fake_fixture  # the `fake` fixture
from kube_client_rig import kube_fixture as kube_fixture  # the `kube` fixture

from zen_flow import __version__
from zen_flow.api.job import labels_of
from zen_flow.kube import (
    AlreadyExists,
    ApiError,
    ClientOptions,
    Conflict,
    Expired,
    Invalid,
    JobClient,
    JobFlowClient,
    KubeClient,
    KubeConfig,
    NotFound,
    TooManyRequests,
    TransportError,
    load_config,
)
from zen_flow.kube.credentials import TokenFile
from zen_flow.kube.errors import from_response
from zen_flow.kube.transport import METADATA_ONLY


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
        with pytest.raises(TransportError, match=r"^GET /api/v1/namespaces: no answer within 0.2s$"):
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
