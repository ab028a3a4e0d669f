"""Specs the webhook accepted before, remembered by their bytes (webhook/review.py, validation/accepted.py):
the same answer, less work."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from validation_samples import Flow, base_flow, step

import zen_flow.validation.flow as flow_rules
import zen_flow.webhook.review as review_module
from zen_flow.validation import COMPILED, AcceptedSpecs
from zen_flow.webhook.review import validate_review
from zen_flow_dev.testing.mutations import corrupted_examples

APPROVE = "approve.workflow.kube-zen.io/"


@pytest.fixture(autouse=True)
def accepted() -> Iterator[AcceptedSpecs]:
    """A memory of its own per test (the webhook's is the process's)."""
    memory = AcceptedSpecs()
    with patch.object(review_module, "ACCEPTED", memory):
        yield memory


def body(flow: Any, operation: str = "CREATE", old: Any = None) -> bytes:
    """A review as the apiserver encodes it: compact, map keys sorted (Go's encoder)."""
    request = {"uid": "u", "operation": operation, "object": flow, "oldObject": old, "name": "flow"}
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    return json.dumps(
        review, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=False
    ).encode()


def response(review: bytes) -> dict[str, Any]:
    answer: dict[str, Any] = validate_review(review)["response"]
    return answer


# tests/packaging/test_compiled.py runs these tests against the compiled rules too, where a patched
# module function is not what the compiled modules call.
counts_checks = pytest.mark.skipif(COMPILED, reason="counts check_spec calls by patching it")


def checks_of_spec(review: bytes) -> int:
    with patch.object(flow_rules, "check_spec", wraps=flow_rules.check_spec) as check_spec:
        response(review)
    return check_spec.call_count


@settings(max_examples=150, deadline=None)
@given(corrupted_examples())
def test_remembering_accepted_specs_never_changes_an_answer(flow: Any) -> None:
    try:
        review = body(flow)
    except (TypeError, ValueError):
        return  # not JSON (NaN, a lone surrogate: Go never writes them): no review can carry it
    with patch.object(review_module, "ACCEPTED", AcceptedSpecs()):
        first = response(review)
        assert response(review) == first
    assert response(review) == first  # a memory that never saw it


@settings(max_examples=100, deadline=None)
@given(corrupted_examples(), st.sampled_from(["x", "a" * 63, "nightly-x7k2p"]))
def test_a_spec_remembered_under_one_name_gets_the_answer_a_fresh_check_gives_under_another(
    flow: Any, name: str
) -> None:
    assume(isinstance(flow, dict) and isinstance(flow.get("metadata"), dict))
    renamed = {**flow, "metadata": {**flow["metadata"], "name": name}}
    try:
        reviews = body(flow), body(renamed)
    except (TypeError, ValueError):
        return  # not JSON: no review can carry it
    with patch.object(review_module, "ACCEPTED", AcceptedSpecs()):
        response(reviews[0])
        remembered = response(reviews[1])
    assert remembered == response(reviews[1])  # the fixture's memory never saw either


@counts_checks
def test_a_valid_spec_again_is_not_checked_again_under_any_name_but_another_spec_is(
    accepted: AcceptedSpecs,
) -> None:
    flow = base_flow()
    assert checks_of_spec(body(flow)) == 1
    assert checks_of_spec(body(flow)) == 0  # `kubectl apply --dry-run=server`, then the apply
    renamed = base_flow()
    renamed["metadata"]["name"] = "nightly-x7k2p"  # generateName: a new name for every flow
    assert checks_of_spec(body(renamed)) == 0
    step(flow, "c")["timeoutSeconds"] = 7
    assert checks_of_spec(body(flow)) == 1
    assert len(accepted) == 2


def with_resource_template(flow: Flow, name: str) -> Flow:
    claim = {"metadata": {"name": name}, "spec": {"accessModes": ["ReadWriteOnce"]}}
    claim["spec"]["resources"] = {"requests": {"storage": "1Gi"}}
    flow["spec"]["resourceTemplates"] = {"volumeClaimTemplates": [claim]}
    return flow


@counts_checks
def test_a_spec_with_resource_templates_is_known_only_under_the_name_it_was_checked_with() -> None:
    # Each is created as <flow>-<template>, which must still be a valid name: 253 characters at most.
    short, long = base_flow(), base_flow()
    short["metadata"]["name"], long["metadata"]["name"] = "a", "a" * 63
    for flow in (short, long):
        with_resource_template(flow, "t" * 200)
    assert response(body(short))["allowed"] is True
    assert checks_of_spec(body(long)) == 1
    refused = response(body(long))
    assert refused["allowed"] is False
    assert refused["status"]["details"]["causes"][0]["field"] == (
        "spec.resourceTemplates.volumeClaimTemplates[0].metadata.name"
    )


def test_a_remembered_spec_still_gets_its_metadata_and_approvals_checked() -> None:
    flow = base_flow()
    assert response(body(flow))["allowed"] is True
    flow["metadata"]["labels"] = {"bad label!": "x"}
    flow["metadata"]["annotations"] = {APPROVE + "c": "true"}  # c is a Job step, not a Manual one
    denied = response(body(flow))
    assert denied["allowed"] is False
    fields = {cause["field"] for cause in denied["status"]["details"]["causes"]}
    assert fields == {"metadata.labels", f"metadata.annotations[{APPROVE}c]"}
    flow["metadata"] = {"name": "flow", "annotations": {APPROVE + "gate": "true"}}
    assert response(body(flow))["allowed"] is True


@counts_checks
def test_an_invalid_spec_is_checked_every_time_and_not_kept(accepted: AcceptedSpecs) -> None:
    # A denial's errors hold parts of the spec: remembering them would let a tenant grow the webhook.
    flow = base_flow()
    step(flow, "c")["timeoutSeconds"] = 0
    assert checks_of_spec(body(flow)) == 1
    assert checks_of_spec(body(flow)) == 1
    assert response(body(flow))["allowed"] is False
    assert len(accepted) == 0


def test_a_spec_that_differs_only_in_a_type_is_checked_on_its_own(accepted: AcceptedSpecs) -> None:
    # 1 and 1.0 and "1": distinct encodings, so the invalid ones are never taken for the valid one.
    answers = []
    for value in (1, 1.0, "1", 1):
        flow = base_flow()
        step(flow, "c")["timeoutSeconds"] = value
        answers.append(response(body(flow))["allowed"])
    assert answers == [True, False, False, True]
    assert len(accepted) == 1


@counts_checks
def test_the_least_recently_used_specs_are_forgotten_first() -> None:
    flows: list[dict[str, Any]] = []
    with patch.object(review_module, "ACCEPTED", AcceptedSpecs(size=2)) as small:
        for i in range(3):
            flow = base_flow()
            step(flow, "c")["timeoutSeconds"] = i + 1
            flows.append(flow)
            response(body(flow))
        assert len(small) == 2
        assert checks_of_spec(body(flows[2])) == 0
        assert checks_of_spec(body(flows[0])) == 1


@counts_checks
def test_an_update_that_changes_the_spec_uses_them_too(accepted: AcceptedSpecs) -> None:
    old, new = base_flow(), base_flow()
    step(new, "c")["timeoutSeconds"] = 7
    assert checks_of_spec(body(new, "UPDATE", old)) == 1
    assert len(accepted) == 1
    assert checks_of_spec(body(new, "UPDATE", old)) == 0
    assert response(body(new, "UPDATE", old))["allowed"] is True


def with_gate_artifact(flow: Flow) -> Flow:
    """A Manual step with output artifacts: refused since artrepo, so possibly stored from before it."""
    flow["spec"]["steps"].append(
        {
            "name": "sign-off",
            "type": "Manual",
            "dependencies": ["a"],
            "outputs": {"artifacts": [{"name": "report", "path": "/outputs/report"}]},
        }
    )
    return flow


def test_a_spec_an_update_was_let_through_with_old_problems_is_not_remembered_as_accepted(
    accepted: AcceptedSpecs,
) -> None:
    # A flow stored before a rule existed may still be edited (ratcheting, validation/update.py); its spec
    # is not valid for that, and a new flow with it, under any name, is refused as a fresh one would be.
    stored = with_gate_artifact(base_flow())
    assert response(body(stored))["allowed"] is False
    edited = json.loads(json.dumps(stored))
    step(edited, "c")["timeoutSeconds"] = 7
    assert response(body(edited, "UPDATE", stored))["allowed"] is True
    assert len(accepted) == 0
    copied = json.loads(json.dumps(edited))
    copied["metadata"]["name"] = "another"
    answer = response(body(copied))
    assert answer["allowed"] is False
    assert "a Manual step runs no pod, so it has no files to store" in answer["status"]["message"]


@settings(max_examples=100, deadline=None)
@given(corrupted_examples())
def test_a_create_after_any_update_to_its_spec_gets_the_answer_a_fresh_check_gives(flow: Any) -> None:
    assume(isinstance(flow, dict) and isinstance(flow.get("spec"), dict))
    edited = {**flow, "spec": {**flow["spec"], "suspend": not flow["spec"].get("suspend")}}
    renamed = {**edited, "metadata": {"name": "another"}}
    try:
        update, create = body(edited, "UPDATE", flow), body(renamed)
    except (TypeError, ValueError):
        return  # not JSON: no review can carry it
    with patch.object(review_module, "ACCEPTED", AcceptedSpecs()):
        response(update)
        after_update = response(create)
    assert after_update == response(create)  # the fixture's memory never saw either


@counts_checks
def test_an_update_that_keeps_the_spec_does_not_check_it() -> None:
    old = base_flow()
    new = base_flow()
    new["metadata"]["labels"] = {"team": "data"}
    assert checks_of_spec(body(new, "UPDATE", old)) == 0
    assert response(body(new, "UPDATE", old))["allowed"] is True


def status_bounds_of(review: bytes) -> int:
    """How many times one review computes a spec's status bound (a walk of all its steps)."""
    with (
        patch.object(flow_rules, "status_bound", wraps=flow_rules.status_bound) as in_rules,
        patch.object(review_module, "status_bound", wraps=review_module.status_bound) as in_review,
    ):
        assert response(review)["allowed"] is True
    return in_rules.call_count + in_review.call_count


@counts_checks
@pytest.mark.parametrize("operation", ["CREATE", "UPDATE"])
def test_a_new_spec_s_status_bound_is_computed_once_and_remembered(
    accepted: AcceptedSpecs, operation: str
) -> None:
    old, new = base_flow(), base_flow()
    step(new, "c")["timeoutSeconds"] = 7
    assert status_bounds_of(body(new, operation, old if operation == "UPDATE" else None)) == 1
    (remembered,) = accepted._digests.values()
    assert remembered[0] == review_module.status_bound(new["spec"]) > 0


# --- argument values aside ----------------------------------------------------------------------------

UNSET = object()  # a parameter without a value
ARGUMENTS = {
    "parameters": [
        {"name": "env", "value": "dev", "enum": ["dev", "prod"]},
        {"name": "tag", "value": "v1"},
    ]
}


def with_argument_values(flow: Any, values: list[Any]) -> Any:
    """A copy of `flow` whose arguments' values are `values` in order (arguments added if it has none)."""
    flow = json.loads(json.dumps(flow))
    spec = flow["spec"]
    arguments = spec.setdefault("arguments", json.loads(json.dumps(ARGUMENTS)))
    params = arguments.get("parameters") if isinstance(arguments, dict) else None
    for param, value in zip(params if isinstance(params, list) else (), values, strict=False):
        if isinstance(param, dict):
            param.pop("value", None)
            if value is not UNSET:
                param["value"] = value
    return flow


argument_values = st.one_of(
    st.sampled_from(["dev", "prod", "", "x" * 4097, UNSET, 7, None, ["dev"]]), st.text(max_size=8)
)


@settings(max_examples=150, deadline=None)
@given(corrupted_examples(), st.lists(argument_values, max_size=3), st.lists(argument_values, max_size=3))
def test_a_spec_remembered_with_other_argument_values_gets_the_answer_a_fresh_check_gives(
    flow: Any, first: list[Any], second: list[Any]
) -> None:
    assume(isinstance(flow, dict) and isinstance(flow.get("spec"), dict))
    try:
        reviews = body(with_argument_values(flow, first)), body(with_argument_values(flow, second))
    except (TypeError, ValueError):
        return  # not JSON: no review can carry it
    with patch.object(review_module, "ACCEPTED", AcceptedSpecs()):
        response(reviews[0])
        remembered = response(reviews[1])
    with patch.object(review_module, "ACCEPTED", AcceptedSpecs()):
        assert remembered == response(reviews[1])


@counts_checks
def test_a_spec_submitted_with_other_argument_values_is_not_checked_again_but_its_values_are(
    accepted: AcceptedSpecs,
) -> None:
    # `zen-flow submit flow.yaml -p env=prod`: one spec, other values every time.
    flow = with_argument_values(base_flow(), ["dev", "v1"])
    step(flow, "b")["inputs"] = {"parameters": [{"name": "env", "valueFrom": {"argument": "env"}}]}
    assert checks_of_spec(body(flow)) == 1
    assert checks_of_spec(body(with_argument_values(flow, ["prod", "v2"]))) == 0
    denied = response(body(with_argument_values(flow, ["staging", "v2"])))
    assert denied["allowed"] is False
    assert [c["field"] for c in denied["status"]["details"]["causes"]] == [
        "spec.arguments.parameters[0].value"
    ]
    assert "staging" in denied["status"]["message"]
    # A name is not a value: a step reads the argument by it.
    renamed = json.loads(json.dumps(flow))
    renamed["spec"]["arguments"]["parameters"][0]["name"] = "environment"
    assert checks_of_spec(body(renamed)) == 1
    assert response(body(renamed))["status"]["details"]["causes"][0]["field"] == (
        "spec.steps[1].inputs.parameters[0].valueFrom.argument"
    )
    assert len(accepted) == 1


@counts_checks
def test_argument_values_that_make_a_remembered_spec_too_large_are_refused() -> None:
    # Steps that may each record 32 output values of 1 KiB: a status that may grow past 1 MB.
    outputs = {"parameters": [{"name": f"p{i}", "valueFrom": {"jsonPath": "$.succeeded"}} for i in range(32)]}
    flow = base_flow()
    for i in range(30):
        flow["spec"]["steps"].append({**step(flow, "d"), "name": f"e{i}", "outputs": outputs})
    params = [{"name": f"a{i}", "value": ""} for i in range(64)]
    flow["spec"]["arguments"] = {"parameters": params}
    small = body(flow)
    large = body(with_argument_values(flow, ["x" * 4096] * 64))
    with patch.object(review_module, "ACCEPTED", AcceptedSpecs()):
        fresh = response(small)["allowed"], response(large)
    assert fresh[0] is True
    assert fresh[1]["allowed"] is False
    assert "too large to run" in fresh[1]["status"]["message"]
    assert response(small)["allowed"] is True  # now remembered
    assert checks_of_spec(large) == 0
    assert response(large) == fresh[1]


@counts_checks
def test_an_update_to_other_argument_values_checks_the_values_alone() -> None:
    old = with_argument_values(base_flow(), ["dev", "v1"])
    assert response(body(old))["allowed"] is True
    new = with_argument_values(old, ["prod", "v2"])
    assert checks_of_spec(body(new, "UPDATE", old)) == 0
    assert response(body(new, "UPDATE", old))["allowed"] is True
    bad = with_argument_values(old, ["staging", "v2"])
    denied = response(body(bad, "UPDATE", old))
    assert [c["field"] for c in denied["status"]["details"]["causes"]] == [
        "spec.arguments.parameters[0].value"
    ]


def test_a_matrix_reading_an_argument_is_checked_again_with_other_argument_values() -> None:
    # Its values decide the steps (core/matrix.py): what the memory knows of the spec is not the answer.
    flow = with_argument_values(base_flow(), ["dev", '["eu","us"]'])
    step(flow, "d")["matrix"] = {"parameters": [{"name": "region", "valueFrom": {"argument": "tag"}}]}
    assert response(body(flow))["allowed"] is True
    denied = response(body(with_argument_values(flow, ["dev", "eu,us"])))
    assert denied["allowed"] is False
    assert [c["field"] for c in denied["status"]["details"]["causes"]] == [
        "spec.steps[4].matrix.parameters[0].valueFrom.argument"
    ]
