"""Planner: `allowFailure` tolerates a step's failure outright (after its retries): its dependents run as
with continueOnFailure, and the flow may still end Succeeded (condition Complete, reason
SucceededWithFailures), the step itself staying Failed; its finally steps see `flow.outcome` Succeeded."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from zen_flow.api.constants import REJECT_PREFIX
from zen_flow.core.matrix import effective_flow
from zen_flow.planner import CreateJob, EventSpec
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator, run

T0 = datetime(2025, 1, 1, tzinfo=UTC)
ALLOW: dict[str, Any] = {"allowFailure": True}
FINALLY: dict[str, Any] = {"finally": True}


def events(sim: Simulator) -> list[EventSpec]:
    return [e for p in sim.plans for e in p.events]


def ci(
    *extra: dict[str, Any], lint: dict[str, Any] | None = None, test: dict[str, Any] | None = None
) -> Simulator:
    """build -> lint, test -> deploy (after both)."""
    steps = [
        job_step("build"),
        job_step("lint", "build", **(ALLOW if lint is None else lint)),
        job_step("test", "build", **(test or {})),
        job_step("deploy", "lint", "test"),
        *extra,
    ]
    return Simulator(make_flow(steps), T0)


def phases(sim: Simulator) -> dict[str, str]:
    return {s.name: s.phase for s in sim.flow.status.steps}


def condition(sim: Simulator, type_: str) -> tuple[str, str, str]:
    c = next(c for c in sim.flow.status.conditions if c.type == type_)
    return c.status, c.reason, c.message


def failing(sim: Simulator, *names: str) -> Any:
    return lambda job: "fail" if sim.steps[job] in names else "complete"


def test_a_tolerated_failure_lets_the_dependents_run_and_the_flow_succeed() -> None:
    sim = ci()
    run(sim, failing(sim, "lint"))
    assert sim.phase == "Succeeded"
    assert phases(sim) == {"build": "Succeeded", "lint": "Failed", "test": "Succeeded", "deploy": "Succeeded"}
    lint = sim.flow.status.step("lint")
    assert lint is not None
    assert (lint.message or "").startswith("Job failed")  # the step keeps its failure
    said = "3 steps succeeded, 1 failed with allowFailure: lint"
    assert sim.flow.status.message == said
    assert condition(sim, "Complete") == ("True", "SucceededWithFailures", said)  # kubectl wait works
    assert condition(sim, "Failed")[0] == "False"
    reasons = [e.reason for e in events(sim)]
    assert "StepFailed" in reasons
    assert reasons.count("StepFailureAllowed") == 1
    assert reasons[-1] == "FlowSucceeded"
    assert events(sim)[-1].message == said


def test_without_a_failure_the_complete_condition_keeps_its_reason() -> None:
    sim = ci()
    run(sim, failing(sim))
    assert condition(sim, "Complete")[:2] == ("True", "FlowSucceeded")
    assert "StepFailureAllowed" not in [e.reason for e in events(sim)]


def test_another_steps_failure_still_fails_the_flow() -> None:
    sim = ci()
    run(sim, failing(sim, "lint", "test"))
    assert sim.phase == "Failed"
    status, reason, message = condition(sim, "Failed")
    assert (status, reason) == ("True", "StepFailed")
    assert message.startswith("step test failed")
    assert phases(sim)["deploy"] == "Skipped"


def test_continue_on_failure_alone_still_fails_the_flow_and_both_together_tolerate() -> None:
    continued = ci(lint={"continueOnFailure": True})
    run(continued, failing(continued, "lint"))
    assert phases(continued)["deploy"] == "Succeeded"
    assert continued.phase == "Failed"
    both = ci(lint={"continueOnFailure": True, "allowFailure": True})
    run(both, failing(both, "lint"))
    assert both.phase == "Succeeded"  # allowFailure wins


def test_it_applies_once_the_retries_are_spent() -> None:
    sim = ci(lint={**ALLOW, "retryPolicy": {"limit": 2, "backoff": {"type": "Fixed", "duration": "1s"}}})
    run(sim, failing(sim, "lint"))
    assert [sim.steps[j] for j in sim.created].count("lint") == 3
    assert sim.phase == "Succeeded"
    lint = sim.flow.status.step("lint")
    assert lint is not None
    assert lint.retry_count == 2


def test_finally_steps_see_a_succeeded_outcome_and_the_failed_phase() -> None:
    sim = ci(
        job_step("celebrate", when="flow.outcome == 'Succeeded'", **FINALLY),
        job_step("page", when="flow.outcome == 'Failed'", **FINALLY),
        job_step("report", when="steps.lint.phase == 'Failed'", **FINALLY),
    )
    run(sim, failing(sim, "lint"))
    assert sim.phase == "Succeeded"
    got = phases(sim)
    assert (got["celebrate"], got["page"], got["report"]) == ("Succeeded", "Skipped", "Succeeded")


def test_a_finally_step_with_allow_failure_does_not_fail_the_flow() -> None:
    tolerated = ci(job_step("notify", **FINALLY, **ALLOW), lint={})
    run(tolerated, failing(tolerated, "notify"))
    assert tolerated.phase == "Succeeded"
    assert condition(tolerated, "Complete")[1] == "SucceededWithFailures"
    strict = ci(job_step("notify", **FINALLY), lint={})
    run(strict, failing(strict, "notify"))
    assert condition(strict, "Failed")[:2] == ("True", "FinallyStepFailed")


def test_a_rejected_manual_step_with_allow_failure_lets_the_flow_succeed() -> None:
    steps = [
        manual_step("gate", **ALLOW),
        job_step("promote", "gate", when="steps.gate.phase == 'Succeeded'"),
        job_step("report", "gate"),
    ]
    sim = Simulator(make_flow(steps), T0)
    sim.annotate(REJECT_PREFIX + "gate", "true")
    run(sim, failing(sim))
    assert phases(sim) == {"gate": "Failed", "promote": "Skipped", "report": "Succeeded"}
    assert sim.phase == "Succeeded"
    assert [e.reason for e in events(sim) if e.step == "gate"][-2:] == ["StepRejected", "StepFailureAllowed"]


@pytest.mark.parametrize(("policy", "ran"), [("AllSucceeded", True), ("AnySucceeded", False)])
def test_a_tolerated_failure_counts_as_ended_not_succeeded(policy: str, ran: bool) -> None:
    steps = [job_step("lint", **ALLOW), job_step("after", "lint", dependencyPolicy=policy)]
    sim = Simulator(make_flow(steps), T0)
    run(sim, failing(sim, "lint"))
    assert phases(sim)["after"] == ("Succeeded" if ran else "Skipped")
    assert sim.phase == "Succeeded"


def test_every_failed_item_of_a_matrix_step_is_tolerated() -> None:
    build = job_step("build", matrix={"parameters": [{"name": "os", "values": ["a", "b", "c"]}]}, **ALLOW)
    sim = Simulator(effective_flow(make_flow([build, job_step("publish", "build")])), T0)
    run(sim, lambda job: "fail" if sim.steps[job] in ("build-0", "build-2") else "complete")
    assert sim.phase == "Succeeded"
    assert phases(sim)["publish"] == "Succeeded"
    assert sim.flow.status.message == "2 steps succeeded, 2 failed with allowFailure: build-0, build-2"
    assert [a.step for p in sim.plans for a in p.actions if isinstance(a, CreateJob)][-1] == "publish"


def test_the_message_counts_one_step_in_the_singular() -> None:
    sim = Simulator(make_flow([job_step("lint", **ALLOW), job_step("b")]), T0)
    run(sim, failing(sim, "lint"))
    assert sim.flow.status.message == "1 step succeeded, 1 failed with allowFailure: lint"
