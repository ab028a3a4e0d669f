"""A finally step starts only in a plan whose input, the status stored, already has every other step
ended (planner/finale.py): the plan that ends them writes that first. How they ended can hang on what a
plan saw of the flow's annotations and of the clock; when that plan's status write is lost (a conflict
with a write to the flow, a crash), no finally step ran on it, and the next plan decides those steps
again from the stored status. Each flow runs with that write kept and lost: the same end when nothing
changed in between; otherwise the end the stored status and the flow as it then is give, and never a
finally step beside the other steps or on an outcome the status never held (`Checked`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from zen_flow.api.constants import (
    ANNOTATION_APPROVED_BY_PREFIX,
    ANNOTATION_STOP,
    ANNOTATION_STOPPED_BY,
    APPROVE_PREFIX,
    REJECT_PREFIX,
    VALUES_PREFIX,
    StepPhase,
)
from zen_flow.api.job import JOB
from zen_flow.core.naming import job_name
from zen_flow.planner import CreateJob, Plan
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
FINALLY: dict[str, Any] = {"finally": True}
ENDED = {StepPhase.SUCCEEDED, StepPhase.FAILED, StepPhase.SKIPPED}


class Checked(Simulator):
    """A simulator whose every plan is held to the rule: a finally step's Job is created only by a plan
    whose input status has every other step ended."""

    def apply(self, result: Plan, *, write_status: bool = True, held: bool = True) -> None:
        final = {s.name for s in self.flow.spec.steps if s.is_finally}
        stored = {s.name: s.phase for s in self.flow.status.steps}
        main_ended = all(stored.get(s.name) in ENDED for s in self.flow.spec.steps if s.name not in final)
        for action in result.actions:
            if isinstance(action, CreateJob) and action.step in final:
                assert main_ended, f"{action.step} created while the status stored has {stored}"
        super().apply(result, write_status=write_status, held=held)


@dataclass(frozen=True)
class Outcome:
    flow: str | None
    steps: dict[str, tuple[str, str | None]]  # step -> (phase, message)
    audit: list[tuple[str, str, str | None]]  # (step, decision, user)
    created: list[str]  # the steps whose Jobs were created, in order


def outcome(sim: Simulator) -> Outcome:
    """Run the flow to its end (every Job completes), and say how it ended."""
    for _ in range(6):
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


def creates(result: Plan) -> list[str]:
    return [a.step for a in result.actions if isinstance(a, CreateJob)]


def last_gate(write_status: bool, *, decided_at: int, seen_at: int, verdict: str = "approve") -> Outcome:
    """A gate (timeoutSeconds 60) the last step but a finally one, reached at 0; a decision given at
    `decided_at`, first seen at `seen_at` by a plan whose write may be lost; the next plan at 75."""
    sim = Checked(make_flow([manual_step("gate", timeoutSeconds=60), job_step("cleanup", **FINALLY)]), T0)
    sim.reconcile()
    at(sim, decided_at)
    decide(sim, verdict, "alice")
    at(sim, seen_at)
    assert creates(sim.reconcile(write_status=write_status)) == []  # that status is written first
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
    # Given at 30, seen first at 70 (a restart, a backlog): it counts; the next plan, past the timeout,
    # sees it again and it still counts (no finally step ran on anything else).
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
def test_an_approval_that_made_the_timeouts_write_fail_counts_and_nothing_ran_on_the_timeout(
    continue_on_failure: bool,
) -> None:
    # The plan that times the gate out ends the other steps; the approval lands before its status write.
    # Kept, the approval comes after the stored timeout: too late. Lost (the approval's own write is what
    # refused it), the stored status never held the timeout: the approval counts, as one seen late does.
    # Either way cleanup runs last, never beside ship.
    gate: dict[str, Any] = {"timeoutSeconds": 60}
    ship: dict[str, Any] = {}
    if continue_on_failure:  # ship skipped by its `when`, not by fail-fast
        gate["continueOnFailure"] = True
        ship["when"] = "steps.gate.phase == 'Succeeded'"

    def run(write_status: bool) -> Outcome:
        cleanup = job_step("cleanup", **FINALLY)
        sim = Checked(make_flow([manual_step("gate", **gate), job_step("ship", "gate", **ship), cleanup]), T0)
        sim.reconcile()
        at(sim, 60)
        assert creates(sim.reconcile(write_status=write_status)) == []
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
    lost = run(write_status=False)
    assert lost.created == ["ship", "cleanup"]
    assert (lost.flow, lost.steps["gate"]) == ("Succeeded", ("Succeeded", "approved by alice"))
    assert lost.audit == [("gate", "Approved", "alice")]


def test_a_decision_changed_before_the_plan_that_acted_on_it_was_stored_is_taken_as_changed() -> None:
    # Rejected, ship skipped, the other steps ended; that write lost, and the rejection replaced by an
    # approval before the next plan: nothing ran on the rejection, so the approval decides.
    def run(write_status: bool) -> Outcome:
        steps = [manual_step("gate"), job_step("ship", "gate"), job_step("cleanup", **FINALLY)]
        sim = Checked(make_flow(steps), T0)
        sim.reconcile()
        decide(sim, "reject", "bob")
        assert creates(sim.reconcile(write_status=write_status)) == []
        sim.annotate(f"{REJECT_PREFIX}gate", None)
        decide(sim, "approve", "carol")
        sim.advance(1)
        sim.reconcile()
        return outcome(sim)

    kept, lost = run(True), run(False)
    assert (kept.flow, kept.steps["gate"], kept.created) == (
        "Failed",
        ("Failed", "rejected by bob"),
        ["cleanup"],
    )
    assert kept.audit == [("gate", "Rejected", "bob")]
    assert (lost.flow, lost.steps["gate"]) == ("Succeeded", ("Succeeded", "approved by carol"))
    assert lost.created == ["ship", "cleanup"]
    assert lost.audit == [("gate", "Approved", "carol")]


def test_a_graceful_stop_whose_write_was_lost_is_made_again_with_what_the_flow_holds_then() -> None:
    def run(write_status: bool) -> Outcome:
        steps = [job_step("a"), manual_step("gate", timeoutSeconds=60), job_step("cleanup", **FINALLY)]
        sim = Checked(make_flow(steps), T0)
        sim.reconcile()
        at(sim, 50)
        sim.annotate(ANNOTATION_STOP, "RunFinally")
        sim.annotate(ANNOTATION_STOPPED_BY, "eve")
        assert creates(sim.reconcile(write_status=write_status)) == []
        decide(sim, "approve", "alice")  # landed after the stopping plan's read
        at(sim, 75)  # past the gate's timeout
        sim.reconcile()
        return outcome(sim)

    kept = run(True)
    assert kept.flow == "Failed"
    assert kept.steps["gate"] == ("Skipped", "no decision: stopped by eve")
    assert kept.audit == []
    assert kept.created == ["a", "cleanup"]
    # Lost, the next plan sees a's Job stopped by that plan (its own delete) and the gate waiting, then
    # approved: the stop still ended a step, and the flow ends Stopped, cleanup after the rest.
    lost = run(False)
    assert lost.flow == "Failed"
    assert lost.steps["a"] == kept.steps["a"] == ("Failed", "stopped by eve")
    assert lost.created == ["a", "cleanup"]


def test_a_lost_timeout_of_a_step_whose_job_completed_before_the_delete_reads_as_a_success() -> None:
    # The finally steps no longer run on that plan's timeout, so the next plan may read the Job as it is:
    # completed, a success (as a Job seen complete past its step's timeout is).
    def run(write_status: bool) -> Outcome:
        steps = [job_step("work", timeoutSeconds=60), job_step("cleanup", **FINALLY)]
        sim = Checked(make_flow(steps), T0, instant_delete=False)  # a deleted Job lingers a while
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
    lost = run(False)
    assert (lost.flow, lost.steps["work"][0]) == ("Succeeded", "Succeeded")
    assert lost.created == kept.created == ["work", "cleanup"]


# --- found by the review of the decisions record (/tmp/rev-decisions) ----------------------------------


def test_a_forged_job_named_like_the_finally_steps_changes_nothing() -> None:
    # Anyone who may create Jobs in the namespace can make one named like cleanup's, owned by the flow, with
    # the annotation a plan once read decisions from: it approves no gate (approvers and the required count
    # stay the webhook's), starts nothing after the gate, and is not taken for cleanup's while the other
    # steps have not ended.
    approval = {
        "approvers": [{"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"}],
        "required": 2,
    }
    steps = [manual_step("gate", approval=approval), job_step("ship", "gate"), job_step("cleanup", **FINALLY)]
    sim = Checked(make_flow(steps), T0)
    sim.reconcile()
    before = sim.flow.status
    name = job_name(sim.flow.metadata.name, "cleanup", 0)
    owner = {"apiVersion": "workflow.kube-zen.io/v1alpha1", "kind": "JobFlow", "controller": True}
    meta = {
        "name": name,
        "namespace": sim.flow.metadata.namespace,
        "uid": "forged",
        "creationTimestamp": sim.stamp().isoformat(),
        "annotations": {"workflow.kube-zen.io/decisions": "gate=approved"},
        "ownerReferences": [{**owner, "name": sim.flow.metadata.name, "uid": sim.flow.metadata.uid}],
    }
    sim.jobs[name] = JOB.validate_python({"metadata": meta, "spec": {}})
    sim.steps[name] = "cleanup"
    sim.advance(1)
    result = sim.reconcile()
    assert creates(result) == []
    assert sim.flow.status == before
    assert sim.phase == "Paused"


def test_a_gate_decided_by_a_lost_plan_then_a_graceful_stop_or_the_deadline() -> None:
    # a and a pre-approved gate end in one plan whose write is lost; the write that refused it is a
    # graceful stop, or the flow deadline passes before the next plan.
    def run(write_status: bool, then: str) -> Outcome:
        steps = [job_step("a"), manual_step("gate", "a", timeoutSeconds=60), job_step("cleanup", **FINALLY)]
        sim = Checked(make_flow(steps, execution_policy={"activeDeadlineSeconds": 30}), T0)
        sim.reconcile()
        decide(sim, "approve", "alice")  # before the gate is reached
        sim.complete(sim.running()[0])
        at(sim, 5)
        assert creates(sim.reconcile(write_status=write_status)) == []
        if then == "stop":
            sim.annotate(ANNOTATION_STOP, "RunFinally")
            sim.annotate(ANNOTATION_STOPPED_BY, "eve")
            at(sim, 6)
        else:
            at(sim, 31)
        sim.reconcile()
        return outcome(sim)

    # Kept, the graceful stop comes once the other steps have ended: it stops nothing. Lost, the stored
    # status has the gate not reached yet: the stop ends it, and cleanup runs on that (the flow Stopped).
    kept, lost = run(True, "stop"), run(False, "stop")
    assert (kept.flow, kept.steps["gate"], kept.created) == (
        "Succeeded",
        ("Succeeded", "approved by alice"),
        ["a", "cleanup"],
    )
    assert (lost.flow, lost.steps["gate"], lost.created) == (
        "Failed",
        ("Skipped", "not started: stopped by eve"),
        ["a", "cleanup"],
    )
    assert lost.audit == []
    # The deadline ends the flow before the finally steps start, lost or kept: none ran.
    kept, lost = run(True, "deadline"), run(False, "deadline")
    assert kept.flow == lost.flow == "Failed"
    assert kept.created == lost.created == ["a"]
    assert (
        kept.steps["cleanup"] == lost.steps["cleanup"] == ("Skipped", "not started: flow deadline exceeded")
    )


@pytest.mark.parametrize("then", ["withdrawn", "other values"])
def test_a_gate_opens_only_with_the_values_of_an_approval_the_flow_holds(then: str) -> None:
    # alice approves with env=staging; the plan that opens the gate (the other steps ended) loses its write;
    # the approval is taken back, or its values changed without one. The next plan opens nothing: the
    # gate waits, notify is not created, until someone approves again.
    outputs = {"parameters": [{"name": "env", "valueFrom": {"supplied": {"enum": ["staging", "prod"]}}}]}
    reads = {"parameters": [{"name": "env", "valueFrom": {"jsonPath": "gate:$.outputs.parameters.env"}}]}
    steps = [manual_step("gate", outputs=outputs), job_step("notify", inputs=reads, **FINALLY)]
    sim = Checked(make_flow(steps), T0)
    sim.reconcile()
    decide(sim, "approve", "alice")
    sim.annotate(f"{VALUES_PREFIX}gate", '{"env": "staging"}')
    assert creates(sim.reconcile(write_status=False)) == []
    if then == "withdrawn":
        sim.annotate(f"{APPROVE_PREFIX}gate", None)
    else:
        sim.annotate(f"{APPROVE_PREFIX}gate", None)
        sim.annotate(f"{VALUES_PREFIX}gate", '{"env": "prod"}')
    sim.advance(1)
    assert creates(sim.reconcile()) == []
    assert (sim.phase, sim.flow.status.audit) == ("Paused", None)
    decide(sim, "approve", "bob")
    sim.annotate(f"{VALUES_PREFIX}gate", '{"env": "prod"}')
    sim.advance(1)
    sim.reconcile()
    notify = [a for a in sim.reconcile().actions if isinstance(a, CreateJob)]
    env = notify[0].body["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [e["value"] for e in env if e["name"] == "ZF_PARAM_ENV"] == ["prod"]


def test_a_lost_memoize_hit_runs_the_step_once_the_entry_expired_and_cleanup_after() -> None:
    memo = {"key": "build-v1", "cache": {"configMap": {"name": "cache"}}, "maxAge": "60s"}

    def flow(name: str) -> Any:
        return make_flow([job_step("build", memoize=memo), job_step("cleanup", **FINALLY)], name=name)

    for write_status in (True, False):
        cache: dict[str, dict[str, str]] = {}
        first = Checked(flow("first"), T0)
        first.memo_cache = cache
        outcome(first)  # stores build's result at about T0+1
        sim = Checked(flow("second"), T0 + timedelta(seconds=59))
        sim.memo_cache = cache
        assert creates(sim.reconcile(write_status=write_status)) == []  # served: build Succeeded
        sim.advance(5)  # the entry is past its maxAge now
        ended = outcome(sim)
        assert ended.flow == "Succeeded"
        # Lost: the hit is not stored, the entry expired, so build runs; cleanup once it has.
        assert ended.created == (["cleanup"] if write_status else ["build", "cleanup"])


@pytest.mark.parametrize("approve", [False, True])
def test_a_graceful_stop_taken_back_after_its_write_was_lost_stopped_nothing(approve: bool) -> None:
    steps = [manual_step("gate"), job_step("ship", "gate"), job_step("cleanup", **FINALLY)]
    sim = Checked(make_flow(steps), T0)
    sim.reconcile()
    at(sim, 10)
    sim.annotate(ANNOTATION_STOP, "RunFinally")
    sim.annotate(ANNOTATION_STOPPED_BY, "eve")
    assert creates(sim.reconcile(write_status=False)) == []  # the gate ended, not stored
    sim.annotate(ANNOTATION_STOP, None)
    sim.annotate(ANNOTATION_STOPPED_BY, None)
    if approve:
        decide(sim, "approve", "alice")
    at(sim, 11)
    ended = outcome(sim)
    if approve:
        assert (ended.flow, ended.created) == ("Succeeded", ["ship", "cleanup"])
    else:
        assert (ended.flow, ended.steps["gate"][0], ended.created) == ("Paused", "PendingApproval", [])
