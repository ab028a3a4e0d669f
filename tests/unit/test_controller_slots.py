"""Controller: limits on running flows as the reconciler keeps them (planner/slots.py wired to the flow
and Job informers' events and to each plan): a flow deleted while its plan runs, a change the cache shows
before a start write lands, and Jobs whose start no status records."""

from __future__ import annotations

import asyncio
from typing import Any

from zen_flow.api import JobFlow
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.reconciler import Controller
from zen_flow.kube.errors import from_status
from zen_flow.kube.memo_caches import ConfigMapData
from zen_flow.machinery.expectations import Expectations
from zen_flow.machinery.workqueue import WorkQueue
from zen_flow.planner import SlotLimits
from zen_flow.planner.slots import waiting_message
from zen_flow_dev.testing.apiserver_fake import FakeApiServer
from zen_flow_dev.testing.clock import FakeClock, settle
from zen_flow_dev.testing.flows import job_step, make_flow

NS = "team-a"
FULL = waiting_message(1, NS)


class GatedApi(FakeApiServer):
    """The fake apiserver, where memo cache reads, and the status writes of the flows in `slow`, wait for
    their gate when it is closed (a slow apiserver): a plan, or its write, is in flight meanwhile."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.reads = asyncio.Event()
        self.reads.set()
        self.writes = asyncio.Event()
        self.writes.set()
        self.slow: set[str] = set()

    async def read_memo_cache(self, namespace: str, name: str) -> ConfigMapData:
        await self.reads.wait()
        raise from_status(404, {"reason": "NotFound", "message": f'configmaps "{name}" not found'})

    async def patch_flow_status(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> str:
        if name in self.slow:
            await self.writes.wait()
        return await super().patch_flow_status(namespace, name, ops)


def controller(api: FakeApiServer, clock: FakeClock) -> Controller:
    made = Controller(
        flows=api,
        jobs=api,
        api=api,
        queue=WorkQueue(clock=clock),
        expectations=Expectations(clock),
        events=api,
        clock=clock,
        metrics=Metrics(),
        slots=SlotLimits(per_namespace=1),
    )
    api.on_flow, api.on_flow_deleted, api.on_job = made.on_flow_event, made.on_flow_deleted, made.on_job_event
    return made


def flow(name: str, **kwargs: Any) -> JobFlow:
    return make_flow([job_step("s0", **kwargs)], name=name, namespace=NS)


def memoized(name: str) -> JobFlow:
    return flow(name, memoize={"key": "k", "maxAge": "1h", "cache": {"configMap": {"name": "memo"}}})


def with_jobs(api: FakeApiServer) -> list[str]:
    """The flows with a Job running."""
    return sorted({r.name for j in api.jobs.values() if not j.finished for r in j.metadata.owner_references})


async def test_a_flow_deleted_while_its_plan_runs_leaves_no_slot_taken() -> None:
    clock = FakeClock()
    api = GatedApi(clock)
    ctrl = controller(api, clock)
    api.create_flow(memoized("a"))
    await clock.advance(1)
    api.create_flow(flow("b"))
    api.sync()
    api.reads.clear()
    planning = asyncio.create_task(ctrl.reconcile(f"{NS}/a"))  # a's plan waits for its memo read
    await settle()
    await ctrl.reconcile(f"{NS}/b")
    assert api.flows[f"{NS}/b"].status.message == FULL
    api.remove_flow(f"{NS}/a")
    api.sync()
    api.reads.set()
    await asyncio.gather(planning, return_exceptions=True)  # its status write finds no flow
    await ctrl.reconcile(f"{NS}/b")
    assert api.flows[f"{NS}/b"].status.phase == "Running"


async def test_a_change_the_cache_shows_before_a_start_write_lands_lets_no_other_flow_start() -> None:
    clock = FakeClock()
    api = GatedApi(clock)
    ctrl = controller(api, clock)
    api.create_flow(flow("a"))
    await clock.advance(1)
    api.create_flow(flow("b"))
    api.sync()
    api.writes.clear()
    api.slow.add("a")
    starting = asyncio.create_task(ctrl.reconcile(f"{NS}/a"))  # a's Job is created, its write waits
    await settle()
    assert with_jobs(api) == ["a"]
    # A user suspends a meanwhile; the flow informer shows it (not started, suspended), the Job one lags.
    api.update_flow(
        f"{NS}/a", lambda f: f.model_copy(update={"spec": f.spec.model_copy(update={"suspend": True})})
    )
    api.sync(jobs=False)
    await ctrl.reconcile(f"{NS}/b")
    assert with_jobs(api) == ["a"]
    assert api.flows[f"{NS}/b"].status.message == FULL
    api.writes.set()
    await asyncio.gather(starting, return_exceptions=True)


async def test_a_running_job_the_job_informer_shows_after_its_flow_holds_the_flows_slot() -> None:
    # After a restart: `lost` created its Job but its status write was lost; `first`, older, was
    # suspended then and has been resumed since.
    clock = FakeClock()
    api = FakeApiServer(clock)
    before = controller(api, clock)
    api.create_flow(
        flow("first").model_copy(update={"spec": flow("first").spec.model_copy(update={"suspend": True})})
    )
    await clock.advance(1)
    api.create_flow(flow("lost"))
    api.sync()
    api.status_errors.append(from_status(500, {"reason": "InternalError", "message": "etcd timeout"}))
    await asyncio.gather(before.reconcile(f"{NS}/lost"), return_exceptions=True)
    assert with_jobs(api) == ["lost"]
    assert api.flows[f"{NS}/lost"].status.start_time is None
    api.update_flow(
        f"{NS}/first", lambda f: f.model_copy(update={"spec": f.spec.model_copy(update={"suspend": False})})
    )
    fresh = FakeApiServer(clock)  # the new leader's caches, the flows' listed before the Jobs'
    fresh.flows, fresh.jobs = api.flows, api.jobs
    after = controller(fresh, clock)
    fresh.sync(jobs=False)
    fresh.sync(flows=False)
    await after.reconcile(f"{NS}/first")
    assert with_jobs(fresh) == ["lost"]
    assert fresh.flows[f"{NS}/first"].status.message == FULL
