"""Controller: a fan-out creates its Jobs concurrently; one failed create stops none of the others."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from zen_flow.api import Job, JobFlow
from zen_flow.api.job import JOB
from zen_flow.api.meta import ObjectMeta
from zen_flow.controller.executor import CREATE_CONCURRENCY
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.reconciler import Controller
from zen_flow.kube.errors import ApiError
from zen_flow.machinery.expectations import Expectations
from zen_flow.machinery.workqueue import WorkQueue
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow

WIDTH = 3 * CREATE_CONCURRENCY


class FanOut:
    """Flow cache, empty Job cache, cluster API and event sink for one flow of WIDTH independent steps."""

    def __init__(self, *, fail: str = "") -> None:
        flow = make_flow([job_step(f"s{i}") for i in range(WIDTH)], name="wide")
        self.flow: JobFlow = flow.model_copy(
            update={"metadata": flow.metadata.model_copy(update={"resource_version": "1"})}
        )
        self.fail = fail
        self.attempted: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.crowded = asyncio.Event()

    def get(self, key: str) -> JobFlow | None:
        return self.flow if key == self.flow.key else None

    def parse_error(self, key: str) -> str | None:
        return None

    def concurrency_group(self, group: str) -> Sequence[JobFlow]:
        return ()

    def expect_status(self, flow: JobFlow, resource_version: str, ops: list[dict[str, Any]]) -> None:
        pass  # this cache takes every version from the fake apiserver

    def deleted_stray(self, key: str) -> None:
        pass

    def jobs_for(self, owner_uid: str) -> Sequence[Job]:
        return ()

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

    async def patch_flow_status(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> str:
        return "2"

    async def delete_flow(self, namespace: str, name: str, uid: str) -> None:
        raise AssertionError("the flow is not deleted here")

    async def create_resource(self, namespace: str, kind: str, body: dict[str, Any]) -> ObjectMeta:
        raise AssertionError("no resourceTemplates here")

    async def get_resource(self, namespace: str, kind: str, name: str) -> ObjectMeta:
        raise AssertionError("no resourceTemplates here")

    def emit(self, flow: JobFlow, type_: str, reason: str, message: str) -> None:
        pass


def controller_for(fake: FanOut, expectations: Expectations, clock: FakeClock) -> Controller:
    return Controller(
        flows=fake,
        jobs=fake,
        api=fake,
        queue=WorkQueue(clock=clock),
        expectations=expectations,
        events=fake,
        clock=clock,
        metrics=Metrics(),
    )


async def test_a_fan_out_creates_its_jobs_concurrently_but_bounded() -> None:
    fake, clock = FanOut(), FakeClock()
    await controller_for(fake, Expectations(clock), clock).reconcile(fake.flow.key)
    assert len(set(fake.attempted)) == WIDTH
    assert fake.most_in_flight == CREATE_CONCURRENCY


async def test_a_failed_create_neither_stops_the_others_nor_leaves_its_expectation() -> None:
    fake, clock = FanOut(fail="s1"), FakeClock()
    expectations = Expectations(clock)
    with pytest.raises(ApiError, match="etcd hiccup"):
        await controller_for(fake, expectations, clock).reconcile(fake.flow.key)
    assert len(set(fake.attempted)) == WIDTH
    pending = expectations.pending_creations(fake.flow.metadata.uid)
    # Created Jobs wait for their watch events; the failed one is not waited for.
    assert len(pending) == WIDTH - 1
    assert not any(name.startswith("wide-s1-") for name in pending)
