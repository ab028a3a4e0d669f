"""Planner: nothing of a flow's own runs on behind it once it has ended, not even a Job its status does not
record: one a rerun's plan created whose status write was lost, or one someone else made under the name
of a step's Job that never started."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from zen_flow.api.constants import (
    ANNOTATION_RETRIED_BY,
    ANNOTATION_RETRY,
    ANNOTATION_RETRY_STEPS,
    ANNOTATION_STOP,
    ANNOTATION_STOPPED_BY,
)
from zen_flow.api.job import JOB
from zen_flow.core.naming import job_name
from zen_flow.planner import CreateJob, DeleteFlow, DeleteJob, Plan, fail_invalid, plan
from zen_flow.planner.jobs import build_job
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def deleted(result: Plan) -> list[str]:
    return [a.name for a in result.actions if isinstance(a, DeleteJob)]


def events(result: Plan) -> list[str]:
    return [e.reason for e in result.events]


def ask(sim: Simulator, rid: str, steps: str | None = None) -> None:
    """What `zen-flow retry` writes (and the webhook's retried-by)."""
    sim.annotate(ANNOTATION_RETRY, rid)
    sim.annotate(ANNOTATION_RETRY_STEPS, steps)
    sim.annotate(ANNOTATION_RETRIED_BY, "bob")
    sim.annotate(ANNOTATION_STOP, None)


def stop(sim: Simulator) -> None:
    sim.annotate(ANNOTATION_STOP, "true")
    sim.annotate(ANNOTATION_STOPPED_BY, "carol")


def request_removed(sim: Simulator) -> None:
    sim.annotate(ANNOTATION_RETRY, None)


def asked_again_for_a_step_alone(sim: Simulator) -> None:
    ask(sim, "r2", steps="load")  # refused: report failed too and would fail the flow again


def rerun_write_lost(step: str = "load") -> Simulator:
    """Flow etl's one step failed; a rerun's plan created the step's next attempt, its status write lost."""
    sim = Simulator(make_flow([job_step(step)], name="etl"), T0)
    sim.reconcile()
    sim.fail(sim.running()[0])
    sim.reconcile()
    ask(sim, "r1")
    sim.reconcile(write_status=False)
    return sim


@pytest.mark.parametrize("then", [stop, request_removed, asked_again_for_a_step_alone])
def test_a_rerun_whose_status_write_was_lost_leaves_no_job_running_when_the_next_plan_refuses_it(
    then: Callable[[Simulator], None],
) -> None:
    # load and report fail; a rerun's plan creates their next attempts, and its status write is lost (a
    # 409: the annotations changed meanwhile), so the flow is still Failed, with no record of the rerun.
    # Then the next plan no longer honours it: it must not leave those Jobs running behind a Failed flow.
    sim = Simulator(make_flow([job_step("load"), job_step("report")], name="etl"), T0)
    sim.reconcile()
    for name in sim.running():
        sim.fail(name)
    sim.reconcile()
    assert sim.phase == "Failed"
    ask(sim, "r1")
    sim.reconcile(write_status=False)
    reruns = [job_name("etl", "load", 1), job_name("etl", "report", 1)]
    assert sim.running() == reruns
    assert sim.phase == "Failed"
    then(sim)
    stored = sim.flow.status
    result = sim.reconcile()
    assert sorted(deleted(result)) == reruns
    assert sim.running() == []
    assert sim.phase == "Failed"
    assert result.status.steps == stored.steps  # the status never knew them: it says the same
    quiet = sim.reconcile()
    assert (quiet.actions, quiet.status) == ((), sim.flow.status)


def test_a_rerun_whose_status_write_was_lost_takes_its_jobs_over_when_honoured_again() -> None:
    # The same request, still set: the next plan reruns again and takes the Jobs over; none is deleted.
    sim = rerun_write_lost()
    result = sim.reconcile()
    assert deleted(result) == []
    assert "FlowRetried" in events(result)
    assert sim.phase == "Running"
    assert sim.running() == [job_name("etl", "load", 1)]


def forge(sim: Simulator, step: str) -> str:
    """Someone else creates a Job named, labelled and owned like `step`'s first one."""
    name = job_name(sim.flow.metadata.name, step, 0)
    spec = next(s for s in sim.flow.spec.steps if s.name == step)
    body = build_job(sim.flow, spec, name, 0)
    meta = {**body["metadata"], "uid": "forged", "creationTimestamp": sim.stamp().isoformat()}
    sim.jobs[name] = JOB.validate_python({"metadata": meta, "spec": body["spec"]})
    sim.steps[name] = step
    return name


def stopped(sim: Simulator) -> None:
    stop(sim)


def past_its_deadline(sim: Simulator) -> None:
    sim.advance(100)


@pytest.mark.parametrize("end", [stopped, past_its_deadline])
def test_a_forged_job_of_a_finally_step_that_never_starts_is_deleted_when_the_flow_ends(
    end: Callable[[Simulator], None],
) -> None:
    # A Job under cleanup's name, owned by the flow, made while build runs: not the flow's to take over
    # before build has ended (planner.finale). A stop now (or the flow deadline) then ends the flow with no
    # finally step run: the Job must not run on behind it.
    steps = [job_step("build"), job_step("cleanup", **{"finally": True})]
    sim = Simulator(make_flow(steps, name="rel", execution_policy={"activeDeadlineSeconds": 60}), T0)
    sim.reconcile()
    forged = forge(sim, "cleanup")
    sim.reconcile()
    assert sim.flow.status.step("cleanup").phase == "Pending"
    end(sim)
    result = sim.reconcile()
    assert sim.phase == "Failed"
    build = job_name("rel", "build", 0)
    assert sorted(deleted(result)) == sorted([build, forged])
    assert [a.step for a in result.actions if isinstance(a, DeleteJob) and a.name == forged] == ["cleanup"]
    assert sim.running() == []


def test_a_job_made_under_an_ended_flows_name_is_deleted() -> None:
    sim = Simulator(make_flow([job_step("build"), job_step("publish", "build")], name="rel"), T0)
    sim.reconcile()
    sim.fail(sim.running()[0])
    sim.reconcile()
    assert sim.phase == "Failed"
    stored = sim.flow.status
    forged = forge(sim, "publish")
    result = sim.reconcile()
    assert deleted(result) == [forged]
    assert result.status is stored
    assert sim.running() == []


@pytest.mark.parametrize("outcome", ["fail", "complete"])
def test_a_finished_job_of_an_abandoned_rerun_is_deleted_so_a_later_rerun_runs_the_step(outcome: str) -> None:
    # A rerun's plan creates load's next attempt, its write lost; the Job finishes, and the request is
    # taken back. A later rerun must run load again, not take that Job over as its own attempt: the flow
    # would end at once with the old outcome (or succeed without running anything).
    sim = rerun_write_lost()
    abandoned = job_name("etl", "load", 1)
    getattr(sim, outcome)(abandoned)
    request_removed(sim)
    result = sim.reconcile()
    assert deleted(result) == [abandoned]
    assert events(result) == ["StrayJobDeleted"]
    assert abandoned in result.events[0].message
    assert sim.phase == "Failed"
    sim.advance(3600)
    ask(sim, "r2")
    rerun = sim.reconcile()
    assert [a.name for a in rerun.actions if isinstance(a, CreateJob)] == [abandoned]
    assert sim.phase == "Running"
    assert sim.running() == [abandoned]


@pytest.mark.parametrize("outcome", ["fail", "complete"])
def test_a_finished_job_of_an_abandoned_rerun_of_a_step_that_never_ran_is_deleted(outcome: str) -> None:
    # The deadline fails the flow before its finally step runs (Skipped, retryCount 0). A rerun keeps that
    # count, so its Job for cleanup is attempt 0, the count itself; its write lost, the Job finishes and
    # the request is taken back. A later rerun must run cleanup, not end with the abandoned Job's outcome.
    steps = [job_step("load"), job_step("cleanup", **{"finally": True})]
    sim = Simulator(make_flow(steps, name="etl", execution_policy={"activeDeadlineSeconds": 60}), T0)
    sim.reconcile()
    sim.advance(120)
    sim.complete(sim.running()[0])
    sim.reconcile()
    assert [(s.name, s.phase) for s in sim.flow.status.steps] == [
        ("load", "Succeeded"),
        ("cleanup", "Skipped"),
    ]
    ask(sim, "r1")
    sim.reconcile(write_status=False)
    abandoned = job_name("etl", "cleanup", 0)
    assert sim.running() == [abandoned]
    getattr(sim, outcome)(abandoned)
    request_removed(sim)
    result = sim.reconcile()
    assert deleted(result) == [abandoned]
    assert events(result) == ["StrayJobDeleted"]
    sim.advance(3600)
    ask(sim, "r2")
    rerun = sim.reconcile()
    assert [a.name for a in rerun.actions if isinstance(a, CreateJob)] == [abandoned]
    assert sim.running() == [abandoned]
    assert sim.phase == "Running"


def test_an_ended_flow_keeps_the_finished_jobs_its_status_records() -> None:
    # load failed twice (retryPolicy): both attempts' Jobs are the status's (retryCount 1), kept.
    retry = {"retryPolicy": {"limit": 1, "backoff": {"type": "Fixed", "duration": "1s"}}}
    sim = Simulator(make_flow([job_step("load", **retry)], name="etl"), T0)
    sim.reconcile()
    sim.fail(sim.running()[0])
    sim.reconcile()
    sim.advance(5)
    sim.reconcile()
    sim.fail(sim.running()[0])
    sim.reconcile()
    assert sim.phase == "Failed"
    assert deleted(sim.reconcile()) == []
    assert sorted(sim.jobs) == sorted([job_name("etl", "load", 0), job_name("etl", "load", 1)])


def test_an_expired_ttl_deletes_the_flow_alone_whatever_job_of_its_own_still_runs() -> None:
    # Its Jobs go with it (garbage collection): a Job delete the apiserver keeps refusing (a policy's
    # 403) must not hold the flow's deletion back.
    steps = [job_step("build"), job_step("publish", "build")]
    sim = Simulator(make_flow(steps, name="rel", execution_policy={"ttlSecondsAfterFinished": 60}), T0)
    sim.reconcile()
    sim.fail(sim.running()[0])
    sim.reconcile()
    forge(sim, "publish")
    sim.advance(120)
    result = plan(sim.flow, list(sim.jobs.values()), sim.now)
    assert [type(a) for a in result.actions] == [DeleteFlow]


def test_a_job_of_a_step_with_a_long_name_is_deleted_under_its_step() -> None:
    # Long names are truncated before the hash, the retry's apart from the first attempt's: the step is
    # known by the hash, not by the name less its `-r<n>`.
    long = "extract-" + "x" * 70
    sim = rerun_write_lost(long)
    request_removed(sim)
    result = sim.reconcile()
    assert [(a.name, a.step) for a in result.actions if isinstance(a, DeleteJob)] == [
        (job_name("etl", long, 1), long)
    ]


def test_a_started_flow_found_invalid_deletes_its_running_jobs_as_it_fails_and_after() -> None:
    # The controller fails a started flow as invalid when its spec no longer names its steps (a matrix
    # that no longer expands, after a restart forgot its items): the Jobs of the steps its spec cannot
    # name would run on unrecorded, and nothing later would stop them.
    sim = Simulator(make_flow([job_step("a"), job_step("b")], name="rel"), T0)
    sim.reconcile()
    running = sim.running()
    assert len(running) == 2
    invalid = sim.flow.model_copy(
        update={"spec": sim.flow.spec.model_copy(update={"steps": sim.flow.spec.steps[:1]})}
    )
    ended = fail_invalid(invalid, ["spec.steps[1].matrix: Invalid value"], T0, jobs=sim.jobs.values())
    assert ended.status.phase == "Failed"
    assert sorted(deleted(ended)) == running
    assert events(ended).count("StrayJobDeleted") == 2
    failed = invalid.model_copy(update={"status": ended.status})
    again = fail_invalid(failed, ["spec.steps[1].matrix: Invalid value"], T0, jobs=sim.jobs.values())
    assert sorted(deleted(again)) == running  # not deleted yet (a lost delete): asked again
    assert again.status == ended.status
    assert fail_invalid(failed, ["spec.steps[1].matrix: Invalid value"], T0).actions == ()
