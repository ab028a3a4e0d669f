"""Planner: executionPolicy.jobRetention FailedOnly deletes a Succeeded step's Job once its success (with
its outputs) is stored and nothing needs the Job any more (the steps reading it have started, or, when
they read the Job's own status, succeeded), keeps the Jobs of failed steps, and deletes superseded
attempts as LastAttempt does; on a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from unittest import mock

from zen_flow.api.constants import ANNOTATION_RETRIED_BY, ANNOTATION_RETRY
from zen_flow.api.flow_status import JobFlowStatus
from zen_flow.core.naming import job_name
from zen_flow.planner import CreateJob, DeleteJob, Plan, SaveMemo, as_job, plan, retention
from zen_flow.planner.retention import RELEASED_REASON, SUPERSEDED_FAILED_ONLY, released
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
POLICY = {"jobRetention": "FailedOnly"}
COUNT = {"parameters": [{"name": "count", "valueFrom": {"jsonPath": "$.succeeded"}}]}


def job(step: str, attempt: int = 0) -> str:
    return job_name("flow", step, attempt)


def reads(producer: str, path: str = "$.outputs.parameters.count") -> dict[str, Any]:
    return {"parameters": [{"name": "n", "valueFrom": {"jsonPath": f"{producer}:{path}"}}]}


def deletes(result: Plan) -> list[tuple[str, str]]:
    return [(a.name, a.reason) for a in result.actions if isinstance(a, DeleteJob)]


def created(result: Plan) -> list[str]:
    return [a.name for a in result.actions if isinstance(a, CreateJob)]


def chain(**fields: Any) -> Simulator:
    """a -> b -> c, a's output `count` read by b."""
    steps = [
        job_step("a", outputs=COUNT),
        job_step("b", "a", inputs=reads("a"), **fields),
        job_step("c", "b"),
    ]
    return Simulator(make_flow(steps, execution_policy=POLICY), T0)


def values(sim: Simulator, step: str) -> dict[str, str]:
    found = sim.flow.status.step(step)
    assert found is not None
    out = found.outputs
    return {p.name: p.value for p in out.parameters} if out is not None else {}


def test_a_succeeded_steps_job_goes_once_its_success_is_stored_and_its_reader_started() -> None:
    sim = chain()
    sim.reconcile()
    sim.complete(job("a"))
    # The plan that sees the Job complete captures the outputs; its status write may be lost: the Job stays.
    seen = sim.reconcile()
    assert deletes(seen) == []
    # The next plan starts b (from the stored outputs) and still keeps a's Job: b's start is not stored.
    starting = sim.reconcile()
    assert created(starting) == [job("b")]
    assert deletes(starting) == []
    # Once the status holds b started, a's Job goes, its outputs stay in status.
    assert deletes(sim.reconcile()) == [(job("a"), RELEASED_REASON)]
    assert values(sim, "a") == {"count": "1"}
    sim.complete(job("b"))
    sim.reconcile()
    ended = None
    for _ in range(4):
        result = sim.reconcile()
        for name in sim.running():
            sim.complete(name)
        if sim.terminal and ended is None:
            ended = result
    assert sim.phase == "Succeeded"
    assert sim.jobs == {}  # c's too: by the plan after the write that ended the flow
    assert [s.phase for s in sim.flow.status.steps] == ["Succeeded"] * 3
    assert values(sim, "a") == {"count": "1"}
    every = [d for p in sim.plans for d in deletes(p)]
    assert sorted(every) == sorted((job(s), RELEASED_REASON) for s in "abc")  # each once
    assert not [e for p in sim.plans for e in p.events if "Deleted" in e.reason]  # no event per Job


def test_a_lost_write_of_the_success_keeps_the_job_and_the_outputs_are_captured_again() -> None:
    sim = chain()
    sim.reconcile()
    sim.complete(job("a"))
    lost = sim.reconcile(write_status=False)
    assert deletes(lost) == []
    status = sim.flow.status.step("a")
    assert status is not None
    assert status.phase == "Running"  # the stored status never held the success
    again = sim.reconcile()
    assert deletes(again) == []
    assert job("a") in sim.jobs
    assert values(sim, "a") == {"count": "1"}


def test_a_pending_reader_keeps_the_job_until_it_starts() -> None:
    # c reads a's output but runs after b: a's Job stays while c has not started.
    steps = [
        job_step("a", outputs=COUNT),
        job_step("b", "a"),
        job_step("c", "b", inputs=reads("a")),
    ]
    sim = Simulator(make_flow(steps, execution_policy=POLICY), T0)
    sim.reconcile()
    sim.complete(job("a"))
    sim.reconcile()
    sim.reconcile()  # starts b
    sim.reconcile()  # b's start stored
    assert job("a") in sim.jobs
    sim.complete(job("b"))
    starting = sim.reconcile()
    assert created(starting) == [job("c")]
    assert deletes(starting) == []
    # c's start stored: a's Job goes, and b's (nobody reads it; its success is stored now).
    assert deletes(sim.reconcile()) == [(job("a"), RELEASED_REASON), (job("b"), RELEASED_REASON)]


def test_a_reader_of_the_jobs_status_keeps_it_for_its_retries_and_a_rerun() -> None:
    retries = {"limit": 1, "backoff": {"duration": "1s", "type": "Fixed"}}
    sim = chain(retryPolicy=retries)
    flow = sim.flow
    steps = [s.model_dump(by_alias=True, exclude_none=True) for s in flow.spec.steps]
    steps[1]["inputs"] = reads("a", "$.succeeded")  # the Job's status, not a stored output
    sim = Simulator(make_flow(steps, execution_policy=POLICY), T0)
    sim.reconcile()
    sim.complete(job("a"))
    for _ in range(3):
        sim.reconcile()
    sim.fail(job("b"))
    waiting = sim.reconcile()
    sim.advance(waiting.requeue_after)
    retry = sim.reconcile()
    assert created(retry) == [job("b", 1)]  # built from a's Job, still there
    (body,) = [a.body for a in retry.actions if isinstance(a, CreateJob)]
    assert "1" in str(body)
    assert job("a") in sim.jobs
    sim.fail(job("b", 1))
    sim.reconcile()
    sim.reconcile()
    assert sim.phase == "Failed"
    # A rerun would read it again: the Failed flow keeps it (and b's failed Job, for its logs).
    assert {job("a"), job("b", 1)} <= set(sim.jobs)
    assert job("b", 0) not in sim.jobs  # superseded by attempt 2
    sim.annotate(ANNOTATION_RETRY, "1")
    sim.annotate(ANNOTATION_RETRIED_BY, "alice")
    rerun = sim.reconcile()
    assert created(rerun) == [job("b", 2)]
    sim.reconcile()
    sim.complete(job("b", 2))
    sim.reconcile()
    # b succeeded (its success stored): a's Job goes, and b's superseded attempt.
    result = sim.reconcile()
    assert (job("a"), RELEASED_REASON) in deletes(result)
    assert (job("b", 1), SUPERSEDED_FAILED_ONLY) in {d for p in sim.plans for d in deletes(p)}


def test_a_finally_reader_of_the_jobs_status_keeps_it_through_a_rerun() -> None:
    # f (finally) reads a's Job status and succeeds; b fails the flow. A rerun runs b again, and f too,
    # Succeeded or not: its new attempt builds its Job from a's again.
    final = {**job_step("f"), "finally": True, "inputs": reads("a", "$.succeeded")}
    sim = Simulator(make_flow([job_step("a"), job_step("b"), final], execution_policy=POLICY), T0)

    def settle() -> None:
        for _ in range(8):
            sim.reconcile()
            for name in sim.running():
                sim.complete(name)

    sim.reconcile()
    sim.complete(job("a"))
    sim.fail(job("b"))
    settle()
    assert sim.phase == "Failed"
    assert sim.flow.status.step("f").phase == "Succeeded"  # type: ignore[union-attr]
    assert job("a") in sim.jobs  # f has Succeeded, but a rerun runs it again
    sim.annotate(ANNOTATION_RETRY, "1")
    sim.annotate(ANNOTATION_RETRIED_BY, "alice")
    settle()
    assert job("f", 1) in {name for p in sim.plans for name in created(p)}
    assert sim.phase == "Succeeded", [(s.name, s.phase, s.message) for s in sim.flow.status.steps]
    assert job("a") not in sim.jobs  # nothing reruns a Succeeded flow: it goes


def test_failed_steps_keep_their_jobs_and_superseded_attempts_go() -> None:
    retries = {"limit": 1, "backoff": {"duration": "1s", "type": "Fixed"}}
    steps = [job_step("ok", retryPolicy=retries), job_step("bad", retryPolicy=retries)]
    sim = Simulator(make_flow(steps, execution_policy=POLICY), T0)
    sim.reconcile()
    sim.fail(job("ok"))
    sim.fail(job("bad"))
    waiting = sim.reconcile()
    sim.advance(waiting.requeue_after)
    sim.reconcile()
    assert deletes(sim.reconcile()) == [
        (job("ok"), SUPERSEDED_FAILED_ONLY),
        (job("bad"), SUPERSEDED_FAILED_ONLY),
    ]
    sim.complete(job("ok", 1))
    sim.fail(job("bad", 1))
    for _ in range(3):
        sim.reconcile()
    assert sim.phase == "Failed"
    assert set(sim.jobs) == {job("bad", 1)}  # the failure's last attempt, for kubectl logs


def test_a_memoized_readers_result_is_stored_from_the_job_it_reads_before_that_job_goes() -> None:
    memoize = {"key": "k-{{inputs.parameters.n}}", "cache": {"configMap": {"name": "cache"}}}
    steps = [
        job_step("a", outputs=COUNT),
        job_step("b", "a", inputs=reads("a", "$.succeeded"), memoize=memoize),
    ]
    sim = Simulator(make_flow(steps, execution_policy=POLICY), T0)
    sim.reconcile()
    sim.complete(job("a"))
    for _ in range(3):
        sim.reconcile()
    assert job("a") in sim.jobs  # b runs: its key is computed again from a's Job when it succeeds
    sim.complete(job("b"))
    done = sim.reconcile()
    (save,) = [a for a in done.actions if isinstance(a, SaveMemo)]
    assert save.key == "k-1"
    assert deletes(done) == []  # not in the plan that stores b's result (its write may be lost)
    sim.reconcile()
    assert sim.phase == "Succeeded"
    assert sim.jobs == {}


def test_a_deleted_job_leaves_its_step_succeeded_through_a_restart_and_a_rerun() -> None:
    steps = [job_step("a", outputs=COUNT), job_step("b", "a", inputs=reads("a"))]
    sim = Simulator(make_flow(steps, execution_policy=POLICY), T0)
    sim.reconcile()
    sim.complete(job("a"))
    for _ in range(3):
        sim.reconcile()
    assert job("a") not in sim.jobs
    sim.fail(job("b"))
    sim.reconcile()
    assert sim.phase == "Failed"
    # A restarted controller plans from the stored status and the Jobs left: nothing changes.
    again = plan(sim.flow, list(sim.jobs.values()), sim.now)
    assert again.status is sim.flow.status
    assert again.actions == ()
    sim.annotate(ANNOTATION_RETRY, "1")
    sim.annotate(ANNOTATION_RETRIED_BY, "alice")
    assert created(sim.reconcile()) == [job("b", 1)]  # from a's stored outputs
    sim.complete(job("b", 1))
    for _ in range(3):
        sim.reconcile()
    assert sim.phase == "Succeeded"
    assert [(s.name, s.phase) for s in sim.flow.status.steps] == [("a", "Succeeded"), ("b", "Succeeded")]
    assert values(sim, "a") == {"count": "1"}
    assert not any("deleted outside zen-flow" in (s.message or "") for s in sim.flow.status.steps)


def test_a_flow_steps_child_is_never_deleted() -> None:
    child = {"apiVersion": "workflow.kube-zen.io/v1alpha1", "kind": "JobFlow", "name": job("sub")}
    step = {"name": "sub", "type": "Flow", "flow": {"templateRef": {"name": "t"}}}
    flow = make_flow([step], execution_policy=POLICY)
    status = {"phase": "Succeeded", "steps": [{"name": "sub", "phase": "Succeeded", "jobRef": child}]}
    flow = flow.model_copy(update={"status": JobFlowStatus.model_validate(status)})
    finished = make_flow([job_step("x")], name=job("sub"), namespace="default")
    done = {"phase": "Succeeded", "conditions": [{"type": "Succeeded", "status": "True"}]}
    finished = finished.model_copy(update={"status": JobFlowStatus.model_validate(done)})
    kid = as_job(finished)
    assert released(flow, {job("sub"): kid}) == []
    assert plan(flow, [kid], T0).actions == ()


def test_a_quiet_flow_indexes_its_status_once_and_deletes_nothing() -> None:
    sim = chain()
    sim.reconcile()
    sim.reconcile()
    with mock.patch.object(retention._Stored, "of", wraps=retention._Stored.of) as index:
        for _ in range(3):
            quiet = sim.reconcile()
            assert quiet.actions == ()
            assert quiet.status is sim.flow.status
    assert index.call_count <= 1  # by the identity of the status: not once per plan
