"""executionPolicy.parallelism: at most that many Job steps run at once; the others wait in spec order."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_planner_properties import check_plan, perturb, random_flows

from zen_flow.api import JobFlow
from zen_flow.api.constants import ANNOTATION_RETRY, APPROVE_PREFIX
from zen_flow.planner import CreateJob, DeleteJob
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
RETRY = {"limit": 1, "backoff": {"type": "Fixed", "duration": "10s"}}


def sim_of(steps: list[dict[str, Any]], parallelism: int | None, **policy: Any) -> Simulator:
    if parallelism is not None:
        policy["parallelism"] = parallelism
    return Simulator(make_flow(steps, execution_policy=policy), T0)


def step(sim: Simulator, name: str) -> Any:
    status = sim.flow.status.step(name)
    assert status is not None
    return status


def running_steps(sim: Simulator) -> list[str]:
    return sorted(sim.steps[name] for name in sim.running())


def created_steps(sim: Simulator) -> list[str]:
    return [sim.steps[name] for name in sim.created]


def set_parallelism(sim: Simulator, value: int | None) -> None:
    policy = sim.flow.spec.execution_policy
    assert policy is not None
    spec = sim.flow.spec.model_copy(
        update={"execution_policy": policy.model_copy(update={"parallelism": value})}
    )
    meta = sim.flow.metadata.model_copy(update={"generation": sim.flow.metadata.generation + 1})
    sim.flow = sim.flow.model_copy(update={"spec": spec, "metadata": meta})


def test_a_fan_out_of_ten_runs_three_at_a_time_in_spec_order() -> None:
    shards = [f"shard-{i}" for i in range(10)]
    sim = sim_of([job_step("prepare"), *(job_step(s, "prepare") for s in shards)], 3)
    sim.reconcile()
    sim.complete(sim.running()[0])
    first = sim.reconcile()
    assert [a.step for a in first.actions if isinstance(a, CreateJob)] == shards[:3]
    assert step(sim, "shard-3").phase == "Pending"
    assert step(sim, "shard-3").message == "waiting for a slot: parallelism 3 reached"
    assert sim.flow.status.message == (
        "running: shard-0, shard-1, shard-2; parallelism 3 reached, waiting: "
        "shard-3, shard-4, shard-5, shard-6, shard-7 (+2 more)"
    )
    rng = random.Random(7)
    while not sim.terminal:
        assert len(sim.running()) <= 3
        sim.complete(rng.choice(sim.running()))  # Jobs finish in any order
        sim.advance(1)
        sim.reconcile()
    assert sim.phase == "Succeeded"
    assert created_steps(sim) == ["prepare", *shards]


def test_a_held_flow_writes_no_status_until_something_changes() -> None:
    sim = sim_of([job_step(s) for s in "abcd"], 2)
    sim.reconcile()
    sim.reconcile()  # records the Jobs' UIDs
    quiet = sim.preview()
    assert quiet.status is sim.flow.status
    assert quiet.actions == ()
    assert quiet.requeue_after is None  # a finished Job's event wakes the flow; nothing to poll


def test_the_next_start_follows_spec_order_not_the_topological_order() -> None:
    # The topological order visits h1 and h2 (after g) before x (after z); the free places go to x and
    # h1, the first ready steps of the spec.
    steps = [job_step("x", "z"), job_step("h1", "g"), job_step("h2", "g"), job_step("g"), job_step("z")]
    sim = sim_of([*steps, job_step("q")], 3)
    sim.reconcile()
    assert running_steps(sim) == ["g", "q", "z"]
    for name in list(sim.running()):
        if sim.steps[name] in ("g", "z"):
            sim.complete(name)
    result = sim.reconcile()
    assert [a.step for a in result.actions if isinstance(a, CreateJob)] == ["x", "h1"]
    assert step(sim, "h2").message == "waiting for a slot: parallelism 3 reached"


def test_a_retry_waits_for_its_delay_without_a_place_then_for_a_place() -> None:
    sim = sim_of([job_step("a", retryPolicy=RETRY), job_step("b"), job_step("c")], 1)
    sim.reconcile()
    assert running_steps(sim) == ["a"]
    sim.fail(sim.running()[0])
    sim.reconcile()
    assert step(sim, "a").phase == "Retrying"
    assert running_steps(sim) == ["b"]  # the retry's delay takes no place
    sim.advance(sim.last.requeue_after)
    result = sim.reconcile()
    assert not result.actions  # due, but b holds the only place
    a = step(sim, "a")
    assert (a.phase, a.message) == (
        "Retrying",
        "waiting for a slot: parallelism 1 reached; attempt 1 failed: Job failed: BackoffLimitExceeded: "
        "Job has failed",
    )
    assert sim.flow.status.message == "running: b; parallelism 1 reached, waiting: a, c"
    assert result.requeue_after is None
    sim.complete(sim.running()[0])
    result = sim.reconcile()
    # The due retry comes first in spec order, ahead of c.
    assert [(a.step, a.attempt) for a in result.actions if isinstance(a, CreateJob)] == [("a", 1)]
    assert (
        step(sim, "a").message
        == "attempt 2; attempt 1 failed: Job failed: BackoffLimitExceeded: Job has failed"
    )
    assert step(sim, "c").phase == "Pending"


def test_a_job_held_suspended_by_kueue_keeps_its_place() -> None:
    sim = sim_of([job_step("a"), job_step("b")], 1)
    sim.reconcile()
    sim.hold(sim.running()[0])
    assert not sim.reconcile().actions
    assert step(sim, "b").phase == "Pending"
    assert sim.flow.status.message == "held (Job suspended): a; parallelism 1 reached, waiting: b"
    sim.hold(sim.running()[0], suspended=False)
    sim.complete(sim.running()[0])
    sim.reconcile()
    assert running_steps(sim) == ["b"]


def test_a_manual_gate_waiting_for_approval_takes_no_place() -> None:
    sim = sim_of([manual_step("gate"), job_step("a"), job_step("b"), job_step("after", "gate")], 1)
    sim.reconcile()
    assert step(sim, "gate").phase == "PendingApproval"
    assert running_steps(sim) == ["a"]
    assert step(sim, "b").message == "waiting for a slot: parallelism 1 reached"
    sim.annotate(APPROVE_PREFIX + "gate", "true")
    sim.complete(sim.running()[0])
    sim.reconcile()
    assert running_steps(sim) == ["b"]
    sim.reconcile()  # after is ready once the approval is written: b holds the slot
    assert running_steps(sim) == ["b"]
    assert step(sim, "after").message == "waiting for a slot: parallelism 1 reached"


def test_a_steps_timeout_counts_from_its_own_start_not_while_it_waits() -> None:
    sim = sim_of([job_step("a"), job_step("b", timeoutSeconds=30)], 1)
    sim.reconcile()
    sim.advance(100)
    assert sim.reconcile().requeue_after is None  # b's timeout does not run while it waits
    sim.complete(sim.running()[0])
    result = sim.reconcile()
    assert running_steps(sim) == ["b"]
    assert result.requeue_after == 31
    sim.advance(29)
    assert not sim.reconcile().actions
    sim.advance(2)
    assert [type(a) for a in sim.reconcile().actions] == [DeleteJob]
    assert step(sim, "b").phase == "Failed"


def test_the_flow_deadline_runs_while_steps_wait() -> None:
    sim = sim_of([job_step("a"), job_step("b")], 1, activeDeadlineSeconds=50)
    sim.reconcile()
    sim.advance(50)
    sim.reconcile()
    assert sim.phase == "Failed"
    assert step(sim, "b").message == "not started: flow deadline exceeded"


def test_raising_the_limit_starts_waiting_steps_and_lowering_it_stops_nothing() -> None:
    sim = sim_of([job_step(s) for s in "abcde"], 1)
    sim.reconcile()
    set_parallelism(sim, 3)
    sim.reconcile()
    assert running_steps(sim) == ["a", "b", "c"]
    set_parallelism(sim, 1)
    result = sim.reconcile()
    assert not result.actions  # the running Jobs run on
    assert step(sim, "d").message == "waiting for a slot: parallelism 1 reached"
    for name in sim.running()[:2]:
        sim.complete(name)
    assert not sim.reconcile().actions  # two finished, one still runs: still at the limit
    sim.complete(sim.running()[0])
    sim.reconcile()
    assert running_steps(sim) == ["d"]
    set_parallelism(sim, None)
    sim.reconcile()
    assert running_steps(sim) == ["d", "e"]
    assert step(sim, "e").message is None


def test_without_a_limit_every_ready_step_starts_at_once() -> None:
    sim = sim_of([job_step(f"s{i}") for i in range(20)], None)
    sim.reconcile()
    assert len(sim.running()) == 20


@st.composite
def limited_flows(draw: st.DrawFn) -> tuple[JobFlow, int]:
    flow = draw(random_flows())
    limit = draw(st.integers(1, 4))
    policy = flow.spec.execution_policy
    assert policy is not None
    spec = flow.spec.model_copy(update={"execution_policy": policy.model_copy(update={"parallelism": limit})})
    return flow.model_copy(update={"spec": spec}), limit


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(limited_flows(), st.integers(0, 2**32))
def test_random_flows_never_run_more_jobs_than_the_limit_and_always_end(
    drawn: tuple[JobFlow, int], seed: int
) -> None:
    flow, limit = drawn
    rng = random.Random(seed)
    sim = Simulator(flow, T0, instant_delete=rng.random() < 0.5)
    for _ in range(3000):
        before = sim.flow
        result = sim.reconcile(write_status=rng.random() > 0.1)
        check_plan(sim, before, result)
        assert len(sim.running()) <= limit, f"{sim.running()} run under parallelism {limit}"
        if sim.terminal:
            break
        for name in sim.running():  # a queue holds Jobs and admits them again
            if rng.random() < 0.1:
                sim.hold(name, suspended=not sim.jobs[name].suspended)
        perturb(sim, rng, result)
    else:
        raise AssertionError(f"flow did not finish: {sim.phase} {sim.flow.status.message}")


# --- found by a review of the merged features ------------------------------------------------------------


def test_a_held_steps_when_is_decided_once_when_a_slot_is_free_not_at_every_plan() -> None:
    # 100 steps with a condition at parallelism 5: evaluated 100 times, not ~5,000 (each evaluation is a
    # round trip to the expression workers in the controller).
    calls = 0

    def evaluate(compiled: Any, variables: Any) -> Any:
        nonlocal calls
        calls += 1
        return compiled.program.execute(variables)

    steps = [job_step(f"s{i}", when="flow.arguments.env == 'prod'") for i in range(100)]
    flow = make_flow(steps, execution_policy={"parallelism": 5}, arguments={"env": "prod"})
    sim = Simulator(flow, T0, evaluate=evaluate)
    while not sim.terminal:
        sim.reconcile()
        assert len(sim.running()) <= 5
        if sim.running():
            sim.complete(sim.running()[0])
    assert sim.phase == "Succeeded"
    assert calls == 100


def test_a_held_step_skipped_at_its_slot_lets_its_dependents_go_first_in_the_same_plan() -> None:
    # s0's condition is false; decided at its slot, it is Skipped, and s1 (which runs past a skip) takes
    # the slot before s3, later in spec order, as it would have with s0 decided at once.
    steps = [
        job_step("s0", when="false"),
        job_step("s1", "s0", dependencyPolicy="SucceededOrSkipped"),
        job_step("s2"),
    ]
    sim = sim_of(steps, 1)
    result = sim.reconcile()
    assert [a.step for a in result.actions if isinstance(a, CreateJob)] == ["s1"]
    assert (step(sim, "s0").phase, step(sim, "s2").phase) == ("Skipped", "Pending")
    assert step(sim, "s2").message == "waiting for a slot: parallelism 1 reached"


def test_a_rerun_jobs_a_lost_status_write_left_unrecorded_is_taken_over_before_slots_are_counted() -> None:
    # The rerun's first plan created e and x (attempt 1) and its status write was lost. The next plan
    # must take x's Job over before it hands out slots: held, it would run uncounted beside two more.
    steps = [
        job_step("a"),
        job_step("d", "a", when="false"),
        job_step("e"),
        job_step("c1", "e"),
        job_step("c2", "e"),
        job_step("x", "d", dependencyPolicy="SucceededOrSkipped"),
    ]
    sim = sim_of(steps, 2)

    def job(name: str) -> str:
        return next(n for n in sim.running() if sim.steps[n] == name)

    sim.reconcile()
    sim.complete(job("a"))
    sim.reconcile()
    sim.fail(job("e"))
    sim.fail(job("x"))
    sim.reconcile()
    assert sim.phase == "Failed"
    sim.vanish(next(n for n, s in sim.steps.items() if s == "x"))  # its own TTL removed the finished Job
    sim.advance(60)
    sim.annotate(ANNOTATION_RETRY, "r1")
    sim.reconcile(write_status=False)
    assert running_steps(sim) == ["e", "x"]
    sim.complete(job("e"))
    result = sim.reconcile()
    assert [a.step for a in result.actions if isinstance(a, CreateJob)] == ["c1"]
    assert running_steps(sim) == ["c1", "x"]
    assert (step(sim, "x").phase, step(sim, "c2").message) == (
        "Running",
        "waiting for a slot: parallelism 2 reached",
    )


def test_a_join_that_can_never_run_fails_at_once_not_when_a_slot_reaches_it() -> None:
    # smoke reads an output of a branch that was skipped: it can never run, so the flow fails now (fail-
    # fast), rather than after the reports ahead of it in spec order took their slots.
    reads = {
        "parameters": [{"name": "url", "valueFrom": {"jsonPath": "deploy-prod:$.outputs.parameters.url"}}]
    }
    out = {"parameters": [{"name": "url", "valueFrom": {"jsonPath": "$.succeeded"}}]}
    steps = [
        job_step("check"),
        job_step("deploy-prod", "check", when="false", outputs=out),
        job_step("deploy-dev", "check"),
        *[job_step(f"report-{i}", "deploy-dev") for i in range(3)],
        job_step("smoke", "deploy-prod", "deploy-dev", dependencyPolicy="SucceededOrSkipped", inputs=reads),
    ]
    sim = sim_of(steps, 1)
    while not sim.terminal:
        sim.reconcile()
        if sim.running():
            sim.complete(sim.running()[0])
    assert step(sim, "smoke").phase == "Failed"
    assert created_steps(sim) == ["check", "deploy-dev"]
