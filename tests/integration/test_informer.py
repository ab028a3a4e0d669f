"""The informer and the kube wrappers against a real kube-apiserver + etcd.

Connection loss is real: the informer under test talks to the apiserver through a TCP relay that the
test cuts (every open connection reset) and blocks (new connections reset) while it changes objects
through a second, direct client.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from zen_flow.api import Job, JobFlow, JobFlowStatus
from zen_flow.api.job import JOB
from zen_flow.core import jsonpatch
from zen_flow.informer import Informer, JobFlowInformer, JobInformer, ReflectorOptions
from zen_flow.kube import (
    AlreadyExists,
    Conflict,
    Decoder,
    EventRecorder,
    JobClient,
    JobFlowClient,
    KubeClient,
    LeaseClient,
    ListResult,
    NotFound,
    WatchEvent,
    load_config,
)
from zen_flow.kube import object_head as object_head_module
from zen_flow.machinery.clock import SystemClock
from zen_flow.machinery.leader import ConflictError, LeaseRecord

pytestmark = pytest.mark.integration

WAIT = 30.0  # seconds; generous for a 2-core machine running the control plane
NEW = JobFlowStatus()  # a flow whose status was never written


# --- helpers --------------------------------------------------------------------------------------


class Relay:
    """A TCP relay in front of the apiserver. `cut()` resets every open connection; while `blocked`,
    new connections are reset at once; while `flowing` is clear, bytes wait in the relay. TLS passes
    through untouched."""

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.blocked = False
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self.blocked:
                return
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
            self._writers.update((writer, up_writer))
            try:
                await asyncio.gather(
                    _pump(reader, up_writer, self.flowing), _pump(up_reader, writer, self.flowing)
                )
            finally:
                self._writers.difference_update((writer, up_writer))
                up_writer.transport.abort()
        finally:
            # Also when the upstream connect fails or close() cancels it: asyncio's server does not
            # close accepted connections, so a writer left open is an unclosed socket some later
            # test's garbage collection reports.
            writer.transport.abort()
            self._tasks.discard(task)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event) -> None:
    try:
        while data := await reader.read(65536):
            await flowing.wait()
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.transport.abort()


class Recording:
    """Wraps a ListerWatcher and records which RVs the reflector listed and watched from."""

    def __init__(self, inner: JobClient | JobFlowClient) -> None:
        self._inner = inner
        self.calls: list[tuple[str, str]] = []
        self._changed = asyncio.Event()

    async def list(
        self, namespace: str | None, resource_version: str = "", decoder: Decoder | None = None
    ) -> ListResult:
        self._call("list", resource_version)
        return await self._inner.list(namespace, resource_version, decoder)

    def watch(
        self,
        namespace: str | None,
        resource_version: str,
        timeout_seconds: int,
        decoder: Decoder | None = None,
    ) -> AbstractAsyncContextManager[AsyncIterator[WatchEvent]]:
        self._call("watch", resource_version)
        return self._inner.watch(namespace, resource_version, timeout_seconds, decoder)

    def _call(self, kind: str, resource_version: str) -> None:
        self.calls.append((kind, resource_version))
        self._changed.set()

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    @property
    def lists(self) -> list[str]:
        return [rv for kind, rv in self.calls if kind == "list"]


class Seen:
    """What the handlers were told, as (what, name, resourceVersion, phase-or-"")."""

    def __init__(self, informer: Informer[Any]) -> None:
        self.events: list[tuple[str, str, str]] = []
        self._changed = asyncio.Event()
        informer.add_handler(
            on_add=lambda o: self._record("add", o),
            on_update=lambda old, new: self._record("update", new),
            on_delete=lambda o: self._record("delete", o),
        )

    def _record(self, what: str, obj: Job | JobFlow) -> None:
        self.events.append((what, obj.metadata.name, obj.metadata.resource_version))
        self._changed.set()

    def of(self, name: str) -> list[str]:
        return [what for what, n, _ in self.events if n == name]

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


@asynccontextmanager
async def running(informer: Informer[Any]) -> AsyncIterator[None]:
    task = asyncio.create_task(informer.run())
    try:
        async with asyncio.timeout(WAIT):
            await informer.wait_synced()
        yield
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def job_body(name: str, *, labelled: bool = True) -> dict[str, Any]:
    labels = {"app.kubernetes.io/managed-by": "zen-flow"} if labelled else {}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}
            }
        },
    }


def flow_manifest(name: str, namespace: str) -> str:
    return json.dumps(
        {
            "apiVersion": "workflow.kube-zen.io/v1alpha1",
            "kind": "JobFlow",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"steps": [{"name": "gate", "type": "Manual"}]},
        }
    )


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
async def kube(kubeconfig: Path) -> AsyncIterator[KubeClient]:
    async with KubeClient(await load_config(str(kubeconfig))) as client:
        yield client


@pytest.fixture
async def relay(cluster: Any) -> AsyncIterator[Relay]:
    server = urlsplit(cluster.server)
    assert server.hostname
    assert server.port
    relay = Relay(server.hostname, server.port)
    await relay.start()
    yield relay
    await relay.close()


@pytest.fixture
async def relayed(kubeconfig: Path, relay: Relay) -> AsyncIterator[KubeClient]:
    """A client whose every connection goes through `relay`."""
    config = await load_config(str(kubeconfig))
    relayed = dataclasses.replace(config, host=f"https://127.0.0.1:{relay.port}", source="relay")
    async with KubeClient(relayed) as client:
        yield client


@pytest.fixture
def clock() -> SystemClock:
    return SystemClock()


# --- Jobs -----------------------------------------------------------------------------------------


async def test_job_informer_follows_labelled_jobs_in_order_and_ignores_others(
    kube: KubeClient, namespace: str, kubectl: Any, clock: SystemClock
) -> None:
    informer = JobInformer(JobClient(kube), clock=clock, namespaces=[namespace])
    seen = Seen(informer)
    jobs = JobClient(kube)
    async with running(informer):
        await jobs.create(namespace, job_body("plain", labelled=False))
        created = await jobs.create(namespace, job_body("a"))
        kubectl("annotate", "job", "a", "-n", namespace, "example.com/note=1")
        await seen.until(lambda: seen.of("a") == ["add", "update"])

        cached = informer.get(f"{namespace}/a")
        assert cached is not None
        assert cached.metadata.uid == created.metadata.uid
        assert cached.metadata.resource_version != created.metadata.resource_version  # the annotated one
        wire = JOB.dump_python(cached, by_alias=True)
        assert "spec" not in wire  # no pod template (nor any spec) cached
        assert "annotations" not in wire["metadata"]  # nor anything else reconcile never reads

        await jobs.delete(namespace, "a")
        await seen.until(lambda: seen.of("a") == ["add", "update", "delete"])
        assert informer.get(f"{namespace}/a") is None
        assert seen.of("plain") == []
        assert informer.get(f"{namespace}/plain") is None


async def test_job_create_conflict_and_background_delete(
    kube: KubeClient, namespace: str, kubectl: Any
) -> None:
    jobs = JobClient(kube)
    await jobs.create(namespace, job_body("dup"))
    with pytest.raises(AlreadyExists):
        await jobs.create(namespace, job_body("dup"))

    with pytest.raises(Conflict):  # uid precondition: not the Job we meant
        await jobs.delete(namespace, "dup", uid="00000000-0000-0000-0000-000000000000")
    await jobs.delete(namespace, "dup", propagation="Background")
    with pytest.raises(NotFound):
        await jobs.delete(namespace, "dup")
    assert kubectl("get", "job", "dup", "-n", namespace, check=False).returncode != 0


async def test_dropped_watch_resumes_from_its_rv_and_delivers_the_gap(
    relayed: KubeClient, relay: Relay, kube: KubeClient, namespace: str, kubectl: Any, clock: SystemClock
) -> None:
    source = Recording(JobClient(relayed))
    informer = JobInformer(source, clock=clock, namespaces=[namespace])
    seen = Seen(informer)
    jobs = JobClient(kube)
    async with running(informer):
        await jobs.create(namespace, job_body("a"))
        await seen.until(lambda: seen.of("a") == ["add"])

        relay.blocked = True
        relay.cut()  # the watch connection is reset; reconnects are refused until unblocked
        await jobs.create(namespace, job_body("b"))
        kubectl("annotate", "job", "a", "-n", namespace, "example.com/gap=1")
        await jobs.create(namespace, job_body("c"))
        await jobs.delete(namespace, "c")
        relay.blocked = False

        await seen.until(lambda: seen.of("c") == ["add", "delete"] and "update" in seen.of("a"))
        assert seen.of("b") == ["add"]
        assert source.lists == [""]  # no relist: the watch resumed where it stopped
        assert sorted(j.metadata.name for j in informer.list()) == ["a", "b"]


# --- JobFlows -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("jobflow_crd")
async def test_jobflow_informer_status_merge_patch_and_delete(
    kube: KubeClient, namespace: str, kubectl: Any, clock: SystemClock
) -> None:
    flows = JobFlowClient(kube)
    informer = JobFlowInformer(flows, clock=clock, namespaces=[namespace])
    seen = Seen(informer)
    key = f"{namespace}/f"
    async with running(informer):
        kubectl("apply", "-f", "-", input=flow_manifest("f", namespace))
        await seen.until(lambda: seen.of("f") == ["add"])
        raw = await flows.get(namespace, "f")
        rv, uid = raw["metadata"]["resourceVersion"], raw["metadata"]["uid"]

        new_rv = await flows.patch_status(
            namespace, "f", jsonpatch.status_ops(NEW, JobFlowStatus(phase="Running", message="started"), rv)
        )
        patched = await flows.get(namespace, "f")
        assert new_rv == patched["metadata"]["resourceVersion"] != rv
        assert patched["status"]["phase"] == "Running"
        assert patched["spec"]["steps"] == [{"name": "gate", "type": "Manual"}]  # merge, not replace
        await seen.until(lambda: (f := informer.get(key)) is not None and f.status.phase == "Running")

        with pytest.raises(Conflict):  # a status computed from a stale read is refused
            await flows.patch_status(
                namespace, "f", jsonpatch.status_ops(NEW, JobFlowStatus(phase="Failed"), rv)
            )
        with pytest.raises(Conflict):
            await flows.delete(namespace, "f", uid="00000000-0000-0000-0000-000000000000")
        await flows.delete(namespace, "f", uid=uid)
        await seen.until(lambda: seen.of("f") == ["add", "update", "delete"])
        assert informer.get(key) is None
        with pytest.raises(NotFound):
            await flows.get(namespace, "f")


@pytest.mark.usefixtures("jobflow_crd")
async def test_our_own_status_write_is_recognised_as_the_apiserver_sends_it(
    kube: KubeClient,
    relayed: KubeClient,
    relay: Relay,
    namespace: str,
    kubectl: Any,
    clock: SystemClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The apiserver's own bytes: its answer and its watch event are read from their front (member order
    as it writes them, the metadata's end found without parsing managedFields, whatever the labels say),
    and the flow cached without decoding the event is the flow it stores. The watch goes through the
    relay, held while we write: its event comes after the answer (either may come first)."""

    def parsed_head(raw: bytes, start: int) -> None:
        raise AssertionError(f"the apiserver's metadata was parsed: {raw[start : start + 300]!r}")

    monkeypatch.setattr(object_head_module, "_parsed_head", parsed_head)
    flows = JobFlowClient(kube)
    informer = JobFlowInformer(JobFlowClient(relayed), clock=clock, namespaces=[namespace])
    seen = Seen(informer)
    key = f"{namespace}/f"
    manifest = json.loads(flow_manifest("f", namespace))
    manifest["spec"]["steps"] = [{"name": n, "type": "Manual"} for n in ("a", "b", "c")]
    # Labels named like the metadata's last members, which the apiserver writes before them.
    manifest["metadata"]["labels"] = {"namespace": "x", "resourceVersion": "1", "uid": "not-mine"}
    async with running(informer):
        kubectl("apply", "-f", "-", input=json.dumps(manifest))
        await seen.until(lambda: seen.of("f") == ["add"])
        flow = informer.get(key)
        assert flow is not None
        started = JobFlowStatus.model_validate(
            {"phase": "Running", "steps": [{"name": n, "phase": "Pending"} for n in ("a", "b", "c")]}
        )
        ops = jsonpatch.status_ops(flow.status, started, flow.metadata.resource_version)
        rv = await flows.patch_status(namespace, "f", ops)  # the whole status: not recognisable
        informer.expect_status(flow, rv, ops)
        await seen.until(lambda: (f := informer.get(key)) is not None and f.metadata.resource_version == rv)
        assert informer.recognised == 0

        flow = informer.get(key)
        assert flow is not None
        waiting = dataclasses.replace(flow.status.steps[1], phase="PendingApproval", message="approve me")
        update = {"steps": (flow.status.steps[0], waiting, flow.status.steps[2]), "message": "1/3"}
        ops = jsonpatch.status_ops(flow.status, flow.status.model_copy(update=update), rv)
        relay.flowing.clear()
        rv = await flows.patch_status(namespace, "f", ops)
        informer.expect_status(flow, rv, ops)
        relay.flowing.set()
        await seen.until(lambda: (f := informer.get(key)) is not None and f.metadata.resource_version == rv)
        assert informer.recognised == 1
        cached = informer.get(key)
        assert cached == JobFlow.model_validate(await flows.get(namespace, "f"))
        assert cached is not None
        assert cached.status.steps[1].message == "approve me"


@pytest.mark.usefixtures("jobflow_crd")
async def test_watch_expired_relists_and_reports_deletions_made_meanwhile(
    relayed: KubeClient,
    relay: Relay,
    namespace: str,
    kubectl: Any,
    clock: SystemClock,
) -> None:
    # Pages of one flow: the relist after the 410 goes through continue tokens at "not older than" an
    # RV, as it does at 100 a page for a namespace of many flows.
    source = Recording(JobFlowClient(relayed, page_size=1))
    informer = JobFlowInformer(source, clock=clock, namespaces=[namespace])
    seen = Seen(informer)
    async with running(informer):
        for name in ("keep", "gone"):
            kubectl("apply", "-f", "-", input=flow_manifest(name, namespace))
        await seen.until(lambda: seen.of("keep") == ["add"] and seen.of("gone") == ["add"])
        last_known = informer.get(f"{namespace}/gone")
        assert last_known is not None

        relay.blocked = True
        relay.cut()
        kubectl("delete", "jobflow", "gone", "-n", namespace)
        kubectl("apply", "-f", "-", input=flow_manifest("new", namespace))
        # Pretend we last saw RV 1: older than anything the apiserver's watch cache for JobFlows holds
        # (it starts at the CRD's creation), so the next watch is answered 410 Expired.
        informer.reflectors[0].resource_version = "1"
        relay.blocked = False

        await seen.until(lambda: seen.of("gone") == ["add", "delete"] and seen.of("new") == ["add"])
        assert source.lists[:2] == ["", "1"]  # relisted from the last RV after the 410
        tombstone = next(e for e in seen.events if e[:2] == ("delete", "gone"))
        assert tombstone[2] == last_known.metadata.resource_version  # the last state we knew
        assert sorted(f.metadata.name for f in informer.list()) == ["keep", "new"]
        assert int(informer.resource_version) > 1


@pytest.mark.usefixtures("jobflow_crd")
async def test_events_are_recorded_on_the_flow(
    kube: KubeClient, namespace: str, kubectl: Any, clock: SystemClock
) -> None:
    kubectl("apply", "-f", "-", input=flow_manifest("f", namespace))
    flow = JobFlow.model_validate(await JobFlowClient(kube).get(namespace, "f"))
    recorder = EventRecorder(kube, clock=clock, instance="test")
    await recorder.record(flow, "Normal", "StepStarted", "step gate")
    await recorder.record(flow, "Warning", "StatusRejected", "too large")
    await recorder.record(flow, "Warning", "StatusRejected", "too large")  # folded into the one before
    events = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    assert sorted((e["reason"], e["involvedObject"]["uid"], e["count"]) for e in events) == [
        ("StatusRejected", flow.metadata.uid, 2),
        ("StepStarted", flow.metadata.uid, 1),
    ]
    described = kubectl("describe", "jobflow", "f", "-n", namespace).stdout
    assert "(x2 over" in described  # how kubectl shows a count


async def test_lease_store_against_the_apiserver(
    kube: KubeClient, namespace: str, clock: SystemClock
) -> None:
    leases = LeaseClient(kube)
    assert await leases.get("zen-flow", namespace) is None
    now = clock.now()
    created = await leases.create(
        LeaseRecord(
            name="zen-flow", namespace=namespace, holder_identity="a", acquire_time=now, renew_time=now
        )
    )
    assert created.resource_version
    assert created.renew_time == now  # MicroTime keeps the microseconds
    with pytest.raises(ConflictError):
        await leases.create(created)

    renewed = await leases.update(dataclasses.replace(created, holder_identity="b", lease_transitions=1))
    assert (renewed.holder_identity, renewed.lease_transitions) == ("b", 1)
    with pytest.raises(ConflictError):  # written since `created` was read
        await leases.update(created)
    assert await leases.get("zen-flow", namespace) == renewed


async def test_reflector_options_are_respected_by_the_apiserver(
    kube: KubeClient, namespace: str, clock: SystemClock
) -> None:
    """A watch the server ends after its timeout is reopened from the same RV without a relist."""
    source = Recording(JobClient(kube))
    options = ReflectorOptions(min_watch_timeout=1, max_watch_timeout=1, short_watch=0.0)
    informer = JobInformer(source, clock=clock, namespaces=[namespace], options=options)
    seen = Seen(informer)
    async with running(informer):
        await source.until(lambda: len([c for c in source.calls if c[0] == "watch"]) >= 3)
        await JobClient(kube).create(namespace, job_body("late"))
        await seen.until(lambda: seen.of("late") == ["add"])
        assert source.lists == [""]
