"""Events, Leases and memoize caches as zen_flow.kube sends and reads them (kube_client_rig)."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from kube_client_rig import FakeApiserver, InstantClock, reply, status_body
from kube_client_rig import api_fixture as api_fixture  # the `api` fixture
from kube_client_rig import clock_fixture as clock_fixture  # the `clock` fixture
from kube_client_rig import fake_fixture as fake_fixture  # the `fake` fixture
from kube_client_rig import kube_fixture as kube_fixture  # the `kube` fixture

from zen_flow.api import JobFlow
from zen_flow.api.meta import ObjectMeta
from zen_flow.controller.metrics import Metrics
from zen_flow.kube import EventRecorder, KubeClient, LeaseClient
from zen_flow.kube.memo_caches import ConfigMapData, MemoCacheClient
from zen_flow.machinery.leader import ConflictError, LeaseRecord


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


async def test_events_never_recorded_are_counted_by_reason(api: FakeApiserver, kube: KubeClient) -> None:
    # An Event dropped from a full backlog, or whose send failed (not retried), is lost to `kubectl
    # describe`: zen_flow_events_dropped_total says how many, at 0 from the start so the first is an increase.
    metrics = Metrics()
    recorder = EventRecorder(kube, clock=InstantClock(), max_pending=1)
    metrics.watch_events(recorder.lost)

    def lost(reason: str) -> float | None:
        return metrics.registry.get_sample_value("zen_flow_events_dropped_total", {"reason": reason})

    assert (lost("queue_full"), lost("failed")) == (0, 0)
    recorder.emit(flow(), "Normal", "Started", "go")
    recorder.emit(flow(), "Normal", "Dropped", "queue is full")
    api.answer(reply(403, status_body(403, "Forbidden")))
    await recorder.record(flow(), "Warning", "StepFailed", "step a failed")
    assert (lost("queue_full"), lost("failed")) == (1, 1)
