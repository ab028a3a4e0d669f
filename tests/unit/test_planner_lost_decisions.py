"""A plan that ends the last steps that are not finally starts the finally steps; when its status write is
lost (a conflict with a write to the flow, a crash), the next plan must end those steps as it did, from
what the finally step's Job records (planner/decisions.py). Each flow runs twice, the write kept and
lost: a user sees the same outcome either way."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from zen_flow.api.constants import (
    ANNOTATION_APPROVED_BY_PREFIX,
    ANNOTATION_DECISIONS,
    ANNOTATION_STOP,
    ANNOTATION_STOPPED_BY,
    APPROVE_PREFIX,
    REJECT_PREFIX,
)
from zen_flow.planner import CreateJob
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
FINALLY: dict[str, Any] = {"finally": True}


@dataclass(frozen=True)
class Outcome:
    flow: str | None
    steps: dict[str, tuple[str, str | None]]  # step -> (phase, message)
    audit: list[tuple[str, str, str | None]]  # (step, decision, user)
    created: list[str]  # the steps whose Jobs were created, in order


def outcome(sim: Simulator) -> Outcome:
    """Run the flow to its end (every Job completes), and say how it ended."""
    for _ in range(5):
        for job in sim.running():
            sim.complete(job)
        sim.advance(1)
        sim.reconcile()
    audit = sim.flow.status.audit
    return Outcome(
        sim.phase,
        {s.name: (s.phase, s.message) for s in sim.flow.status.steps},
        [(a.step, a.decision, a.user) for a in (audit.approvals if audit is not None else ())],
        [sim.steps[j] for j in sim.created],
    )


def decide(sim: Simulator, verdict: str, user: str, step: str = "gate") -> None:
    """A user's decision, as the webhook records it (approved-by names whoever decided)."""
    sim.annotate(f"{APPROVE_PREFIX if verdict == 'approve' else REJECT_PREFIX}{step}", "true")
    sim.annotate(f"{ANNOTATION_APPROVED_BY_PREFIX}{step}", user)


def at(sim: Simulator, seconds: int) -> None:
    sim.now = T0 + timedelta(seconds=seconds)


def last_gate(write_status: bool, *, decided_at: int, seen_at: int, verdict: str = "approve") -> Outcome:
    """A gate (timeoutSeconds 60) the last step but a finally one, reached at 0; a decision given at
    `decided_at`, first seen at `seen_at` by a plan whose write may be lost; the next plan at 75."""
    sim = Simulator(make_flow([manual_step("gate", timeoutSeconds=60), job_step("cleanup", **FINALLY)]), T0)
    sim.reconcile()
    at(sim, decided_at)
    decide(sim, verdict, "alice")
    at(sim, seen_at)
    sim.reconcile(write_status=write_status)
    at(sim, 75)  # past the gate's timeout
    sim.reconcile()
    return outcome(sim)


def test_a_gate_approved_just_before_its_timeout_stays_approved_when_that_write_is_lost() -> None:
    kept = last_gate(True, decided_at=59, seen_at=59)
    assert kept == Outcome(
        "Succeeded",
        {"gate": ("Succeeded", "approved by alice"), "cleanup": ("Succeeded", None)},
        [("gate", "Approved", "alice")],
        ["cleanup"],
    )
    assert last_gate(False, decided_at=59, seen_at=59) == kept


def test_an_approval_given_in_time_and_seen_late_stays_approved_when_that_write_is_lost() -> None:
    # Given at 30, seen first at 70 (a restart, a backlog): it counts, and the plan that saw it started
    # cleanup; the next plan, past the timeout, must not read the gate as timed out.
    kept = last_gate(True, decided_at=30, seen_at=70)
    assert kept.flow == "Succeeded"
    assert kept.steps["gate"] == ("Succeeded", "approved by alice")
    assert kept.audit == [("gate", "Approved", "alice")]
    assert last_gate(False, decided_at=30, seen_at=70) == kept


def test_a_rejection_seen_late_stays_a_rejection_when_that_write_is_lost() -> None:
    kept = last_gate(True, decided_at=30, seen_at=70, verdict="reject")
    assert kept == Outcome(
        "Failed",
        {"gate": ("Failed", "rejected by alice"), "cleanup": ("Succeeded", None)},
        [("gate", "Rejected", "alice")],
        ["cleanup"],
    )
    assert last_gate(False, decided_at=30, seen_at=70, verdict="reject") == kept


@pytest.mark.parametrize("continue_on_failure", [False, True])
def test_a_decision_after_the_timeout_started_the_finally_steps_is_too_late_even_if_that_write_was_lost(
    continue_on_failure: bool,
) -> None:
    # The plan that times the gate out ends the other steps and creates the finally step's Job; the
    # approval lands before its status write, which it makes fail. The next plan sees the gate waiting,
    # past its timeout, approved: the timeout stands, as with the write kept. Else ship would run beside
    # cleanup, and the flow end otherwise.
    gate: dict[str, Any] = {"timeoutSeconds": 60}
    ship: dict[str, Any] = {}
    if continue_on_failure:  # ship skipped by its `when`, not by fail-fast
        gate["continueOnFailure"] = True
        ship["when"] = "steps.gate.phase == 'Succeeded'"

    def run(write_status: bool) -> Outcome:
        cleanup = job_step("cleanup", **FINALLY)
        sim = Simulator(
            make_flow([manual_step("gate", **gate), job_step("ship", "gate", **ship), cleanup]), T0
        )
        sim.reconcile()
        at(sim, 60)
        sim.reconcile(write_status=write_status)
        decide(sim, "approve", "alice")
        at(sim, 61)
        sim.reconcile()
        return outcome(sim)

    kept = run(write_status=True)
    assert kept.created == ["cleanup"]
    assert kept.flow == "Failed"
    assert kept.steps["gate"] == ("Failed", "rejected: no decision within 60s (timeoutSeconds)")
    assert kept.steps["ship"][0] == "Skipped"
    assert kept.audit == []
    assert run(write_status=False) == kept


def test_a_decision_changed_after_the_plan_that_acted_on_it_read_it_does_not_reopen_the_gate() -> None:
    # Rejected, ship skipped, cleanup started; the write lost, and the rejection is replaced by an
    # approval before the next plan: cleanup runs on the rejection, so the gate stays rejected (the
    # approval never opens it: ship does not run beside cleanup).
    def run(write_status: bool) -> Outcome:
        steps = [manual_step("gate"), job_step("ship", "gate"), job_step("cleanup", **FINALLY)]
        sim = Simulator(make_flow(steps), T0)
        sim.reconcile()
        decide(sim, "reject", "bob")
        sim.reconcile(write_status=write_status)
        sim.annotate(f"{REJECT_PREFIX}gate", None)
        decide(sim, "approve", "carol")
        sim.advance(1)
        sim.reconcile()
        return outcome(sim)

    kept, lost = run(True), run(False)
    assert kept.flow == lost.flow == "Failed"
    assert kept.created == lost.created == ["cleanup"]
    assert kept.steps["ship"] == lost.steps["ship"]
    assert lost.steps["gate"][0] == "Failed"
    # Who rejected is read from the flow, which names the approver now: the audit says no user.
    assert lost.audit == [("gate", "Rejected", None)]


def test_a_gate_a_graceful_stop_ended_takes_no_decision_seen_after_that_write_was_lost() -> None:
    def run(write_status: bool) -> Outcome:
        steps = [job_step("a"), manual_step("gate", timeoutSeconds=60), job_step("cleanup", **FINALLY)]
        sim = Simulator(make_flow(steps), T0)
        sim.reconcile()
        at(sim, 50)
        sim.annotate(ANNOTATION_STOP, "RunFinally")
        sim.annotate(ANNOTATION_STOPPED_BY, "eve")
        sim.reconcile(write_status=write_status)
        decide(sim, "approve", "alice")  # landed after the stopping plan's read
        at(sim, 75)  # past the gate's timeout
        sim.reconcile()
        return outcome(sim)

    kept = run(True)
    assert kept.flow == "Failed"
    assert kept.steps["gate"] == ("Skipped", "no decision: stopped by eve")
    assert kept.audit == []
    assert run(False) == kept


def test_a_step_timed_out_stays_so_when_its_job_finished_before_the_delete_and_the_write_was_lost() -> None:
    def run(write_status: bool) -> Outcome:
        steps = [job_step("work", timeoutSeconds=60), job_step("cleanup", **FINALLY)]
        sim = Simulator(make_flow(steps), T0, instant_delete=False)  # a deleted Job lingers a while
        sim.reconcile()
        at(sim, 62)  # past its timeout (counted from the next second: planner.timing)
        timing_out = sim.preview()
        sim.complete(sim.running()[0])  # done between the plan's read and its delete
        sim.apply(timing_out, write_status=write_status)
        sim.advance(1)
        sim.reconcile()
        return outcome(sim)

    kept = run(True)
    assert kept.flow == "Failed"
    assert kept.steps["work"] == ("Failed", "timed out after 60s")
    assert run(False) == kept


def test_the_finally_steps_job_says_what_the_plan_that_created_it_decided() -> None:
    sim = Simulator(make_flow([manual_step("gate"), job_step("cleanup", **FINALLY)]), T0)
    sim.reconcile()
    decide(sim, "approve", "alice")
    created = [a for a in sim.reconcile().actions if isinstance(a, CreateJob)]
    assert [a.body["metadata"]["annotations"][ANNOTATION_DECISIONS] for a in created] == ["gate=approved"]
    assert sim.jobs[sim.created[0]].metadata.decisions == "gate=approved"  # as the cache reads it
