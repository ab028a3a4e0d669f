"""Step locks against a real kube-apiserver: two flows whose steps share a mutex (the second waits, says
for whom, `zen-flow get` names the holder too, and it starts once the first ends), a semaphore of 2 with
three flows, and a matrix step of three items with a mutex (one item Job alive at a time).

A watch of the namespace's flows records every stored state, so "never more holders than the limit" is
checked on each, not on a few polls; the test plays the Job controller, finishing one Job at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from controller_steps import WAIT, job_of

from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver, wait_until
from zen_flow_dev.testing.flows import flow_manifest, job_step
from zen_flow_dev.testing.jobstatus import complete_job

pytestmark = pytest.mark.integration

MUTEX = {"mutexes": [{"name": "db"}]}
SEMAPHORE = {"semaphores": [{"name": "warehouse", "limit": 2}]}


class Holders:
    """The flows whose step `work` the apiserver stored Running, and the most at once."""

    def __init__(self) -> None:
        self.holding: set[str] = set()
        self.started: list[str] = []
        self.peak = 0

    def see(self, flow: dict[str, Any]) -> None:
        name = flow["metadata"]["name"]
        steps = {s["name"]: s for s in (flow.get("status") or {}).get("steps", [])}
        if steps.get("work", {}).get("phase") == "Running":
            self.holding.add(name)
            if name not in self.started:
                self.started.append(name)
        else:
            self.holding.discard(name)
        self.peak = max(self.peak, len(self.holding))


@contextlib.asynccontextmanager
async def watching(driver: FlowDriver, namespace: str) -> AsyncIterator[Holders]:
    seen = Holders()

    async def watch() -> None:
        async with driver.flows.watch(namespace, "0", 300) as stream:
            async for event in stream:
                if event.type in ("ADDED", "MODIFIED"):
                    seen.see(event.object)

    watcher = asyncio.create_task(watch())
    try:
        yield seen
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


def locked(name: str, namespace: str, sync: dict[str, Any]) -> dict[str, Any]:
    return flow_manifest(name, namespace, [job_step("work", synchronization=sync)])


async def step_of(driver: FlowDriver, namespace: str, name: str) -> dict[str, Any]:
    flow = await driver.get(namespace, name) or {}
    return next((s for s in (flow.get("status") or {}).get("steps", []) if s["name"] == "work"), {})


async def waits_for(driver: FlowDriver, namespace: str, name: str) -> str | None:
    step = await step_of(driver, namespace, name)
    message = step.get("message") or ""
    return message if step.get("phase") == "Pending" and message.startswith("waiting for lock") else None


async def finish(driver: FlowDriver, namespace: str, name: str) -> None:
    job = await job_of(driver, namespace, "work", flow=name)
    await complete_job(driver.kube, namespace, job["metadata"]["name"])
    await driver.wait_phase(namespace, name, timeout=WAIT)


async def _true(value: bool) -> bool | None:
    return value or None


async def test_a_mutex_makes_the_second_flow_wait_saying_for_whom_then_start_when_the_first_ends(
    namespace: str, driver: FlowDriver, start_controller: StartController, kubectl: Any, kubeconfig: Path
) -> None:
    start_controller()
    async with watching(driver, namespace) as seen:
        await driver.create(locked("first", namespace, MUTEX))
        await job_of(driver, namespace, "work", flow="first")
        await driver.create(locked("second", namespace, MUTEX))
        message = await wait_until(
            lambda: waits_for(driver, namespace, "second"), WAIT, what="second to wait for the lock"
        )
        assert message == "waiting for lock db"
        # What `kubectl get` shows: the flow's message names the step and the lock.
        row = kubectl("get", "jf", "second", "-n", namespace, "--no-headers").stdout
        assert row.rstrip().endswith("work waiting for lock db")

        async def told() -> list[str] | None:
            items = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
            found = [
                e["message"]
                for e in items
                if e["involvedObject"]["name"] == "second" and e["reason"] == "StepWaitingForLock"
            ]
            return found or None

        # The event, once, names the holder.
        assert await wait_until(told, WAIT, what="the StepWaitingForLock event") == [
            "step work: waiting for lock db (db held by jobflow/first step work)"
        ]
        assert "second" not in {
            j["metadata"]["labels"].get("workflow.kube-zen.io/flow") for j in await driver.jobs(namespace)
        }
        # `zen-flow get` names the holder on the waiting step's row (from one LIST of the namespace).
        command = [sys.executable, "-m", "zen_flow", "get", "second", "-n", namespace]
        shown = await asyncio.to_thread(
            subprocess.run,
            [*command, "--kubeconfig", str(kubeconfig)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert shown.returncode == 0, shown.stderr
        assert "waiting for lock db: held by jobflow/first step work\n" in shown.stdout

        await finish(driver, namespace, "first")
        await finish(driver, namespace, "second")  # its Job comes once first's step ended
        assert seen.started == ["first", "second"]
        assert seen.peak == 1


async def test_a_semaphore_of_two_lets_two_of_three_flows_run_and_the_third_after_one_ends(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    start_controller()
    names = ["one", "two", "three"]
    async with watching(driver, namespace) as seen:
        for name in names:
            await driver.create(locked(name, namespace, SEMAPHORE))
        await wait_until(lambda: _true(len(seen.holding) == 2), WAIT, what="two holders")
        waiting = next(n for n in names if n not in seen.holding)
        message = await wait_until(
            lambda: waits_for(driver, namespace, waiting), WAIT, what="the third to wait"
        )
        assert message == "waiting for lock warehouse"
        first = sorted(seen.holding)[0]
        await finish(driver, namespace, first)
        await finish(driver, namespace, waiting)
        for name in names:
            if name not in (first, waiting):
                await finish(driver, namespace, name)
        assert seen.peak == 2
        assert seen.started[-1] == waiting


class AliveJobs:
    """The namespace's Jobs that exist and have not finished, from a watch of every stored state, and the
    most at once."""

    def __init__(self) -> None:
        self.alive: set[str] = set()
        self.peak = 0

    def see(self, kind: str, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        conditions = (job.get("status") or {}).get("conditions") or []
        done = any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions)
        if kind == "DELETED" or done:
            self.alive.discard(name)
        else:
            self.alive.add(name)
        self.peak = max(self.peak, len(self.alive))


async def test_a_mutex_on_a_matrix_step_runs_one_item_job_at_a_time_and_every_item_succeeds(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    start_controller()
    seen = AliveJobs()

    async def watch() -> None:
        async with driver.jobs_api.watch(namespace, "0", 300) as stream:
            async for event in stream:
                if event.type in ("ADDED", "MODIFIED", "DELETED"):
                    seen.see(event.type, event.object)

    watcher = asyncio.create_task(watch())
    try:
        matrix = {"parameters": [{"name": "shard", "values": ["0", "1", "2"]}]}
        await driver.create(
            flow_manifest("items", namespace, [job_step("work", matrix=matrix, synchronization=MUTEX)])
        )
        for item in ("work-0", "work-1", "work-2"):
            job = await job_of(driver, namespace, item, flow="items")
            if item == "work-0":
                message = await wait_until(
                    lambda: _waiting_item(driver, namespace, "work-1"), WAIT, what="work-1 to wait"
                )
                assert message == "waiting for lock db"
            await complete_job(driver.kube, namespace, job["metadata"]["name"])
        flow = await driver.wait_phase(namespace, "items", timeout=WAIT)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    assert flow["status"]["phase"] == "Succeeded"
    assert {s["name"]: s["phase"] for s in flow["status"]["steps"]} == dict.fromkeys(
        ("work-0", "work-1", "work-2"), "Succeeded"
    )
    assert seen.peak == 1


async def _waiting_item(driver: FlowDriver, namespace: str, item: str) -> str | None:
    flow = await driver.get(namespace, "items") or {}
    step = next((s for s in (flow.get("status") or {}).get("steps", []) if s["name"] == item), {})
    message = step.get("message") or ""
    return message if step.get("phase") == "Pending" and message.startswith("waiting for lock") else None


class FlowMoments:
    """From one watch of the namespace's flows (one stream: stored order), the order in which each flow
    first held its own locks and first ended."""

    def __init__(self) -> None:
        self.order: list[str] = []

    def see(self, flow: dict[str, Any]) -> None:
        name, status = flow["metadata"]["name"], flow.get("status") or {}
        for moment, reached in (
            (f"{name} holds", bool(status.get("heldLocks"))),
            (f"{name} ended", status.get("phase") in ("Succeeded", "Failed")),
        ):
            if reached and moment not in self.order:
                self.order.append(moment)


async def test_a_flow_level_mutex_starts_the_second_flow_only_after_the_first_ended_its_finally_steps_too(
    namespace: str, driver: FlowDriver, start_controller: StartController, kubectl: Any
) -> None:
    start_controller()
    seen = FlowMoments()

    async def watch() -> None:
        async with driver.flows.watch(namespace, "0", 300) as stream:
            async for event in stream:
                if event.type in ("ADDED", "MODIFIED"):
                    seen.see(event.object)

    def own(name: str) -> dict[str, Any]:
        steps = [job_step("work"), {**job_step("cleanup"), "finally": True}]
        return flow_manifest(name, namespace, steps, synchronization=MUTEX)

    async def second_jobs() -> list[str]:
        return [
            j["metadata"]["name"]
            for j in await driver.jobs(namespace)
            if j["metadata"]["labels"].get("workflow.kube-zen.io/flow") == "second"
        ]

    watcher = asyncio.create_task(watch())
    try:
        await driver.create(own("first"))
        work = await job_of(driver, namespace, "work", flow="first")
        await driver.create(own("second"))

        async def second_waits() -> str | None:
            flow = await driver.get(namespace, "second") or {}
            status = flow.get("status") or {}
            return (
                status.get("message") if status.get("phase") == "Pending" and status.get("message") else None
            )

        assert await wait_until(second_waits, WAIT, what="second to wait") == "waiting for lock db"
        second = await driver.get(namespace, "second") or {}
        queued = next(c for c in second["status"]["conditions"] if c["type"] == "Queued")
        assert (queued["status"], queued["reason"]) == ("True", "WaitingForLock")

        async def told() -> list[str] | None:
            items = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
            found = [
                e["message"]
                for e in items
                if e["involvedObject"]["name"] == "second" and e["reason"] == "FlowWaitingForLock"
            ]
            return found or None

        assert await wait_until(told, WAIT, what="the FlowWaitingForLock event") == [
            "waiting for lock db (db held by jobflow/first)"
        ]
        await complete_job(driver.kube, namespace, work["metadata"]["name"])
        cleanup = await job_of(driver, namespace, "cleanup", flow="first")  # first's finally step runs
        assert await second_jobs() == []  # under first's lock still
        await complete_job(driver.kube, namespace, cleanup["metadata"]["name"])
        assert (await driver.wait_phase(namespace, "first", timeout=WAIT))["status"]["phase"] == "Succeeded"
        work = await job_of(driver, namespace, "work", flow="second")
        await complete_job(driver.kube, namespace, work["metadata"]["name"])
        cleanup = await job_of(driver, namespace, "cleanup", flow="second")
        await complete_job(driver.kube, namespace, cleanup["metadata"]["name"])
        done = await driver.wait_phase(namespace, "second", timeout=WAIT)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    assert done["status"]["phase"] == "Succeeded"
    assert "heldLocks" not in done["status"]
    assert seen.order == ["first holds", "first ended", "second holds", "second ended"]
