"""A step a plan ends by its timeout (a gate's wait for a decision, a Job's run) starts none of its
dependents in that plan: they start in the next, whose input, the stored status, has that end
(planner/observation.py `after_timeout`). Decided on the clock, the end can turn otherwise once that
plan's write is lost (an approval seen past the gate's timeout wins; the Job deleted for its timeout may
have completed first): the flow then takes the other branch, never both. Each flow runs with that write
kept and lost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from zen_flow.api.constants import ANNOTATION_APPROVED_BY_PREFIX, APPROVE_PREFIX
from zen_flow.api.job import JOB
from zen_flow.api.jobflow import Step
from zen_flow.core.naming import job_name
from zen_flow.planner import CreateJob, Plan
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def creates(result: Plan) -> list[str]:
    return [a.step for a in result.actions if isinstance(a, CreateJob)]


def branches(first: str, *, timeout: int = 60) -> list[Step]:
    """`first` (a gate or a Job step with `timeoutSeconds`, going on after a failure), `rollback` when
    it failed, `deploy` when it succeeded."""
    made = manual_step if first == "gate" else job_step
    return [
        made(first, timeoutSeconds=timeout, continueOnFailure=True),
        job_step("rollback", first, when=f"steps.{first}.phase == 'Failed'"),
        job_step("deploy", first, when=f"steps.{first}.phase == 'Succeeded'"),
    ]


def finish(sim: Simulator) -> tuple[str | None, dict[str, str], list[str]]:
    """Run the flow to its end (every Job completes): its phase, its steps' and the steps whose Jobs ran."""
    for _ in range(5):
        for job in sim.running():
            sim.complete(job)
        sim.advance(1)
        sim.reconcile()
    return sim.phase, {s.name: s.phase for s in sim.flow.status.steps}, [sim.steps[j] for j in sim.created]


@pytest.mark.parametrize("write_status", [True, False])
def test_an_approval_that_made_the_gates_timeout_write_fail_runs_one_branch(write_status: bool) -> None:
    sim = Simulator(make_flow(branches("gate")), T0)
    sim.reconcile()
    sim.now = T0 + timedelta(seconds=61)
    assert creates(sim.reconcile(write_status=write_status)) == []  # timed out: that is written first
    # Alice's approval (given in time, seen late: it wins) is the write that refused the plan's.
    sim.annotate(APPROVE_PREFIX + "gate", "true")
    sim.annotate(ANNOTATION_APPROVED_BY_PREFIX + "gate", "alice")
    sim.advance(1)
    phase, steps, ran = finish(sim)
    if write_status:
        assert (steps["gate"], ran) == ("Failed", ["rollback"])
        assert steps["deploy"] == "Skipped"
    else:
        assert (phase, steps["gate"], ran) == ("Succeeded", "Succeeded", ["deploy"])
        assert steps["rollback"] == "Skipped"


@pytest.mark.parametrize("write_status", [True, False])
def test_a_job_that_completed_before_its_timeouts_delete_runs_one_branch(write_status: bool) -> None:
    sim = Simulator(make_flow(branches("work")), T0, instant_delete=False)  # a deleted Job lingers
    sim.reconcile()
    sim.now = T0 + timedelta(seconds=62)  # past its timeout (counted from the next second)
    timing_out = sim.preview()
    sim.complete(sim.running()[0])  # done between the plan's read and its delete
    sim.apply(timing_out, write_status=write_status)
    assert creates(timing_out) == []
    sim.advance(1)
    phase, steps, ran = finish(sim)
    if write_status:
        assert (steps["work"], ran) == ("Failed", ["work", "rollback"])
    else:  # the next plan reads the Job as it is: completed, a success
        assert (phase, steps["work"], ran) == ("Succeeded", "Succeeded", ["work", "deploy"])


def test_a_dependents_job_found_when_its_dependency_times_out_is_taken_over_only_after() -> None:
    # A Job named like rollback's first, owned by the flow (left by an older controller, or forged), is not
    # taken over by the plan that times the gate out, whichever order the spec lists them in; the next one,
    # reading the timeout stored, takes it over rather than create another.
    gate, rollback, deploy = branches("gate")
    sim = Simulator(make_flow([rollback, deploy, gate]), T0)
    sim.reconcile()
    name = job_name(sim.flow.metadata.name, "rollback", 0)
    owner = {"apiVersion": "workflow.kube-zen.io/v1alpha1", "kind": "JobFlow", "controller": True}
    meta = {
        "name": name,
        "namespace": sim.flow.metadata.namespace,
        "uid": "found",
        "creationTimestamp": sim.stamp().isoformat(),
        "ownerReferences": [{**owner, "name": sim.flow.metadata.name, "uid": sim.flow.metadata.uid}],
    }
    sim.jobs[name] = JOB.validate_python({"metadata": meta, "spec": {}})
    sim.steps[name] = "rollback"
    sim.now = T0 + timedelta(seconds=61)
    sim.reconcile()
    steps = {s.name: s for s in sim.flow.status.steps}
    assert (steps["gate"].phase, steps["rollback"].phase) == ("Failed", "Pending")
    sim.advance(1)
    assert creates(sim.reconcile()) == []
    steps = {s.name: s for s in sim.flow.status.steps}
    assert steps["rollback"].phase == "Running"
    ref = steps["rollback"].job_ref
    assert ref is not None
    assert ref.uid == "found"
