"""The informer's reflector loop against a scripted source (informer_rig): list then watch, relists,
backoff, the watchdog, progress, handlers and one reflector per namespace."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest
from informer_rig import (
    END,
    FakeSource,
    Recorder,
    bookmark,
    decoded,
    event,
    flow_raw,
    job_informer,
    job_raw,
    running,
)
from informer_rig import clock_fixture as clock_fixture  # the `clock` fixture
from informer_rig import recorder_fixture as recorder_fixture  # the `recorder` fixture

from zen_flow.api import Job
from zen_flow.informer import Backoff, JobFlowInformer, JobInformer, ReflectorOptions
from zen_flow.informer.cronjobflows import CronJobFlowInformer
from zen_flow.kube import Decoder, Expired, ListResult, TransportError
from zen_flow_dev.testing.clock import FakeClock, settle


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


def cron_raw(name: str, *, rv: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "CronJobFlow",
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": rv},
        "spec": {"schedule": "@daily", "jobFlowTemplate": {"spec": {"steps": [{"name": "a"}]}}},
    }


@pytest.mark.parametrize(
    ("informer_type", "raw"),
    [(JobFlowInformer, flow_raw), (CronJobFlowInformer, cron_raw), (JobInformer, job_raw)],
)
async def test_an_object_recreated_under_its_name_while_the_watch_was_away_is_told_deleted_then_added(
    clock: FakeClock,
    recorder: Recorder,
    informer_type: type[JobFlowInformer | CronJobFlowInformer | JobInformer],
    raw: Callable[..., dict[str, Any]],
) -> None:
    # A nightly flow deleted and made again under its name during a watch gap: the relist finds another
    # object (UID) under the key. Told as an update, the handlers that forget an object on its delete
    # (the controller's state of a flow, a CronJobFlow's verdicts and timer) kept the old one's for ever.
    again = raw("nightly", rv="25")
    again["metadata"]["uid"] = "uid-nightly-again"
    source = FakeSource(
        ListResult(items=(raw("nightly", rv="5"), raw("other", rv="6")), resource_version="10"),
        ListResult(items=(again, raw("other", rv="26")), resource_version="30"),
    )
    informer = informer_type(source, clock=clock, rng=random.Random(0))
    uids: list[tuple[str, str]] = []
    informer.add_handler(
        on_add=lambda o: uids.append(("add", o.metadata.uid)),
        on_update=lambda _, o: uids.append(("update", o.metadata.uid)),
        on_delete=lambda o: uids.append(("delete", o.metadata.uid)),
    )
    async with running(informer):
        stream = await source.next_stream()
        stream.push(Expired(410, "Expired", "too old resource version"))
        await source.next_stream()
    assert uids == [
        ("add", "uid-nightly"),
        ("add", "uid-other"),
        ("delete", "uid-nightly"),  # the old one first: its key is the new one's
        ("add", "uid-nightly-again"),
        ("update", "uid-other"),  # the same object: an update, as before
    ]
