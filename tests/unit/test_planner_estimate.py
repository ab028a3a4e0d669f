"""status.estimatedCompletionTime: the flow's own finished steps predict the rest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from zen_flow.api.constants import APPROVE_PREFIX
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def test_no_estimate_until_a_step_has_succeeded() -> None:
    sim = Simulator(make_flow([job_step("a"), job_step("b", "a")]), T0)
    sim.reconcile()
    assert sim.flow.status.estimated_completion_time is None


def test_a_chain_is_estimated_from_the_mean_step_duration() -> None:
    sim = Simulator(make_flow([job_step("a"), job_step("b", "a"), job_step("c", "b")]), T0)
    sim.reconcile()
    sim.advance(60)
    sim.complete(sim.running()[0])
    sim.reconcile()  # a took 60 s; b just started; c waits for b
    assert sim.flow.status.estimated_completion_time == T0 + timedelta(seconds=60 + 60 + 60)


def test_parallel_branches_take_the_longest_path() -> None:
    flow = make_flow(
        [job_step("a"), job_step("b", "a"), job_step("c", "a"), job_step("d", "c"), job_step("e", "b", "d")]
    )
    sim = Simulator(flow, T0)
    sim.reconcile()
    sim.advance(10)
    sim.complete(sim.running()[0])
    sim.reconcile()  # b and c run from t=10; d after c; e after b and d
    assert sim.flow.status.estimated_completion_time == T0 + timedelta(seconds=10 + 10 + 10 + 10)


def test_a_finally_step_is_expected_after_every_other_step() -> None:
    # cleanup has no dependencies but starts only once a, b and c have ended: 4 steps of 60 s in a row.
    steps = [job_step("a"), job_step("b", "a"), job_step("c", "b"), job_step("cleanup", **{"finally": True})]
    sim = Simulator(make_flow(steps), T0)
    sim.reconcile()
    sim.advance(60)
    sim.complete(sim.running()[0])
    sim.reconcile()
    assert sim.flow.status.estimated_completion_time == T0 + timedelta(seconds=4 * 60)


def test_the_estimate_stands_between_transitions_so_quiet_reconciles_write_nothing() -> None:
    sim = Simulator(make_flow([job_step("a"), job_step("b", "a")]), T0)
    sim.reconcile()
    sim.advance(30)
    sim.complete(sim.running()[0])
    sim.reconcile()
    sim.reconcile()  # records b's Job UID
    before = sim.flow.status
    assert before.estimated_completion_time is not None
    sim.advance(300)  # b overruns its expected 30 s; nothing else happened
    again = sim.reconcile()
    assert again.status is before


def test_an_open_approval_gate_or_a_finished_flow_has_no_estimate() -> None:
    sim = Simulator(
        make_flow([job_step("a"), job_step("side"), manual_step("gate", "a"), job_step("b", "gate")]), T0
    )
    sim.reconcile()
    sim.advance(5)
    (job_a,) = (n for n in sim.running() if "-a-" in n)
    sim.complete(job_a)
    sim.reconcile()  # a succeeded (so there is a mean), side runs, the gate is open
    assert sim.phase == "Running"
    assert sim.flow.status.estimated_completion_time is None
    sim.annotate(APPROVE_PREFIX + "gate", "true")
    sim.reconcile()
    sim.reconcile()  # the steps after the gate start once the approval is written
    assert sim.flow.status.estimated_completion_time is not None
    for name in sim.running():
        sim.complete(name)
    sim.reconcile()
    assert sim.phase == "Succeeded"
    assert sim.flow.status.estimated_completion_time is None


def test_steps_held_for_a_slot_wait_for_it_in_the_estimate() -> None:
    # 256 items of 60 s under parallelism 4 were estimated at one more minute, not 63.
    from zen_flow.core.matrix import effective_flow

    shards = [f"s{i:03d}" for i in range(256)]
    build = job_step("build", matrix={"parameters": [{"name": "shard", "values": shards}]})
    flow = effective_flow(
        make_flow([build, job_step("publish", "build")], execution_policy={"parallelism": 4})
    )
    sim = Simulator(flow, T0)
    sim.reconcile()
    sim.advance(60)
    for job in sim.running():
        sim.complete(job)
    sim.reconcile()  # 4 done at t=60 s, 4 more running: 248 to go after them, 62 rounds, then publish
    assert len(sim.running()) == 4
    assert sim.flow.status.estimated_completion_time == T0 + timedelta(seconds=60 * (1 + 1 + 62 + 1))


def test_a_running_step_holds_its_slot_until_its_expected_end() -> None:
    # a (60 s) is done; b runs from t=60 s and holds the only slot until t=120 s; c and d follow it.
    steps = [job_step("a"), job_step("b", "a"), job_step("c", "a"), job_step("d", "a")]
    sim = Simulator(make_flow(steps, execution_policy={"parallelism": 1}), T0)
    sim.reconcile()
    sim.advance(60)
    sim.complete(sim.running()[0])
    sim.reconcile()
    assert len(sim.running()) == 1
    assert sim.flow.status.estimated_completion_time == T0 + timedelta(seconds=4 * 60)
