"""Controller: an ended flow's record goes to the archive store before its TTL deletes it; a store that
fails holds the deletion back (with condition Archived=False and one Warning event per cause), never a
reconcile; the record is written again once the store is back, then the TTL deletes the flow."""

from __future__ import annotations

import asyncio
import json

from zen_flow.api import Job, JobFlow
from zen_flow.controller.archiver import Archiver
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.reconciler import Controller
from zen_flow.machinery.expectations import Expectations
from zen_flow.machinery.workqueue import WorkQueue
from zen_flow.planner.archiving import ArchiveState, archive_plan
from zen_flow.planner.lifecycle import terminal_plan
from zen_flow.s3 import StoreError
from zen_flow_dev.testing.apiserver_fake import FakeApiServer
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow

NS = "team-a"
KEY = f"{NS}/nightly"


class Store:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.down: str = ""
        self.attempts = 0

    async def put(self, key: str, body: bytes, content_type: str = "application/json") -> None:
        self.attempts += 1
        if self.down:
            raise StoreError(self.down)
        self.objects[key] = body


def rig(clock: FakeClock) -> tuple[FakeApiServer, Controller, Archiver, Store, Metrics]:
    api, store, metrics = FakeApiServer(clock), Store(), Metrics()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    archive = Archiver(
        store=store, bucket="b", prefix="jobflows/", api=api, flows=api, jobs=api, queue=queue,
        events=api, metrics=metrics, clock=clock, max_delay=3600.0,
    )  # fmt: skip
    ctrl = Controller(
        flows=api, jobs=api, api=api, queue=queue, expectations=Expectations(clock), events=api,
        clock=clock, metrics=metrics, archive=archive,
    )  # fmt: skip
    api.on_flow, api.on_flow_deleted, api.on_job = ctrl.on_flow_event, ctrl.on_flow_deleted, ctrl.on_job_event
    return api, ctrl, archive, store, metrics


async def end_flow(api: FakeApiServer, ctrl: Controller) -> JobFlow:
    flow = api.create_flow(
        make_flow(
            [job_step("s0")], name="nightly", namespace=NS, execution_policy={"ttlSecondsAfterFinished": 60}
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
    assert api.flows[KEY].status.phase == "Succeeded"
    return flow


def archived(api: FakeApiServer) -> tuple[str, str, str] | None:
    cond = next((c for c in api.flows[KEY].status.conditions if c.type == "Archived"), None)
    return None if cond is None else (cond.status, cond.reason, cond.message)


def count(metrics: Metrics, result: str) -> float:
    return metrics.registry.get_sample_value("zen_flow_archive_writes_total", {"result": result}) or 0.0


async def test_an_ended_flow_is_archived_then_deleted_by_its_ttl() -> None:
    clock = FakeClock()
    api, ctrl, archive, store, metrics = rig(clock)
    writers = asyncio.create_task(archive.run())
    try:
        flow = await end_flow(api, ctrl)
        await ctrl.reconcile(KEY)  # the record is due: queued, not written by the reconcile
        await clock.advance(0)
        finished = api.flows[KEY].status.completion_time
        assert finished is not None
        key = f"jobflows/{NS}/nightly/{flow.metadata.uid}/{finished:%Y%m%dT%H%M%SZ}.json"
        record = json.loads(store.objects[key])
        assert record["flow"]["status"]["phase"] == "Succeeded"
        assert [j["step"] for j in record["jobs"]] == ["s0"]
        await ctrl.reconcile(KEY)
        api.sync()
        assert archived(api) == ("True", "Archived", f"s3://b/{key}")
        await clock.advance(61)
        await ctrl.reconcile(KEY)
        assert KEY not in api.flows
        assert store.attempts == 1
        assert count(metrics, "written") == 1
    finally:
        writers.cancel()


async def test_a_failing_store_holds_the_ttl_back_says_why_once_and_is_retried_with_backoff() -> None:
    clock = FakeClock()
    api, ctrl, archive, store, metrics = rig(clock)
    writers = asyncio.create_task(archive.run())
    try:
        store.down = "cannot connect"
        await end_flow(api, ctrl)
        for _ in range(4):  # past the TTL: each reconcile finds the store down, a retry later
            await ctrl.reconcile(KEY)
            await clock.advance(0)
            await ctrl.reconcile(KEY)
            api.sync()
            await clock.advance(40)
        assert KEY in api.flows  # the TTL (60 s) expired long ago
        state = archived(api)
        assert state is not None
        assert state[:2] == ("False", "ArchiveFailed")
        assert "cannot connect" in state[2]
        assert [e for e in api.events if e[1] == "ArchiveFailed"] == [
            ("Warning", "ArchiveFailed", "archive record not written: cannot connect")
        ]
        assert 2 <= store.attempts <= 4
        assert count(metrics, "failed") == store.attempts
        store.down = ""
        await clock.advance(300)
        await ctrl.reconcile(KEY)
        await clock.advance(0)
        await ctrl.reconcile(KEY)  # written: the record is there, so the TTL deletes the flow
        assert KEY not in api.flows
        assert len(store.objects) == 1
    finally:
        writers.cancel()


async def test_a_rerun_gets_its_own_record_and_a_restart_writes_the_same_one_again() -> None:
    clock = FakeClock()
    api, ctrl, archive, store, _ = rig(clock)
    writers = asyncio.create_task(archive.run())
    try:
        await end_flow(api, ctrl)
        for _ in range(2):  # the record, then condition Archived
            await ctrl.reconcile(KEY)
            await clock.advance(0)
            api.sync()
        first = set(store.objects)
        assert len(first) == 1
        assert archived(api) is not None
        # A rerun (`zen-flow retry`) that has ended again, later: no condition Archived, a new end.
        await clock.advance(30)
        later = clock.now()

        def rerun_ended(flow: JobFlow) -> JobFlow:
            conds = tuple(c for c in flow.status.conditions if c.type != "Archived")
            status = flow.status.model_copy(update={"completion_time": later, "conditions": conds})
            return flow.model_copy(update={"status": status})

        api.update_flow(KEY, rerun_ended)
        api.sync()
        await ctrl.reconcile(KEY)
        await clock.advance(0)
        assert len(store.objects) == 2  # the earlier run's record is kept
        assert first < set(store.objects)
        (second,) = set(store.objects) - first
        assert second.endswith(f"/{later:%Y%m%dT%H%M%SZ}.json")
    finally:
        writers.cancel()
    # A restarted controller (nothing remembered) that finds the end not yet marked archived writes the
    # same key again: no third record.
    api.update_flow(
        KEY, lambda f: f.model_copy(update={"status": f.status.model_copy(update={"conditions": ()})})
    )
    restarted = Archiver(
        store=store, bucket="b", prefix="jobflows/", api=api, flows=api, jobs=api,
        queue=WorkQueue(clock=clock), events=api, metrics=Metrics(), clock=clock, max_delay=3600.0,
    )  # fmt: skip
    writers = asyncio.create_task(restarted.run())
    try:
        stored = api.flows[KEY]
        restarted.settle(stored, terminal_plan(stored, clock.now()), clock.now())
        await clock.advance(0)
        assert store.attempts == 3
        assert len(store.objects) == 2
    finally:
        writers.cancel()


class Ended:
    """Ended flows as the cache and the apiserver hold them (no Jobs)."""

    def __init__(self, clock: FakeClock) -> None:
        self.flows: dict[str, JobFlow] = {}
        self.clock = clock

    def end(self, namespace: str, name: str) -> JobFlow:
        flow = make_flow([job_step("s0")], name=name, namespace=namespace)
        now = self.clock.now()
        status = flow.status.model_copy(
            update={"phase": "Succeeded", "start_time": now, "completion_time": now}
        )
        flow = flow.model_copy(update={"status": status})
        self.flows[flow.key] = flow
        return flow

    def get(self, key: str) -> JobFlow | None:
        return self.flows.get(key)

    async def get_flow(self, namespace: str, name: str) -> dict[str, object]:
        return self.flows[f"{namespace}/{name}"].to_wire()

    def jobs_for(self, uid: str) -> list[Job]:
        return []


async def test_one_namespaces_burst_of_ended_flows_does_not_queue_anothers_record_behind_it() -> None:
    clock = FakeClock()
    cluster, store = Ended(clock), Store()
    written: list[str] = []
    put = store.put

    async def put_in_order(key: str, body: bytes, content_type: str = "application/json") -> None:
        written.append(key.split("/")[1])  # the namespace
        await put(key, body, content_type)

    store.put = put_in_order  # type: ignore[method-assign]
    archive = Archiver(
        store=store, bucket="b", prefix="jobflows/", api=cluster, flows=cluster, jobs=cluster,
        queue=WorkQueue(clock=clock), events=FakeApiServer(clock), metrics=Metrics(), clock=clock,
        max_delay=3600.0,
    )  # fmt: skip
    flows = [cluster.end("busy", f"f{i}") for i in range(200)] + [cluster.end("quiet", "nightly")]
    for flow in flows:
        archive.settle(flow, terminal_plan(flow, clock.now()), clock.now())
    writers = asyncio.create_task(archive.run())
    try:
        await clock.advance(0)
        assert len(written) == 201
        assert written.index("quiet") < 2  # its turn came after one of the busy namespace's, not 200
    finally:
        writers.cancel()


def test_a_queued_record_is_looked_at_again_rarely_its_write_wakes_the_flow() -> None:
    flow = make_flow(
        [job_step("s0")], name="f", namespace="ns", execution_policy={"ttlSecondsAfterFinished": 0}
    )
    now = FakeClock().now()
    status = flow.status.model_copy(update={"phase": "Succeeded", "start_time": now, "completion_time": now})
    flow = flow.model_copy(update={"status": status})
    held = archive_plan(flow, terminal_plan(flow, now), ArchiveState(pending=True), now, max_delay=3600.0)
    assert held.plan.requeue_after is not None
    assert held.plan.requeue_after >= 600  # a backlog of 10,000 costs ~17 reconciles a second, not 170
