"""One tenant's large flows do not stop another's: a validation or plan too large for the event loop runs in
a thread (controller/plan_cpu.py), small ones stay on the loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

from test_tenant_fairness import _controller

from zen_flow.controller.plan_cpu import OFFLOAD_SIZE, SLOW_PLAN_SECONDS, PlanCpu, spec_size
from zen_flow_dev.testing.apiserver_fake import FakeApiServer
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow

NOISY, QUIET = "tenant-a", "tenant-b"


def wide_steps(steps: int = 500, deps: int = 150) -> list[dict[str, Any]]:
    """A flow the webhook admits (0.45 MB) whose validation and first plan take ~100-250 ms."""
    return [job_step(f"s{i}", *[f"s{j}" for j in range(max(0, i - deps), i)]) for i in range(steps)]


class ThreadClock:
    """`time.thread_time` for the runner: each plan takes the CPU time the test says next."""

    def __init__(self) -> None:
        self.spent: Iterator[float] = iter(())
        self._now = 0.0

    def __call__(self) -> float:
        return self._now

    def plan_takes(self, *seconds: float) -> None:
        self.spent = iter(seconds)

    def work(self) -> int:
        self._now += next(self.spent)
        return threading.get_ident()


async def test_a_small_plan_stays_on_the_loop_and_a_slow_one_moves_its_flows_next_plans_off_it() -> None:
    clock = ThreadClock()
    cpu = PlanCpu(thread_time=clock)
    small = make_flow([job_step("a"), job_step("b", "a")], name="small")
    loop = threading.get_ident()
    try:
        clock.plan_takes(SLOW_PLAN_SECONDS * 2, SLOW_PLAN_SECONDS * 0.8, SLOW_PLAN_SECONDS * 0.4, 0.0)
        assert await cpu.run(small, clock.work) == loop  # predicted small: on the loop, and it was slow
        assert await cpu.run(small, clock.work) != loop  # so the next went to a thread: still slowish
        assert await cpu.run(small, clock.work) != loop  # (between half and all of it: it stays there)
        assert await cpu.run(small, clock.work) == loop  # under half: back on the loop
        clock.plan_takes(SLOW_PLAN_SECONDS * 2, 0.0)
        assert await cpu.run(small, clock.work, measured=False) == loop  # validation decides nothing
        assert await cpu.run(small, clock.work) == loop
        clock.plan_takes(SLOW_PLAN_SECONDS * 2, 0.0)
        await cpu.run(small, clock.work)
        cpu.forget(small.metadata.uid)  # deleted: its measure goes with it
        assert await cpu.run(small, clock.work) == loop
    finally:
        cpu.close()


async def test_a_large_spec_is_predicted_before_its_first_plan() -> None:
    clock = ThreadClock()
    cpu = PlanCpu(thread_time=clock)
    large = make_flow(wide_steps(), name="large")
    chain = make_flow([job_step(f"s{i}", *([f"s{i - 1}"] if i else [])) for i in range(500)], name="chain")
    try:
        assert spec_size(large) >= OFFLOAD_SIZE > spec_size(chain)
        clock.plan_takes(0.0, 0.0)
        assert await cpu.run(large, clock.work) != threading.get_ident()
        # A 500-step chain validates and plans in a few ms: a thread would cost it more than it saves.
        assert await cpu.run(chain, clock.work) == threading.get_ident()
    finally:
        cpu.close()


async def test_one_tenants_large_flows_do_not_hold_anothers_small_flow() -> None:
    # Twelve 500-step flows of 150 dependencies each: planned on the event loop, the quiet tenant's
    # 1-step flow had its Job only after 8 of them (one per worker the noisy tenant may hold), 0.6-2 s.
    clock = FakeClock()
    api = FakeApiServer(clock)
    steps = wide_steps()
    async for controller in _controller(api, clock, workers=8):
        try:
            for i in range(12):
                api.create_flow(make_flow(steps, name=f"a{i}", namespace=NOISY))
            api.create_flow(make_flow([job_step("a")], name="quiet", namespace=QUIET))
            api.sync()
            deadline = time.monotonic() + 120
            while not any(name.startswith("quiet-") for name in api.job_creates):
                assert time.monotonic() < deadline, "the quiet tenant's Job was never created"
                await asyncio.sleep(0)
            noisy_planned = sum(1 for name in api.job_creates if not name.startswith("quiet-"))
            # Within a few event-loop turns, while the noisy tenant's plans run one at a time in a thread.
            assert noisy_planned <= 2
        finally:
            controller.close()
