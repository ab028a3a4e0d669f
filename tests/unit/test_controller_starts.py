"""Controller: a burst of new flows leaves workers free for the next steps of flows already running."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from zen_flow import config
from zen_flow.api import Job
from zen_flow.api.constants import LABEL_FLOW
from zen_flow.config import Settings
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.reconciler import Controller
from zen_flow.machinery.expectations import Expectations
from zen_flow.machinery.workqueue import WorkQueue
from zen_flow_dev.testing.apiserver_fake import FakeApiServer
from zen_flow_dev.testing.clock import FakeClock, settle
from zen_flow_dev.testing.flows import job_step, make_flow

WORKERS = 4
NEW_FLOWS = 2 * WORKERS


class SlowStarts(FakeApiServer):
    """The fake apiserver, where the Job create of every flow but `running` hangs until `release` is set
    (an apiserver slow to answer a burst), and the running flow's creates answer at once."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.release = asyncio.Event()
        self.hanging = 0

    async def create_job(self, namespace: str, body: dict[str, Any]) -> Job:
        if body["metadata"]["labels"][LABEL_FLOW] != "running":
            self.hanging += 1
            await self.release.wait()
        return await super().create_job(namespace, body)


@pytest.mark.parametrize("start_workers", [0, WORKERS])
async def test_a_running_flows_next_step_does_not_wait_behind_a_burst_of_new_flows(
    start_workers: int,
) -> None:
    settings = Settings(workers=WORKERS, start_workers=start_workers)
    clock = FakeClock()
    api = SlowStarts(clock)
    controller = Controller(
        flows=api,
        jobs=api,
        api=api,
        queue=WorkQueue(clock=clock, low_limit=settings.start_limit),
        expectations=Expectations(clock),
        events=api,
        clock=clock,
        metrics=Metrics(),
    )
    api.on_flow, api.on_job = controller.on_flow_event, controller.on_job_event
    running = api.create_flow(make_flow([job_step("a"), job_step("b", "a")], name="running"))
    api.sync()
    await controller.reconcile(running.key)  # step a runs
    api.sync()
    workers = [asyncio.create_task(controller.run_worker()) for _ in range(WORKERS)]
    try:
        for i in range(NEW_FLOWS):  # created by users: not started, so low keys
            api.create_flow(make_flow([job_step("a")], name=f"new-{i}"))
        api.sync()
        await settle()
        assert api.hanging == settings.start_limit
        (job_a,) = api.job_creates
        api.finish_job(running.metadata.namespace, job_a)  # its reconcile creates step b
        api.sync()
        await settle()
        b_created = any(name.startswith("running-b-") for name in api.job_creates)
        if start_workers == 0:  # by default a quarter of the workers (at least one) stays free for them
            assert settings.start_limit == WORKERS - 1
            assert b_created, "step b waited for a worker held by a new flow's create"
        else:  # every worker may start flows: all of them hang on the burst, step b waits
            assert not b_created
        api.release.set()
        await settle()
        assert api.hanging == NEW_FLOWS
        assert any(name.startswith("running-b-") for name in api.job_creates)
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
