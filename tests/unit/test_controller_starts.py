"""Controller: a burst of new flows leaves workers free for the next steps of flows already running."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from zen_flow import config
from zen_flow.api import Job, JobFlow
from zen_flow.api.job import JOB
from zen_flow.api.meta import ObjectMeta
from zen_flow.config import Settings
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.reconciler import Controller
from zen_flow.machinery.expectations import Expectations
from zen_flow.machinery.workqueue import WorkQueue
from zen_flow_dev.testing.clock import FakeClock, settle
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

WORKERS = 4
NEW_FLOWS = 2 * WORKERS
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def versioned(flow: JobFlow) -> JobFlow:
    return flow.model_copy(update={"metadata": flow.metadata.model_copy(update={"resource_version": "1"})})


class Cluster:
    """Flow and Job caches and a cluster API where the first Job create of every new flow hangs until
    `release` is set (an apiserver slow to answer a burst), and the running flow's creates answer at once."""

    def __init__(self) -> None:
        sim = Simulator(make_flow([job_step("a"), job_step("b", "a")], name="running"), T0)
        sim.reconcile()
        sim.complete(sim.running()[0])  # its step a just finished: step b is due
        self.running = versioned(sim.flow)
        self.running_jobs: Sequence[Job] = tuple(sim.jobs.values())
        self.flows = {self.running.key: self.running}
        for i in range(NEW_FLOWS):
            new = versioned(make_flow([job_step("a")], name=f"new-{i}"))
            self.flows[new.key] = new
        self.release = asyncio.Event()
        self.hanging = 0
        self.created: list[str] = []

    def get(self, key: str) -> JobFlow | None:
        return self.flows.get(key)

    def parse_error(self, key: str) -> str | None:
        return None

    def concurrency_group(self, group: str) -> Sequence[JobFlow]:
        return ()

    def expect_status(self, flow: JobFlow, resource_version: str, ops: list[dict[str, Any]]) -> None:
        pass

    def jobs_for(self, owner_uid: str) -> Sequence[Job]:
        return self.running_jobs if owner_uid == self.running.metadata.uid else ()

    async def create_job(self, namespace: str, body: dict[str, Any]) -> Job:
        flow = body["metadata"]["labels"]["workflow.kube-zen.io/flow"]
        if flow != "running":
            self.hanging += 1
            await self.release.wait()
        self.created.append(body["metadata"]["name"])
        return JOB.validate_python({"metadata": {**body["metadata"], "uid": "uid-job"}})

    async def delete_job(self, namespace: str, name: str) -> None:
        raise AssertionError("nothing is deleted here")

    async def patch_flow_status(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> str:
        return "2"

    async def delete_flow(self, namespace: str, name: str, uid: str) -> None:
        raise AssertionError("no flow is deleted here")

    async def create_resource(self, namespace: str, kind: str, body: dict[str, Any]) -> ObjectMeta:
        raise AssertionError("no resourceTemplates here")

    async def get_resource(self, namespace: str, kind: str, name: str) -> ObjectMeta:
        raise AssertionError("no resourceTemplates here")

    async def termination_messages(self, namespace: str, job: str, *, succeeded: bool) -> None:
        return None

    def emit(self, flow: JobFlow, type_: str, reason: str, message: str) -> None:
        pass


@pytest.mark.parametrize("start_workers", [0, WORKERS])
async def test_a_running_flows_next_step_does_not_wait_behind_a_burst_of_new_flows(
    start_workers: int,
) -> None:
    settings = Settings(workers=WORKERS, start_workers=start_workers)
    cluster, clock = Cluster(), FakeClock()
    controller = Controller(
        flows=cluster,
        jobs=cluster,
        api=cluster,
        queue=WorkQueue(clock=clock, low_limit=settings.start_limit),
        expectations=Expectations(clock),
        events=cluster,
        clock=clock,
        metrics=Metrics(),
    )
    workers = [asyncio.create_task(controller.run_worker()) for _ in range(WORKERS)]
    try:
        for key, flow in cluster.flows.items():
            if key != cluster.running.key:
                controller.on_flow_event(flow)  # created by a user: not started, so a low key
        await settle()
        assert cluster.hanging == settings.start_limit
        # The running flow's Job completed: its reconcile creates step b.
        controller.on_job_event(cluster.running_jobs[0])
        await settle()
        b_created = any(name.startswith("running-b-") for name in cluster.created)
        if start_workers == 0:  # by default a quarter of the workers (at least one) stays free for them
            assert settings.start_limit == WORKERS - 1
            assert b_created, "step b waited for a worker held by a new flow's create"
        else:  # every worker may start flows: all of them hang on the burst, step b waits
            assert not b_created
        cluster.release.set()
        await settle()
        assert cluster.hanging == NEW_FLOWS
        assert any(name.startswith("running-b-") for name in cluster.created)
    finally:
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


@pytest.mark.parametrize(
    ("env", "limit"),
    [
        ({}, 6),
        ({"ZEN_FLOW_WORKERS": "1"}, 1),
        ({"ZEN_FLOW_WORKERS": "2"}, 1),
        ({"ZEN_FLOW_WORKERS": "16", "ZEN_FLOW_START_WORKERS": "4"}, 4),
    ],
)
def test_how_many_workers_may_start_new_flows(env: dict[str, str], limit: int) -> None:
    assert config.load(None, env=env).start_limit == limit


def test_more_start_workers_than_workers_is_refused_naming_the_flag() -> None:
    with pytest.raises(ValueError, match="--start-workers must be between 0"):
        config.load(None, env={"ZEN_FLOW_WORKERS": "4", "ZEN_FLOW_START_WORKERS": "5"})
