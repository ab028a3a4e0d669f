"""Validation of values supplied at a Manual gate: `valueFrom.supplied` in the spec (what the webhook and the
controller both check), the `values.workflow.kube-zen.io/<step>` annotation and the approvals that need a
value (admission and `zen-flow validate`), and values frozen once the gate carries an approval or the
status records it decided."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from validation_samples import base_flow, step

from zen_flow.validation import validate_approvals, validate_jobflow, validate_update

VALUES = "values.workflow.kube-zen.io/gate"
APPROVE = "approve.workflow.kube-zen.io/gate"


def gated(*params: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    flow = base_flow()
    flow["metadata"]["name"] = "rel"
    step(flow, "gate")["outputs"] = {"parameters": list(params)}
    if annotations:
        flow["metadata"]["annotations"] = dict(annotations)
    return flow


def env(**source: Any) -> dict[str, Any]:
    return {"name": "env", "valueFrom": {"supplied": source}}


def spec_errors(flow: dict[str, Any]) -> list[str]:
    return [str(e) for e in validate_jobflow(flow)]


def admission(flow: dict[str, Any]) -> list[str]:
    return [str(e) for e in validate_jobflow(flow) + validate_approvals(flow)]


# --- the spec --------------------------------------------------------------------------------------------


def test_a_gate_with_supplied_outputs_read_by_a_later_step_is_valid() -> None:
    flow = gated(
        env(enum=["staging", "prod"], default="staging", description="where"),
        {
            "name": "version",
            "valueFrom": {"supplied": {}},
        },
    )
    step(flow, "c")["inputs"] = {
        "parameters": [{"name": "env", "valueFrom": {"jsonPath": "gate:$.outputs.parameters.env"}}]
    }
    step(flow, "c")["when"] = "steps.gate.outputs.parameters.version != ''"
    assert spec_errors(flow) == []


def test_supplied_is_refused_on_a_job_step_naming_the_field() -> None:
    flow = base_flow()
    step(flow, "b")["outputs"] = {"parameters": [env()]}
    assert spec_errors(flow) == [
        "spec.steps[1].outputs.parameters[0].valueFrom.supplied: Forbidden: only a Manual step's outputs are "
        "supplied at its approval: a Job step's read its Job"
    ]


@pytest.mark.parametrize("source", [{"jsonPath": "$.succeeded"}, {"terminationMessage": {}}])
def test_a_job_source_is_refused_on_a_manual_step_naming_the_field(source: dict[str, Any]) -> None:
    flow = gated({"name": "env", "valueFrom": source})
    field = next(iter(source))
    assert spec_errors(flow) == [
        f"spec.steps[2].outputs.parameters[0].valueFrom.{field}: Forbidden: a Manual step runs no Job: its "
        "outputs are values supplied when it is approved (valueFrom.supplied)"
    ]


def test_a_default_outside_the_enum_is_refused() -> None:
    assert spec_errors(gated(env(enum=["staging", "prod"], default="qa"))) == [
        'spec.steps[2].outputs.parameters[0].valueFrom.supplied.default: Unsupported value: "qa": supported '
        'values: "staging", "prod"; the default must be one of enum'
    ]


def test_supplied_beside_another_source_is_refused() -> None:
    flow = gated({"name": "env", "valueFrom": {"jsonPath": "$.succeeded", "supplied": {}}})
    assert spec_errors(flow) == [
        "spec.steps[2].outputs.parameters[0].valueFrom.supplied: Forbidden: may not be specified together "
        "with jsonPath: an output reads jsonPath or terminationMessage (a Job step), or supplied (a Manual "
        "step)"
    ]


def test_a_duplicate_enum_value_and_a_wrong_type_are_refused() -> None:
    assert spec_errors(gated(env(enum=["prod", "prod", 3]))) == [
        'spec.steps[2].outputs.parameters[0].valueFrom.supplied.enum[1]: Duplicate value: "prod"',
        "spec.steps[2].outputs.parameters[0].valueFrom.supplied.enum[2]: Invalid value: 3: must be a "
        "string, not integer",
    ]


# --- the annotation --------------------------------------------------------------------------------------


def test_values_of_declared_parameters_within_the_enum_are_accepted() -> None:
    flow = gated(env(enum=["staging", "prod"]), annotations={VALUES: '{"env":"prod"}', APPROVE: "true"})
    assert admission(flow) == []


@pytest.mark.parametrize(
    ("values", "error"),
    [
        (
            '{"env":"qa"}',
            "metadata.annotations[values.workflow.kube-zen.io/gate]: Invalid value: \"qa\": value 'qa' of "
            "parameter 'env' is not one of: staging, prod",
        ),
        (
            '{"envv":"prod"}',
            'metadata.annotations[values.workflow.kube-zen.io/gate]: Invalid value: "envv": step gate has no '
            "supplied output parameter of that name (declared: env)",
        ),
        (
            '{"env":1}',
            'metadata.annotations[values.workflow.kube-zen.io/gate]: Invalid value: "{\\"env\\":1}": must '
            'be a JSON object of strings, e.g. {"env": "prod"}: \'env\' is not a string',
        ),
        (
            "prod",
            'metadata.annotations[values.workflow.kube-zen.io/gate]: Invalid value: "prod": must be a JSON '
            'object of strings, e.g. {"env": "prod"}: it is not JSON',
        ),
    ],
)
def test_values_the_gate_cannot_take_are_refused(values: str, error: str) -> None:
    assert admission(gated(env(enum=["staging", "prod"]), annotations={VALUES: values})) == [error]


def test_a_value_over_one_kib_is_refused() -> None:
    errors = admission(gated(env(), annotations={VALUES: json.dumps({"env": "x" * 1025})}))
    assert len(errors) == 1
    assert "value of parameter 'env' has 1025 bytes, more than the limit of 1024" in errors[0]


def test_a_value_utf8_cannot_encode_is_refused_not_a_crash_of_admission() -> None:
    # Valid ASCII JSON that Python reads into a lone surrogate: value_problem's byte count raised.
    errors = admission(gated(env(), annotations={VALUES: '{"env":"\\udc80"}'}))
    assert len(errors) == 1
    assert "'env' holds \\udc80, a lone surrogate, which is no Unicode text" in errors[0]


def test_values_on_a_job_step_or_no_step_are_refused() -> None:
    flow = gated(env())
    flow["metadata"]["annotations"] = {
        "values.workflow.kube-zen.io/b": '{"env":"prod"}',
        "values.workflow.kube-zen.io/zzz": "{}",
    }
    assert sorted(admission(flow)) == [
        'metadata.annotations[values.workflow.kube-zen.io/b]: Invalid value: "b": only a Manual step is '
        "given values at its approval",
        'metadata.annotations[values.workflow.kube-zen.io/zzz]: Not found: "zzz": this flow has no step of '
        "that name",
    ]


def test_an_approval_without_a_needed_value_is_refused_naming_the_parameter() -> None:
    flow = gated(env(enum=["staging", "prod"]), annotations={APPROVE: "true"})
    assert admission(flow) == [
        "metadata.annotations[approve.workflow.kube-zen.io/gate]: Required value: step gate needs a value "
        "for parameter 'env': zen-flow approve rel gate -p env=..."
    ]
    # A default stands in for a value; values without an approval wait for one; a rejection takes none.
    assert admission(gated(env(default="staging"), annotations={APPROVE: "true"})) == []
    assert admission(gated(env(), annotations={VALUES: '{"env":"x"}'})) == []
    rejected = {APPROVE: "true", "reject.workflow.kube-zen.io/gate": "true"}
    assert admission(gated(env(), annotations=rejected)) == []


# --- frozen once decided ---------------------------------------------------------------------------------


def decided(phase: str) -> dict[str, Any]:
    flow = gated(env(), annotations={VALUES: '{"env":"a"}', APPROVE: "true"})
    flow["status"] = {"phase": "Running", "steps": [{"name": "gate", "phase": phase}]}
    return flow


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
@pytest.mark.parametrize("new", ['{"env":"b"}', None])
def test_the_values_of_a_decided_gate_cannot_change(phase: str, new: str | None) -> None:
    old = decided(phase)
    changed = copy.deepcopy(old)
    if new is None:
        del changed["metadata"]["annotations"][VALUES]
        changed["metadata"]["annotations"][APPROVE] = "false"  # the approval taken back too: still frozen
    else:
        changed["metadata"]["annotations"][VALUES] = new
    assert [str(e) for e in validate_update(old, changed)] == [
        f"metadata.annotations[values.workflow.kube-zen.io/gate]: Forbidden: step gate is {phase}: its "
        "values are recorded with its decision and cannot change until a rerun reaches it again"
    ]


@pytest.mark.parametrize("phase", ["Pending", "PendingApproval", "Skipped"])
def test_the_values_of_an_undecided_unapproved_gate_may_change(phase: str) -> None:
    old = decided(phase)
    del old["metadata"]["annotations"][APPROVE]
    changed = copy.deepcopy(old)
    changed["metadata"]["annotations"][VALUES] = '{"env":"b"}'
    assert validate_update(old, changed) == []


# --- frozen once approved --------------------------------------------------------------------------------

APPROVED_FROZEN = (
    "metadata.annotations[values.workflow.kube-zen.io/gate]: Forbidden: step gate carries an approval "
    "(approve.workflow.kube-zen.io/gate), which approved the values present when it was given: they "
    "cannot change while it stands; take the approvals back first (kubectl annotate jobflow rel "
    "approve.workflow.kube-zen.io/gate-), then set the values and approve again"
)


def tallied(approve: str | None, phase: str = "PendingApproval") -> dict[str, Any]:
    """A gate two of alice, bob and carol must approve, reached; `approve`: its approve annotation."""
    flow = gated(env(enum=["staging", "prod"]))
    step(flow, "gate")["approval"] = {"required": 2}
    annotations = {VALUES: '{"env":"staging"}'}
    if approve is not None:
        annotations |= {APPROVE: approve, "approved-by.workflow.kube-zen.io/gate": "alice,bob"}
    flow["metadata"]["annotations"] = annotations
    flow["status"] = {"phase": "Paused", "steps": [{"name": "gate", "phase": phase}]}
    return flow


@pytest.mark.parametrize("phase", ["Pending", "PendingApproval"])
@pytest.mark.parametrize("new", ['{"env":"prod"}', None])
def test_once_a_tallied_gate_carries_approvals_one_user_cannot_change_its_values(
    phase: str, new: str | None
) -> None:
    # alice and bob approved staging; carol, before the controller's plan (or before the gate is
    # reached), must not turn it into an approval of prod by them.
    old = tallied("true-2", phase)
    changed = copy.deepcopy(old)
    if new is None:
        del changed["metadata"]["annotations"][VALUES]  # also refused as lacking a value: not only that
    else:
        changed["metadata"]["annotations"][VALUES] = new
    assert APPROVED_FROZEN in [str(e) for e in validate_update(old, changed)]


def test_an_approval_that_comes_with_new_values_is_refused_once_another_stands() -> None:
    old = tallied("true-1")
    changed = copy.deepcopy(old)
    changed["metadata"]["annotations"] |= {APPROVE: "true-2", VALUES: '{"env":"prod"}'}
    assert [str(e) for e in validate_update(old, changed)] == [APPROVED_FROZEN]


def test_the_first_approval_sets_the_values_and_an_approval_taken_back_unfreezes_them() -> None:
    old = tallied(None)
    first = copy.deepcopy(old)
    first["metadata"]["annotations"] |= {APPROVE: "true-1", VALUES: '{"env":"prod"}'}
    assert validate_update(old, first) == []
    # a value that approves nothing stands for no approval: the values may change again
    withdrawn = tallied("false")
    changed = copy.deepcopy(withdrawn)
    changed["metadata"]["annotations"][VALUES] = '{"env":"prod"}'
    assert validate_update(withdrawn, changed) == []


def test_the_values_of_a_single_approval_gate_freeze_with_its_approval_before_it_is_reached() -> None:
    old = decided("Pending")  # approved in advance, with env=a
    changed = copy.deepcopy(old)
    changed["metadata"]["annotations"][VALUES] = '{"env":"b"}'
    assert [str(e) for e in validate_update(old, changed)] == [APPROVED_FROZEN]
    # `true-…` approves nothing on a gate without `approval`: no approval stands
    old["metadata"]["annotations"][APPROVE] = "true-1"
    assert validate_update(old, changed) == []


def test_a_flow_created_with_its_approval_and_values_is_accepted() -> None:
    flow = gated(env(), annotations={VALUES: '{"env":"a"}', APPROVE: "true"})
    assert admission(flow) == []


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4))
def test_values_are_accepted_exactly_when_each_is_a_declared_name_with_an_allowed_value(
    values: dict[str, str],
) -> None:
    allowed = ["staging", "prod"]
    flow = gated(env(enum=allowed), {"name": "note", "valueFrom": {"supplied": {}}})
    flow["metadata"]["annotations"] = {VALUES: json.dumps(values)}
    valid = set(values) <= {"env", "note"} and values.get("env", "prod") in allowed
    assert (admission(flow) == []) == valid
