"""A planner property of approval gates on random DAGs driven by a fake cluster: a step behind a gate
starts only in a plan whose input, the stored status, has the gate decided, whatever the operators do
to the decision (approve, reject, take it back) and however many status writes are lost meanwhile
(planner/approval_gates.py: a decision read from the annotations can change before the write lands)."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_planner_properties import T0, perturb, random_flows

from zen_flow.api import JobFlow
from zen_flow.api.constants import ANNOTATION_APPROVED_BY_PREFIX, APPROVE_PREFIX, REJECT_PREFIX
from zen_flow.planner import CreateJob
from zen_flow_dev.testing.simulator import Simulator

ROUNDS = 200
DECIDED = ("Succeeded", "Failed")
ENDED = (*DECIDED, "Skipped")


def change_decision(sim: Simulator, rng: random.Random, gates: list[str]) -> None:
    """Someone approves, rejects, or takes the decision back, on a gate decided or not."""
    gate = rng.choice(gates)
    verb = rng.choice(["approve", "reject", None])
    sim.annotate(APPROVE_PREFIX + gate, "true" if verb == "approve" else None)
    sim.annotate(REJECT_PREFIX + gate, "true" if verb == "reject" else None)
    sim.annotate(ANNOTATION_APPROVED_BY_PREFIX + gate, rng.choice(["alice", "bob"]) if verb else None)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(random_flows().filter(lambda f: any(s.is_manual for s in f.spec.steps)), st.integers(0, 2**32))
def test_no_step_starts_on_a_gate_decision_the_stored_status_does_not_hold(flow: JobFlow, seed: int) -> None:
    rng = random.Random(seed)
    sim = Simulator(flow, T0, instant_delete=rng.random() < 0.5)
    gates = [s.name for s in flow.spec.steps if s.is_manual]
    specs = {s.name: s for s in flow.spec.steps}
    for _ in range(ROUNDS):
        stored = {s.name: s.phase for s in sim.flow.status.steps}
        lose_write = rng.random() < 0.3
        result = sim.reconcile(write_status=not lose_write)
        # Gates this plan decided (a gate skipped by its own `when`, say, was not waiting for anyone).
        decided_now = {s.name for s in result.status.steps if s.name in gates and s.phase in DECIDED}
        decided_now -= {name for name, phase in stored.items() if phase in ENDED}
        for action in result.actions:
            if isinstance(action, CreateJob):
                early = decided_now.intersection(specs[action.step].dependencies)
                assert not early, f"{action.step} started on gate {early} undecided in the stored status"
        if sim.terminal and not lose_write:
            break
        if rng.random() < 0.3:
            change_decision(sim, rng, gates)
        perturb(sim, rng, result)
