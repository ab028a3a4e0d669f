"""Controller: with `--archive-logs` each finished attempt's pod logs land in the archive store, the flow's
record lists them (written, cut, or unavailable and why), and the TTL deletion waits for them as it waits
for the record; a pod already gone is recorded so and holds nothing back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from structlog.testing import capture_logs

from zen_flow.api import JobFlow
from zen_flow.api.constants import ANNOTATION_ARCHIVE_LOGS
from zen_flow.controller.archiver import Archiver
from zen_flow.controller.log_archiver import LogArchiver
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.reconciler import Controller
from zen_flow.core.naming import job_name
from zen_flow.kube.errors import BadRequest, Forbidden, TransportError
from zen_flow.kube.pods import JobPod
from zen_flow.machinery.expectations import Expectations
from zen_flow.machinery.workqueue import WorkQueue
from zen_flow.planner.archive_logs import TRUNCATED_MARK
from zen_flow.s3 import Listed, StoreError
from zen_flow_dev.testing.apiserver_fake import FakeApiServer
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, job_template, make_flow

NS = "team-a"
KEY = f"{NS}/nightly"


class Store:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.down: str = ""
        self.logs_down: str = ""  # only the logs' writes fail

    async def put(self, key: str, body: bytes, content_type: str = "application/json") -> None:
        if self.logs_down and key.endswith(".log"):
            raise StoreError(self.logs_down)
        if self.down:
            raise StoreError(self.down)
        self.objects[key] = body

    async def pages(self, prefix: str) -> AsyncIterator[list[Listed]]:
        yield [Listed(k, len(v), "") for k, v in sorted(self.objects.items()) if k.startswith(prefix)]


class Pods:
    """The Jobs' pods: one pod a Job with containers `main` and `sidecar`, unless `gone`."""

    def __init__(self) -> None:
        self.gone = False
        self.broken: str = ""  # the apiserver cannot read logs (a container that never started)
        self.text = b"hello\nworld\n"
        self.reads: list[tuple[str, str, int]] = []
        self.timeouts: list[float | None] = []  # each read's bound (None: the reader's own, 60 s)

    async def job_pods(self, namespace: str, job: str, job_uid: str) -> list[JobPod]:
        return [] if self.gone else [JobPod(f"{job}-abcde", ("main", "sidecar"))]

    async def log(
        self, namespace: str, pod: str, container: str, limit: int, timeout: float | None = None
    ) -> bytes:
        self.reads.append((pod, container, limit))
        self.timeouts.append(timeout)
        if self.broken:
            raise BadRequest(400, "BadRequest", self.broken)
        return (container.encode() + b": " + self.text)[:limit]


def rig(
    clock: FakeClock,
    *,
    limit: int = 1024,
    mode: str = "on",
    restarted: tuple[FakeApiServer, Store, Pods] | None = None,
) -> tuple[FakeApiServer, Controller, Archiver, Store, Pods, Metrics]:
    """A controller with the log archive; `restarted`: a new one (its memory empty) on the same cluster."""
    api, store, pods = restarted or (FakeApiServer(clock), Store(), Pods())
    metrics = Metrics()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    logs = LogArchiver(
        store=store, prefix="jobflows/", pods=pods, flows=api, queue=queue, metrics=metrics, clock=clock,
        limit=limit, mode=mode, max_delay=3600.0,
    )  # fmt: skip
    metrics.archive_log_pending.set_function(lambda: logs.pending)  # as configured_archiver does
    archive = Archiver(
        store=store, bucket="b", prefix="jobflows/", api=api, flows=api, jobs=api, queue=queue,
        events=api, metrics=metrics, clock=clock, max_delay=3600.0, logs=logs,
    )  # fmt: skip
    ctrl = Controller(
        flows=api, jobs=api, api=api, queue=queue, expectations=Expectations(clock), events=api,
        clock=clock, metrics=metrics, archive=archive,
    )  # fmt: skip
    api.on_flow, api.on_flow_deleted, api.on_job = ctrl.on_flow_event, ctrl.on_flow_deleted, ctrl.on_job_event
    return api, ctrl, archive, store, pods, metrics


async def end_flow(
    api: FakeApiServer, ctrl: Controller, annotations: dict[str, str] | None = None
) -> JobFlow:
    template = job_template()  # its pods' containers, as the Pods fake has them
    template["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "busybox"})
    flow = api.create_flow(
        make_flow(
            [job_step("s0", template=template)],
            name="nightly",
            namespace=NS,
            execution_policy={"ttlSecondsAfterFinished": 60},
            annotations=annotations,
        )
    )
    api.sync()
    await ctrl.reconcile(KEY)
    api.sync()
    (job,) = [name for (_, name) in api.jobs]
    api.finish_job(NS, job)
    api.sync()
    await ctrl.reconcile(KEY)
    api.sync()
    return flow


def record(store: Store) -> dict[str, Any]:
    (key,) = [k for k in store.objects if k.endswith(".json")]
    loaded: dict[str, Any] = json.loads(store.objects[key])
    return loaded


def count(metrics: Metrics, result: str) -> float:
    return metrics.registry.get_sample_value("zen_flow_archive_log_writes_total", {"result": result}) or 0.0


async def settle(ctrl: Controller, clock: FakeClock, api: FakeApiServer) -> None:
    for _ in range(3):
        await ctrl.reconcile(KEY)
        await clock.advance(0)
        api.sync()


async def test_each_containers_log_is_archived_and_the_record_says_where() -> None:
    clock = FakeClock()
    api, ctrl, archive, store, pods, metrics = rig(clock)
    writers = asyncio.create_task(archive.run())
    try:
        flow = await end_flow(api, ctrl)
        await settle(ctrl, clock, api)
        (job,) = [name for (_, name) in api.jobs]
        base = f"jobflows/~logs/{NS}/nightly/{flow.metadata.uid}/s0/1/{job}-abcde/"
        assert store.objects[base + "main.log"] == b"main: hello\nworld\n"
        assert store.objects[base + "sidecar.log"] == b"sidecar: hello\nworld\n"
        assert record(store)["logs"] == [
            {"job": job, "step": "s0", "attempt": 1, "pod": f"{job}-abcde", "container": c,
             "key": base + f"{c}.log", "bytes": len(c) + 14}
            for c in ("main", "sidecar")
        ]  # fmt: skip
        assert {limit for *_, limit in pods.reads} == {1025}  # one byte over: a longer log is known cut
        assert count(metrics, "written") == 2
        await clock.advance(61)
        await ctrl.reconcile(KEY)
        assert KEY not in api.flows  # the TTL went on once the logs and the record were written
    finally:
        writers.cancel()


async def test_a_log_over_the_limit_is_cut_and_says_so() -> None:
    clock = FakeClock()
    api, ctrl, archive, store, _pods, metrics = rig(clock, limit=8)
    writers = asyncio.create_task(archive.run())
    try:
        await end_flow(api, ctrl)
        await settle(ctrl, clock, api)
        (main,) = [body for key, body in store.objects.items() if key.endswith("/main.log")]
        assert main == b"main: he\n" + f"{TRUNCATED_MARK} 8 bytes are kept]\n".encode()
        assert all(e["truncated"] for e in record(store)["logs"])
        assert count(metrics, "truncated") == 2
    finally:
        writers.cancel()


async def test_pods_already_gone_or_unreadable_are_recorded_so_and_do_not_hold_the_ttl() -> None:
    for broken in (False, True):
        clock = FakeClock()
        api, ctrl, archive, store, pods, metrics = rig(clock)
        pods.gone, pods.broken = not broken, "container is waiting to start" if broken else ""
        writers = asyncio.create_task(archive.run())
        try:
            await end_flow(api, ctrl)
            await settle(ctrl, clock, api)
            entries = record(store)["logs"]
            assert entries
            assert all(e["unavailable"] for e in entries)
            if broken:
                assert "container is waiting to start" in entries[0]["unavailable"]
            else:
                assert entries[0]["unavailable"] == "no pod of the Job is left to read"
            assert not [k for k in store.objects if k.endswith(".log")]
            assert count(metrics, "unavailable") == len(entries)
            await clock.advance(61)
            await ctrl.reconcile(KEY)
            assert KEY not in api.flows
        finally:
            writers.cancel()


async def test_a_store_failing_for_the_logs_holds_the_ttl_until_they_are_written() -> None:
    clock = FakeClock()
    api, ctrl, archive, store, _, metrics = rig(clock)
    writers = asyncio.create_task(archive.run())
    try:
        store.logs_down = "cannot connect"
        await end_flow(api, ctrl)
        for _ in range(3):
            await settle(ctrl, clock, api)
            await clock.advance(40)
        assert KEY in api.flows  # the TTL (60 s) expired, but neither the logs nor the record are written
        assert count(metrics, "failed") >= 1
        assert not [k for k in store.objects if k.endswith(".json")]  # the record waits for the logs
        store.logs_down = ""
        await clock.advance(300)
        await settle(ctrl, clock, api)
        assert len([k for k in store.objects if k.endswith(".log")]) == 2
        assert "logs" in record(store)
        await ctrl.reconcile(KEY)
        assert KEY not in api.flows
    finally:
        writers.cancel()


async def test_the_operators_mode_decides_and_the_annotation_counts_only_in_opt_in_or_opt_out() -> None:
    cases = (
        ("off", "true", False),  # a tenant cannot make the controller read logs into the bucket
        ("on", "false", True),  # nor evade a compliance archive
        ("on", "", True),
        ("opt-in", "True", True),
        ("opt-in", "", False),
        ("opt-out", "false", False),
        ("opt-out", "", True),
    )
    for mode, value, wanted in cases:
        clock = FakeClock()
        api, ctrl, archive, store, pods, _ = rig(clock, mode=mode)
        writers = asyncio.create_task(archive.run())
        try:
            await end_flow(api, ctrl, {ANNOTATION_ARCHIVE_LOGS: value} if value else None)
            await settle(ctrl, clock, api)
            assert bool([k for k in store.objects if k.endswith(".log")]) == wanted, (mode, value)
            assert ("logs" in record(store)) == wanted
            assert bool(pods.reads) == wanted
        finally:
            writers.cancel()


async def test_a_superseded_attempts_job_is_deleted_only_once_its_logs_are_written() -> None:
    clock = FakeClock()
    api, ctrl, archive, store, _, metrics = rig(clock)
    writers = asyncio.create_task(archive.run())

    async def spin(rounds: int, step: float) -> None:
        for _ in range(rounds):
            if KEY in api.flows:
                await ctrl.reconcile(KEY)
            await clock.advance(0)
            api.sync()
            await clock.advance(step)

    try:
        store.logs_down = "HTTP 503 SlowDown"
        retries = {"limit": 1, "backoff": {"duration": "1s"}}
        api.create_flow(
            make_flow(
                [job_step("s0", retryPolicy=retries)],
                name="nightly",
                namespace=NS,
                execution_policy={"jobRetention": "LastAttempt"},
            )
        )
        api.sync()
        await spin(2, 0)
        first = job_name("nightly", "s0", 0)
        api.finish_job(NS, first, succeeded=False)
        api.sync()
        await spin(6, 2)
        assert (NS, job_name("nightly", "s0", 1)) in api.jobs  # the retry runs...
        assert (NS, first) in api.jobs  # ...and the attempt it superseded waits for its logs
        store.logs_down = ""
        await spin(4, 300)
        assert (NS, first) not in api.jobs
        assert any(f"/s0/1/{first}-abcde/main.log" in key for key in store.objects)
        assert count(metrics, "skipped") == 0
    finally:
        writers.cancel()


async def test_a_bug_reading_the_logs_is_a_failed_write_retried_not_a_dead_writer() -> None:
    clock = FakeClock()
    api, ctrl, archive, store, pods, metrics = rig(clock)
    real = pods.job_pods

    async def broken(namespace: str, job: str, job_uid: str) -> list[JobPod]:
        raise RuntimeError("a bug")

    pods.job_pods = broken  # type: ignore[method-assign]
    writers = asyncio.create_task(archive.run())
    try:
        await end_flow(api, ctrl)
        await settle(ctrl, clock, api)
        assert not writers.done()
        assert count(metrics, "failed") >= 1
        assert not store.objects
        pods.job_pods = real  # type: ignore[method-assign]
        await clock.advance(300)
        await settle(ctrl, clock, api)
        assert "logs" in record(store)
    finally:
        writers.cancel()


async def test_a_matrix_items_logs_are_filed_under_the_item_and_its_attempt() -> None:
    clock = FakeClock()
    api, ctrl, archive, store, _, _ = rig(clock)
    writers = asyncio.create_task(archive.run())
    try:
        matrix = {"parameters": [{"name": "os", "values": ["linux", "darwin"]}]}
        retries = {"limit": 1, "backoff": {"duration": "1s"}}
        flow = api.create_flow(
            make_flow(
                [job_step("build", matrix=matrix, retryPolicy=retries)],
                name="nightly",
                namespace=NS,
                execution_policy={"ttlSecondsAfterFinished": 60},
            )
        )
        api.sync()
        await settle(ctrl, clock, api)
        api.finish_job(NS, job_name("nightly", "build-0", 0), succeeded=False)
        api.finish_job(NS, job_name("nightly", "build-1", 0))
        api.sync()
        await settle(ctrl, clock, api)
        await clock.advance(2)
        await settle(ctrl, clock, api)
        api.finish_job(NS, job_name("nightly", "build-0", 1))
        api.sync()
        await settle(ctrl, clock, api)
        base = f"jobflows/~logs/{NS}/nightly/{flow.metadata.uid}/"
        assert sorted(k[len(base) :].rsplit("/", 2)[0] for k in store.objects if k.endswith("main.log")) == [
            "build-0/1",
            "build-0/2",
            "build-1/1",
        ]
        logged = {(e["step"], e["attempt"], e["job"]) for e in record(store)["logs"]}
        assert logged == {
            ("build-0", 1, job_name("nightly", "build-0", 0)),
            ("build-0", 2, job_name("nightly", "build-0", 1)),
            ("build-1", 1, job_name("nightly", "build-1", 0)),
        }
    finally:
        writers.cancel()


async def test_a_log_read_that_times_out_is_retried_and_given_up_on_only_after_the_max_delay() -> None:
    clock = FakeClock()
    api, ctrl, archive, store, pods, metrics = rig(clock)
    real = pods.log
    down = {"until": 1}  # reads failing: the first one only

    async def flaky(
        namespace: str, pod: str, container: str, limit: int, timeout: float | None = None
    ) -> bytes:
        if len(pods.reads) < down["until"]:
            pods.reads.append((pod, container, limit))
            raise TransportError(f"GET /api/v1/namespaces/{namespace}/pods/{pod}/log: timeout")
        return await real(namespace, pod, container, limit, timeout)

    pods.log = flaky  # type: ignore[method-assign]
    writers = asyncio.create_task(archive.run())
    try:
        await end_flow(api, ctrl)
        await settle(ctrl, clock, api)
        await clock.advance(10)
        await settle(ctrl, clock, api)
        assert count(metrics, "failed") == 1
        assert not any("unavailable" in e for e in record(store)["logs"])
        assert count(metrics, "written") == 2
        # The retry's reads are bounded short: a node that does not answer holds a read slot 10 s, not 60.
        assert pods.timeouts == [10.0, 10.0]
    finally:
        writers.cancel()

    clock = FakeClock()
    api, ctrl, archive, store, pods, metrics = rig(clock)
    pods.log = flaky  # type: ignore[method-assign]
    real, down["until"] = pods.log, 10**6  # a node that never answers
    writers = asyncio.create_task(archive.run())
    try:
        await end_flow(api, ctrl)
        for _ in range(20):
            await settle(ctrl, clock, api)
            await clock.advance(300)
        entries = record(store)["logs"]
        assert [e["container"] for e in entries] == ["main", "sidecar"]
        assert all("timeout" in e["unavailable"] for e in entries)
    finally:
        writers.cancel()


async def test_after_a_restart_an_attempt_with_no_pod_left_is_recorded_with_the_logs_in_the_store() -> None:
    clock = FakeClock()
    api, ctrl, archive, store, pods, _ = rig(clock)
    real_put = store.put

    async def logs_only(key: str, body: bytes, content_type: str = "application/json") -> None:
        if not key.endswith(".log"):
            raise StoreError("HTTP 503 SlowDown")
        await real_put(key, body, content_type)

    store.put = logs_only  # type: ignore[method-assign]
    writers = asyncio.create_task(archive.run())
    try:
        await end_flow(api, ctrl)
        await settle(ctrl, clock, api)
        written = sorted(k for k in store.objects if k.endswith(".log"))
        assert len(written) == 2  # the logs are written, the record is not
    finally:
        writers.cancel()
    # A new controller (what the old one wrote was only in its memory), the pods gone meanwhile.
    store.put = real_put  # type: ignore[method-assign]
    pods.gone = True
    api, ctrl, archive, store, pods, metrics = rig(clock, restarted=(api, store, pods))
    writers = asyncio.create_task(archive.run())
    try:
        await settle(ctrl, clock, api)
        entries = record(store)["logs"]
        assert sorted(e["key"] for e in entries) == written
        assert not any("unavailable" in e for e in entries)
        assert count(metrics, "unavailable") == 0
    finally:
        writers.cancel()


async def test_at_most_two_logs_are_read_at_once_and_the_pending_attempts_are_a_gauge() -> None:
    clock = FakeClock()
    api, ctrl, archive, store, pods, metrics = rig(clock)
    gate, reading = asyncio.Event(), {"now": 0, "peak": 0}
    real = pods.log

    async def held(
        namespace: str, pod: str, container: str, limit: int, timeout: float | None = None
    ) -> bytes:
        reading["now"] += 1
        reading["peak"] = max(reading["peak"], reading["now"])
        await gate.wait()
        reading["now"] -= 1
        return await real(namespace, pod, container, limit, timeout)

    pods.log = held  # type: ignore[method-assign]
    names = [f"f{n}" for n in range(8)]
    for name in names:
        api.create_flow(make_flow([job_step("s0")], name=name, namespace=NS))
    api.sync()
    for name in names:
        await ctrl.reconcile(f"{NS}/{name}")
    api.sync()
    for _, job in list(api.jobs):
        api.finish_job(NS, job)
    api.sync()
    writers = asyncio.create_task(archive.run())
    try:
        for _ in range(2):  # each ends: its logs and its record are due, for 2 log and 4 record writers
            for name in names:
                await ctrl.reconcile(f"{NS}/{name}")
            api.sync()
        for _ in range(100):  # every writer runs until it waits for a log (or for its turn to read one)
            await asyncio.sleep(0)
        assert reading["now"] == 2
        gauge = "zen_flow_archive_pending_log_writes"
        assert metrics.registry.get_sample_value(gauge) == 8
        gate.set()
        for _ in range(3):
            for name in names:
                await ctrl.reconcile(f"{NS}/{name}")
            await clock.advance(0)
            api.sync()
        assert reading["peak"] == 2
        assert len([k for k in store.objects if k.endswith(".log")]) == 16
        assert metrics.registry.get_sample_value(gauge) == 0
    finally:
        writers.cancel()


async def test_after_a_restart_a_failed_listing_is_retried_and_only_a_refused_one_recorded() -> None:
    clock = FakeClock()
    api, ctrl, archive, store, pods, _ = rig(clock)
    store.down = "HTTP 503 SlowDown"  # nothing written before the restart: not even the logs
    writers = asyncio.create_task(archive.run())
    try:
        await end_flow(api, ctrl)
        await settle(ctrl, clock, api)
    finally:
        writers.cancel()
    store.down = ""
    store.objects["jobflows/~logs/x"] = b""  # the store answers a listing unless told not to
    pods.gone = True
    listing = {"error": StoreError("timed out after 10s (minio:9000)")}
    real_pages = store.pages

    async def flaky(prefix: str) -> AsyncIterator[list[Listed]]:
        if listing["error"] is not None:
            raise listing["error"]
        async for page in real_pages(prefix):
            yield page

    store.pages = flaky  # type: ignore[method-assign]
    api, ctrl, archive, store, pods, metrics = rig(clock, restarted=(api, store, pods))
    writers = asyncio.create_task(archive.run())
    try:
        await settle(ctrl, clock, api)
        assert not [k for k in store.objects if k.endswith(".json")]  # no record saying the logs are lost
        assert count(metrics, "failed") >= 1
        listing["error"] = StoreError("HTTP 403 AccessDenied: Access Denied (from minio:9000)", status=403)
        await clock.advance(300)
        await settle(ctrl, clock, api)
        entries = record(store)["logs"]
        assert len(entries) == 1
        assert "no pod" in entries[0]["unavailable"]
        assert "403 AccessDenied" in entries[0]["unavailable"]
    finally:
        writers.cancel()


async def test_rbac_refusing_the_log_reads_is_warned_once_naming_the_rule() -> None:
    clock = FakeClock()
    api, ctrl, archive, store, pods, _ = rig(clock)

    async def refused(
        namespace: str, pod: str, container: str, limit: int, timeout: float | None = None
    ) -> bytes:
        raise Forbidden(403, "Forbidden", f'pods "{pod}" is forbidden: cannot get resource "pods/log"')

    pods.log = refused  # type: ignore[method-assign]
    writers = asyncio.create_task(archive.run())
    try:
        with capture_logs() as logs:
            await end_flow(api, ctrl)
            await settle(ctrl, clock, api)
        assert all("forbidden" in e["unavailable"] for e in record(store)["logs"])
        warnings = [e["event"] for e in logs if e["log_level"] == "warning"]
        assert len(warnings) == 1  # two containers refused: one warning
        assert "pods/log" in warnings[0]
    finally:
        writers.cancel()


async def test_after_a_restart_a_container_whose_log_was_not_written_yet_is_recorded_unavailable() -> None:
    clock = FakeClock()
    api, ctrl, archive, store, pods, _ = rig(clock)
    real_put = store.put

    async def main_only(key: str, body: bytes, content_type: str = "application/json") -> None:
        if not key.endswith("/main.log"):
            raise StoreError("HTTP 503 SlowDown")  # the restart came between main.log and sidecar.log
        await real_put(key, body, content_type)

    store.put = main_only  # type: ignore[method-assign]
    writers = asyncio.create_task(archive.run())
    try:
        await end_flow(api, ctrl)
        await settle(ctrl, clock, api)
    finally:
        writers.cancel()
    store.put = real_put  # type: ignore[method-assign]
    pods.gone = True
    api, ctrl, archive, store, pods, metrics = rig(clock, restarted=(api, store, pods))
    writers = asyncio.create_task(archive.run())
    try:
        await settle(ctrl, clock, api)
        entries = {e["container"]: e for e in record(store)["logs"]}
        assert entries["main"]["key"].endswith("/main.log")
        assert "not archived before the controller restarted" in entries["sidecar"]["unavailable"]
        assert count(metrics, "unavailable") == 1
    finally:
        writers.cancel()
