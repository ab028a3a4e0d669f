"""One tenant's large flows do not stop another's: a validation or plan too large for the event loop runs in
a thread (controller/plan_cpu.py), small ones stay on the loop."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from test_tenant_fairness import _controller

from zen_flow import planner
from zen_flow.api import JobFlow
from zen_flow.api.jobflow import JobFlowSpec
from zen_flow.controller import matrix_flows, validity
from zen_flow.controller.plan_cpu import OFFLOAD_SIZE, SLOW_PLAN_SECONDS, FlowGone, PlanCpu, spec_size
from zen_flow.controller.validity import Validity
from zen_flow.core.expressions import Offload
from zen_flow.core.matrix import effective_flow
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


MATRIX_VALUES = json.dumps([f"v{i}" for i in range(250)])
ITEMS = {"parameters": [{"name": "x", "valueFrom": {"argument": "xs"}}]}


def matrix_steps() -> list[dict[str, Any]]:
    """Two steps of 250 items, the second after the first: 21 by its stored spec, 500 steps and 62,500
    dependencies once expanded (validating it expands it too)."""
    return [job_step("a", matrix=ITEMS), job_step("b", "a", matrix=ITEMS)]


def test_a_matrix_is_sized_by_the_steps_and_dependencies_it_expands_to() -> None:
    # Sized from its stored spec, two steps of 250 items were 21 units: validated and expanded on the
    # event loop (~60 ms each), though their 62,500 dependencies planned in a thread.
    stored = make_flow(matrix_steps(), arguments={"xs": MATRIX_VALUES})
    assert spec_size(stored) == spec_size(effective_flow(stored)) >= OFFLOAD_SIZE
    literal = {"parameters": [{"name": "x", "values": ["1", "2", "3"]}, {"name": "y", "values": ["a", "b"]}]}
    small = make_flow([job_step("a", matrix=literal), job_step("b", "a", matrix=literal), job_step("c", "b")])
    assert spec_size(small) == spec_size(effective_flow(small)) < OFFLOAD_SIZE
    # An output's items are known at run time: counted at the matrix's bound.
    read = {"parameters": [{"name": "x", "valueFrom": {"jsonPath": "gen:$.outputs.parameters.xs"}}]}
    later = make_flow([job_step("gen"), job_step("fan", "gen", matrix=read), job_step("in", "fan")])
    assert spec_size(later) == 10 + 256 * (10 + 1) + (10 + 256)


class Gate:
    """Work that holds its thread until the test lets it go."""

    def __init__(self, then: Callable[[], Any] = lambda: None) -> None:
        self.started, self.go = threading.Event(), threading.Event()
        self._then = then

    def __call__(self) -> Any:
        self.started.set()
        assert self.go.wait(60)
        return self._then()

    async def running(self) -> None:
        deadline = time.monotonic() + 60
        while not self.started.is_set():
            assert time.monotonic() < deadline, "the work never started"
            await asyncio.sleep(0)


async def test_a_flow_deleted_while_its_plan_runs_in_a_thread_is_not_remembered() -> None:
    clock = ThreadClock()
    cpu = PlanCpu(thread_time=clock)
    small = make_flow([job_step("a")], name="small")
    loop = threading.get_ident()
    try:
        clock.plan_takes(SLOW_PLAN_SECONDS * 2, SLOW_PLAN_SECONDS * 2, 0.0)
        assert await cpu.run(small, clock.work) == loop  # slow: its next plan goes to a thread
        gate = Gate(clock.work)
        running = asyncio.ensure_future(cpu.run(small, gate))
        await gate.running()
        cpu.forget(small.metadata.uid)  # deleted while it runs (slowly again)
        gate.go.set()
        with pytest.raises(FlowGone):
            await running
        # Its slow plan did not mark the uid again: a flow of that uid plans on the loop.
        assert await cpu.run(small, clock.work) == loop
    finally:
        cpu.close()


async def test_a_flow_deleted_while_its_plan_stops_for_an_expression_is_gone() -> None:
    # A large flow's plan stops at a `when` to evaluate (`Offload`: planned again in the sandbox pool);
    # the flow was deleted meanwhile, so it must not be planned again.
    there = {"large"}
    cpu = PlanCpu(current=lambda flow: flow.metadata.name in there)
    large = make_flow(wide_steps(), name="large")

    def stops() -> Any:
        there.discard("large")
        raise Offload("when")

    try:
        with pytest.raises(FlowGone):
            await cpu.run(large, stops)
        # A cancelled reconcile stays cancelled, gone or not.
        there.add("large")
        gate = Gate()
        running = asyncio.ensure_future(cpu.run(large, gate))
        await gate.running()
        there.discard("large")
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        gate.go.set()
    finally:
        cpu.close()


async def test_a_flow_deleted_while_it_is_validated_in_a_thread_is_not_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpu = PlanCpu()
    checks: list[str] = []
    gate = Gate()

    def check(flow: JobFlow) -> tuple[str, ...]:
        checks.append(flow.metadata.uid)
        if len(checks) == 1:
            gate()
        return ()

    monkeypatch.setattr(validity, "_check", check)
    found = Validity(lambda key: None, cpu)
    large = make_flow(wide_steps(), name="large")
    try:
        checking = asyncio.ensure_future(found.checked(large))
        await gate.running()
        found.forget(large.metadata.uid)
        cpu.forget(large.metadata.uid)  # as the informer's delete event does
        gate.go.set()
        with pytest.raises(FlowGone):
            await checking
        assert await found.checked(large) == ()
        assert checks == [large.metadata.uid] * 2  # validated again: nothing was kept of the first
    finally:
        cpu.close()


async def test_a_flow_deleted_while_it_waits_for_its_namespaces_thread_is_not_planned() -> None:
    there = {"first", "second"}
    now, waits = [0.0], list[float]()
    cpu = PlanCpu(
        current=lambda flow: flow.metadata.name in there, waited=waits.append, monotonic=lambda: now[0]
    )
    first, second = (make_flow(wide_steps(), name=name) for name in ("first", "second"))
    planned: list[str] = []
    gate = Gate(lambda: planned.append("first"))
    try:
        running = asyncio.ensure_future(cpu.run(first, gate))
        await gate.running()
        # The namespace holds its one thread: the second flow waits for it, and is deleted meanwhile.
        waiting = asyncio.ensure_future(cpu.run(second, lambda: planned.append("second")))
        await asyncio.sleep(0)
        there.discard("second")
        now[0] = 2.5
        gate.go.set()
        await running
        with pytest.raises(FlowGone):
            await waiting
        assert planned == ["first"]
        assert waits == [0.0, 2.5]  # zen_flow_plan_thread_wait_seconds: how long each waited for a thread
    finally:
        cpu.close()


async def test_a_cancelled_plan_holds_its_namespaces_thread_until_the_thread_is_done() -> None:
    # Cancelling the await (shutdown, lost leadership) does not stop the thread: the namespace's next
    # large flow waited in the pool's own queue, outside the turns, as if the thread were free.
    cpu = PlanCpu()
    first, second = (make_flow(wide_steps(), name=name) for name in ("first", "second"))
    gate = Gate()
    began: list[str] = []
    try:
        running = asyncio.ensure_future(cpu.run(first, gate))
        await gate.running()
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        waiting = asyncio.ensure_future(cpu.run(second, lambda: began.append("second")))
        await asyncio.sleep(0)
        assert cpu._slots.waiting(second.metadata.namespace) == 1  # in the namespace's turn, not the pool's
        assert began == []
        gate.go.set()
        await waiting
        assert began == ["second"]
    finally:
        cpu.close()


async def test_a_large_flow_deleted_while_it_waits_for_a_thread_gets_no_jobs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The noisy tenant's first flow holds its namespace's thread; its second waits for it, and is
    # deleted meanwhile: it was validated and planned all the same, and its Jobs created.
    gate = Gate()
    check = validity._check

    def checked(flow: JobFlow) -> Any:
        if flow.metadata.name == "a0":
            gate()
        return check(flow)

    monkeypatch.setattr(validity, "_check", checked)
    clock = FakeClock()
    api = FakeApiServer(clock)
    async for controller in _controller(api, clock, workers=8):
        try:
            ended = await _delete_while_waiting(controller, api, gate, monkeypatch)
            assert ended is None  # nothing to do, not a failure retried
            assert [name for name in api.job_creates if name.startswith("a1-")] == []
        finally:
            controller.close()


async def _delete_while_waiting(
    controller: Any, api: FakeApiServer, gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """Two large flows of one namespace, the first validating (held by `gate`); the second is deleted
    while it waits for the namespace's thread. What the second's reconcile returned (or raised)."""
    api.on_flow_deleted = controller.on_flow_deleted
    ended: dict[str, Any] = {}
    reconcile = controller.reconcile

    async def reconciled(key: str) -> float | None:
        try:
            ended[key] = result = await reconcile(key)
        except BaseException as err:
            ended[key] = err
            raise
        return result

    monkeypatch.setattr(controller, "reconcile", reconciled)
    for i in range(2):
        api.create_flow(make_flow(wide_steps(), name=f"a{i}", namespace=NOISY))
    api.sync()
    await gate.running()
    slots = controller._runner.cpu._slots
    await _settled(lambda: slots.waiting(NOISY) == 1)
    api.remove_flow(f"{NOISY}/a1")
    api.sync()
    gate.go.set()
    await _settled(lambda: f"{NOISY}/a1" in ended and any(n.startswith("a0-") for n in api.job_creates))
    return ended[f"{NOISY}/a1"]


@pytest.mark.parametrize(
    ("steps", "arguments", "flows"),
    [(wide_steps(), {}, 12), (matrix_steps(), {"xs": MATRIX_VALUES}, 8)],
    ids=["wide", "matrix"],
)
async def test_one_tenants_large_flows_do_not_hold_anothers_small_flow(
    monkeypatch: pytest.MonkeyPatch, steps: list[dict[str, Any]], arguments: dict[str, str], flows: int
) -> None:
    # Twelve 500-step flows of 150 dependencies each: planned on the event loop, the quiet tenant's
    # 1-step flow had its Job only after 8 of them (one per worker the noisy tenant may hold), 0.6-2 s.
    # Which thread ran the noisy flows' validation, matrix expansion and plans: never the event loop's.
    ran: list[tuple[str, int]] = []
    check, plan, expand = validity._check, planner.plan, matrix_flows.effective_spec

    def checked(flow: JobFlow) -> Any:
        if flow.metadata.namespace == NOISY:
            ran.append(("validation", threading.get_ident()))
        return check(flow)

    def planned(flow: JobFlow, *args: Any, **kwargs: Any) -> Any:
        if flow.metadata.namespace == NOISY:
            ran.append(("plan", threading.get_ident()))
        return plan(flow, *args, **kwargs)

    def expanded(spec: JobFlowSpec, *args: Any) -> Any:
        if any(step.matrix is not None for step in spec.steps):  # only the noisy flows have a matrix
            ran.append(("expansion", threading.get_ident()))
        return expand(spec, *args)

    monkeypatch.setattr(validity, "_check", checked)
    monkeypatch.setattr(planner, "plan", planned)
    monkeypatch.setattr(matrix_flows, "effective_spec", expanded)
    loop = threading.get_ident()
    clock = FakeClock()
    api = FakeApiServer(clock)
    async for controller in _controller(api, clock, workers=8):
        try:
            for i in range(flows):
                api.create_flow(make_flow(steps, name=f"a{i}", namespace=NOISY, arguments=arguments))
            api.create_flow(make_flow([job_step("a")], name="quiet", namespace=QUIET))
            api.sync()
            deadline = time.monotonic() + 120
            while not any(name.startswith("quiet-") for name in api.job_creates):
                assert time.monotonic() < deadline, "the quiet tenant's Job was never created"
                await asyncio.sleep(0)
            noisy_planned = {name.split("-")[0] for name in api.job_creates if not name.startswith("quiet-")}
            # Within a few event-loop turns, while the noisy tenant's plans run one at a time in a thread.
            assert len(noisy_planned) <= 2
            await _settled(lambda: len({n.split("-")[0] for n in api.job_creates}) == flows + 1)
        finally:
            controller.close()
    kinds = {kind for kind, _ in ran}
    assert kinds == ({"validation", "plan", "expansion"} if arguments else {"validation", "plan"})
    assert [kind for kind, thread in ran if thread == loop] == []


async def _settled(done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 120
    while not done():
        assert time.monotonic() < deadline, "never settled"
        await asyncio.sleep(0)
