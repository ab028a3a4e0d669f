"""retryPolicy.expression where two rules meet: one timeout seen by the Job or by the controller, a
verdict still waiting when a flow-wide failure ends the flow, a long failure beside a long verdict."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_planner_retry_expression import T0, Recorder, sim_of, step

from zen_flow.api.constants import StepPhase
from zen_flow.core.expressions import CompiledWhen, Deferred
from zen_flow.core.retry_condition import quoted
from zen_flow.planner import fail_invalid, fail_rejected
from zen_flow.planner.retry_messages import WAITING, refusal, waited_failure, waiting
from zen_flow.planner.steps import MAX_MESSAGE, bound
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

DEADLINE = "Job was active longer than specified deadline"


@pytest.mark.parametrize("expression", ["lastRetry.exitCode == -1", 'lastRetry.status == "Error"'])
def test_a_timeout_is_one_last_retry_whoever_notices_it_first(expression: str) -> None:
    """The Job's activeDeadlineSeconds is the step's timeoutSeconds: which of the two ends the attempt
    first is a race, and must not decide whether it is retried."""
    seen = []
    for job_first in (True, False):
        recorder = Recorder()
        sim = sim_of(expression, timeoutSeconds=60)
        sim.evaluate = recorder
        (job,) = sim.running()
        sim.advance(61)
        if job_first:  # the SIGTERM of the deadline: exit code 143
            sim.fail(
                job, reason="DeadlineExceeded", message=DEADLINE, messages={"exit:main": "exit code 143"}
            )
        sim.reconcile()
        (asked,) = recorder.asked
        seen.append((asked["lastRetry"], step(sim).phase, step(sim).message))
    assert seen[0] == seen[1]
    last, phase, message = seen[0]
    assert last == {"exitCode": -1, "status": "Error", "duration": 60.0, "message": "timed out after 60s"}
    assert (phase, message) == (StepPhase.RETRYING, "attempt 1 failed: timed out after 60s")


def later(compiled: CompiledWhen, variables: dict[str, Any]) -> Any:
    raise Deferred("this plan spent 2.0s evaluating; the rest waits for the next one")


def three_steps(expression: str | None) -> Simulator:
    """a (retried up to 3 times, `expression` deciding) and b run; c waits for b."""
    retry: dict[str, Any] = {"limit": 3, "backoff": {"type": "Fixed", "duration": "1s"}}
    if expression is not None:
        retry["expression"] = expression
    flow = make_flow(
        [job_step("a", retryPolicy=retry), job_step("b"), job_step("c", dependencies=["b"])], created=T0
    )
    sim = Simulator(flow, T0)
    sim.reconcile()
    return sim


def job_of(sim: Simulator, name: str) -> str:
    (job,) = [j for j in sim.running() if f"-{name}-" in j]
    return job


def test_a_waiting_verdict_records_the_failure_it_waits_on() -> None:
    sim = three_steps("lastRetry.exitCode != 2")
    sim.evaluate = later
    sim.fail(job_of(sim, "a"), messages={"exit:main": "exit code 2"})
    sim.reconcile()
    a = sim.flow.status.step("a")
    assert a is not None
    assert a.phase == StepPhase.RUNNING
    assert a.message == (
        "Job failed: main: exit code 2; BackoffLimitExceeded: Job has failed; "
        "waiting to evaluate retryPolicy.expression"
    )
    sim.reconcile()
    assert sim.last.status == sim.flow.status  # the same words each time: no status write per plan


@pytest.mark.parametrize("ending", ["job refused", "invalid spec"])
def test_a_flow_wide_failure_keeps_the_failure_of_a_step_whose_verdict_waits(ending: str) -> None:
    """As it keeps a step's without an expression (Retrying then), with its StepFailed."""
    ended = {}
    for expression in (None, "lastRetry.exitCode != 2"):
        sim = three_steps(expression)
        sim.evaluate = later
        sim.fail(job_of(sim, "a"), messages={"exit:main": "exit code 2"})
        if ending == "job refused":  # in the plan that sees a fail, the apiserver refuses c's Job
            sim.complete(job_of(sim, "b"))
            before = sim.flow
            plan = fail_rejected(before, ["Job.batch is invalid: x"], sim.now, sim.preview(), set())
        else:
            sim.reconcile()
            plan = fail_invalid(sim.flow, ["boom"], sim.now)
        a = plan.status.step("a")
        assert a is not None
        events = [(e.reason, e.message) for e in plan.events if e.step == "a"]
        ended[expression] = (a.phase, a.message, events)
    assert ended[None] == ended["lastRetry.exitCode != 2"]
    phase, message, events = ended[None]
    assert phase == StepPhase.FAILED
    assert message is not None
    failure = "Job failed: main: exit code 2; BackoffLimitExceeded: Job has failed"
    assert message.endswith(f"; attempt 1 failed: {failure}")
    assert events[-1] == ("StepFailed", f"step a failed: {message}")


@pytest.mark.parametrize("container", ["main", "c" * 40, "c" * 63])
def test_a_long_verdict_keeps_the_exit_code_of_any_container(container: str) -> None:
    # A verdict that is an error says which, and hints why: its end gives way, not the exit code.
    sim = sim_of("lastRetry.exitCode == 3 || flow.labels.team == " + repr("x" * 60))
    (job,) = sim.running()
    sim.fail(job, messages={f"exit:{container}": "exit code 2"})
    sim.reconcile()
    message = step(sim).message or ""
    assert step(sim).phase == StepPhase.FAILED
    assert len(message) <= 256
    assert message.startswith(f"attempt 1 failed: Job failed: {container}: exit code 2")
    assert "...\" failed: no such key 'team'" in message


@settings(max_examples=60, deadline=None)
@given(
    attempt=st.integers(1, 2**31 - 1),
    container=st.from_regex(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True),
    code=st.integers(1, 255),
    rest=st.text(alphabet="abc ;:()", max_size=300),
    reason=st.text(alphabet="abc '", max_size=400),
    expr=st.text(alphabet="abc =!'\"\\", min_size=1, max_size=1024),
)
def test_a_refusal_keeps_the_exit_code_and_the_verdict_start(
    attempt: int, container: str, code: int, rest: str, reason: str, expr: str
) -> None:
    failure = f"attempt {attempt} failed: Job failed: {container}: exit code {code}; {rest}"
    verdict = f"failed: no such key {reason}"
    message = refusal(failure, f"retryPolicy.expression {quoted(expr)} {verdict}", expr)
    assert len(message) <= MAX_MESSAGE
    assert message.startswith(f"attempt {attempt} failed: Job failed: {container}: exit code {code}")
    assert '" failed: no such key' in message  # the verdict follows the quote, cut first


@settings(max_examples=60, deadline=None)
@given(failure=st.text(min_size=1, max_size=400), why=st.none() | st.text(max_size=100))
def test_a_waiting_message_gives_back_its_failure(failure: str, why: str | None) -> None:
    message = waiting(failure, why)
    assert len(message) <= MAX_MESSAGE
    found = waited_failure(message, 2)
    head = bound(failure, MAX_MESSAGE - len(WAITING) - 2)
    if head and f"; {WAITING}" not in head:
        assert found == f"attempt 3 failed: {head}"
