"""The informer tests' builders (raw Jobs and JobFlows) and scripted apiserver (FakeSource: lists and
watch streams the test feeds), the handler that records what it is told, and a running informer."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from zen_flow.api import Job, JobFlow
from zen_flow.api.job import JOB
from zen_flow.informer import JobFlowInformer, JobInformer
from zen_flow.kube import Decoder, ListResult, WatchEvent
from zen_flow.kube.streams import decode_event, decode_page
from zen_flow_dev.testing.clock import FakeClock

# --- builders -------------------------------------------------------------------------------------


def job_raw(
    name: str, *, ns: str = "ns", owner_uid: str | None = "u1", rv: str = "1", **extra: Any
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": ns,
        "uid": f"uid-{name}",
        "resourceVersion": rv,
        "labels": {"app.kubernetes.io/managed-by": "zen-flow"},
        "managedFields": [{"manager": "kube-controller-manager", "operation": "Update"}],
    }
    if owner_uid:
        meta["ownerReferences"] = [
            {
                "apiVersion": "workflow.kube-zen.io/v1alpha1",
                "kind": "JobFlow",
                "name": "flow",
                "uid": owner_uid,
                "controller": True,
            }
        ]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}, "suspend": False},
        "status": extra.get("status", {}),
    }


def flow_raw(
    name: str, *, ns: str = "ns", rv: str = "1", spec: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "JobFlow",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": f"uid-{name}",
            "resourceVersion": rv,
            "generation": 1,
        },
        "spec": spec if spec is not None else {"steps": [{"name": "a", "template": {"spec": {}}}]},
        "status": {"phase": "Running"},
    }


def job(name: str, **kw: Any) -> Job:
    return JOB.validate_python(job_raw(name, **kw))


# --- a scripted apiserver -------------------------------------------------------------------------

END = object()


class FakeStream:
    """Feeds pushed events through the client's own line decoding, as the apiserver's bytes would be."""

    def __init__(self, namespace: str | None, resource_version: str, decoder: Decoder | None) -> None:
        self.namespace = namespace
        self.resource_version = resource_version
        self.decoder = decoder
        self.items: asyncio.Queue[object] = asyncio.Queue()
        self.closed = False

    def push(self, *items: object) -> None:
        for item in items:
            self.items.put_nowait(item)

    def __aiter__(self) -> FakeStream:
        return self

    async def __anext__(self) -> WatchEvent:
        item = await self.items.get()
        if item is END:
            raise StopAsyncIteration
        if isinstance(item, Exception):
            raise item
        assert isinstance(item, WatchEvent)
        return decode_event(json.dumps({"type": item.type, "object": item.object}).encode(), self.decoder)


class FakeSource:
    """LIST answers come from `lists` (a result or an exception each); each WATCH is a FakeStream the
    test feeds. `calls` records what the reflector asked for."""

    def __init__(self, *lists: ListResult | Exception) -> None:
        self.lists = list(lists)
        self.calls: list[tuple[str, str]] = []
        self.streams: asyncio.Queue[FakeStream] = asyncio.Queue()

    async def list(
        self, namespace: str | None, resource_version: str = "", decoder: Decoder | None = None
    ) -> ListResult:
        self.calls.append(("list", resource_version))
        answer = self.lists.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return decoded(answer, decoder)

    @asynccontextmanager
    async def watch(
        self,
        namespace: str | None,
        resource_version: str,
        timeout_seconds: int,
        decoder: Decoder | None = None,
    ) -> AsyncIterator[FakeStream]:
        assert 300 <= timeout_seconds <= 600
        self.calls.append(("watch", resource_version))
        stream = FakeStream(namespace, resource_version, decoder)
        self.streams.put_nowait(stream)
        try:
            yield stream
        finally:
            stream.closed = True

    async def next_stream(self) -> FakeStream:
        async with asyncio.timeout(5):
            return await self.streams.get()


def decoded(answer: ListResult, decoder: Decoder | None) -> ListResult:
    """The scripted list as the apiserver would send it (one JSON page), decoded as the client does."""
    raw = json.dumps({"metadata": {"resourceVersion": answer.resource_version}, "items": list(answer.items)})
    page = decode_page(raw.encode(), decoder)
    return ListResult(items=tuple(page.items), resource_version=page.resource_version)


def event(type_: str, raw: dict[str, Any]) -> WatchEvent:
    return WatchEvent(type=type_, object=raw)


def bookmark(rv: str) -> WatchEvent:
    return WatchEvent(type="BOOKMARK", object={"kind": "Job", "metadata": {"resourceVersion": rv}})


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []  # (kind, name, resourceVersion)

    def add(self, obj: Job | JobFlow) -> None:
        self.seen.append(("add", obj.metadata.name, obj.metadata.resource_version))

    def update(self, old: Job | JobFlow, new: Job | JobFlow) -> None:
        self.seen.append(("update", new.metadata.name, new.metadata.resource_version))

    def delete(self, obj: Job | JobFlow) -> None:
        self.seen.append(("delete", obj.metadata.name, obj.metadata.resource_version))


@pytest.fixture(name="clock")
def clock_fixture() -> FakeClock:
    return FakeClock()


@pytest.fixture(name="recorder")
def recorder_fixture() -> Recorder:
    return Recorder()


@asynccontextmanager
async def running(informer: JobInformer | JobFlowInformer) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(informer.run())
    try:
        yield task
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def job_informer(source: FakeSource, clock: FakeClock, recorder: Recorder) -> JobInformer:
    informer = JobInformer(source, clock=clock, rng=random.Random(0))
    informer.add_handler(on_add=recorder.add, on_update=recorder.update, on_delete=recorder.delete)
    return informer
