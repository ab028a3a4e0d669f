"""Controller: a fan-out creates its Jobs concurrently; one failed create stops none of the others."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from scripted_controller_rig import Fake, controller

from zen_flow.api import Job
from zen_flow.api.job import JOB
from zen_flow.controller.executor import CREATE_CONCURRENCY
from zen_flow.kube.errors import ApiError
from zen_flow.machinery.expectations import Expectations
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow

WIDTH = 3 * CREATE_CONCURRENCY


class FanOut(Fake):
    """The rig's caches and API for one flow of WIDTH independent steps, whose Job creates answer only
    once CREATE_CONCURRENCY of them are in flight."""

    def __init__(self, *, fail: str = "") -> None:
        super().__init__(make_flow([job_step(f"s{i}") for i in range(WIDTH)], name="wide"))
        self.fail = fail
        self.attempted: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.crowded = asyncio.Event()

    async def create_job(self, namespace: str, body: dict[str, Any]) -> Job:
        name = body["metadata"]["name"]
        self.attempted.append(name)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.in_flight >= CREATE_CONCURRENCY:
            self.crowded.set()
        try:
            # Answer only once the gate is full: a create loop that awaits each answer never gets here twice.
            await asyncio.wait_for(self.crowded.wait(), timeout=5)
        finally:
            self.in_flight -= 1
        if body["metadata"]["labels"]["workflow.kube-zen.io/step"] == self.fail:
            raise ApiError(500, "InternalError", "etcd hiccup")
        return JOB.validate_python({"metadata": {**body["metadata"], "uid": f"uid-{name}"}})

    async def delete_job(self, namespace: str, name: str, uid: str = "") -> None:
        raise AssertionError("nothing is deleted here")

    async def delete_flow(self, namespace: str, name: str, uid: str) -> None:
        raise AssertionError("the flow is not deleted here")


async def test_a_fan_out_creates_its_jobs_concurrently_but_bounded() -> None:
    fake, clock = FanOut(), FakeClock()
    await controller(fake, clock).reconcile(fake.flow.key)
    assert len(set(fake.attempted)) == WIDTH
    assert fake.most_in_flight == CREATE_CONCURRENCY


async def test_a_failed_create_neither_stops_the_others_nor_leaves_its_expectation() -> None:
    fake, clock = FanOut(fail="s1"), FakeClock()
    expectations = Expectations(clock)
    with pytest.raises(ApiError, match="etcd hiccup"):
        await controller(fake, clock, expectations=expectations).reconcile(fake.flow.key)
    assert len(set(fake.attempted)) == WIDTH
    pending = expectations.pending_creations(fake.flow.metadata.uid)
    # Created Jobs wait for their watch events; the failed one is not waited for.
    assert len(pending) == WIDTH - 1
    assert not any(name.startswith("wide-s1-") for name in pending)
