"""Controller: a flow's own locks (`spec.synchronization`) as the reconciler keeps them, with the fake
apiserver: a waiting flow stays Pending saying so, with one event naming the holder and no API request
while it waits; the holder's end queues it; a restarted controller finds the holder in its status; the
waiting flows are counted by namespace."""

from __future__ import annotations

from typing import Any

from zen_flow.api import JobFlow
from zen_flow.controller.metric_collectors import FlowCollector
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.reconciler import Controller
from zen_flow.machinery.expectations import Expectations
from zen_flow.machinery.workqueue import WorkQueue
from zen_flow_dev.testing.apiserver_fake import FakeApiServer
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow

NS = "team-a"


class CountingApi(FakeApiServer):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.clock = clock
        self.patches: list[str] = []

    async def patch_flow_status(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> str:
        self.patches.append(name)
        return await super().patch_flow_status(namespace, name, ops)


def flow(name: str) -> JobFlow:
    return make_flow([job_step("s0")], name=name, namespace=NS, synchronization={"mutexes": [{"name": "db"}]})


async def queued(queue: WorkQueue[str]) -> list[str]:
    out = []
    while len(queue):
        key = await queue.get()
        queue.done(key)
        out.append(key)
    return out


def controller(api: CountingApi) -> tuple[Controller, WorkQueue[str]]:
    """A controller (a new process, after a restart: the informers list what the apiserver holds)."""
    queue: WorkQueue[str] = WorkQueue(clock=api.clock)
    ctrl = Controller(
        flows=api,
        jobs=api,
        api=api,
        queue=queue,
        expectations=Expectations(api.clock),
        events=api,
        clock=api.clock,
        metrics=Metrics(),
    )
    api.on_flow, api.on_flow_deleted, api.on_job = ctrl.on_flow_event, ctrl.on_flow_deleted, ctrl.on_job_event
    return ctrl, queue


async def started_pair() -> tuple[CountingApi, Controller, WorkQueue[str]]:
    """a holds db, b waits for it; the queue drained."""
    api = CountingApi(FakeClock())
    ctrl, queue = controller(api)
    api.create_flow(flow("a"))
    await api.clock.advance(1)
    api.create_flow(flow("b"))
    api.sync()
    await ctrl.reconcile(f"{NS}/a")
    api.sync()
    await ctrl.reconcile(f"{NS}/b")
    api.sync()
    await queued(queue)
    return api, ctrl, queue


async def test_a_waiting_flow_stays_pending_says_for_whom_once_and_costs_no_request() -> None:
    api, ctrl, _ = await started_pair()
    a, b = api.flows[f"{NS}/a"].status, api.flows[f"{NS}/b"].status
    assert (a.phase, a.held_locks) == ("Running", ("db",))
    assert (b.phase, b.message, b.held_locks, b.steps[0].phase) == (
        "Pending",
        "waiting for lock db",
        None,
        "Pending",
    )
    assert [e for e in api.events if e[1] == "FlowWaitingForLock"] == [
        ("Normal", "FlowWaitingForLock", "waiting for lock db (db held by jobflow/a)")
    ]
    assert not [e for e in api.events if e[1] == "FlowQueued"]
    patches, creates, events = list(api.patches), list(api.job_creates), list(api.events)
    await ctrl.reconcile(f"{NS}/b")
    assert (api.patches, api.job_creates, api.events) == (patches, creates, events)


async def test_the_holders_end_queues_the_waiting_flow_which_then_starts() -> None:
    api, ctrl, queue = await started_pair()
    (job,) = [name for (ns, name) in api.jobs if ns == NS]
    api.finish_job(NS, job)
    api.sync()
    assert await queued(queue) == [f"{NS}/a"]  # a's Job event; b waits on while a runs
    await ctrl.reconcile(f"{NS}/a")  # a Succeeded: its lock is free
    api.sync()
    assert api.flows[f"{NS}/a"].status.held_locks is None
    assert f"{NS}/b" in await queued(queue)
    await ctrl.reconcile(f"{NS}/b")
    api.sync()
    b = api.flows[f"{NS}/b"].status
    assert (b.phase, b.held_locks, b.steps[0].phase) == ("Running", ("db",), "Running")


async def test_a_restarted_controller_finds_the_holder_in_its_status() -> None:
    api, _, _ = await started_pair()
    ctrl, _ = controller(api)  # a new process: its informers list the Jobs and both flows
    for job in api.jobs.values():
        ctrl.on_job_event(job)
    for cached in api.flows.values():
        ctrl.on_flow_event(cached)
    await ctrl.reconcile(f"{NS}/b")  # planned first: a's status says it holds db
    assert api.flows[f"{NS}/b"].status.phase == "Pending"
    assert len(api.job_creates) == 1


async def test_the_flows_waiting_for_their_locks_are_counted_by_namespace() -> None:
    api, _, _ = await started_pair()
    families = {m.name: m for m in FlowCollector(lambda: api.flows.values()).collect()}
    samples = families["zen_flow_jobflows_waiting_for_lock"].samples
    assert [(s.labels, s.value) for s in samples] == [({"namespace": NS}, 1)]
    slot = families["zen_flow_jobflows_waiting_for_slot"].samples
    assert [s.value for s in slot] == [0]
