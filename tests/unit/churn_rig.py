"""Months of churn in seconds: flows created, run, finished and deleted, over and over, against the real
Controller, worker loop and WorkQueue on FakeApiServer and a FakeClock, with the deletions that land while
one of the flow's own requests is in flight (a watch event is handled during any await). What a
long-running controller keeps of a flow must go with it: a leak here grows with every deletion."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog

from zen_flow.api.pod import Pod
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.reconciler import Controller
from zen_flow.kube.errors import from_status
from zen_flow.machinery.expectations import Expectations
from zen_flow.machinery.workqueue import WorkQueue
from zen_flow_dev.testing.apiserver_fake import FakeApiServer
from zen_flow_dev.testing.clock import FakeClock, settle
from zen_flow_dev.testing.flows import job_step, make_flow

NS = "team-a"
DAY = {"ttlSecondsAfterFinished": 86400}  # what the mutating webhook defaults
SHORT = {"ttlSecondsAfterFinished": 2}

# When the flow is deleted (its watch event handled by the controller) in each scenario.
STATUS_WRITE = "while its first status write is in flight (applied)"
STATUS_503 = "while its first status write is in flight, which then gets a 503"
POD_READ = "while its pending Job's pods are read"
JOB_READ = "while its Job, missing from the cache, is read"
TTL_EVENT_FIRST = "by its TTL, the watch event before the DELETE's answer"
FINISHED = "by someone else once finished (a history limit, a user)"
RECREATED = "and re-created under its name while the watch was away (a relist), then deleted"
SCENARIOS = (STATUS_WRITE, STATUS_503, POD_READ, JOB_READ, TTL_EVENT_FIRST, FINISHED, RECREATED)


class ChurnedApi(FakeApiServer):
    """FakeApiServer where the flow `victim` is deleted, and the caches see it at once, during one of its
    requests (`during`: a scenario above); the DELETE of a flow is seen by the caches before its answer."""

    victim: str | None = None
    during = ""

    def _strike(self, during: str) -> bool:
        if self.victim is None or self.during != during:
            return False
        self.flows.pop(self.victim, None)
        self.victim = None
        self.sync()
        return True

    async def patch_flow_status(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> str:
        if self._strike(STATUS_503):
            raise from_status(503, {"kind": "Status", "code": 503, "reason": "ServiceUnavailable"})
        version = await super().patch_flow_status(namespace, name, ops)
        self._strike(STATUS_WRITE)
        return version

    async def pods_of(self, namespace: str, job: str, *, cached: bool = False) -> Sequence[Pod]:
        self._strike(POD_READ)
        return await super().pods_of(namespace, job, cached=cached)

    async def get_job(self, namespace: str, name: str) -> Any:
        job = await super().get_job(namespace, name)
        self._strike(JOB_READ)
        return job

    async def delete_flow(self, namespace: str, name: str, uid: str) -> None:
        await super().delete_flow(namespace, name, uid)
        self.sync()


@dataclass
class Churn:
    api: ChurnedApi
    clock: FakeClock
    queue: WorkQueue[str]
    metrics: Metrics
    controller: Controller

    def errors(self) -> float:
        found = self.metrics.registry.get_sample_value("zen_flow_reconcile_total", {"result": "error"})
        return found or 0.0

    async def settle(self, seconds: float = 1.0) -> None:
        await self.clock.advance(seconds)
        await settle()

    async def cycle(self, name: str, scenario: str) -> None:
        """One flow's life, ended as `scenario` says; its Jobs then go (the garbage collector)."""
        api, key = self.api, f"{NS}/{name}"
        policy = SHORT if scenario == TTL_EVENT_FIRST else DAY
        api.create_flow(make_flow([job_step("s0")], name=name, namespace=NS, execution_policy=policy))
        if scenario in (STATUS_WRITE, STATUS_503):
            api.victim, api.during = key, scenario
        await self._synced()
        if key in api.flows:
            (job,) = [n for (_, n) in api.jobs if n.startswith(f"{name}-")]
            if scenario == POD_READ:
                api.victim, api.during = key, scenario
                api.report_pods(NS, job, ready=0, active=1)
                await self._synced(120)
            elif scenario == JOB_READ:
                api.victim, api.during = key, scenario
                api.unwatched.add((NS, job))
                await self._synced()
            elif scenario == RECREATED:
                api.remove_flow(key)
                api.create_flow(make_flow([job_step("s0")], name=name, namespace=NS, execution_policy=policy))
                await self._synced()
                api.remove_flow(key)
            else:
                api.finish_job(NS, job)
                await self._synced()
                if scenario == FINISHED:
                    api.remove_flow(key)
                else:
                    await self._synced(SHORT["ttlSecondsAfterFinished"] + 1)
        assert key not in api.flows, f"{scenario}: the flow was not deleted"
        api.victim = None
        api.jobs = {k: j for k, j in api.jobs.items() if not k[1].startswith(f"{name}-")}
        api.unwatched.clear()
        await self._synced()

    async def _synced(self, seconds: float = 1.0) -> None:
        self.api.sync()
        await self.settle(seconds)
        self.api.sync()
        await self.settle()


@asynccontextmanager
async def churning() -> AsyncIterator[Churn]:
    clock = FakeClock()
    api = ChurnedApi(clock)
    metrics = Metrics()
    queue: WorkQueue[str] = WorkQueue(name="test", clock=clock)
    ctrl = Controller(
        flows=api, jobs=api, api=api, queue=queue, expectations=Expectations(clock), events=api,
        clock=clock, metrics=metrics,
    )  # fmt: skip
    api.on_flow, api.on_flow_deleted = ctrl.on_flow_event, ctrl.on_flow_deleted
    api.on_job = ctrl.on_job_event
    api.on_job_deleted = lambda job: ctrl.on_job_event(job, deleted=True)
    worker = asyncio.create_task(ctrl.run_worker())
    try:
        with structlog.testing.capture_logs():  # hundreds of lines, tracebacks rendered: seconds
            yield Churn(api, clock, queue, metrics, ctrl)
    finally:
        queue.shutdown()
        await worker
