"""A retrying step the flow's failure ends instead promises nothing that never comes: no StepRetrying
as its last event, and no `the next attempt avoids node ...` in its final message (node avoidance x a
flow-wide failure, x fail-fast)."""

from __future__ import annotations

from datetime import UTC, datetime

from zen_flow.api.constants import StepPhase
from zen_flow.planner import CreateJob, fail_invalid, fail_rejected, fail_resources
from zen_flow.planner.node_avoidance import AVOIDING_MARK, FAILED_NODES, without_avoiding
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2026, 1, 1, tzinfo=UTC)
AVOID = {"limit": 2, "backoff": {"type": "Fixed", "duration": "30s"}, "affinity": {"nodeAntiAffinity": {}}}
FAILED_ON_GPU_7 = {"exit:main": "exit code 1", FAILED_NODES: "gpu-7"}


def job_of(sim: Simulator, step: str) -> str:
    (job,) = [j for j in sim.running() if f"-{step}-" in j]
    return job


def test_a_step_set_to_retry_in_the_plan_whose_job_is_refused_says_failed_not_retrying() -> None:
    # a fails (its retry would avoid gpu-7) in the very plan whose Job for c the apiserver refuses.
    flow = make_flow(
        [job_step("a", retryPolicy=AVOID), job_step("b"), job_step("c", dependencies=["b"])], created=T0
    )
    sim = Simulator(flow, T0)
    sim.reconcile()
    sim.fail(job_of(sim, "a"), messages=FAILED_ON_GPU_7)
    sim.complete(job_of(sim, "b"))
    before = sim.flow
    planned = sim.preview()
    assert planned.status.step("a").phase == StepPhase.RETRYING  # type: ignore[union-attr]
    assert [a.step for a in planned.actions if isinstance(a, CreateJob)] == ["c"]
    ended = fail_rejected(before, ["Job.batch is invalid: x"], sim.now, planned, set())
    a = ended.status.step("a")
    assert a is not None
    assert a.phase == StepPhase.FAILED
    assert AVOIDING_MARK not in (a.message or "")
    assert a.message == (
        "flow-wide failure: the apiserver refused a step's Job; attempt 1 failed: Job failed: main: exit "
        "code 1; BackoffLimitExceeded: Job has failed"
    )
    said = [(e.reason, e.message) for e in ended.events if e.step == "a"]
    assert said == [("StepFailed", f"step a failed: {a.message}")]
    assert [e.reason for e in ended.events if e.step == "b"] == ["StepSucceeded"]  # what the plan saw stays


def test_a_step_already_retrying_when_a_job_is_refused_says_it_failed() -> None:
    # a failed in an earlier plan and waits out its backoff; the plan that starts c has its Job refused.
    flow = make_flow(
        [job_step("a", retryPolicy=AVOID), job_step("b"), job_step("c", dependencies=["b"])], created=T0
    )
    sim = Simulator(flow, T0)
    sim.reconcile()
    sim.fail(job_of(sim, "a"), messages=FAILED_ON_GPU_7)
    sim.reconcile()
    sim.complete(job_of(sim, "b"))
    before = sim.flow
    assert before.status.step("a").phase == StepPhase.RETRYING  # type: ignore[union-attr]
    planned = sim.preview()
    assert [a.step for a in planned.actions if isinstance(a, CreateJob)] == ["c"]
    ended = fail_rejected(before, ["Job.batch is invalid: x"], sim.now, planned, set())
    a = ended.status.step("a")
    assert a is not None
    assert a.phase == StepPhase.FAILED
    said = [(e.type, e.reason, e.message) for e in ended.events if e.step == "a"]
    assert said == [("Warning", "StepFailed", f"step a failed: {a.message}")]
    assert [e.reason for e in ended.events if e.step == "c"] == []  # its Job never existed


def test_a_retrying_step_an_invalid_spec_ends_says_it_failed_and_the_others_stay_quiet() -> None:
    sim = Simulator(
        make_flow([job_step("a", retryPolicy=AVOID), job_step("b", dependencies=["a"])], created=T0), T0
    )
    sim.reconcile()
    sim.fail(job_of(sim, "a"), messages=FAILED_ON_GPU_7)
    sim.reconcile()
    ended = fail_invalid(sim.flow, ["boom"], sim.now)
    a = ended.status.step("a")
    assert a is not None
    said = [(e.step, e.reason) for e in ended.events]
    assert said == [("a", "StepFailed"), ("", "FlowFailed")]  # b never ran: no event of its own
    assert ended.events[0].message == f"step a failed: {a.message}"


def test_a_retrying_step_whose_resources_are_refused_says_failed_not_retrying() -> None:
    sim = Simulator(make_flow([job_step("a", retryPolicy=AVOID), job_step("b")], created=T0), T0)
    sim.reconcile()
    sim.fail(job_of(sim, "a"), messages=FAILED_ON_GPU_7)
    planned = sim.preview()
    assert planned.status.step("a").phase == StepPhase.RETRYING  # type: ignore[union-attr]
    ended = fail_resources(sim.flow, ["ConfigMap settings: 422"], sim.now, planned=planned)
    assert [e.reason for e in ended.events if e.step == "a"] == ["StepFailed"]


def test_a_retrying_step_a_flow_wide_failure_ends_keeps_its_error_without_the_nodes_note() -> None:
    sim = Simulator(make_flow([job_step("a", retryPolicy=AVOID), job_step("b")], created=T0), T0)
    sim.reconcile()
    sim.fail(job_of(sim, "a"), messages=FAILED_ON_GPU_7)
    sim.reconcile()
    retrying = sim.flow.status.step("a")
    assert retrying is not None
    assert retrying.message is not None
    assert retrying.message.endswith(f"; {AVOIDING_MARK} gpu-7")  # what it says while it waits
    a = fail_invalid(sim.flow, ["boom"], sim.now).status.step("a")
    assert a is not None
    assert a.phase == StepPhase.FAILED
    assert a.message == f"flow-wide failure: the flow spec is invalid; {without_avoiding(retrying.message)}"
    assert AVOIDING_MARK not in a.message
    assert a.failed_nodes == ("gpu-7",)  # what happened stays recorded


def test_a_retrying_step_fail_fast_ends_is_not_said_to_avoid_a_node() -> None:
    sim = Simulator(make_flow([job_step("a", retryPolicy=AVOID), job_step("b")], created=T0), T0)
    sim.reconcile()
    sim.fail(job_of(sim, "a"), messages=FAILED_ON_GPU_7)
    sim.reconcile()
    sim.fail(job_of(sim, "b"))
    sim.reconcile()
    a = sim.flow.status.step("a")
    assert a is not None
    assert a.phase == StepPhase.FAILED
    assert a.message is not None
    assert a.message.startswith("not retried, the flow is failing; attempt 1 failed")
    assert AVOIDING_MARK not in a.message


def test_without_avoiding_cuts_only_the_note_at_the_end() -> None:
    assert without_avoiding(f"attempt 1 failed: x; {AVOIDING_MARK}s a, b and 2 more") == "attempt 1 failed: x"
    assert without_avoiding("attempt 1 failed: exit code 1") == "attempt 1 failed: exit code 1"
    assert without_avoiding(f"{AVOIDING_MARK} a") == f"{AVOIDING_MARK} a"  # not a note: no error before it
