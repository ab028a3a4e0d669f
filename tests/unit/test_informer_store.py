"""The informer without a cluster: the store, transforms, and the reflector loop against a scripted source."""

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
from zen_flow.informer import (
    Backoff,
    JobFlowInformer,
    JobInformer,
    ReflectorOptions,
    Store,
    owner_flow_key,
)
from zen_flow.kube import Decoder, Expired, ListResult, TransportError, WatchEvent
from zen_flow.kube.streams import decode_event, decode_page
from zen_flow_dev.testing.clock import FakeClock, settle

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


# --- store ----------------------------------------------------------------------------------------


def owner_index(obj: Job) -> list[str]:
    ref = obj.metadata.controller_ref()
    return [ref.uid] if ref else []


def test_replace_reports_adds_updates_and_tombstones_with_last_known_state() -> None:
    store: Store[Job] = Store()
    store.upsert(job("a", rv="1"))
    store.upsert(job("b", rv="2"))

    result = store.replace([job("a", rv="5"), job("c", rv="6")])

    assert [j.metadata.name for j in result.added] == ["c"]
    assert [
        (old.metadata.resource_version, new.metadata.resource_version) for old, new in result.updated
    ] == [("1", "5")]
    # b vanished while we were not watching: the handler gets the last state we knew.
    assert [(j.metadata.name, j.metadata.resource_version) for j in result.deleted] == [("b", "2")]
    assert sorted(store.keys()) == ["ns/a", "ns/c"]


def test_namespaced_replace_leaves_other_namespaces_alone() -> None:
    store: Store[Job] = Store()
    store.upsert(job("a", ns="one"))
    store.upsert(job("b", ns="two"))

    result = store.replace([], namespace="one")

    assert [j.metadata.key for j in result.deleted] == ["one/a"]
    assert store.keys() == ["two/b"]


def test_owner_index_follows_updates_and_deletes() -> None:
    store: Store[Job] = Store({"owner": owner_index})
    store.upsert(job("a", owner_uid="u1"))
    store.upsert(job("b", owner_uid="u1"))
    store.upsert(job("orphan", owner_uid=None))
    assert sorted(j.metadata.name for j in store.by_index("owner", "u1")) == ["a", "b"]

    store.upsert(job("b", owner_uid="u2"))  # re-owned
    store.delete("ns/a")

    assert store.by_index("owner", "u1") == []
    assert [j.metadata.name for j in store.by_index("owner", "u2")] == ["b"]


def test_job_transform_keeps_no_pod_template_or_managed_fields() -> None:
    cached = JOB.validate_python(job_raw("a"))
    wire = JOB.dump_python(cached, by_alias=True)
    assert "spec" not in wire  # reconcile reads no Job spec field
    assert "managedFields" not in wire["metadata"]
    assert "labels" not in wire["metadata"]  # nor labels (the owner reference names the flow)
    assert not hasattr(cached, "__dict__")  # a slotted record: no dict per cached Job


def test_owner_flow_key_only_for_jobflow_controllers() -> None:
    assert owner_flow_key(job("a")) == "ns/flow"
    assert owner_flow_key(job("b", owner_uid=None)) is None
    raw = job_raw("c")
    raw["metadata"]["ownerReferences"][0]["kind"] = "CronJob"
    raw["metadata"]["ownerReferences"][0]["apiVersion"] = "batch/v1"
    assert owner_flow_key(JOB.validate_python(raw)) is None


def test_backoff_doubles_to_the_cap_and_resets_after_a_quiet_period() -> None:
    clock = FakeClock()
    backoff = Backoff(ReflectorOptions(backoff_jitter=0.0), clock, random.Random(0))
    assert [backoff.next() for _ in range(8)] == [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0]
    clock.jump(121)
    assert backoff.next() == 0.8


def test_backoff_jitter_stays_within_bounds() -> None:
    backoff = Backoff(ReflectorOptions(), FakeClock(), random.Random(1))
    first = backoff.next()
    assert 0.8 <= first <= 1.6


def test_backoff_keeps_its_jitter_at_the_cap() -> None:
    """client-go jitters the capped delay too (30-60 s), so replicas that lost the apiserver together
    do not all come back at the same instant."""
    backoff = Backoff(ReflectorOptions(), FakeClock(), random.Random(7))
    for _ in range(6):
        backoff.next()
    at_cap = [backoff.next() for _ in range(50)]
    assert all(30.0 <= d <= 60.0 for d in at_cap)
    assert max(at_cap) - min(at_cap) > 10.0  # spread, not a constant


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


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def recorder() -> Recorder:
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


async def test_list_then_watch_delivers_changes_in_order(clock: FakeClock, recorder: Recorder) -> None:
    source = FakeSource(ListResult(items=(job_raw("a", rv="9"),), resource_version="10"))
    informer = job_informer(source, clock, recorder)
    async with running(informer):
        await informer.wait_synced()
        stream = await source.next_stream()
        assert stream.resource_version == "10"
        stream.push(
            event("ADDED", job_raw("b", rv="11")),
            event("MODIFIED", job_raw("a", rv="12")),
            event("DELETED", job_raw("b", rv="13")),
            bookmark("20"),
        )
        await settle()

        assert recorder.seen == [
            ("add", "a", "9"),
            ("add", "b", "11"),
            ("update", "a", "12"),
            ("delete", "b", "13"),
        ]
        assert informer.has_synced
        assert informer.resource_version == "20"
        assert [j.metadata.name for j in informer.jobs_for("u1")] == ["a"]


async def test_expired_watch_relists_from_last_rv_and_reports_deletions_as_tombstones(
    clock: FakeClock, recorder: Recorder
) -> None:
    source = FakeSource(
        ListResult(items=(job_raw("a", rv="5"), job_raw("b", rv="6")), resource_version="10"),
        ListResult(items=(job_raw("a", rv="25"),), resource_version="30"),
    )
    informer = job_informer(source, clock, recorder)
    async with running(informer):
        stream = await source.next_stream()
        stream.push(
            event("MODIFIED", job_raw("a", rv="12")), Expired(410, "Expired", "too old resource version")
        )
        second = await source.next_stream()

        assert stream.closed
        assert source.calls == [("list", ""), ("watch", "10"), ("list", "12"), ("watch", "30")]
        assert second.resource_version == "30"
        assert recorder.seen[-2:] == [("update", "a", "25"), ("delete", "b", "6")]
        assert informer.get("ns/b") is None


async def test_repeated_expiry_without_events_backs_off_before_relisting(
    clock: FakeClock, recorder: Recorder
) -> None:
    source = FakeSource(*(ListResult(items=(), resource_version=rv) for rv in ("10", "20", "30")))
    informer = job_informer(source, clock, recorder)
    async with running(informer):
        (await source.next_stream()).push(Expired(410, "Expired", "too old"))
        (await source.next_stream()).push(Expired(410, "Expired", "too old"))  # again, nothing in between
        await settle()
        assert source.calls[-1] == ("watch", "20")  # waiting, not relisting in a tight loop
        await clock.advance(1.6)
        assert (await source.next_stream()).resource_version == "30"


async def test_list_at_an_expired_rv_falls_back_to_a_consistent_list(
    clock: FakeClock, recorder: Recorder
) -> None:
    source = FakeSource(
        ListResult(items=(), resource_version="10"),
        Expired(410, "Expired", "too old"),
        ListResult(items=(), resource_version="40"),
    )
    informer = job_informer(source, clock, recorder)
    async with running(informer):
        (await source.next_stream()).push(Expired(410, "Expired", "too old"))
        stream = await source.next_stream()
        assert source.calls == [("list", ""), ("watch", "10"), ("list", "10"), ("list", ""), ("watch", "40")]
        assert stream.resource_version == "40"


async def test_normal_watch_end_rewatches_from_the_last_rv_without_relisting(
    clock: FakeClock, recorder: Recorder
) -> None:
    source = FakeSource(ListResult(items=(), resource_version="10"))
    informer = job_informer(source, clock, recorder)
    async with running(informer):
        (await source.next_stream()).push(event("ADDED", job_raw("a", rv="11")), bookmark("15"), END)
        stream = await source.next_stream()
        assert stream.resource_version == "15"
        assert [c for c in source.calls if c[0] == "list"] == [("list", "")]


async def test_a_watch_the_server_ends_early_is_counted_and_resumed(
    clock: FakeClock, recorder: Recorder
) -> None:
    # What the apiserver does to a client that reads too slowly: it ends the watch long before the
    # timeout the client asked for (300-600 s here). The informer resumes from where it was and counts it.
    source = FakeSource(ListResult(items=(), resource_version="10"))
    informer = JobInformer(source, clock=clock, options=ReflectorOptions(inactivity_timeout=10_000))
    async with running(informer):
        first = await source.next_stream()
        await clock.advance(200)
        first.push(event("ADDED", job_raw("a", rv="11")), END)
        assert (await source.next_stream()).resource_version == "11"
        assert informer.closed_early == 1
        assert [c for c in source.calls if c[0] == "list"] == [("list", "")]  # no relist


async def test_a_watch_that_ran_its_course_is_not_counted_as_closed_early(clock: FakeClock) -> None:
    source = FakeSource(ListResult(items=(), resource_version="10"))
    informer = JobInformer(source, clock=clock, options=ReflectorOptions(inactivity_timeout=10_000))
    async with running(informer):
        first = await source.next_stream()
        await clock.advance(600)
        first.push(bookmark("12"), END)
        await source.next_stream()
        assert informer.closed_early == 0


async def test_connection_error_backs_off_then_rewatches(clock: FakeClock, recorder: Recorder) -> None:
    source = FakeSource(ListResult(items=(), resource_version="10"))
    informer = job_informer(source, clock, recorder)
    async with running(informer):
        (await source.next_stream()).push(TransportError("connection reset"))
        await settle()
        assert source.streams.empty()  # waiting out the backoff, not hammering the apiserver
        await clock.advance(1.6)  # 0.8 s with at most 100 % jitter
        stream = await source.next_stream()
        assert stream.resource_version == "10"


async def test_a_watch_that_closes_at_once_without_events_counts_as_a_failure(
    clock: FakeClock, recorder: Recorder
) -> None:
    source = FakeSource(ListResult(items=(), resource_version="10"))
    informer = job_informer(source, clock, recorder)
    async with running(informer):
        (await source.next_stream()).push(END)
        await settle()
        assert source.streams.empty()
        await clock.advance(1.6)
        await source.next_stream()


async def test_silent_watch_is_dropped_by_the_watchdog_and_reopened(clock: FakeClock) -> None:
    source = FakeSource(ListResult(items=(), resource_version="10"))
    informer = JobInformer(source, clock=clock, options=ReflectorOptions(inactivity_timeout=90))
    async with running(informer):
        first = await source.next_stream()
        await clock.advance(60)
        first.push(bookmark("12"))  # activity re-arms the watchdog
        await clock.advance(60)
        assert not first.closed
        await clock.advance(31)
        second = await source.next_stream()
        assert first.closed
        assert second.resource_version == "12"


async def test_progress_stamp_moves_on_bookmarks(clock: FakeClock, recorder: Recorder) -> None:
    source = FakeSource(ListResult(items=(), resource_version="10"))
    informer = job_informer(source, clock, recorder)
    async with running(informer):
        stream = await source.next_stream()
        listed_at = informer.last_progress
        await clock.advance(30)
        stream.push(bookmark("11"))
        await settle()
        assert informer.last_progress == listed_at + 30


async def test_watches_that_fail_before_delivering_are_no_progress(
    clock: FakeClock, recorder: Recorder
) -> None:
    # A proxy cutting every stream after its headers: the cache stands still, and liveness must see it.
    source = FakeSource(ListResult(items=(), resource_version="10"))
    informer = job_informer(source, clock, recorder)
    async with running(informer):
        stream = await source.next_stream()
        listed_at = informer.last_progress
        for _ in range(3):
            await clock.advance(60)
            stream.push(TransportError("watch stream: ClientPayloadError: Response payload is not completed"))
            await settle()
            await clock.advance(120)  # past any backoff
            await settle()
            while not source.streams.empty():  # the newest watch opened
                stream = source.streams.get_nowait()
        assert not stream.closed
        assert len(source.calls) > 4  # it kept reconnecting...
        assert informer.last_progress == listed_at  # ...and nothing came through
        stream.push(bookmark("11"))
        await settle()
        assert informer.last_progress > listed_at


async def test_handler_bug_ends_the_informer(clock: FakeClock) -> None:
    source = FakeSource(ListResult(items=(job_raw("a"),), resource_version="10"))
    informer = JobInformer(source, clock=clock)

    def broken(obj: Job) -> None:
        raise RuntimeError("bug")

    informer.add_handler(on_add=broken)
    with pytest.raises(ExceptionGroup) as info:
        async with asyncio.timeout(5):
            await informer.run()
    assert info.group_contains(RuntimeError, match="bug")


async def test_late_handler_is_told_about_cached_objects(clock: FakeClock, recorder: Recorder) -> None:
    source = FakeSource(ListResult(items=(job_raw("a", rv="3"),), resource_version="10"))
    informer = JobInformer(source, clock=clock)
    async with running(informer):
        await informer.wait_synced()
        informer.add_handler(on_add=recorder.add)
        assert recorder.seen == [("add", "a", "3")]


async def test_unparseable_jobflow_is_cached_as_a_placeholder_with_its_error(
    clock: FakeClock, recorder: Recorder
) -> None:
    broken = flow_raw("bad", rv="5", spec={"steps": "not-a-list"})
    source = FakeSource(ListResult(items=(broken, flow_raw("good")), resource_version="10"))
    informer = JobFlowInformer(source, clock=clock)
    informer.add_handler(on_add=recorder.add, on_update=recorder.update)
    async with running(informer):
        stream = await source.next_stream()
        placeholder = informer.get("ns/bad")
        assert placeholder is not None
        assert placeholder.metadata.uid == "uid-bad"
        assert placeholder.status.phase == "Running"  # what still parses is kept
        error = informer.parse_error("ns/bad")
        assert error is not None
        assert "spec.steps" in error
        assert informer.parse_error("ns/good") is None

        stream.push(event("MODIFIED", flow_raw("bad", rv="11")))  # the user fixed it
        await settle()
        assert informer.parse_error("ns/bad") is None
        fixed = informer.get("ns/bad")
        assert fixed is not None
        assert [s.name for s in fixed.spec.steps] == ["a"]
        assert ("update", "bad", "11") in recorder.seen


async def test_one_reflector_per_namespace_each_replacing_only_its_own(clock: FakeClock) -> None:
    class PerNamespace(FakeSource):
        def __init__(self) -> None:
            super().__init__()
            self.by_namespace = {
                "one": [
                    ListResult(items=(job_raw("a", ns="one"),), resource_version="10"),
                    ListResult((), "20"),
                ],
                "two": [ListResult(items=(job_raw("b", ns="two"),), resource_version="11")],
            }

        async def list(
            self, namespace: str | None, resource_version: str = "", decoder: Decoder | None = None
        ) -> ListResult:
            assert namespace is not None
            self.calls.append(("list", namespace))
            return decoded(self.by_namespace[namespace].pop(0), decoder)

    source = PerNamespace()
    informer = JobInformer(source, clock=clock, namespaces=["one", "two"])
    async with running(informer):
        await informer.wait_synced()
        assert sorted(j.metadata.key for j in informer.list()) == ["one/a", "two/b"]
        streams = {s.namespace: s for s in [await source.next_stream(), await source.next_stream()]}
        streams["one"].push(Expired(410, "Expired", "too old"))  # namespace one relists: a is gone
        await source.next_stream()
        assert [j.metadata.key for j in informer.list()] == ["two/b"]
        assert sorted(c for c in source.calls if c[0] == "list") == [
            ("list", "one"),
            ("list", "one"),
            ("list", "two"),
        ]


COMPLETE = {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}


async def test_a_finished_job_deleted_at_once_still_counts_for_its_flow_a_while(
    clock: FakeClock, recorder: Recorder
) -> None:
    # ttlSecondsAfterFinished: 0: the Job is gone moments after it completed. When both events are read
    # before the flow's reconcile, its plan must still find the outcome, not "deleted outside zen-flow".
    source = FakeSource(ListResult(items=(job_raw("done"), job_raw("running")), resource_version="10"))
    informer = job_informer(source, clock, recorder)
    async with running(informer):
        await informer.wait_synced()
        stream = await source.next_stream()
        stream.push(
            event("MODIFIED", job_raw("done", rv="11", status=COMPLETE)),
            event("DELETED", job_raw("done", rv="12", status=COMPLETE)),
            event("DELETED", job_raw("running", rv="13")),  # deleted unfinished: not its flow's result
        )
        await settle()
        [kept] = informer.jobs_for("u1")
        assert (kept.metadata.name, kept.complete) == ("done", True)
        assert informer.get("ns/done") is None  # gone from the cache itself

        stream.push(event("ADDED", job_raw("done", rv="14")))  # created again: the live one counts
        await settle()
        [live] = informer.jobs_for("u1")
        assert (live.metadata.resource_version, live.complete) == ("14", False)

        stream.push(event("DELETED", job_raw("done", rv="15", status=COMPLETE)))
        await settle()
        assert [j.metadata.name for j in informer.jobs_for("u1")] == ["done"]
        clock.jump(301)  # remembered five minutes
        assert informer.jobs_for("u1") == []


def test_the_jobs_of_a_deleted_flow_leave_no_tombstones() -> None:
    # The garbage collector deletes a deleted flow's Jobs: no flow waits for their results, and 2,000
    # of them would push out the tombstones that matter.
    flows = JobFlowInformer(None, clock=FakeClock())  # type: ignore[arg-type]
    flows.store.replace([JobFlow.model_validate(flow_raw("flow"))])
    done = JOB.validate_python(job_raw("done", owner_uid="uid-flow", status=COMPLETE))
    orphan = JOB.validate_python(job_raw("orphan", owner_uid="u2", status=COMPLETE))  # a flow gone since
    assert (flows.owns(done), flows.owns(orphan)) == (True, False)
    jobs = JobInformer(None, clock=FakeClock(), owner_alive=flows.owns)  # type: ignore[arg-type]
    jobs.gone.remember(done)
    jobs.gone.remember(orphan)
    assert len(jobs.gone) == 1
    assert [j.metadata.name for j in jobs.jobs_for("uid-flow")] == ["done"]


async def test_a_finished_job_the_controller_deleted_as_a_stray_leaves_no_tombstone(
    clock: FakeClock, recorder: Recorder
) -> None:
    # An ended flow's finished stray (an abandoned rerun's Job) is deleted by the controller itself: were
    # it kept as a tombstone, the next plans would delete it again on every wake-up for five minutes, and
    # a rerun meanwhile would take its old outcome over instead of running the step.
    source = FakeSource(ListResult(items=(job_raw("stray"), job_raw("other")), resource_version="10"))
    informer = job_informer(source, clock, recorder)
    async with running(informer):
        await informer.wait_synced()
        stream = await source.next_stream()
        informer.deleted_stray("ns/stray")  # before its delete goes out: the event may come first
        stream.push(
            event("DELETED", job_raw("stray", rv="11", status=COMPLETE)),
            event("DELETED", job_raw("other", rv="12", status=COMPLETE)),  # a Job TTL's delete: kept
        )
        await settle()
        assert [j.metadata.name for j in informer.jobs_for("u1")] == ["other"]

        stream.push(event("ADDED", job_raw("stray", rv="13")))  # a later Job of that name: kept as ever
        await settle()
        stream.push(event("DELETED", job_raw("stray", rv="14", status=COMPLETE)))
        await settle()
        assert [j.metadata.name for j in informer.jobs_for("u1")] == ["other", "stray"]

        informer.deleted_stray("ns/stray")  # a delete that found it gone already: its tombstone goes too
        assert [j.metadata.name for j in informer.jobs_for("u1")] == ["other"]
