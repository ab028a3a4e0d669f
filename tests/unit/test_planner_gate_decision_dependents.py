"""A gate a plan decides (approved, rejected) starts none of its dependents in that plan: they start in
the next, whose input, the stored status, has the decision (planner/approval_gates.py, as
`after_timeout` does for a timeout). The decision is read from annotations that can change before the
plan's status write lands: a second operator's reject after the approve (the write is refused, 409), an
approval taken back. The next plan decides the gate again, and no step runs on a decision the stored
status never held: a rejected step never runs, and of a gate's two `when` branches only one does."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from zen_flow.api.constants import ANNOTATION_APPROVED_BY_PREFIX, APPROVE_PREFIX, REJECT_PREFIX
from zen_flow.api.jobflow import Step
from zen_flow.planner import CreateJob, Plan
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def creates(result: Plan) -> list[str]:
    return [a.step for a in result.actions if isinstance(a, CreateJob)]


def gated() -> list[Step]:
    return [job_step("backup"), manual_step("gate", "backup"), job_step("migrate", "gate")]


def branches() -> list[Step]:
    """A gate whose rejection the flow tolerates, `deploy` when approved, `cleanup` when rejected."""
    return [
        job_step("build"),
        manual_step("gate", "build", allowFailure=True),
        job_step("deploy", "gate", when="steps.gate.phase == 'Succeeded'"),
        job_step("cleanup", "gate", when="steps.gate.phase == 'Failed'"),
    ]


def at_gate(steps: list[Step]) -> Simulator:
    sim = Simulator(make_flow(steps), T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.advance(1)
    sim.reconcile()
    assert {s.name: s.phase for s in sim.flow.status.steps}["gate"] == "PendingApproval"
    return sim


def decide(sim: Simulator, verb: str | None, user: str | None) -> None:
    """`verb` ("approve", "reject", None: the decision taken back) by `user`, as the webhook records it."""
    sim.annotate(APPROVE_PREFIX + "gate", "true" if verb == "approve" else None)
    sim.annotate(REJECT_PREFIX + "gate", "true" if verb == "reject" else None)
    sim.annotate(ANNOTATION_APPROVED_BY_PREFIX + "gate", user)


def finish(sim: Simulator) -> tuple[str | None, dict[str, str], list[str]]:
    """Run the flow to its end (every Job completes): its phase, its steps' and the steps whose Jobs ran."""
    for _ in range(6):
        for job in sim.running():
            sim.complete(job)
        sim.advance(1)
        sim.reconcile()
    return sim.phase, {s.name: s.phase for s in sim.flow.status.steps}, [sim.steps[j] for j in sim.created]


def test_an_approved_gates_dependents_start_once_the_approval_is_written() -> None:
    sim = at_gate(gated())
    decide(sim, "approve", "alice")
    first = sim.reconcile()
    assert creates(first) == []
    assert {s.name: s.phase for s in sim.flow.status.steps}["gate"] == "Succeeded"
    assert creates(sim.reconcile()) == ["migrate"]  # the plan its own write brings


@pytest.mark.parametrize("write_status", [True, False])
def test_a_reject_that_refused_the_approvals_write_runs_nothing_behind_the_gate(write_status: bool) -> None:
    sim = at_gate(gated())
    decide(sim, "approve", "alice")
    sim.reconcile(write_status=write_status)
    # Bob's reject landed before the write (refusing it when lost), or after it (too late: kept).
    decide(sim, "reject", "bob")
    phase, steps, ran = finish(sim)
    assert ran == ["backup", *(["migrate"] if write_status else [])]
    if not write_status:
        assert (phase, steps["gate"], steps["migrate"]) == ("Failed", "Failed", "Skipped")


def test_an_approval_taken_back_before_its_write_landed_runs_nothing() -> None:
    sim = at_gate(gated())
    decide(sim, "approve", "alice")
    sim.reconcile(write_status=False)
    decide(sim, None, None)
    sim.advance(1)
    assert creates(sim.reconcile()) == []
    assert sim.phase == "Paused"
    assert {s.name: s.phase for s in sim.flow.status.steps}["migrate"] == "Pending"


@pytest.mark.parametrize(("first", "then"), [("approve", "reject"), ("reject", "approve")])
def test_a_gate_decided_again_after_a_lost_write_runs_one_branch(first: str, then: str) -> None:
    sim = at_gate(branches())
    decide(sim, first, "alice")
    sim.reconcile(write_status=False)
    decide(sim, then, "bob")
    _, steps, ran = finish(sim)
    taken, other = ("deploy", "cleanup") if then == "approve" else ("cleanup", "deploy")
    assert ran == ["build", taken]
    assert (steps[taken], steps[other]) == ("Succeeded", "Skipped")
