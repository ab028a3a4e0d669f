"""A controller running its real worker loop and queue against FakeApiServer, on a FakeClock: the `rig`
fixture (conftest.py), parametrized indirectly with the flow it starts from."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from zen_flow.api import JobFlow
from zen_flow.controller.cloud_event_sink import CloudEventSink
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.reconciler import Controller
from zen_flow.controller.shard_gate import ShardGate
from zen_flow.machinery.expectations import Expectations
from zen_flow.machinery.workqueue import WorkQueue
from zen_flow_dev.testing.apiserver_fake import FakeApiServer
from zen_flow_dev.testing.clock import FakeClock, settle


@dataclass
class Rig:
    api: FakeApiServer
    clock: FakeClock
    metrics: Metrics
    controller: Controller
    key: str

    @property
    def flow(self) -> JobFlow:
        return self.api.flows[self.key]

    def step(self, name: str) -> str:
        found = self.flow.status.step(name)
        return found.phase if found is not None else ""

    def job(self, step: str) -> str:
        found = self.flow.status.step(step)
        assert found is not None
        assert found.job_ref is not None
        return found.job_ref.name

    def count(self, family: str, result: str) -> float:
        value = self.metrics.registry.get_sample_value(family, {"result": result})
        return value or 0.0

    async def settle(self, seconds: float = 1.0) -> None:
        """Let the worker run; `seconds` later (rate-limited retries are milliseconds apart)."""
        await self.clock.advance(seconds)
        await settle()


@asynccontextmanager
async def running(
    flow: JobFlow,
    *,
    cloud_events: CloudEventSink | None = None,
    shards: ShardGate | None = None,
    progress_deadline: float = 0.0,
) -> AsyncIterator[Rig]:
    clock = FakeClock()
    api = FakeApiServer(clock)
    created = api.create_flow(flow)
    metrics = Metrics()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    ctrl = Controller(
        flows=api, jobs=api, api=api, queue=queue, expectations=Expectations(clock), events=api,
        clock=clock, metrics=metrics, cloud_events=cloud_events, shards=shards,
        progress_deadline=progress_deadline,
    )  # fmt: skip
    api.on_flow = ctrl.on_flow_event
    api.on_job = ctrl.on_job_event
    api.on_job_deleted = lambda job: ctrl.on_job_event(job, deleted=True)
    worker = asyncio.create_task(ctrl.run_worker())
    try:
        yield Rig(api, clock, metrics, ctrl, created.key)
    finally:
        queue.shutdown()
        await worker


def applied_then(api: FakeApiServer, answer: BaseException) -> list[str]:
    """The apiserver applies the next status write, but the controller gets `answer` instead of its
    reply (a lost answer; a 409 to the client's retry of the applied write). Returns the versions so
    written."""
    real = api.patch_flow_status
    applied: list[str] = []

    async def patch(namespace: str, name: str, ops: list[dict[str, Any]]) -> str:
        version = await real(namespace, name, ops)
        if not applied:
            applied.append(version)
            raise answer
        return version

    api.patch_flow_status = patch  # type: ignore[method-assign]
    return applied
