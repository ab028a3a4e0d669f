"""Controller: nothing ended is lost to the archive. A rerun (`zen-flow retry`) waits for the ended run's
record, and a parent's deletes of its ended child flows (a superseded attempt, its own TTL) wait for the
children's records; each goes on without one only --archive-max-delay-seconds after its writes began
failing, with a Warning event NotArchived and the skipped count."""

from __future__ import annotations

import asyncio
import json

from test_controller_archive import KEY, NS, Store, count, rig
from test_controller_child_flows import flow_step, template

from zen_flow.api import JobFlow
from zen_flow.api.constants import ANNOTATION_RETRY
from zen_flow.controller.archiver import Archiver
from zen_flow.controller.child_flows import ChildFlows
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.reconciler import Controller
from zen_flow.core.naming import job_name
from zen_flow.machinery.expectations import Expectations
from zen_flow.machinery.workqueue import WorkQueue
from zen_flow.planner.lifecycle import terminal_plan
from zen_flow.s3 import StoreError
from zen_flow_dev.testing.apiserver_fake import FakeApiServer
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow


def ask_retry(api: FakeApiServer) -> None:
    def retried(f: JobFlow) -> JobFlow:
        annotations = {**f.metadata.annotations, ANNOTATION_RETRY: "1"}
        return f.model_copy(update={"metadata": f.metadata.model_copy(update={"annotations": annotations})})

    api.update_flow(KEY, retried)
    api.sync()


async def fail_flow(api: FakeApiServer, ctrl: Controller) -> str:
    """A flow whose only Job failed: the flow Failed, rerunnable. Returns the Job's name."""
    flow = make_flow([job_step("s0")], name="nightly", namespace=NS)
    api.create_flow(flow)
    api.sync()
    await ctrl.reconcile(KEY)
    api.sync()
    (job,) = [name for (_, name) in api.jobs]
    api.finish_job(NS, job, succeeded=False)
    api.sync()
    await ctrl.reconcile(KEY)
    api.sync()
    assert api.flows[KEY].status.phase == "Failed"
    return job


def phases(store: Store) -> list[str]:
    return sorted(json.loads(body)["flow"]["status"]["phase"] for body in store.objects.values())


async def test_a_rerun_asked_before_the_ended_runs_record_is_written_waits_for_it() -> None:
    clock = FakeClock()
    api, ctrl, archive, store, _ = rig(clock)
    first_job = await fail_flow(api, ctrl)
    await ctrl.reconcile(KEY)  # the record's write is queued; no writer has taken it yet (a backlog)
    ask_retry(api)
    await ctrl.reconcile(KEY)
    api.sync()
    assert api.flows[KEY].status.phase == "Failed"  # held: the write reads the ended run as stored
    writers = asyncio.create_task(archive.run())
    try:
        for _ in range(3):
            await clock.advance(0)
            await ctrl.reconcile(KEY)
            api.sync()
        assert phases(store) == ["Failed"]
        assert api.flows[KEY].status.phase == "Running"  # the rerun went once the record was there
        await clock.advance(30)
        for _, name in list(api.jobs):
            if name != first_job:
                api.finish_job(NS, name)
        api.sync()
        for _ in range(3):
            await ctrl.reconcile(KEY)
            await clock.advance(0)
            api.sync()
        assert phases(store) == ["Failed", "Succeeded"]  # both runs' records
    finally:
        writers.cancel()


async def test_a_rerun_goes_without_the_record_only_after_the_max_delay_of_failed_writes() -> None:
    clock = FakeClock()
    api, ctrl, archive, store, metrics = rig(clock)  # --archive-max-delay-seconds=3600
    writers = asyncio.create_task(archive.run())
    try:
        store.down = "HTTP 503 SlowDown"
        await fail_flow(api, ctrl)
        ask_retry(api)
        for _ in range(12):  # 50 minutes of failed writes: the rerun waits
            await ctrl.reconcile(KEY)
            await clock.advance(0)
            api.sync()
            await clock.advance(250)
        assert api.flows[KEY].status.phase == "Failed"
        assert [c.status for c in api.flows[KEY].status.conditions if c.type == "Archived"] == ["False"]
        assert count(metrics, "skipped") == 0
        for _ in range(4):  # past the hour: it goes, saying so
            await clock.advance(300)
            await ctrl.reconcile(KEY)
            await clock.advance(0)
            api.sync()
        assert api.flows[KEY].status.phase == "Running"
        said = [m for (_, reason, m) in api.events if reason == "NotArchived"]
        assert len(said) == 1
        assert "rerun without an archive record" in said[0]
        assert "HTTP 503 SlowDown" in said[0]
        assert count(metrics, "skipped") == 1
        assert store.objects == {}
    finally:
        writers.cancel()


class ChildFailingStore(Store):
    """A store refusing the child flows' records (keys under p-sub...), taking the parent's."""

    async def put(self, key: str, body: bytes, content_type: str = "application/json") -> None:
        if "/p-sub" in key and self.down:
            self.attempts += 1
            raise StoreError(self.down)
        self.attempts += 1
        self.objects[key] = body


def family_rig(
    clock: FakeClock, max_delay: float
) -> tuple[FakeApiServer, Controller, Archiver, ChildFailingStore, Metrics]:
    api, queue, expectations, metrics = (
        FakeApiServer(clock),
        WorkQueue[str](clock=clock),
        Expectations(clock),
        Metrics(),
    )
    children = ChildFlows(api, api.children_of, expectations, queue.add, api.get)
    store = ChildFailingStore()
    archive = Archiver(
        store=store, bucket="b", prefix="jobflows/", api=api, flows=api, jobs=children, queue=queue,
        events=api, metrics=metrics, clock=clock, max_delay=max_delay,
    )  # fmt: skip
    ctrl = Controller(
        flows=api, jobs=children, api=api, queue=queue, expectations=expectations, events=api,
        clock=clock, metrics=metrics, archive=archive,
    )  # fmt: skip

    def on_flow(flow: JobFlow) -> None:
        ctrl.on_flow_event(flow)
        children.on_flow_event(flow)

    def on_flow_deleted(flow: JobFlow) -> None:
        ctrl.on_flow_deleted(flow)
        children.on_flow_event(flow, deleted=True)

    api.on_flow, api.on_flow_deleted = on_flow, on_flow_deleted
    api.on_job = ctrl.on_job_event
    api.on_job_deleted = lambda job: ctrl.on_job_event(job, deleted=True)
    api.templates[(NS, "t")] = template("t", [job_step("inner")])
    return api, ctrl, archive, store, metrics


async def spin(api: FakeApiServer, ctrl: Controller, clock: FakeClock, rounds: int, step: float) -> None:
    for _ in range(rounds):
        for key in sorted(api.flows):
            if key in api.flows:
                await ctrl.reconcile(key)
            await clock.advance(0)
            api.sync()
        await clock.advance(step)


def finish(api: FakeApiServer, prefix: str, succeeded: bool) -> None:
    for ns, name in list(api.jobs):
        if name.startswith(prefix) and not api.jobs[(ns, name)].finished:
            api.finish_job(ns, name, succeeded=succeeded)
    api.sync()


async def test_a_superseded_child_flow_is_deleted_only_once_its_record_is_written() -> None:
    clock = FakeClock()
    api, ctrl, archive, store, metrics = family_rig(clock, max_delay=3600.0)
    writers = asyncio.create_task(archive.run())
    try:
        store.down = "HTTP 503 SlowDown"
        retries = {"limit": 1, "backoff": {"duration": "1s"}}
        api.create_flow(
            make_flow(
                [flow_step("sub", retryPolicy=retries)],
                name="p",
                namespace=NS,
                execution_policy={"jobRetention": "LastAttempt"},
            )
        )
        api.sync()
        first = f"{NS}/{job_name('p', 'sub', 0)}"
        await spin(api, ctrl, clock, rounds=3, step=0)
        finish(api, job_name("p", "sub", 0), succeeded=False)
        await spin(api, ctrl, clock, rounds=6, step=2)
        assert f"{NS}/{job_name('p', 'sub', 1)}" in api.flows  # the retry runs...
        assert first in api.flows  # ...and the attempt it superseded waits for its record
        store.down = ""
        await spin(api, ctrl, clock, rounds=4, step=300)
        assert first not in api.flows
        assert any(f"/{job_name('p', 'sub', 0)}/" in key for key in store.objects)
        assert count(metrics, "skipped") == 0
    finally:
        writers.cancel()


async def test_a_parents_ttl_waits_for_its_childrens_records_bounded_by_the_max_delay() -> None:
    clock = FakeClock()
    api, ctrl, archive, store, metrics = family_rig(clock, max_delay=600.0)
    writers = asyncio.create_task(archive.run())
    try:
        store.down = "HTTP 503 SlowDown"
        api.create_flow(
            make_flow(
                [flow_step("sub")], name="p", namespace=NS, execution_policy={"ttlSecondsAfterFinished": 0}
            )
        )
        api.sync()
        await spin(api, ctrl, clock, rounds=3, step=0)
        finish(api, job_name("p", "sub", 0), succeeded=True)
        await spin(api, ctrl, clock, rounds=4, step=5)
        assert api.flows[f"{NS}/p"].status.phase == "Succeeded"
        assert any(key.startswith("jobflows/team-a/p/") for key in store.objects)  # the parent's record
        assert f"{NS}/p" in api.flows  # its TTL (0) waits for its child's
        await spin(api, ctrl, clock, rounds=3, step=100)
        assert f"{NS}/p" in api.flows
        assert count(metrics, "skipped") == 0
        await spin(api, ctrl, clock, rounds=4, step=300)  # the child's writes failing for 10 minutes
        assert f"{NS}/p" not in api.flows
        said = [m for (_, reason, m) in api.events if reason == "NotArchived"]
        assert len(said) == 1
        assert job_name("p", "sub", 0) in said[0]
        assert count(metrics, "skipped") == 1
    finally:
        writers.cancel()


async def test_a_rerun_ending_within_the_second_its_run_ended_gets_a_record_of_its_own() -> None:
    clock = FakeClock()
    api, ctrl, archive, store, _ = rig(clock)
    writers = asyncio.create_task(archive.run())
    try:
        await fail_flow(api, ctrl)
        for _ in range(2):  # the record, then condition Archived
            await ctrl.reconcile(KEY)
            await clock.advance(0)
            api.sync()
        ask_retry(api)
        await ctrl.reconcile(KEY)
        api.sync()
        finish(api, "nightly-", succeeded=False)  # the rerun fails at once: the same second
        for _ in range(3):
            await ctrl.reconcile(KEY)
            await clock.advance(0)
            api.sync()
        assert [c.status for c in api.flows[KEY].status.conditions if c.type == "Archived"] == ["True"]
        ends = sorted(key.rsplit("/", 1)[1] for key in store.objects)
        assert len(ends) == 2  # each run's end, though both ended at 00:00:00
        assert "20300101T000000Z.json" in ends  # the first run's
        assert all(end.startswith("20300101T000000Z") for end in ends)
    finally:
        writers.cancel()
    # A restarted controller that finds the rerun's end not marked archived writes the same key again.
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
        assert len(store.objects) == 2
    finally:
        writers.cancel()
