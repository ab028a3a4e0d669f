"""Limits on running flows against a real kube-apiserver: `--namespace-max-running-flows 2` with five flows,
and `--namespace-max-running-flows 1` with a high-priority flow created last.

A watch of the namespace's flows records every start and end the apiserver stored, so "never more than
two at once" is checked on every stored state, not on a few polls; the test plays the Job controller,
finishing one flow's Job at a time, so the order the waiting flows start in is the order of the line.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from controller_steps import WAIT, conditions, job_of

from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver, wait_until
from zen_flow_dev.testing.flows import flow_manifest, job_step
from zen_flow_dev.testing.jobstatus import complete_job

pytestmark = pytest.mark.integration

NAMES = [f"run-{i}" for i in range(1, 6)]  # created in this order (and ranked by name within a second)


class Watched:
    """The flows' starts and ends in the order the apiserver stored them, and the most that ran at once."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.ended: list[str] = []
        self.running: set[str] = set()
        self.peak = 0

    def see(self, flow: dict[str, Any]) -> None:
        name, status = flow["metadata"]["name"], flow.get("status") or {}
        if status.get("startTime") and name not in self.started:
            self.started.append(name)
            self.running.add(name)
        if status.get("phase") in ("Succeeded", "Failed") and name not in self.ended:
            self.ended.append(name)
            self.running.discard(name)
        self.peak = max(self.peak, len(self.running))


async def watch(driver: FlowDriver, namespace: str, seen: Watched) -> None:
    async with driver.flows.watch(namespace, "0", 300) as stream:
        async for event in stream:
            if event.type in ("ADDED", "MODIFIED"):
                seen.see(event.object)


@contextlib.asynccontextmanager
async def watching(driver: FlowDriver, namespace: str) -> AsyncIterator[Watched]:
    """The namespace's flows watched for the block's length."""
    seen = Watched()
    watcher = asyncio.create_task(watch(driver, namespace, seen))
    try:
        yield seen
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def test_at_most_two_flows_run_at_once_and_the_others_start_in_creation_order(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    start_controller(extra_args=("--namespace-max-running-flows", "2"))
    async with watching(driver, namespace) as seen:
        for name in NAMES:
            await driver.create(flow_manifest(name, namespace, [job_step("a")]))

        async def settled(running: int, waiting: int) -> list[dict[str, Any]] | None:
            flows = [await driver.get(namespace, n) for n in NAMES]
            phases = [((f or {}).get("status") or {}).get("phase") for f in flows]
            ok = phases.count("Running") == running and phases.count("Pending") == waiting
            queued = [f for f in flows if f and (f.get("status") or {}).get("phase") == "Pending"]
            told = all(conditions(f).get("Queued", {}).get("reason") == "WaitingForSlot" for f in queued)
            return [f for f in flows if f] if ok and told else None

        flows = await wait_until(lambda: settled(2, 3), WAIT, what="two flows running, three waiting")
        waiting = next(f for f in flows if f["metadata"]["name"] == "run-5")
        assert waiting["status"]["message"] == (
            f"waiting for a slot: at most 2 flows run at once in namespace {namespace} "
            "(--namespace-max-running-flows 2)"
        )
        assert "startTime" not in waiting["status"]
        assert sorted(seen.started) == ["run-1", "run-2"]

        # One at a time, so the next start is the next in line's.
        for name in NAMES:
            job = await job_of(driver, namespace, "a", flow=name)
            await complete_job(driver.kube, namespace, job["metadata"]["name"])
            await driver.wait_phase(namespace, name, timeout=WAIT)
        finals = [await driver.get(namespace, n) for n in NAMES]
        assert [(f or {}).get("status", {}).get("phase") for f in finals] == ["Succeeded"] * 5

        await wait_until(lambda: _true(len(seen.ended) == 5), WAIT, what="the watch to see every end")
        assert seen.peak == 2, seen.started
        assert sorted(seen.started[:2]) == ["run-1", "run-2"]
        assert seen.started[2:] == ["run-3", "run-4", "run-5"]


async def test_a_high_priority_flow_created_last_starts_before_the_older_flows_waiting(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    start_controller(extra_args=("--namespace-max-running-flows", "1"))
    async with watching(driver, namespace) as seen:
        await driver.create(flow_manifest("old-1", namespace, [job_step("a")]))
        await wait_until(lambda: _true(seen.started == ["old-1"]), WAIT, what="old-1 to start")
        for name in ("old-2", "old-3"):
            await driver.create(flow_manifest(name, namespace, [job_step("a")]))
        urgent = flow_manifest("urgent", namespace, [job_step("a")], executionPolicy={"priority": 500})
        await driver.create(urgent)

        async def waits(name: str) -> dict[str, Any] | None:
            flow = await driver.get(namespace, name)
            if not flow or "status" not in flow:
                return None
            return flow if conditions(flow).get("Queued", {}).get("reason") == "WaitingForSlot" else None

        waiting = await wait_until(lambda: waits("urgent"), WAIT, what="urgent to wait for the slot")
        assert waiting["status"]["message"] == (
            f"waiting for a slot: at most 1 flows run at once in namespace {namespace} "
            "(--namespace-max-running-flows 1); its priority 500 ranks it in its namespace's line"
        )
        await wait_until(lambda: waits("old-3"), WAIT, what="old-3 to wait for the slot")

        # The slot goes to urgent, though old-2 and old-3 waited longer; then to them, oldest first.
        for name in ("old-1", "urgent", "old-2", "old-3"):
            job = await job_of(driver, namespace, "a", flow=name)
            await complete_job(driver.kube, namespace, job["metadata"]["name"])
            await driver.wait_phase(namespace, name, timeout=WAIT)
        await wait_until(lambda: _true(len(seen.ended) == 4), WAIT, what="the watch to see every end")
        assert seen.started == ["old-1", "urgent", "old-2", "old-3"]
        assert seen.peak == 1


async def _true(value: bool) -> bool | None:
    return value or None
