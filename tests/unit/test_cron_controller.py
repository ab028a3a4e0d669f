"""The CronJobFlow shell (controller/cron_reconciler.py): its real workers and queue on a FakeClock, with
an in-memory apiserver: runs come at their run times, a refused or failing CronJobFlow never stops
another's runs, and a create answered AlreadyExists is taken as made."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog

from zen_flow.api.cronjobflow import CronJobFlow
from zen_flow.api.flow_status import JobFlowStatus
from zen_flow.api.jobflow import JobFlow
from zen_flow.api.meta import Condition, format_time
from zen_flow.controller import cron_reconciler
from zen_flow.controller.cron_reconciler import CRON_WORKERS, CronController, cron_queue
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.shard_gate import ShardGate
from zen_flow.kube.errors import AlreadyExists, Conflict, Invalid, TransportError
from zen_flow.planner.cron import CronPlan, plan_cron
from zen_flow_dev.testing.clock import FakeClock, settle

START = datetime(2030, 1, 1, 0, 0, 30, tzinfo=UTC)
JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "spec": {
        "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never"}}
    },
}


class Cluster:
    """CronJobFlows and JobFlows as the apiserver holds them; each write is seen by the caches at once
    (the handlers are called, as the informers would)."""

    def __init__(self) -> None:
        self.crons: dict[str, CronJobFlow] = {}
        self.flows: dict[str, JobFlow] = {}
        self.failing: dict[str, Exception] = {}  # cron name -> what its run creates raise
        self.unseen: set[str] = set()  # flows the cache does not show yet
        self.events: list[tuple[str, str, str]] = []
        self.controller: CronController | None = None
        self._rv = 0

    # the caches
    def get(self, key: str) -> CronJobFlow | None:
        return self.crons.get(key)

    def parse_error(self, key: str) -> str | None:
        return None

    def runs_of(self, uid: str) -> list[JobFlow]:
        return [
            f
            for f in self.flows.values()
            if (r := f.metadata.controller_ref()) and r.uid == uid and f.key not in self.unseen
        ]

    # the API
    def add_cron(self, name: str, schedule: str = "* * * * *", **spec: Any) -> None:
        cron = CronJobFlow.model_validate(
            {
                "metadata": {
                    "name": name,
                    "namespace": "ns",
                    "uid": f"uid-{name}",
                    "generation": 1,
                    "resourceVersion": self._next_rv(),
                    "creationTimestamp": format_time(START),
                },
                "spec": {
                    "schedule": schedule,
                    "jobFlowTemplate": {"spec": {"steps": [{"name": "a", "template": JOB}]}},
                    **spec,
                },
            }
        )
        self.crons[cron.key] = cron
        assert self.controller is not None
        self.controller.on_cron_event(cron)

    async def create(self, namespace: str, body: dict[str, Any]) -> str:
        owner = body["metadata"]["ownerReferences"][0]["name"]
        if owner in self.failing:
            raise self.failing[owner]
        flow = JobFlow.model_validate(
            {**body, "metadata": {**body["metadata"], "uid": "u-" + body["metadata"]["name"]}}
        )
        if flow.key in self.flows:
            raise AlreadyExists(409, "AlreadyExists", "taken")
        self.flows[flow.key] = flow
        assert self.controller is not None
        self.controller.on_flow_event(flow)
        return flow.metadata.uid

    async def get_flow(self, namespace: str, name: str) -> dict[str, Any]:
        return self.flows[f"{namespace}/{name}"].to_wire()

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any], rv: str) -> None:
        key = f"{namespace}/{name}"
        old = self.crons[key]
        assert old.metadata.resource_version == rv
        merged = {k: v for k, v in {**old.status.to_wire(), **status}.items() if v is not None}
        self.crons[key] = CronJobFlow.model_validate(
            {
                **old.to_wire(),
                "metadata": {**old.metadata.to_wire(), "resourceVersion": self._next_rv()},
                "status": merged,
            }
        )

    def emit(self, cron: CronJobFlow, type_: str, reason: str, message: str) -> None:
        self.events.append((cron.metadata.name, reason, message))

    def runs(self, cron: str) -> list[str]:
        return sorted(
            f.metadata.name
            for f in self.flows.values()
            if f.metadata.labels.get("workflow.kube-zen.io/cronjobflow") == cron
        )

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)


class FlowApi:
    def __init__(self, cluster: Cluster) -> None:
        self.create = cluster.create
        self.get = cluster.get_flow

    async def annotate(self, *args: Any) -> None:
        raise AssertionError("no Replace here")

    async def delete(self, *args: Any) -> None:
        raise TransportError("connection reset")  # the one test with history to delete: it fails


@pytest.fixture
async def running() -> AsyncIterator[tuple[Cluster, FakeClock, Metrics]]:
    clock = FakeClock(wall_start=START)
    cluster = Cluster()
    metrics = Metrics()
    queue = cron_queue(clock)
    cluster.controller = CronController(
        crons=cluster,  # type: ignore[arg-type]
        flows=cluster,  # type: ignore[arg-type]
        cron_api=cluster,  # type: ignore[arg-type]
        flow_api=FlowApi(cluster),  # type: ignore[arg-type]
        queue=queue,
        events=cluster,  # type: ignore[arg-type]
        clock=clock,
        metrics=metrics,
    )
    workers = [asyncio.create_task(cluster.controller.run_worker()) for _ in range(2)]
    with structlog.testing.capture_logs():
        yield cluster, clock, metrics
    queue.shutdown()
    await asyncio.gather(*workers)


def runs_total(metrics: Metrics, result: str) -> float:
    return metrics.registry.get_sample_value("zen_flow_cronjobflow_runs_total", {"result": result}) or 0.0


async def test_runs_come_at_their_run_times_without_polling(
    running: tuple[Cluster, FakeClock, Metrics],
) -> None:
    cluster, clock, metrics = running
    cluster.add_cron("every-minute")
    await settle()
    assert cluster.runs("every-minute") == []  # 00:00:30: the next run time is 00:01
    await clock.advance(30)
    assert cluster.runs("every-minute") == ["every-minute-31557601"]
    status = cluster.crons["ns/every-minute"].status
    assert status.last_schedule_time == datetime(2030, 1, 1, 0, 1, tzinfo=UTC)
    assert [r.name for r in status.active] == ["every-minute-31557601"]
    await clock.advance(60)
    # Forbid (the default): the first run is still active, so 00:02 is skipped, and said.
    assert cluster.runs("every-minute") == ["every-minute-31557601"]
    assert cluster.crons["ns/every-minute"].status.last_skipped_time == datetime(2030, 1, 1, 0, 2, tzinfo=UTC)
    assert [e[1] for e in cluster.events] == ["RunCreated", "RunSkipped"]
    assert runs_total(metrics, "created") == 1
    assert runs_total(metrics, "skipped_forbid") == 1


async def test_a_failing_cronjobflow_does_not_stop_anothers_runs(
    running: tuple[Cluster, FakeClock, Metrics],
) -> None:
    cluster, clock, _ = running
    cluster.failing["broken"] = TransportError("connection reset")
    cluster.add_cron("broken", concurrencyPolicy="Allow")
    cluster.add_cron("healthy", concurrencyPolicy="Allow")
    await clock.advance(30)
    await clock.advance(60)
    assert cluster.runs("healthy") == ["healthy-31557601", "healthy-31557602"]
    assert cluster.runs("broken") == []
    # Its retries go on with a backoff that has grown past a minute by now, but its next run time stays
    # booked: once the apiserver answers, the 00:03 run comes on time (00:01 and 00:02 are not made up).
    del cluster.failing["broken"]
    await clock.advance(60)
    assert cluster.runs("broken") == ["broken-31557603"]


async def test_a_run_the_apiserver_refuses_is_skipped_with_the_reason(
    running: tuple[Cluster, FakeClock, Metrics],
) -> None:
    cluster, clock, metrics = running
    cluster.failing["refused"] = Invalid(
        422, "Invalid", 'admission webhook denied: spec.steps[0]: "a" is bad'
    )
    cluster.add_cron("refused")
    await clock.advance(30)
    status = cluster.crons["ns/refused"].status
    assert status.last_schedule_time is None
    assert status.last_skipped_time == datetime(2030, 1, 1, 0, 1, tzinfo=UTC)
    scheduled = next(c for c in status.conditions if c.type == "Scheduled")
    assert (scheduled.status, scheduled.reason) == ("False", "CreateFailed")
    assert "admission webhook denied" in scheduled.message
    assert [e[1] for e in cluster.events] == ["RunFailed"]
    assert runs_total(metrics, "error") == 1
    assert runs_total(metrics, "created") == 0


async def test_a_refused_run_dates_the_scheduled_conditions_flip_to_false(
    running: tuple[Cluster, FakeClock, Metrics],
) -> None:
    # Scheduled is True since the 00:01 run; the 00:02 run is refused: False since 00:02, not 00:01.
    cluster, clock, _ = running
    cluster.add_cron("flaky", concurrencyPolicy="Allow")
    await clock.advance(30)
    cluster.failing["flaky"] = Invalid(422, "Invalid", "admission webhook denied")
    await clock.advance(60)
    scheduled = next(c for c in cluster.crons["ns/flaky"].status.conditions if c.type == "Scheduled")
    assert (scheduled.status, scheduled.reason) == ("False", "CreateFailed")
    assert scheduled.last_transition_time == datetime(2030, 1, 1, 0, 2, tzinfo=UTC)
    # Refused again at 00:03: still False, so still since 00:02.
    await clock.advance(60)
    scheduled = next(c for c in cluster.crons["ns/flaky"].status.conditions if c.type == "Scheduled")
    assert (scheduled.status, scheduled.last_transition_time) == (
        "False",
        datetime(2030, 1, 1, 0, 2, tzinfo=UTC),
    )


async def test_an_invalid_cronjobflow_ends_with_a_condition(
    running: tuple[Cluster, FakeClock, Metrics],
) -> None:
    cluster, clock, _ = running
    cluster.add_cron("typo", schedule="every minute")
    cluster.add_cron("fine")
    await clock.advance(30)
    valid = next(c for c in cluster.crons["ns/typo"].status.conditions if c.type == "Valid")
    assert (valid.status, valid.reason) == ("False", "Invalid")
    assert "spec.schedule" in valid.message
    assert cluster.runs("fine") == ["fine-31557601"]


async def test_a_lost_status_write_never_makes_a_second_run(
    running: tuple[Cluster, FakeClock, Metrics],
) -> None:
    cluster, clock, metrics = running
    cluster.add_cron("once")
    await clock.advance(30)
    # As after a restart that lost the status write, with a cache that does not show the run yet.
    cron = cluster.crons["ns/once"]
    cluster.crons["ns/once"] = cron.model_copy(update={"status": type(cron.status)()})
    cluster.unseen = set(cluster.flows)
    assert cluster.controller is not None
    cluster.controller.on_cron_event(cluster.crons["ns/once"])
    await settle()
    # The create is tried again, answered AlreadyExists, and the run found to be this one's.
    assert cluster.runs("once") == ["once-31557601"]
    assert runs_total(metrics, "created") == 1
    assert [e[1] for e in cluster.events] == ["RunCreated"]  # reported once, not again for the retry
    assert cluster.crons["ns/once"].status.last_schedule_time == datetime(2030, 1, 1, 0, 1, tzinfo=UTC)


async def test_a_create_whose_answer_was_lost_is_reported_once(
    running: tuple[Cluster, FakeClock, Metrics],
) -> None:
    cluster, clock, metrics = running
    assert cluster.controller is not None
    api = cluster.controller._flow_api

    async def made_but_unanswered(namespace: str, body: dict[str, Any]) -> str:
        await cluster.create(namespace, body)
        cluster.unseen = set(cluster.flows)  # the cache has not seen it yet either
        api.create = cluster.create  # type: ignore[method-assign]  # the next one is answered
        raise TransportError("connection reset after the write")

    api.create = made_but_unanswered  # type: ignore[method-assign]
    cluster.add_cron("lossy")
    await clock.advance(30)
    await clock.advance(1)  # the retry: AlreadyExists, the run is this one's
    assert cluster.runs("lossy") == ["lossy-31557601"]
    assert [e[1] for e in cluster.events] == ["RunCreated"]
    assert runs_total(metrics, "created") == 1


async def test_without_the_crd_the_cron_workers_wait_and_leave_on_shutdown() -> None:
    # The CronJobFlow CRD not installed yet: its informer never syncs. The JobFlow workers do not wait
    # for it (app.work starts them first), and a shutdown does not wait for it either.
    from zen_flow.controller.cron_reconciler import run_cron_workers

    class NeverSynced:
        store: dict[str, Any] = {}

        async def wait_synced(self) -> None:
            await asyncio.Event().wait()

    stop = asyncio.Event()
    task = asyncio.create_task(run_cron_workers(NeverSynced(), None, stop))  # type: ignore[arg-type]
    await settle()
    assert not task.done()
    stop.set()
    await settle()
    assert task.done()
    assert task.exception() is None


async def test_a_history_delete_that_fails_does_not_hold_the_next_run_back(
    running: tuple[Cluster, FakeClock, Metrics],
) -> None:
    cluster, clock, metrics = running
    cluster.add_cron("tidy", successfulJobsHistoryLimit=0)
    await clock.advance(30)
    [first] = cluster.flows.values()
    cluster.flows[first.key] = first.model_copy(update={"status": JobFlowStatus(phase="Succeeded")})
    assert cluster.controller is not None
    cluster.controller.on_flow_event(cluster.flows[first.key])
    await clock.advance(60)
    # The succeeded run could not be deleted (the apiserver did not answer), and the next run came all
    # the same; the delete is retried.
    assert cluster.runs("tidy") == ["tidy-31557601", "tidy-31557602"]
    assert runs_total(metrics, "created") == 2


async def test_replace_tries_a_failed_stop_again_until_the_old_run_is_asked_to_stop(
    running: tuple[Cluster, FakeClock, Metrics],
) -> None:
    cluster, clock, _ = running
    asked: list[str] = []

    async def annotate(namespace: str, name: str, annotations: dict[str, str], uid: str) -> None:
        asked.append(name)
        if len(asked) == 1:
            raise TransportError("connection reset")
        flow = cluster.flows[f"{namespace}/{name}"]
        meta = flow.metadata.model_copy(update={"annotations": {**flow.metadata.annotations, **annotations}})
        cluster.flows[flow.key] = flow.model_copy(update={"metadata": meta})

    assert cluster.controller is not None
    cluster.controller._flow_api.annotate = annotate  # type: ignore[method-assign]
    cluster.add_cron("rep", "*/5 * * * *", concurrencyPolicy="Replace")
    await clock.advance(4 * 60 + 30)  # 00:05: the first run
    await clock.advance(5 * 60)  # 00:10: the second; stopping the first fails once
    await clock.advance(60)  # the retry, with backoff, well before the next run time
    assert cluster.runs("rep") == ["rep-31557605", "rep-31557610"]
    assert asked == ["rep-31557605", "rep-31557605"]
    assert cluster.flows["ns/rep-31557605"].metadata.annotations.get("workflow.kube-zen.io/stop") == "true"
    assert "workflow.kube-zen.io/stop" not in cluster.flows["ns/rep-31557610"].metadata.annotations


async def test_a_cronjobflow_requeued_at_once_never_starves_the_event_loop(
    running: tuple[Cluster, FakeClock, Metrics], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever a plan says (a requeue of 0: the key is back before the reconcile ends), the workers let
    # the rest of the event loop (the JobFlow workers, the lease renewal, the probes) run between keys.
    cluster, _, _ = running
    calls = 0

    def hot(*args: Any, **kwargs: Any) -> CronPlan:
        nonlocal calls
        calls += 1
        plan = plan_cron(*args, **kwargs)
        # Hot for 50 reconciles, then quiet: a worker that never yields still ends (and the test fails).
        return CronPlan(plan.actions, plan.status, plan.events, 0.0 if calls < 50 else None, plan.outcome)

    monkeypatch.setattr(cron_reconciler, "plan_cron", hot)
    others: list[int] = []

    async def other() -> None:
        while True:
            others.append(calls)
            await asyncio.sleep(0)

    bystander = asyncio.create_task(other())
    await asyncio.sleep(0)
    cluster.add_cron("hot")
    for _ in range(200):
        await asyncio.sleep(0)
    bystander.cancel()
    # The bystander ran between reconciles, not only before the first and after the last.
    assert len({n for n in others if 0 < n < 50}) >= 10


async def test_a_cronjobflow_of_a_shard_not_held_makes_no_run_until_its_shard_is_acquired() -> None:
    clock = FakeClock(wall_start=START)
    cluster = Cluster()
    metrics = Metrics()
    queue = cron_queue(clock)
    gate = ShardGate(4, "zf", metrics)
    cluster.controller = CronController(
        crons=cluster,  # type: ignore[arg-type]
        flows=cluster,  # type: ignore[arg-type]
        cron_api=cluster,  # type: ignore[arg-type]
        flow_api=FlowApi(cluster),  # type: ignore[arg-type]
        queue=queue,
        events=cluster,  # type: ignore[arg-type]
        clock=clock,
        metrics=metrics,
        shards=gate,
    )
    worker = asyncio.create_task(cluster.controller.run_worker())
    try:
        with structlog.testing.capture_logs():
            cluster.add_cron("every-minute")
            await clock.advance(90)
            assert cluster.runs("every-minute") == []  # another replica's shard: dropped, not requeued
            assert len(queue) == 0
            assert queue.delayed == 0
            gate.on_grant(lambda _shard: queue.add("ns/every-minute"))
            gate.grant(gate.key_shard("ns/every-minute"))
            await clock.advance(30)
            assert len(cluster.runs("every-minute")) == 1
    finally:
        queue.shutdown()
        await worker


async def test_with_an_archive_a_run_beyond_the_history_waits_for_its_record_then_goes_said(
    running: tuple[Cluster, FakeClock, Metrics],
) -> None:
    cluster, clock, metrics = running
    deleted: list[str] = []

    async def delete(namespace: str, name: str, uid: str) -> None:
        deleted.append(name)
        flow = cluster.flows.pop(f"{namespace}/{name}")
        assert cluster.controller is not None
        cluster.controller.on_flow_event(flow)

    assert cluster.controller is not None
    cluster.controller._flow_api.delete = delete  # type: ignore[method-assign]
    cluster.controller._archive_max_delay = 600.0
    cluster.add_cron("tidy", successfulJobsHistoryLimit=0)  # every minute: later runs come, and keep running
    await clock.advance(30)
    [first] = cluster.flows.values()
    ended = JobFlowStatus(phase="Succeeded", completion_time=clock.now())
    cluster.flows[first.key] = first.model_copy(update={"status": ended})
    cluster.controller.on_flow_event(cluster.flows[first.key])
    await clock.advance(300)
    assert deleted == []  # no record yet: kept, though the limit is 0
    failed = Condition(type="Archived", status="False", reason="ArchiveFailed", message="cannot connect")
    cluster.flows[first.key] = cluster.flows[first.key].model_copy(
        update={"status": ended.model_copy(update={"conditions": (failed,)})}
    )
    cluster.controller.on_flow_event(cluster.flows[first.key])
    await clock.advance(200)
    assert deleted == []  # 500 s after it went beyond the limit: still waiting
    await clock.advance(101)  # woken at the end of the wait, with no event to bring it
    assert deleted == [first.metadata.name]
    (said,) = [e for e in cluster.events if e[1] == "NotArchived"]
    assert "without an archive record" in said[2]
    assert "cannot connect" in said[2]
    assert metrics.registry.get_sample_value("zen_flow_archive_writes_total", {"result": "skipped"}) == 1


async def test_one_namespace_never_holds_every_cron_worker() -> None:
    # Tenant-a's three due CronJobFlows, their run creates held (a slow admission webhook): two of them
    # are created at once (a cluster of one namespace is not serialised), and tenant-b's run, due a
    # moment later, still gets the third worker, as the flow queue gives one to another namespace.
    assert CRON_WORKERS == 3
    queue = cron_queue(FakeClock(wall_start=START))
    for n in (1, 2, 3):
        queue.add(f"tenant-a/nightly-{n}")
    first = await asyncio.wait_for(queue.get(), 5)
    second = await asyncio.wait_for(queue.get(), 5)
    third = asyncio.ensure_future(queue.get())  # the last cron worker
    queue.add("tenant-b/hourly")
    taken = (first, second, await asyncio.wait_for(third, 5))
    assert taken == ("tenant-a/nightly-1", "tenant-a/nightly-2", "tenant-b/hourly")
    queue.done(first)
    assert await asyncio.wait_for(queue.get(), 5) == "tenant-a/nightly-3"  # tenant-a's next, in turn


async def test_a_run_whose_status_write_was_refused_is_recorded_and_never_made_again(
    running: tuple[Cluster, FakeClock, Metrics],
) -> None:
    cluster, clock, metrics = running
    assert cluster.controller is not None
    controller = cluster.controller
    real_patch = cluster.patch_status
    refused: list[object] = []

    async def patch_status(namespace: str, name: str, status: dict[str, Any], rv: str) -> None:
        # The write after the run's create is refused: the CronJobFlow changed since it was read.
        if cluster.runs("once") and not refused:
            refused.append(status.get("lastScheduleTime"))
            raise Conflict(409, "Conflict", "the object has been modified")
        await real_patch(namespace, name, status, rv)

    async def delete(namespace: str, name: str, uid: str | None = None) -> None:
        controller.on_flow_event(cluster.flows.pop(f"{namespace}/{name}"))

    cluster.patch_status = patch_status  # type: ignore[method-assign]
    controller._flow_api.delete = delete  # type: ignore[method-assign]
    cluster.add_cron("once", successfulJobsHistoryLimit=0)
    await clock.advance(30)  # 00:01: the run time
    await clock.advance(1)  # the retry
    assert refused == ["2030-01-01T00:01:00Z"]
    retried = cluster.crons["ns/once"].status
    # 00:01:20: the run succeeds; successfulJobsHistoryLimit 0 deletes it, and 00:01 is not run again.
    await clock.advance(19)
    key = "ns/once-31557601"
    cluster.flows[key] = cluster.flows[key].model_copy(
        update={"status": JobFlowStatus(phase="Succeeded", completion_time=clock.now())}
    )
    controller.on_flow_event(cluster.flows[key])
    await clock.advance(1)
    await settle()
    assert cluster.runs("once") == []
    assert [e[1] for e in cluster.events] == ["RunCreated"]
    assert runs_total(metrics, "created") == 1
    # The retry recorded the run time the refused write was to record.
    assert retried.last_schedule_time == datetime(2030, 1, 1, 0, 1, tzinfo=UTC)
    scheduled = next(c for c in retried.conditions if c.type == "Scheduled")
    assert (scheduled.status, scheduled.reason) == ("True", "RunCreated")


async def test_a_run_time_refused_for_good_keeps_the_record_its_predecessors_run_gives(
    running: tuple[Cluster, FakeClock, Metrics],
) -> None:
    cluster, clock, _ = running
    real_patch = cluster.patch_status
    two = datetime(2030, 1, 1, 0, 2, tzinfo=UTC)

    async def patch_status(namespace: str, name: str, status: dict[str, Any], rv: str) -> None:
        if clock.now() < two:  # every write lost until 00:02
            raise TransportError("connection reset")
        await real_patch(namespace, name, status, rv)

    cluster.patch_status = patch_status  # type: ignore[method-assign]
    cluster.add_cron("gap")
    await clock.advance(30)  # 00:01: the run made, its record lost
    assert cluster.runs("gap") == ["gap-31557601"]
    cluster.failing["gap"] = Invalid(422, "Invalid", "admission webhook denied: quota")
    await clock.advance(60)  # 00:02: the apiserver refuses that run for good
    status = cluster.crons["ns/gap"].status
    assert status.last_skipped_time == two
    assert status.last_schedule_time == datetime(2030, 1, 1, 0, 1, tzinfo=UTC)
