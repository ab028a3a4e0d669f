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
    assert sim.flow.status.estimated_completion_time is not None
    for name in sim.running():
        sim.complete(name)
    sim.reconcile()
    assert sim.phase == "Succeeded"
    assert sim.flow.status.estimated_completion_time is None
