"""The plan runner: no `when` holds the event loop, and a plan that evaluates `when` in the expression
workers takes its share and no more."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog

from zen_flow import planner
from zen_flow.api import JobFlow
from zen_flow.api.job import JOB
from zen_flow.controller.plan_cpu import FlowGone, PlanCpu
from zen_flow.controller.plan_runner import PLAN_EVALUATION_SECONDS, PlanRunner
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
SLOW = 3.0  # seconds each evaluation takes, on the runner's clock


def make_runner(evaluate: Any, *, slots: int = 2, clock: list[float] | None = None) -> PlanRunner:
    """A runner whose clock is `clock[0]` (0 when none is given); it never reads the API here."""
    return PlanRunner(
        api=None,  # type: ignore[arg-type]
        evaluate=evaluate,
        transfers=planner.ArtifactOptions(),
        progress_deadline=0.0,
        sandboxed_plans=slots,
        monotonic=(lambda: clock[0]) if clock is not None else (lambda: 0.0),
    )


def phases(status: Any) -> dict[str, str]:
    return {s.name: s.phase for s in status.steps}


async def test_a_plan_of_slow_conditions_decides_its_share_and_leaves_the_rest_to_the_next() -> None:
    # Four conditions of 3 s each: one plan evaluates two (then it has spent 6 s of its 5), the other two
    # stay Pending for the flow's next plan, a second later; other flows' plans get the workers meanwhile.
    now = [0.0]
    evaluated: list[str] = []

    def evaluate(compiled: Any, variables: dict[str, Any]) -> Any:
        evaluated.append(compiled.source)
        now[0] += SLOW
        return compiled.program.execute(variables)

    runner = make_runner(evaluate, clock=now)
    steps = [job_step(f"s{i}", when=f"[{i}].all(x, x == {i})") for i in range(4)]
    flow = make_flow(steps)
    try:
        first = await runner.plan(flow, [], T0, {}, (), None)
        assert first is not None
        assert SLOW < PLAN_EVALUATION_SECONDS < 2 * SLOW
        assert phases(first.status) == {"s0": "Running", "s1": "Running", "s2": "Pending", "s3": "Pending"}
        assert [a.step for a in first.actions if isinstance(a, planner.CreateJob)] == ["s0", "s1"]
        assert first.requeue_after is not None
        assert 0 < first.requeue_after <= 1
        assert len(evaluated) == 2

        flow = JobFlow.model_validate({**flow.model_dump(by_alias=True), "status": first.status.to_wire()})
        jobs = [
            JOB.validate_python({"metadata": {**a.body["metadata"], "namespace": "default", "uid": a.step}})
            for a in first.actions
            if isinstance(a, planner.CreateJob)
        ]
        second = await runner.plan(flow, jobs, T0, {}, (), None)
        assert second is not None
        assert set(phases(second.status).values()) == {"Running"}
        assert len(evaluated) == 4
    finally:
        runner.close()


async def test_a_sandboxed_plan_runs_in_the_reconciles_context() -> None:
    # Log lines from inside the plan (a worker killed past its budget) keep the flow and reconcile id the
    # reconcile bound, as they did under asyncio.to_thread.
    seen: list[str | None] = []

    def evaluate(compiled: Any, variables: dict[str, Any]) -> Any:
        seen.append(structlog.contextvars.get_contextvars().get("flow"))
        return compiled.program.execute(variables)

    runner = make_runner(evaluate)
    try:
        with structlog.contextvars.bound_contextvars(flow="team-a/etl"):
            await runner.plan(make_flow([job_step("a", when="[1].all(x, true)")]), [], T0, {}, (), None)
    finally:
        runner.close()
    assert seen == ["team-a/etl"]


async def test_while_another_tenant_waits_one_holds_at_most_half_of_the_threads() -> None:
    gates: dict[str, threading.Event] = {}
    entered: dict[str, threading.Event] = {}

    def evaluate(compiled: Any, variables: dict[str, Any]) -> Any:
        name = variables["flow"]["name"]
        entered[name].set()
        gates[name].wait(10)
        return compiled.program.execute(variables)

    runner = make_runner(evaluate, slots=2)

    def flow(namespace: str, name: str) -> JobFlow:
        gates[name], entered[name] = threading.Event(), threading.Event()
        return make_flow([job_step("a", when="flow.name != ''")], name=name, namespace=namespace)

    async def start(f: JobFlow) -> asyncio.Task[planner.Plan | None]:
        task = asyncio.create_task(runner.plan(f, [], T0, {}, (), None))
        await asyncio.to_thread(entered[f.metadata.name].wait, 10)
        return task

    try:
        a1, a2 = await start(flow("busy", "a1")), await start(flow("busy", "a2"))  # alone: every thread
        assert await runner.plan(flow("quiet", "b1"), [], T0, {}, (), None) is None  # full: turned away
        gates["a1"].set()
        assert await a1 is not None
        # A thread is free, but busy holds one and quiet is waiting: busy's next flow must wait its turn.
        assert await runner.plan(flow("busy", "a3"), [], T0, {}, (), None) is None
        b1 = await start(flow("quiet", "b1"))
        gates["b1"].set()
        gates["a2"].set()
        assert await b1 is not None
        assert await a2 is not None
    finally:
        for gate in gates.values():
            gate.set()
        runner.close()


async def test_a_when_without_a_loop_is_evaluated_off_the_event_loop() -> None:
    # No comprehension, yet `size(flow.annotations.a + ...)` with 50 terms over a 250 KiB annotation took
    # 70 ms per step: 13 s on the event loop for 499 steps, while every tenant's reconciles waited.
    entered, release = threading.Event(), threading.Event()
    held: list[bool] = []

    def evaluate(compiled: Any, variables: dict[str, Any]) -> Any:
        entered.set()
        held.append(not release.wait(10))  # the loop sets it: True if the loop was held meanwhile
        return compiled.program.execute(variables)

    runner = make_runner(evaluate)
    flow = make_flow([job_step("a", when="size(flow.name + flow.name) > 0")])
    task = asyncio.create_task(runner.plan(flow, [], T0, {}, (), None))
    try:
        assert await asyncio.to_thread(entered.wait, 10)
        release.set()
        planned = await task
    finally:
        release.set()
        runner.close()
    assert held == [False]
    assert planned is not None
    assert phases(planned.status) == {"a": "Running"}


async def test_a_plan_with_no_condition_to_decide_needs_no_thread() -> None:
    # Nearly every plan of a flow with such conditions decides none (each is decided once): those stay
    # on the event loop, so a busy sandbox does not delay the flow's other steps.
    sim = Simulator(make_flow([job_step("a"), job_step("b", "a", when="flow.name != ''")]), T0)
    runner = make_runner(lambda compiled, variables: True, slots=1)
    runner._busy, runner._held["other"] = 1, 1  # another tenant's plan holds the only thread
    try:
        first = await runner.plan(sim.flow, [], T0, {}, (), None)
        assert first is not None
        assert phases(first.status) == {"a": "Running", "b": "Pending"}
        sim.apply(first)
        sim.complete(sim.running()[0])
        # Now b's condition is due: this plan needs the thread, and comes back for it.
        assert await runner.plan(sim.flow, list(sim.jobs.values()), T0, {}, (), None) is None
        assert runner.turned_away(sim.flow)
        runner._busy, runner._held = 0, Counter()
        assert not runner.turned_away(sim.flow)
        last = await runner.plan(sim.flow, list(sim.jobs.values()), T0, {}, (), None)
        assert last is not None
        assert phases(last.status) == {"a": "Succeeded", "b": "Running"}
    finally:
        runner.close()


def runner_at(clock: list[float], slots: int) -> PlanRunner:
    return make_runner(lambda compiled, variables: True, slots=slots, clock=clock)


def take(runner: PlanRunner, namespace: str) -> bool:
    """Ask for a thread as `plan()` does, and hold it when given."""
    if not runner._may_start(namespace):
        return False
    runner._busy += 1
    runner._held[namespace] += 1
    return True


def give_back(runner: PlanRunner, namespace: str) -> None:
    runner._busy -= 1
    runner._held[namespace] -= 1


def test_with_one_thread_the_namespace_that_waited_longest_goes_next() -> None:
    clock = [0.0]
    runner = runner_at(clock, 1)
    assert take(runner, "busy")
    assert not take(runner, "quiet")  # waits from t=0
    clock[0] = 0.8
    give_back(runner, "busy")
    assert not take(runner, "busy")  # busy's next flow came back first, but quiet has waited longer
    clock[0] = 1.0
    assert take(runner, "quiet")
    give_back(runner, "quiet")
    assert take(runner, "busy")  # and then busy's turn: they alternate
    clock[0] = 5.0
    give_back(runner, "busy")
    assert take(runner, "busy")  # quiet stopped asking 4 s ago: it no longer waits


def test_every_thread_is_used_when_the_shares_do_not_divide_evenly() -> None:
    clock = [0.0]
    runner = runner_at(clock, 3)
    assert [take(runner, "a") for _ in range(3)] == [True, True, True]  # alone: every thread
    give_back(runner, "a")
    assert take(runner, "b")
    assert runner._busy == 3  # b took the free thread: 2 for a, 1 for b, none idle
    assert not take(runner, "a")


@pytest.mark.parametrize("deleted", ["in its thread plan", "while its expressions are evaluated"])
async def test_a_large_flow_with_a_when_deleted_while_it_is_planned_gets_no_jobs(
    deleted: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A large flow's plan runs in a plan thread first (controller/plan_cpu.py) and stops at its `when`
    # (made again in the sandbox pool): deleted meanwhile, it was planned all the same, its Jobs created.
    there = [True]
    cpu = PlanCpu(current=lambda flow: there[0])

    def evaluate(compiled: Any, variables: dict[str, Any]) -> Any:
        if deleted == "while its expressions are evaluated":
            there[0] = False
        return compiled.program.execute(variables)

    runner = PlanRunner(
        api=None,  # type: ignore[arg-type]
        evaluate=evaluate,
        transfers=planner.ArtifactOptions(),
        progress_deadline=0.0,
        cpu=cpu,
    )
    steps = [job_step(f"s{i}", *[f"s{j}" for j in range(max(0, i - 30), i)]) for i in range(400)]
    steps[0]["when"] = "flow.name != 'x'"
    flow = make_flow(steps)
    assert cpu.large(flow)
    real = planner.plan

    def plan(*args: Any, **kwargs: Any) -> planner.Plan:
        if deleted == "in its thread plan" and threading.current_thread().name.startswith("zen-flow-cpu"):
            there[0] = False
        return real(*args, **kwargs)

    monkeypatch.setattr(planner, "plan", plan)
    try:
        with pytest.raises(FlowGone):
            await runner.plan(flow, [], T0, {}, (), None)
    finally:
        runner.close()
