"""Controller: jobRetention with the Job cache's tombstones (informer/tombstones.py) as the JobInformer keeps
them. With the log archive on, a Succeeded step's Job is deleted only once its logs are written, counted as
zen_flow_job_deletes_total{reason="succeeded"} once, and sent once: no tombstone brings it back to the next
plans (nor a superseded attempt's, under LastAttempt); the flow's record lists the logs of the Jobs deleted
before it was written. A Job someone else deleted is not counted as the controller's delete."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from test_controller_archive_logs import KEY, NS, Pods, Store, count, record, rig

from zen_flow.api.job import Job
from zen_flow.controller.archiver import Archiver
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.reconciler import Controller
from zen_flow.core.naming import job_name
from zen_flow.informer.resources import controller_uid
from zen_flow.informer.tombstones import Tombstones
from zen_flow.kube.errors import from_status
from zen_flow_dev.testing.apiserver_fake import FakeApiServer
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow


class Cluster(FakeApiServer):
    """The fake apiserver, whose Job cache keeps tombstones as the JobInformer does (`JobCache.jobs_for`,
    `deleted_stray`), and whose Job deletes answer 404 for a Job that is gone, as the apiserver's do."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.gone = Tombstones(clock, lambda job: next(iter(controller_uid(job)), None))
        self.sent: list[str] = []  # every Job delete sent, in order

    def wire(self, ctrl: Controller) -> None:
        def added(job: Job) -> None:
            self.gone.forget(job.metadata.key)
            ctrl.on_job_event(job)

        def deleted(job: Job) -> None:
            self.gone.remember(job)
            ctrl.on_job_event(job, deleted=True)

        self.on_job, self.on_job_deleted = added, deleted

    def deleted_stray(self, key: str) -> None:
        super().deleted_stray(key)
        self.gone.disown(key)

    def jobs_for(self, owner_uid: str) -> Sequence[Job]:
        live = list(super().jobs_for(owner_uid))
        return sorted([*live, *self.gone.of(owner_uid)], key=lambda job: job.metadata.name)

    async def delete_job(self, namespace: str, name: str, uid: str = "") -> None:
        self.sent.append(name)
        if (namespace, name) not in self.jobs:
            raise from_status(404, {"kind": "Status", "code": 404, "reason": "NotFound", "message": name})
        await super().delete_job(namespace, name, uid)


def deletes(metrics: Metrics, reason: str) -> float:
    found = metrics.registry.get_sample_value("zen_flow_job_deletes_total", {"reason": reason})
    return found or 0.0


def cluster(clock: FakeClock, logs: str = "on") -> tuple[Cluster, Controller, Archiver, Store, Metrics]:
    api, store = Cluster(clock), Store()
    _, ctrl, archive, _, _, metrics = rig(clock, restarted=(api, store, Pods()), mode=logs)
    api.wire(ctrl)
    return api, ctrl, archive, store, metrics


async def spin(api: Cluster, ctrl: Controller, clock: FakeClock, rounds: int, step: float) -> None:
    for _ in range(rounds):
        if KEY in api.flows:
            await ctrl.reconcile(KEY)
        await clock.advance(0)
        api.sync()
        await clock.advance(step)


async def test_a_succeeded_steps_job_goes_once_its_logs_are_written_and_the_record_lists_them() -> None:
    clock = FakeClock()
    api, ctrl, archive, store, metrics = cluster(clock)
    writers = asyncio.create_task(archive.run())
    first, second = job_name("nightly", "s0", 0), job_name("nightly", "s1", 0)
    try:
        store.logs_down = "HTTP 503 SlowDown"
        policy = {"jobRetention": "FailedOnly", "ttlSecondsAfterFinished": 86400}
        steps = [job_step("s0"), job_step("s1", "s0")]
        api.create_flow(make_flow(steps, name="nightly", namespace=NS, execution_policy=policy))
        api.sync()
        await spin(api, ctrl, clock, 2, 0)
        api.finish_job(NS, first)
        api.sync()
        await spin(api, ctrl, clock, 6, 2)
        assert (NS, second) in api.jobs  # s1 started, its start stored...
        assert (NS, first) in api.jobs  # ...and s0's Job waits for its logs
        store.logs_down = ""
        await spin(api, ctrl, clock, 4, 300)
        assert (NS, first) not in api.jobs
        api.finish_job(NS, second)
        api.sync()
        await spin(api, ctrl, clock, 6, 2)
        assert api.flows[KEY].status.phase == "Succeeded"
        assert not api.jobs
        assert [s.phase for s in api.flows[KEY].status.steps] == ["Succeeded", "Succeeded"]
        # Each deleted once: no tombstone brought them back to a later plan (informer/tombstones.py).
        assert api.sent == [first, second]
        assert api.disowned == [f"{NS}/{first}", f"{NS}/{second}"]
        assert deletes(metrics, "succeeded") == 2
        assert count(metrics, "skipped") == 0
        # The record lists both attempts' logs, though both Jobs were gone when it was written.
        listed = [(e["job"], e["container"]) for e in record(store)["logs"]]
        assert listed == [(job, c) for job in (first, second) for c in ("main", "sidecar")]
    finally:
        writers.cancel()


async def test_a_superseded_attempts_job_is_deleted_once() -> None:
    clock = FakeClock()
    api, ctrl, _, _, metrics = cluster(clock, logs="off")
    retries = {"limit": 1, "backoff": {"duration": "1s", "type": "Fixed"}}
    policy = {"jobRetention": "LastAttempt", "ttlSecondsAfterFinished": 86400}
    flow = make_flow(
        [job_step("s0", retryPolicy=retries)], name="nightly", namespace=NS, execution_policy=policy
    )
    api.create_flow(flow)
    api.sync()
    await spin(api, ctrl, clock, 2, 0)
    first, second = job_name("nightly", "s0", 0), job_name("nightly", "s0", 1)
    api.finish_job(NS, first, succeeded=False)
    api.sync()
    await spin(api, ctrl, clock, 6, 2)
    assert (NS, second) in api.jobs
    api.finish_job(NS, second)
    api.sync()
    await spin(api, ctrl, clock, 6, 2)
    assert api.flows[KEY].status.phase == "Succeeded"
    assert set(api.jobs) == {(NS, second)}  # the last attempt's Job stays
    # Sent once, with no tombstone kept of it: the plans after it do not delete it again.
    assert api.sent == [first]
    assert api.disowned == [f"{NS}/{first}"]
    assert deletes(metrics, "superseded") == 1


async def test_a_job_someone_else_deleted_is_not_counted_as_the_controllers_delete() -> None:
    clock = FakeClock()
    api, ctrl, _, _, metrics = cluster(clock, logs="off")
    policy = {"jobRetention": "FailedOnly", "ttlSecondsAfterFinished": 86400}
    api.create_flow(make_flow([job_step("s0")], name="nightly", namespace=NS, execution_policy=policy))
    api.sync()
    await spin(api, ctrl, clock, 2, 0)
    job = job_name("nightly", "s0", 0)
    api.finish_job(NS, job)
    api.sync()
    await spin(api, ctrl, clock, 1, 0)  # the plan that marks s0 Succeeded (and so the flow)
    assert api.flows[KEY].status.phase == "Succeeded"
    del api.jobs[(NS, job)]  # `kubectl delete job` before the next plan: its tombstone stays
    api.sync()
    await spin(api, ctrl, clock, 4, 2)
    assert api.sent == [job]  # the tombstone's delete, answered 404...
    assert deletes(metrics, "succeeded") == 0  # ...deleted nothing
    assert api.flows[KEY].status.phase == "Succeeded"
