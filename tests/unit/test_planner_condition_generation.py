"""Every condition zen-flow keeps is at the generation its object was last reconciled at: `kubectl wait
--for=condition=X` reads a condition's own observedGeneration before the status's, and waits on while it
is below metadata.generation. A flow that has ended (or is suspended, or paused at a gate) whose spec was
edited since (a TTL changed by a re-apply, a suspend) must still satisfy `kubectl wait`, and a CronJobFlow
edited between two run times too; what the conditions say, and when they last flipped, stays."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zen_flow.api.constants import ARCHIVED, JOB_CREATE_FAILING, JOB_DELETE_FAILING
from zen_flow.api.cronjobflow import CronJobFlow, CronJobFlowStatus
from zen_flow.api.flow_status import JobFlowStatus
from zen_flow.api.meta import Condition, format_time
from zen_flow.planner import with_create_condition
from zen_flow.planner.cron import plan_cron
from zen_flow.planner.newer_schema import known_again, newer_schema_conditions
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def kubectl_waits_on(wire: dict[str, Any], kind: str) -> bool:
    """Would `kubectl wait --for=condition=<kind>` (status True) still wait on this object? Its rule: the
    condition's observedGeneration, else the status's, must not be below metadata.generation."""
    status = wire.get("status") or {}
    found = next((c for c in status.get("conditions", ()) if c["type"] == kind), None)
    if found is None or found["status"] != "True":
        return True
    observed = found.get("observedGeneration", status.get("observedGeneration"))
    return observed is not None and observed < wire["metadata"]["generation"]


def said(cond: Condition) -> tuple[Any, ...]:
    return cond.type, cond.status, cond.reason, cond.message, cond.last_transition_time


def edited(sim: Simulator) -> int:
    """The flow's spec edited (its TTL, as a re-apply of a changed manifest would): the next generation."""
    policy = {"ttlSecondsAfterFinished": 600}
    spec = sim.flow.spec.model_validate({**sim.flow.spec.to_wire(), "executionPolicy": policy})
    generation = sim.flow.metadata.generation + 1
    meta = sim.flow.metadata.model_copy(update={"generation": generation})
    sim.flow = sim.flow.model_copy(update={"spec": spec, "metadata": meta})
    return generation


def with_conditions(sim: Simulator, *extra: Condition) -> None:
    """The stored status with the conditions the controller sets beside the planner's."""
    status = sim.flow.status.model_copy(update={"conditions": (*sim.flow.status.conditions, *extra)})
    sim.flow = sim.flow.model_copy(update={"status": status})


def beside(kind: str, status: str, reason: str) -> Condition:
    return Condition(type=kind, status=status, reason=reason, last_transition_time=T0, observed_generation=1)


def succeeded() -> Simulator:
    sim = Simulator(make_flow([job_step("a")]), T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.reconcile()
    return sim


def failed() -> Simulator:
    sim = Simulator(make_flow([job_step("a"), job_step("b", "a")]), T0)
    sim.reconcile()
    sim.fail(sim.running()[0])
    sim.reconcile()
    return sim


@pytest.mark.parametrize(("ended", "kind"), [(succeeded, "Complete"), (failed, "Failed")])
def test_kubectl_wait_is_satisfied_by_an_ended_flow_edited_since(
    ended: Callable[[], Simulator], kind: str
) -> None:
    sim = ended()
    assert sim.flow.status.phase in ("Succeeded", "Failed")
    with_conditions(
        sim,
        beside(ARCHIVED, "True", "Archived"),
        beside(JOB_DELETE_FAILING, "False", "JobsDeleted"),
    )
    before = sim.flow.status
    sim.advance(60)
    generation = edited(sim)
    assert kubectl_waits_on({"metadata": {"generation": generation}, "status": before.to_wire()}, kind)
    plan = sim.reconcile()
    assert plan.actions == ()
    status = sim.flow.status
    assert status.observed_generation == generation
    assert {c.type: c.observed_generation for c in status.conditions} == {
        c.type: generation for c in before.conditions
    }
    # Nothing else moved: what each condition says, and when it last flipped.
    assert [said(c) for c in status.conditions] == [said(c) for c in before.conditions]
    assert not kubectl_waits_on({"metadata": {"generation": generation}, "status": status.to_wire()}, kind)
    assert sim.reconcile().status is status  # then quiet again


def test_an_ended_flow_edited_under_an_earlier_version_has_its_conditions_caught_up() -> None:
    # That version raised the status's observedGeneration alone: the conditions follow at the next plan.
    sim = succeeded()
    generation = edited(sim)
    behind = sim.flow.status.model_copy(update={"observed_generation": generation})
    sim.flow = sim.flow.model_copy(update={"status": behind})
    sim.reconcile()
    assert {c.observed_generation for c in sim.flow.status.conditions} == {generation}
    assert [said(c) for c in sim.flow.status.conditions] == [said(c) for c in behind.conditions]
    wire = {"metadata": {"generation": generation}, "status": sim.flow.status.to_wire()}
    assert not kubectl_waits_on(wire, "Complete")


def suspended() -> Simulator:
    sim = Simulator(make_flow([job_step("a"), job_step("b", "a")]), T0)
    sim.reconcile()
    sim.set_suspend(True)
    sim.reconcile()
    return sim


def paused() -> Simulator:
    sim = Simulator(make_flow([job_step("a"), manual_step("gate", "a"), job_step("b", "gate")]), T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.reconcile()
    return sim


@pytest.mark.parametrize(
    ("waiting", "phase", "kind"),
    [(suspended, "Suspended", "Suspended"), (paused, "Paused", "WaitingForApproval")],
)
def test_kubectl_wait_is_satisfied_by_a_waiting_flow_edited_since(
    waiting: Callable[[], Simulator], phase: str, kind: str
) -> None:
    sim = waiting()
    assert sim.flow.status.phase == phase
    before = sim.flow.status
    sim.advance(60)
    generation = edited(sim)
    sim.reconcile()
    status = sim.flow.status
    assert status.phase == phase
    assert {c.observed_generation for c in status.conditions} == {generation}
    assert [said(c) for c in status.conditions] == [said(c) for c in before.conditions]
    assert not kubectl_waits_on({"metadata": {"generation": generation}, "status": status.to_wire()}, kind)


def test_a_refusal_condition_a_quiet_plan_carries_is_at_the_new_generation() -> None:
    # A first blip (quiet): JobCreateFailing stays as it was, but at the generation the status says.
    old = JobFlowStatus(
        observed_generation=1, conditions=(beside(JOB_CREATE_FAILING, "False", "JobsCreated"),)
    )
    planned = JobFlowStatus(observed_generation=2)
    status = with_create_condition(old, planned, (), T0 + timedelta(minutes=1), quiet=True)
    (cond,) = status.conditions
    assert cond.observed_generation == 2
    assert said(cond) == said(old.conditions[0])


def test_a_cronjobflow_edited_between_run_times_is_at_the_new_generation() -> None:
    created = datetime(2026, 5, 1, tzinfo=UTC)
    scheduled = datetime(2026, 5, 1, 0, 10, tzinfo=UTC)
    stored = CronJobFlowStatus(
        observed_generation=1,
        last_schedule_time=scheduled,
        conditions=(
            Condition(
                type="Valid",
                status="True",
                reason="Valid",
                last_transition_time=created,
                observed_generation=1,
            ),
            Condition(
                type="Scheduled",
                status="True",
                reason="RunCreated",
                message="created nightly-29625130 for run time 2026-05-01T00:10:00Z",
                last_transition_time=scheduled,
                observed_generation=1,
            ),
        ),
    )
    steps = [{"name": "a", "template": {"spec": {"template": {"spec": {"containers": []}}}}}]
    cron = CronJobFlow.model_validate(
        {
            "metadata": {
                "name": "nightly",
                "namespace": "team",
                "uid": "cron-uid",
                "generation": 2,  # its template edited after the 00:10 run
                "creationTimestamp": format_time(created),
            },
            "spec": {"schedule": "*/10 * * * *", "jobFlowTemplate": {"spec": {"steps": steps}}},
            "status": stored.to_wire(),
        }
    )
    plan = plan_cron(cron, [], scheduled + timedelta(minutes=5))  # no run time due
    assert plan.actions == ()
    status = plan.status
    assert status.observed_generation == 2
    assert {c.type: c.observed_generation for c in status.conditions} == {"Valid": 2, "Scheduled": 2}
    assert [said(c) for c in status.conditions] == [said(c) for c in stored.conditions]
    wire = {"metadata": {"generation": 2}, "status": status.to_wire()}
    assert not kubectl_waits_on(wire, "Scheduled")


def failed_invalid() -> Simulator:
    sim = Simulator(make_flow([job_step("a", "b"), job_step("b", "a")]), T0)  # a dependency cycle
    sim.reconcile()
    return sim


def valid_of(status: JobFlowStatus) -> Condition:
    return next(c for c in status.conditions if c.type == "Valid")


@pytest.mark.parametrize("ended", [succeeded, failed, failed_invalid])
def test_an_ended_flow_an_older_leader_marked_newer_schema_is_valid_again(
    ended: Callable[[], Simulator],
) -> None:
    # A controller-only rollback: the older leader marks the ended flow holding a newer value Valid=Unknown
    # (NewerSchema); after the upgrade, this release knows the flow and says Valid again, as it did before.
    sim = ended()
    before = sim.flow.status
    was = valid_of(before)
    sim.advance(60)
    marked = newer_schema_conditions(before.conditions, "spec.x", 1, sim.now, "0.0.1")
    sim.flow = sim.flow.model_copy(update={"status": before.model_copy(update={"conditions": marked})})
    sim.advance(60)
    plan = sim.reconcile()
    assert plan.actions == ()
    valid = valid_of(sim.flow.status)
    assert (valid.status, valid.reason, valid.message) == (was.status, was.reason, was.message)
    assert valid.observed_generation == 1
    assert valid.last_transition_time == sim.now  # it flipped from Unknown now
    others = [said(c) for c in sim.flow.status.conditions if c.type != "Valid"]
    assert others == [said(c) for c in before.conditions if c.type != "Valid"]  # nothing else moved
    assert sim.reconcile().status is sim.flow.status  # then quiet again


@settings(max_examples=60, deadline=None)
@given(
    valid=st.tuples(
        st.sampled_from(["True", "False", "Unknown"]),
        st.sampled_from(["SpecValid", "InvalidSpec", "NewerSchema"]),
    ),
    failed=st.tuples(
        st.sampled_from(["True", "False"]), st.sampled_from(["InvalidSpec", "TemplateNotFound", "StepFailed"])
    ),
    generation=st.integers(1, 5),
)
def test_no_newer_schema_verdict_outlives_a_plan_of_a_flow_this_release_knows(
    valid: tuple[str, str], failed: tuple[str, str], generation: int
) -> None:
    # Whatever an older controller left: only a NewerSchema Valid changes, to what the Failed one implies.
    conds = (
        Condition(type="Failed", status=failed[0], reason=failed[1], message="m", last_transition_time=T0),
        Condition(type="Valid", status=valid[0], reason=valid[1], last_transition_time=T0),
    )
    now = T0 + timedelta(hours=1)
    after = known_again(conds, generation, now)
    if valid[1] != "NewerSchema":
        assert after is conds
        return
    assert after[0] is conds[0]
    invalid = failed[0] == "True" and failed[1] in ("InvalidSpec", "TemplateNotFound")
    assert (after[1].status, after[1].reason) == (("False", failed[1]) if invalid else ("True", "SpecValid"))
    assert after[1].observed_generation == generation
    assert after[1].last_transition_time == (T0 if after[1].status == valid[0] else now)
