"""A matrix's `maxParallel`: at most that many of its items run at once, the others waiting in item
order with a message saying why, beside the flow's executionPolicy.parallelism (both hold); the
estimate waits for its slots too. Its `maxItems` fails a matrix whose output gives more items before
any Job exists."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from zen_flow.core.matrix import effective_flow
from zen_flow.core.naming import job_name
from zen_flow.planner import CreateJob
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def fan_out(name: str, items: int, max_parallel: int | None, *deps: str) -> dict[str, Any]:
    matrix: dict[str, Any] = {"parameters": [{"name": "shard", "values": [str(i) for i in range(items)]}]}
    if max_parallel is not None:
        matrix["maxParallel"] = max_parallel
    return job_step(name, *deps, matrix=matrix)


def simulator(steps: list[dict[str, Any]], parallelism: int | None = None) -> Simulator:
    policy = {"parallelism": parallelism} if parallelism is not None else {}
    return Simulator(effective_flow(make_flow(steps, execution_policy=policy)), T0)


def running_of(sim: Simulator, group: str) -> list[str]:
    return [sim.steps[job] for job in sim.running() if sim.steps[job].startswith(group + "-")]


def created_order(sim: Simulator) -> list[str]:
    return [a.step for p in sim.plans for a in p.actions if isinstance(a, CreateJob)]


def step_message(sim: Simulator, name: str) -> str | None:
    status = sim.flow.status.step(name)
    assert status is not None
    return status.message


def test_ten_items_run_three_at_a_time_in_item_order_and_all_run() -> None:
    sim = simulator([fan_out("build", 10, 3), job_step("publish", "build")])
    sim.reconcile()
    assert created_order(sim) == ["build-0", "build-1", "build-2"]
    assert step_message(sim, "build-3") == "waiting for a slot: matrix build maxParallel 3 reached"
    assert sim.flow.status.message == (
        "running: build-0, build-1, build-2; matrix maxParallel reached, waiting: "
        "build-3, build-4, build-5, build-6, build-7 (+2 more)"
    )
    rng = random.Random(3)
    while not sim.terminal:
        assert len(running_of(sim, "build")) <= 3
        if sim.running():
            sim.complete(rng.choice(sim.running()))  # Jobs finish in any order
        sim.advance(1)
        sim.reconcile()
    assert sim.phase == "Succeeded"
    assert created_order(sim) == [f"build-{i}" for i in range(10)] + ["publish"]


def test_it_composes_with_the_flows_parallelism() -> None:
    # The flow allows 4; `a` at most 2 of those, so the other 2 go to `b`'s items, then `c`.
    sim = simulator([fan_out("a", 6, 2), fan_out("b", 6, None), job_step("c")], parallelism=4)
    sim.reconcile()
    assert sorted(sim.steps[j] for j in sim.running()) == ["a-0", "a-1", "b-0", "b-1"]
    assert step_message(sim, "a-2") == "waiting for a slot: matrix a maxParallel 2 reached"
    assert step_message(sim, "b-2") == "waiting for a slot: parallelism 4 reached"
    rng = random.Random(5)
    while not sim.terminal:
        assert len(sim.running()) <= 4
        assert len(running_of(sim, "a")) <= 2
        sim.complete(rng.choice(sim.running()))
        sim.advance(1)
        sim.reconcile()
    assert sim.phase == "Succeeded"


def test_held_items_wait_for_their_slots_in_the_estimate() -> None:
    # 6 items of 60 s, 2 at a time: 3 rounds, then publish.
    sim = simulator([fan_out("build", 6, 2), job_step("publish", "build")])
    sim.reconcile()
    sim.advance(60)
    for job in sim.running():
        sim.complete(job)
    sim.reconcile()  # 2 done at 60 s, 2 running: 2 more rounds after them, then publish
    assert len(sim.running()) == 2
    assert sim.flow.status.estimated_completion_time == T0 + timedelta(seconds=60 * 4)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 12),
    st.integers(1, 5),
    st.one_of(st.none(), st.integers(1, 6)),
    st.integers(0, 2**32),
)
def test_random_runs_never_run_more_items_than_max_parallel(
    items: int, max_parallel: int, parallelism: int | None, seed: int
) -> None:
    sim = simulator(
        [job_step("prepare"), fan_out("m", items, max_parallel, "prepare"), job_step("side", "prepare")],
        parallelism,
    )
    rng = random.Random(seed)
    for _ in range(200):
        sim.reconcile(write_status=rng.random() > 0.1)
        assert len(running_of(sim, "m")) <= max_parallel
        assert parallelism is None or len(sim.running()) <= parallelism
        if sim.terminal:
            break
        for job in sim.running():
            if rng.random() < 0.4:
                (sim.fail if rng.random() < 0.1 else sim.complete)(job)
        sim.advance(1)
    else:
        raise AssertionError(f"flow did not finish: {sim.phase} {sim.flow.status.message}")


def test_an_output_giving_more_items_than_max_items_fails_the_step_before_any_job() -> None:
    gen = job_step(
        "gen",
        outputs={
            "parameters": [{"name": "list", "valueFrom": {"terminationMessage": {"container": "main"}}}]
        },
    )
    source = {"jsonPath": "gen:$.outputs.parameters.list"}
    build = job_step(
        "build", "gen", matrix={"parameters": [{"name": "x", "valueFrom": source}], "maxItems": 4}
    )
    sim = Simulator(make_flow([gen, build]), T0, expand=True)
    sim.reconcile()
    sim.complete(job_name("flow", "gen", 0), {"main": json.dumps([str(i) for i in range(5)])})
    for _ in range(3):
        sim.reconcile()
    build_status = sim.flow.status.step("build")
    assert build_status is not None
    assert build_status.phase == "Failed"
    assert (build_status.message or "").startswith("spec.steps[1].matrix.maxItems: too_many: 5 (at most 4)")
    assert created_order(sim) == ["gen"]
    assert sim.phase == "Failed"


def end_and_estimates(sim: Simulator) -> tuple[int, list[int]]:
    """Run the flow with every Job taking 60 s: when it ended, and each estimate on the way (seconds)."""
    estimates: list[int] = []
    for t in range(0, 60 * 600, 60):
        sim.reconcile()
        if sim.terminal:
            return t, estimates
        estimate = sim.flow.status.estimated_completion_time
        if estimate is not None:
            estimates.append(int((estimate - T0).total_seconds()))
        sim.advance(60)
        for job in sim.running():
            sim.complete(job)
    raise AssertionError("the flow did not end")


def test_an_item_held_by_its_matrix_leaves_the_flow_slot_to_a_later_step_in_the_estimate() -> None:
    # a's items run one at a time, so b's take the flow's other slot: 10 rounds, not the 14 estimated
    # when a's items were handed flow slots ahead of b's.
    sim = simulator([fan_out("a", 10, 1), fan_out("b", 10, None)], parallelism=2)
    end, estimates = end_and_estimates(sim)
    assert end == 600
    assert estimates
    assert set(estimates) == {600}


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 8), st.one_of(st.none(), st.integers(1, 4))), min_size=1, max_size=3),
    st.one_of(st.none(), st.integers(1, 6)),
    st.booleans(),
)
def test_with_jobs_of_equal_length_the_estimate_is_the_end(
    fans: list[tuple[int, int | None]], parallelism: int | None, join: bool
) -> None:
    steps = [fan_out(f"m{i}", items, limit) for i, (items, limit) in enumerate(fans)]
    if join:
        steps.append(job_step("after", "m0"))
    end, estimates = end_and_estimates(simulator(steps, parallelism))
    assert set(estimates) <= {end}
