"""retryPolicy.expression: a failed attempt is retried only when the condition over `lastRetry` (and
`flow`) holds (core/retry_condition.py, planner/retry_gate.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from zen_flow.api.constants import StepPhase
from zen_flow.api.flow_status import StepStatus
from zen_flow.api.pod import Pod
from zen_flow.core.expressions import CompiledWhen, Deferred, Offload, Unavailable
from zen_flow.planner import DeleteJob, plan
from zen_flow.planner.reports import INTERRUPTED
from zen_flow.planner.timing import UNAVAILABLE_RETRY_SECONDS
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FIXED = {"type": "Fixed", "duration": "1s"}
NOT_BAD_INPUT = "lastRetry.exitCode != 2"


def policy(expression: str | None, limit: int = 3) -> dict[str, Any]:
    found: dict[str, Any] = {"limit": limit, "backoff": FIXED}
    if expression is not None:
        found["expression"] = expression
    return found


def sim_of(expression: str | None, *, limit: int = 3, **fields: Any) -> Simulator:
    flow = make_flow([job_step("train", retryPolicy=policy(expression, limit), **fields)])
    sim = Simulator(flow, T0)
    sim.reconcile()
    return sim


def step(sim: Simulator) -> StepStatus:
    found = sim.flow.status.step("train")
    assert found is not None
    return found


def exits(sim: Simulator, code: int, **messages: str) -> None:
    """The running Job fails, its pod's main container having exited with `code`."""
    (job,) = sim.running()
    sim.fail(job, messages={"exit:main": f"exit code {code}", **messages})
    sim.reconcile()


def unschedulable(owner: dict[str, Any]) -> Pod:
    cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "no node fits"}
    return Pod.model_validate(
        {
            "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z", "ownerReferences": [owner]},
            "status": {"phase": "Pending", "conditions": [cond]},
        }
    )


class Recorder:
    """An evaluator (as the controller's sandbox) that records what it was asked, in-process."""

    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []

    def __call__(self, compiled: CompiledWhen, variables: dict[str, Any]) -> Any:
        self.asked.append(variables)
        return compiled.program.execute(variables)


def test_exit_code_2_is_not_retried_and_the_message_and_event_say_why() -> None:
    sim = sim_of(NOT_BAD_INPUT)
    exits(sim, 2)
    st_ = step(sim)
    assert st_.phase == StepPhase.FAILED
    assert st_.retry_count == 0
    assert st_.message == (
        "attempt 1 failed: Job failed: main: exit code 2; BackoffLimitExceeded: Job has failed; "
        'not retried: retryPolicy.expression "lastRetry.exitCode != 2" is false'
    )
    assert sim.phase == "Failed"
    failed = [e for e in sim.last.events if e.reason == "StepFailed"]
    assert [e.message for e in failed] == [f"step train failed: {st_.message}"]


def test_a_crash_is_retried() -> None:
    sim = sim_of(NOT_BAD_INPUT)
    exits(sim, 137)
    assert step(sim).phase == StepPhase.RETRYING
    sim.advance(2)
    sim.reconcile()
    assert step(sim).phase == StepPhase.RUNNING
    assert step(sim).retry_count == 1


def test_the_limit_still_holds_when_the_expression_allows() -> None:
    sim = sim_of("true", limit=1)
    exits(sim, 1)
    sim.advance(2)
    sim.reconcile()
    exits(sim, 1)
    assert step(sim).phase == StepPhase.FAILED
    assert "retries exhausted: 1/1" in (step(sim).message or "")


def test_an_expression_error_means_no_retry_and_says_why() -> None:
    sim = sim_of("lastRetry.exitCode")
    exits(sim, 1)
    assert step(sim).phase == StepPhase.FAILED
    assert (step(sim).message or "").endswith(
        'not retried: retryPolicy.expression "lastRetry.exitCode" is not a bool: 1'
    )
    sim = sim_of("lastRetry.signal == 9")
    exits(sim, 1)
    assert step(sim).phase == StepPhase.FAILED
    message = step(sim).message or ""
    assert message.startswith("attempt 1 failed: Job failed: main: exit code 1")
    # The failure and the verdict are kept; the quoted expression gives way to them.
    assert '; not retried: retryPolicy.expression "' in message
    assert "failed: no such key 'signal' (not set: a label, annotation or argument the flow lacks" in message


def test_the_variables_of_a_pod_that_exited() -> None:
    recorder = Recorder()
    sim = sim_of("lastRetry.duration < 100.0", template=None)
    sim.evaluate = recorder
    sim.advance(42)
    exits(sim, 3)
    (asked,) = recorder.asked
    assert asked["lastRetry"] == {
        "exitCode": 3,
        "status": "Failed",
        "duration": 42.0,
        "message": "Job failed: main: exit code 3; BackoffLimitExceeded: Job has failed",
    }
    assert step(sim).phase == StepPhase.RETRYING


def test_a_deadline_is_an_error_with_no_exit_code() -> None:
    recorder = Recorder()
    sim = sim_of('lastRetry.status == "Failed"', timeoutSeconds=60)
    sim.evaluate = recorder
    sim.advance(61)  # past the timeout (its due time is rounded up to the next second)
    sim.reconcile()
    (asked,) = recorder.asked
    assert asked["lastRetry"]["status"] == "Error"
    assert asked["lastRetry"]["exitCode"] == -1
    assert asked["lastRetry"]["duration"] == 60.0  # its timeoutSeconds, whenever a plan decides
    assert step(sim).phase == StepPhase.FAILED
    assert (step(sim).message or "").endswith(
        'not retried: retryPolicy.expression "lastRetry.status == \\"Failed\\"" is false'
    )
    # Its Job is deleted for the timeout, as without a condition.
    assert any(isinstance(a, DeleteJob) for a in sim.last.actions)


def test_the_jobs_own_deadline_and_an_evicted_pod_are_errors() -> None:
    recorder = Recorder()
    sim = sim_of('lastRetry.status == "Failed"')
    sim.evaluate = recorder
    (job,) = sim.running()
    sim.fail(job, reason="DeadlineExceeded", message="deadline", messages={"exit:main": "exit code 137"})
    sim.reconcile()
    assert recorder.asked[-1]["lastRetry"]["status"] == "Error"
    assert recorder.asked[-1]["lastRetry"]["exitCode"] == 137
    sim = sim_of('lastRetry.status == "Failed"')
    sim.evaluate = recorder
    exits(sim, 137, **{INTERRUPTED: "DisruptionTarget"})
    assert recorder.asked[-1]["lastRetry"]["status"] == "Error"
    assert step(sim).phase == StepPhase.FAILED


def test_decided_once_a_later_plan_does_not_ask_again() -> None:
    recorder = Recorder()
    sim = sim_of(NOT_BAD_INPUT)
    sim.evaluate = recorder
    exits(sim, 137)
    assert len(recorder.asked) == 1
    decided = step(sim)
    sim.reconcile()
    assert len(recorder.asked) == 1
    assert step(sim) == decided


def test_a_lost_status_write_gives_the_same_verdict_on_the_same_inputs() -> None:
    recorder = Recorder()
    sim = sim_of("lastRetry.duration < 10.0")
    sim.evaluate = recorder
    sim.advance(5)
    (job,) = sim.running()
    sim.fail(job, messages={"exit:main": "exit code 1"})
    sim.reconcile(write_status=False)
    sim.advance(30)  # a restart later: the attempt ran as long as the Job's Failed condition says
    sim.reconcile()
    assert recorder.asked[0] == recorder.asked[1]
    assert step(sim).phase == StepPhase.RETRYING


def test_a_timeout_deletes_the_job_at_once_while_the_verdict_waits() -> None:
    def broken(compiled: CompiledWhen, variables: dict[str, Any]) -> Any:
        raise Unavailable("the expression worker does not start")

    sim = sim_of(NOT_BAD_INPUT, timeoutSeconds=60)
    (job,) = sim.running()
    sim.evaluate = broken
    sim.advance(61)
    waiting = sim.reconcile()
    # The timeout holds whatever the evaluator does: only the verdict (retry or not) waits.
    assert DeleteJob(job, "train", "timed out after 60s") in waiting.actions
    assert step(sim).phase == StepPhase.RUNNING
    sim.advance(600)
    sim.reconcile()
    assert step(sim).phase == StepPhase.RUNNING
    assert sim.running() == []  # the Job is going: it can no longer complete and end the step Succeeded
    recorder = Recorder()
    sim.evaluate = recorder
    sim.reconcile()
    assert step(sim).phase == StepPhase.RETRYING
    assert step(sim).message == "attempt 1 failed: timed out after 60s"
    (asked,) = recorder.asked
    assert asked["lastRetry"] == {
        "exitCode": -1,
        "status": "Error",
        "duration": 60.0,
        "message": "timed out after 60s",
    }


def test_a_pending_timeout_deletes_the_job_at_once_while_the_verdict_waits() -> None:
    def later(compiled: CompiledWhen, variables: dict[str, Any]) -> Any:
        raise Deferred("later")

    sim = sim_of(NOT_BAD_INPUT, podPendingTimeoutSeconds=60)
    (job,) = sim.running()
    sim.stick(job, [unschedulable(sim.owner(job))])
    sim.evaluate = later
    for _ in range(10):
        sim.advance(sim.last.requeue_after)
        sim.reconcile()
        if any(isinstance(a, DeleteJob) for a in sim.last.actions):
            break
    assert DeleteJob(job, "train", "PodPendingTimeout") in sim.last.actions
    assert step(sim).phase == StepPhase.RUNNING
    recorder = Recorder()
    sim.evaluate = recorder
    sim.advance(30)
    sim.reconcile()
    assert step(sim).phase == StepPhase.RETRYING
    said = "PodPendingTimeout: no pod running for 60s; pod unschedulable: no node fits"
    assert step(sim).message == f"attempt 1 failed: {said}"
    (asked,) = recorder.asked
    assert asked["lastRetry"] == {"exitCode": -1, "status": "Error", "duration": 60.0, "message": said}


def test_a_timeout_decided_after_a_lost_write_sees_the_same_attempt() -> None:
    recorder = Recorder()
    sim = sim_of("lastRetry.duration < 62.0", timeoutSeconds=60)
    sim.evaluate = recorder
    sim.advance(61)
    first = sim.reconcile(write_status=False)  # the Job is deleted; the status write is lost
    decided = first.status.step("train")
    assert decided is not None
    sim.advance(5)
    sim.reconcile()
    assert step(sim).phase == decided.phase == StepPhase.RETRYING
    assert recorder.asked[0] == recorder.asked[1]
    assert recorder.asked[0]["lastRetry"]["duration"] == 60.0


def test_a_deleted_retry_counts_from_its_own_start_to_its_deletion() -> None:
    recorder = Recorder()
    sim = sim_of("lastRetry.duration < 10.0")
    sim.instant_delete = False
    exits(sim, 137)
    sim.advance(2)
    sim.reconcile()
    (retried,) = sim.running()
    sim.evaluate = recorder
    sim.advance(5)
    sim.delete(retried)  # someone else deletes it; it lingers while its pods go
    sim.advance(20)
    sim.reconcile()
    (asked,) = recorder.asked
    assert asked["lastRetry"]["duration"] == 5.0
    assert step(sim).phase == StepPhase.RETRYING


def test_a_long_expression_keeps_the_exit_code_and_the_verdict_in_the_message() -> None:
    expression = " && ".join(f"lastRetry.exitCode != {c}" for c in range(2, 14))
    assert len(expression) > 256
    sim = sim_of(expression)
    exits(sim, 2)
    message = step(sim).message or ""
    assert step(sim).phase == StepPhase.FAILED
    assert len(message) <= 256
    assert message.startswith("attempt 1 failed: Job failed: main: exit code 2")
    assert message.endswith('..." is false')
    assert 'not retried: retryPolicy.expression "lastRetry.exitCode != 2 && ' in message


def test_an_expression_reads_the_flow() -> None:
    sim = sim_of("flow.labels['tier'] == 'batch' && lastRetry.exitCode != 2")
    exits(sim, 137)
    assert step(sim).phase == StepPhase.FAILED  # the flow has no such label
    assert "no such key 'tier'" in (step(sim).message or "")
    flow = make_flow([job_step("train", retryPolicy=policy(f"flow.name == '{sim.flow.metadata.name}'"))])
    sim = Simulator(flow, T0)
    sim.evaluate = Recorder()
    sim.reconcile()
    exits(sim, 137)
    assert step(sim).phase == StepPhase.RETRYING


def test_an_evaluator_that_cannot_evaluate_decides_nothing_and_says_so() -> None:
    def broken(compiled: CompiledWhen, variables: dict[str, Any]) -> Any:
        raise Unavailable("the expression worker does not start")

    sim = sim_of(NOT_BAD_INPUT)
    sim.evaluate = broken
    exits(sim, 2)
    assert step(sim).phase == StepPhase.RUNNING
    assert step(sim).message == (
        "Job failed: main: exit code 2; BackoffLimitExceeded: Job has failed; "
        "waiting to evaluate retryPolicy.expression: the expression worker does not start"
    )
    assert sim.last.requeue_after == UNAVAILABLE_RETRY_SECONDS
    sim.evaluate = None
    sim.reconcile()
    assert step(sim).phase == StepPhase.FAILED


def test_an_expression_that_is_no_constant_is_planned_off_the_event_loop() -> None:
    def offload(compiled: CompiledWhen, variables: dict[str, Any]) -> Any:
        raise Offload(compiled.source)

    sim = sim_of(NOT_BAD_INPUT)
    sim.evaluate = offload
    (job,) = sim.running()
    sim.fail(job, messages={"exit:main": "exit code 2"})
    try:
        sim.reconcile()
    except Offload:
        pass
    else:
        raise AssertionError("the plan asked no evaluator")


def test_the_plan_waits_for_the_pod_read_before_deciding() -> None:
    sim = sim_of(NOT_BAD_INPUT)
    (job,) = sim.running()
    sim.fail(job, messages={"exit:main": "exit code 2"})
    # A plan made before the controller read the failed pod (its exit code): nothing decided yet.
    early = plan(sim.flow, list(sim.jobs.values()), sim.now, messages={})
    found = early.status.step("train")
    assert found is not None
    assert found.phase == StepPhase.RUNNING
    assert early.requeue_after is not None
    assert early.requeue_after <= 1
    sim.reconcile()
    assert step(sim).phase == StepPhase.FAILED


@settings(max_examples=40, deadline=None)
@given(
    codes=st.lists(st.one_of(st.none(), st.integers(0, 255)), min_size=1, max_size=6),
    limit=st.integers(0, 4),
)
def test_true_behaves_exactly_like_no_expression(codes: list[int | None], limit: int) -> None:
    """None in `codes`: that attempt succeeds; an integer: it exits with it (0: the Job fails anyway,
    as when the pod was killed). An expression that always holds, constant or not, changes nothing."""
    plain, gated = sim_of(None, limit=limit), sim_of("true", limit=limit)
    # Always true, and no constant: decided by the evaluator (here in-process), not at compile time.
    asked = sim_of("lastRetry.exitCode >= -1", limit=limit)
    asked.evaluate = Recorder()
    for code in codes:
        for sim in (plain, gated, asked):
            running = sim.running()
            if not running:
                continue
            if code is None:
                sim.complete(running[0])
                sim.reconcile()
            else:
                exits(sim, code)
            sim.advance(2)
            sim.reconcile()
        assert plain.flow.status == gated.flow.status == asked.flow.status
