"""The step admission policy (config/crd/admission-policies.yaml), evaluated with the CEL library: what it
refuses without the webhook, said in the validator's words. The apiserver runs it in
tests/integration/test_crd_validation.py; here every case is cheap to try."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cel
import pytest
import yaml

from zen_flow.api import constants
from zen_flow.validation import validate_jobflow
from zen_flow_dev.testing.flows import flow_manifest, job_step, manual_step

POLICIES = Path(__file__).parents[2] / "config" / "crd" / "admission-policies.yaml"
MATRIX = {"parameters": [{"name": "shard", "values": ["a", "b"]}]}


def step_policy() -> dict[str, Any]:
    docs = yaml.safe_load_all(POLICIES.read_text())
    (found,) = [
        d["spec"]
        for d in docs
        if d["kind"] == "ValidatingAdmissionPolicy"
        and d["metadata"]["name"] == f"jobflow-steps.{constants.GROUP}"
    ]
    return found  # type: ignore[no-any-return]


def refusals(flow: dict[str, Any]) -> list[str]:
    """The messages of the policy's validations that refuse `flow` on CREATE."""
    policy = step_policy()
    context: dict[str, Any] = {"object": flow, "oldObject": None, "request": {"operation": "CREATE"}}
    variables: dict[str, Any] = {}
    for variable in policy["variables"]:
        variables[variable["name"]] = cel.evaluate(
            variable["expression"], {**context, "variables": variables}
        )
    return [
        cel.evaluate(v["messageExpression"], {**context, "variables": variables})
        for v in policy["validations"]
        if not cel.evaluate(v["expression"], {**context, "variables": variables})
    ]


def finally_step(name: str, *deps: str, **fields: Any) -> dict[str, Any]:
    return {**job_step(name, *deps, **fields), "finally": True}


REFUSED = {
    "a Manual step with a matrix": (
        [job_step("a"), manual_step("gate", "a", matrix=MATRIX)],
        constants.MANUAL_MATRIX + " (step gate)",
    ),
    "a finally step depending on an item of a main matrix step": (
        [job_step("build", matrix=MATRIX), finally_step("report", "build-0")],
        "step report depends on build-0, which " + constants.FINALLY_CROSSING[True],
    ),
    "a main step depending on an item of a finally matrix step": (
        [job_step("a"), finally_step("clean", matrix=MATRIX), job_step("b", "clean-1")],
        "step b depends on clean-1, which " + constants.FINALLY_CROSSING[False],
    ),
}


@pytest.mark.parametrize(("steps", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_the_policy_refuses_what_the_webhook_refuses_of_a_matrix(
    steps: list[dict[str, Any]], message: str
) -> None:
    flow = flow_manifest("f", "default", steps)
    assert validate_jobflow(flow)  # the webhook refuses it
    (said,) = refusals(flow)
    assert said.startswith("spec.steps: ")
    assert message in " ".join(said.split())


ADMITTED = {
    "a main step depending on an item": [job_step("build", matrix=MATRIX), job_step("pub", "build-1")],
    "a finally step depending on an item of a finally matrix step": [
        job_step("a"),
        finally_step("clean", matrix=MATRIX),
        finally_step("report", "clean-0"),
    ],
    "a finally matrix step depending on a finally step": [
        job_step("a"),
        finally_step("c"),
        finally_step("clean", "c", matrix=MATRIX),
    ],
    "a step whose name looks like an item of another side's matrix step": [
        job_step("build", matrix=MATRIX),
        finally_step("build-x"),
        finally_step("report", "build-x"),
    ],
}


@pytest.mark.parametrize("steps", ADMITTED.values(), ids=ADMITTED.keys())
def test_the_policy_admits_what_the_webhook_admits_of_a_matrix(steps: list[dict[str, Any]]) -> None:
    flow = flow_manifest("f", "default", steps)
    assert not validate_jobflow(flow)
    assert refusals(flow) == []


def immutable_refusals(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The messages of the spec-immutability policy's validations that refuse the UPDATE `old` -> `new`."""
    docs = yaml.safe_load_all(POLICIES.read_text())
    (policy,) = [
        d["spec"]
        for d in docs
        if d["kind"] == "ValidatingAdmissionPolicy"
        and d["metadata"]["name"] == f"jobflow-spec-immutable.{constants.GROUP}"
    ]
    context: dict[str, Any] = {"object": new, "oldObject": old, "request": {"operation": "UPDATE"}}
    variables: dict[str, Any] = {}
    for variable in policy["variables"]:
        variables[variable["name"]] = cel.evaluate(
            variable["expression"], {**context, "variables": variables}
        )
    return [
        " ".join(v["message"].split())
        for v in policy["validations"]
        if not cel.evaluate(v["expression"], {**context, "variables": variables})
    ]


@pytest.mark.parametrize("phase", ["Running", "Pending"])
def test_the_flows_own_locks_cannot_change_once_it_started_as_the_validator_says(phase: str) -> None:
    old = flow_manifest("f", "ns", [job_step("a")], synchronization={"mutexes": [{"name": "db"}]})
    old["status"] = {"phase": phase}
    for new_locks in ({"mutexes": [{"name": "other"}]}, None):
        new = {**old, "spec": {k: v for k, v in old["spec"].items() if k != "synchronization"}}
        if new_locks is not None:
            new["spec"]["synchronization"] = new_locks
        refused = immutable_refusals(old, new)
        if phase == "Running":
            assert refused == [
                "spec.synchronization cannot change once the flow has started (it took its locks then, "
                "and holds them until it ends); create a new JobFlow instead"
            ]
        else:
            assert refused == []
    assert immutable_refusals(old, old) == []
