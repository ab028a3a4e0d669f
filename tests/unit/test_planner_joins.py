"""Planner: `dependencyPolicy` joins conditional branches: check -> deploy-prod (when prod) and deploy-dev
(when not prod) -> smoke-test after both. One deploy is always Skipped; by default that skips smoke-test
(the original's rule, kept), SucceededOrSkipped and AnySucceeded let it run."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from zen_flow.api.constants import ANNOTATION_RETRIED_BY, ANNOTATION_RETRY
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator, run

T0 = datetime(2025, 1, 1, tzinfo=UTC)
PROD = "flow.arguments.env == 'prod'"
DEV = "flow.arguments.env == 'dev'"
EITHER = "steps['deploy-prod'].phase == 'Succeeded' || steps['deploy-dev'].phase == 'Succeeded'"


def phases(sim: Simulator) -> dict[str, str]:
    return {s.name: s.phase for s in sim.flow.status.steps}


def message(sim: Simulator, step: str) -> str:
    found = sim.flow.status.step(step)
    assert found is not None
    return found.message or ""


def join_flow(
    env: str,
    policy: str | None,
    *,
    dev_when: str = DEV,
    smoke: Mapping[str, Any] | None = None,
    prod: Mapping[str, Any] | None = None,
) -> Simulator:
    smoke_fields = {**({"dependencyPolicy": policy} if policy else {}), **(smoke or {})}
    steps = [
        job_step("check"),
        job_step("deploy-prod", "check", when=PROD, **(prod or {})),
        job_step("deploy-dev", "check", when=dev_when),
        job_step("smoke-test", "deploy-prod", "deploy-dev", **smoke_fields),
    ]
    return Simulator(make_flow(steps, arguments={"env": env}), T0)


def by_step(sim: Simulator, verdicts: Mapping[str, str]) -> Any:
    """An outcome for `run`: each running Job settles as its step's verdict says (complete by default)."""
    return lambda job: verdicts.get(sim.steps[job], "complete")


@pytest.mark.parametrize("env", ["prod", "dev"])
def test_by_default_a_skipped_branch_skips_the_join_as_before(env: str) -> None:
    sim = join_flow(env, None)
    run(sim, by_step(sim, {}))
    skipped = "deploy-dev" if env == "prod" else "deploy-prod"
    assert sim.phase == "Succeeded"
    assert phases(sim)["smoke-test"] == "Skipped"
    assert message(sim, "smoke-test") == f"dependency {skipped} was skipped"
    assert "smoke-test" not in sim.steps.values()  # no Job was ever made for it


@pytest.mark.parametrize("policy", ["SucceededOrSkipped", "AnySucceeded"])
@pytest.mark.parametrize("env", ["prod", "dev"])
def test_a_join_policy_runs_the_step_after_whichever_branch_ran(env: str, policy: str) -> None:
    sim = join_flow(env, policy, smoke={"when": EITHER})
    run(sim, by_step(sim, {}))
    ran, skipped = ("deploy-prod", "deploy-dev") if env == "prod" else ("deploy-dev", "deploy-prod")
    assert sim.phase == "Succeeded"
    assert phases(sim) == {
        "check": "Succeeded",
        ran: "Succeeded",
        skipped: "Skipped",
        "smoke-test": "Succeeded",
    }
    assert "smoke-test" in sim.steps.values()
    assert sim.flow.status.message == "3 steps succeeded, 1 skipped"


@pytest.mark.parametrize("policy", ["SucceededOrSkipped", "AnySucceeded"])
def test_a_join_waits_for_every_dependency_to_end_even_after_one_succeeded(policy: str) -> None:
    sim = Simulator(
        make_flow([job_step("a"), job_step("b"), job_step("join", "a", "b", dependencyPolicy=policy)]), T0
    )
    sim.reconcile()
    job_a = next(j for j in sim.running() if sim.steps[j] == "a")
    sim.complete(job_a)
    sim.reconcile()
    assert phases(sim) == {"a": "Succeeded", "b": "Running", "join": "Pending"}
    assert sim.flow.status.message == "running: b"
    sim.complete(sim.running()[0])
    sim.reconcile()
    assert phases(sim)["join"] == "Running"


def test_succeeded_or_skipped_runs_the_step_when_every_dependency_was_skipped() -> None:
    sim = join_flow("qa", "SucceededOrSkipped")  # neither prod nor dev: both deploys are Skipped
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.reconcile()
    assert phases(sim) == {
        "check": "Succeeded",
        "deploy-prod": "Skipped",
        "deploy-dev": "Skipped",
        "smoke-test": "Running",
    }


def test_the_joins_own_when_can_test_the_phases_of_skipped_dependencies() -> None:
    sim = join_flow("qa", "SucceededOrSkipped", smoke={"when": EITHER})
    run(sim, by_step(sim, {}))
    assert sim.phase == "Succeeded"
    assert phases(sim)["smoke-test"] == "Skipped"
    assert message(sim, "smoke-test") == f"when {EITHER!r} is false"


def test_any_succeeded_skips_the_step_when_no_dependency_succeeded() -> None:
    sim = join_flow("qa", "AnySucceeded")
    run(sim, by_step(sim, {}))
    assert sim.phase == "Succeeded"
    assert phases(sim)["smoke-test"] == "Skipped"
    assert message(sim, "smoke-test") == "none of its dependencies succeeded (dependencyPolicy AnySucceeded)"


@pytest.mark.parametrize("policy", [None, "SucceededOrSkipped", "AnySucceeded"])
def test_a_failed_dependency_fails_the_flow_whatever_the_policy(policy: str | None) -> None:
    sim = join_flow("prod", policy)
    run(sim, by_step(sim, {"deploy-prod": "fail"}))
    assert sim.phase == "Failed"
    assert phases(sim) == {
        "check": "Succeeded",
        "deploy-prod": "Failed",
        "deploy-dev": "Skipped",
        "smoke-test": "Skipped",
    }
    assert message(sim, "smoke-test") in (
        "dependency deploy-prod failed",
        "dependency deploy-dev was skipped",
    )
    assert "smoke-test" not in sim.steps.values()


def test_a_failed_dependency_with_continue_on_failure_counts_as_ended_not_succeeded() -> None:
    prod = {"continueOnFailure": True}
    ended = join_flow("prod", "SucceededOrSkipped", prod=prod)
    run(ended, by_step(ended, {"deploy-prod": "fail"}))
    assert phases(ended)["smoke-test"] == "Succeeded"  # it ran
    assert ended.phase == "Failed"  # a step failed: the flow still ends Failed, as with continueOnFailure

    none = join_flow("prod", "AnySucceeded", prod=prod)
    run(none, by_step(none, {"deploy-prod": "fail"}))
    assert phases(none)["smoke-test"] == "Skipped"
    assert message(none, "smoke-test").startswith("none of its dependencies succeeded")

    # Both branches ran (dev's when always holds): one failed (allowed), one succeeded: AnySucceeded runs.
    one = join_flow("prod", "AnySucceeded", prod=prod, dev_when="true")
    run(one, by_step(one, {"deploy-prod": "fail"}))
    assert phases(one)["smoke-test"] == "Succeeded"


def test_a_rerun_of_the_failed_branch_lets_the_join_run() -> None:
    sim = join_flow("prod", "AnySucceeded")
    run(sim, by_step(sim, {"deploy-prod": "fail"}))
    assert sim.phase == "Failed"
    sim.advance(60)
    sim.annotate(ANNOTATION_RETRY, "r1")
    sim.annotate(ANNOTATION_RETRIED_BY, "alice")
    run(sim, by_step(sim, {}))
    assert sim.phase == "Succeeded"
    assert phases(sim) == {
        "check": "Succeeded",
        "deploy-prod": "Succeeded",
        "deploy-dev": "Skipped",
        "smoke-test": "Succeeded",
    }


def url_output() -> dict[str, Any]:
    return {"outputs": {"parameters": [{"name": "url", "valueFrom": {"jsonPath": "$.succeeded"}}]}}


def test_an_input_read_from_a_skipped_dependency_fails_the_step_naming_the_output() -> None:
    reads = {
        "inputs": {
            "parameters": [{"name": "url", "valueFrom": {"jsonPath": "deploy-prod:$.outputs.parameters.url"}}]
        }
    }
    sim = join_flow("dev", "SucceededOrSkipped", prod=url_output(), smoke=reads)
    run(sim, by_step(sim, {}))
    assert sim.phase == "Failed"
    assert phases(sim)["smoke-test"] == "Failed"
    assert message(sim, "smoke-test") == (
        "input parameter url reads output parameter url of step deploy-prod "
        "(deploy-prod:$.outputs.parameters.url), but step deploy-prod was skipped and has no outputs"
    )
    assert "smoke-test" not in sim.steps.values()  # no Job built on a missing value

    ran = join_flow("prod", "SucceededOrSkipped", prod=url_output(), smoke=reads)
    run(ran, by_step(ran, {}))
    assert ran.phase == "Succeeded"  # the same step reads the branch that ran


def test_an_input_artifact_from_a_skipped_dependency_fails_the_step() -> None:
    reads = {"inputs": {"artifacts": [{"name": "site", "from": "deploy-prod/site"}]}}
    sim = join_flow("dev", "AnySucceeded", smoke=reads)
    run(sim, by_step(sim, {}))
    assert phases(sim)["smoke-test"] == "Failed"
    assert message(sim, "smoke-test") == (
        "input artifact site reads artifact site of step deploy-prod (deploy-prod/site), "
        "but step deploy-prod was skipped and has no outputs"
    )


def test_a_when_reading_a_skipped_steps_outputs_fails_closed() -> None:
    when = "steps['deploy-prod'].outputs.parameters.url == '1'"
    sim = join_flow("dev", "SucceededOrSkipped", prod=url_output(), smoke={"when": when})
    run(sim, by_step(sim, {}))
    assert sim.phase == "Succeeded"
    assert phases(sim)["smoke-test"] == "Skipped"  # never counted as true
    assert message(sim, "smoke-test").startswith(f"when {when!r} failed:")
