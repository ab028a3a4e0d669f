"""Controller: a `when` that runs too long fails its step without stalling anything, and a plan that finds
every sandbox thread busy frees its worker."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from scripted_controller_rig import T0, Fake, controller

from zen_flow.controller.expression_sandbox import ExpressionSandbox
from zen_flow.core.expressions import BudgetExceeded, compile_when
from zen_flow.machinery.workqueue import Priority, WorkQueue
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

# Ten elements, nested eight deep: 10^8 iterations, about half a minute of CPU.
TEN = "[0,1,2,3,4,5,6,7,8,9]"
PATHOLOGICAL = "".join(f"{TEN}.all(v{i}, " for i in range(8)) + "true" + ")" * 8


def test_the_sandbox_stops_a_pathological_expression_and_keeps_serving() -> None:
    sandbox = ExpressionSandbox(budget=0.5, workers=1)
    try:
        with pytest.raises(BudgetExceeded, match=r"ran past its 0.5s budget"):
            sandbox.evaluate(compile_when(PATHOLOGICAL), {"steps": {}, "flow": {}})
        assert sandbox.budget_exceeded == 1
        # The killed worker is replaced: the next expression is answered.
        cheap = compile_when("steps.exists(s, steps[s].phase == 'Failed')")
        assert sandbox.evaluate(cheap, {"steps": {"a": {"phase": "Failed"}}, "flow": {}}) is True
        assert sandbox.evaluate(cheap, {"steps": {"a": {"phase": "Succeeded"}}, "flow": {}}) is False
    finally:
        sandbox.close()


async def test_a_pathological_when_fails_its_step_while_the_event_loop_keeps_running() -> None:
    # Step a has run and its Job completed; the reconcile that sees it decides b's `when`.
    sim = Simulator(make_flow([job_step("a"), job_step("b", "a", when=PATHOLOGICAL)]), T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    fake, clock = Fake(sim.flow, jobs=list(sim.jobs.values())), FakeClock()
    sandbox = ExpressionSandbox(budget=0.5, workers=1)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    try:
        await controller(fake, clock, evaluate=sandbox.evaluate).reconcile(fake.flow.key)
    finally:
        tick_task.cancel()
        sandbox.close()
    assert ticks > 10  # the loop ran while the worker was busy (it would be ~0 if evaluated inline)
    (patch,) = fake.patches
    b = next(s for s in patch["status"]["steps"] if s["name"] == "b")
    assert b["phase"] == "Failed"
    assert "ran past its 0.5s budget" in b["message"]
    assert patch["status"]["phase"] == "Failed"


async def test_a_plan_that_finds_every_sandbox_thread_busy_frees_its_worker_and_comes_back() -> None:
    # One plan thread, held by a slow `when`: another flow's reconcile does not wait for the thread (that
    # held every reconcile worker once a tenant had enough such flows); it asks to be looked at again.
    sim = Simulator(make_flow([job_step("a"), job_step("b", "a", when="[1].all(x, true)")]), T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    fake, clock = Fake(sim.flow, jobs=list(sim.jobs.values())), FakeClock()
    started, release = threading.Event(), threading.Event()

    def slow(compiled: Any, variables: dict[str, Any]) -> Any:
        started.set()
        release.wait(10)
        return compiled.program.execute(variables)

    ctrl = controller(fake, clock, evaluate=slow, sandboxed_plans=1)
    first = asyncio.create_task(ctrl.reconcile(fake.flow.key))
    try:
        await asyncio.to_thread(started.wait, 10)
        assert await ctrl.reconcile(fake.flow.key) == 1.0  # at once: no thread for it
        assert fake.patches == []
    finally:
        release.set()
        await first
        ctrl.close()
    assert next(s for s in fake.patches[-1]["status"]["steps"] if s["name"] == "b")["phase"] == "Running"


async def test_a_new_flow_turned_away_for_a_thread_reads_nothing_and_comes_back_behind_running_ones() -> None:
    fake, clock = Fake(make_flow([job_step("a", when="[1].all(x, true)")])), FakeClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    ctrl = controller(fake, clock, queue=queue, evaluate=lambda c, v: True, sandboxed_plans=1)
    ctrl._runner._busy, ctrl._runner._held["other"] = 1, 1  # another tenant's plan holds the thread

    reads: list[str] = []

    async def read(*args: Any, **_: Any) -> Any:
        reads.append(str(args))
        raise AssertionError("a flow without a thread read the API")

    fake.termination_messages = read  # type: ignore[attr-defined]
    fake.get_job = read  # type: ignore[method-assign]
    queue.add(fake.flow.key, Priority.LOW)
    await ctrl._work(await queue.get())
    assert (reads, fake.patches, fake.created) == ([], [], [])
    await clock.advance(1)
    queue.add("default/running")  # a running flow's next step, queued after it came back
    # The new flow came back at low priority, as its events queue it: behind work in progress.
    assert [await queue.get(), await queue.get()] == ["default/running", fake.flow.key]
