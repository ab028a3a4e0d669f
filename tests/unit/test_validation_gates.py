"""Validation of `spec.steps[].approval`: Manual steps only, approvers as RBAC subjects, and a `required`
count the listed approvers can meet."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from validation_samples import base_flow, step

from zen_flow.api import JobFlow
from zen_flow.validation import validate_jobflow


def with_approval(approval: Any, name: str = "gate") -> list[str]:
    flow = base_flow()
    step(flow, name)["approval"] = approval
    return [str(e) for e in validate_jobflow(flow)]


def test_approvers_and_a_count_they_can_meet_are_valid() -> None:
    assert (
        with_approval({"approvers": [{"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"}]})
        == []
    )
    assert with_approval({"required": 2}) == []  # anyone RBAC lets decide; two of them
    assert with_approval({"approvers": [{"kind": "Group", "name": "sre"}], "required": 3}) == []
    assert with_approval({}) == []


def test_approval_is_refused_on_a_job_step_naming_the_field() -> None:
    assert with_approval({"required": 1}, name="b") == [
        "spec.steps[1].approval: Forbidden: only a Manual step is approved: a Job step takes no approval"
    ]


def test_more_required_approvals_than_listed_users_is_refused() -> None:
    assert with_approval({"approvers": [{"kind": "User", "name": "alice"}], "required": 2}) == [
        "spec.steps[2].approval.required: Invalid value: 2: more than the 1 User approver(s) listed, and no "
        "Group: it could never be met"
    ]


@pytest.mark.parametrize(
    ("approval", "error"),
    [
        ({"required": 0}, "spec.steps[2].approval.required: Invalid value: 0: must be at least 1"),
        (
            {"required": "2"},
            'spec.steps[2].approval.required: Invalid value: "2": must be an integer, not string',
        ),
        (
            {"approvers": [{"kind": "ServiceAccount", "name": "ci"}]},
            'spec.steps[2].approval.approvers[0].kind: Unsupported value: "ServiceAccount": '
            'supported values: "User", "Group"',
        ),
        ({"approvers": [{"kind": "User"}]}, "spec.steps[2].approval.approvers[0].name: Required value"),
        (
            {"approvers": [{"kind": "User", "name": "a"}, {"kind": "User", "name": "a"}]},
            'spec.steps[2].approval.approvers[1]: Duplicate value: "User a"',
        ),
        (
            {"approvers": [{"kind": "User", "name": "Doe, John"}]},
            'spec.steps[2].approval.approvers[0].name: Invalid value: "Doe, John": a user name with a comma '
            "or spaces around it cannot be counted apart",
        ),
        (
            {"approvers": [{"kind": "User", "name": "alice "}]},
            'spec.steps[2].approval.approvers[0].name: Invalid value: "alice ": a user name with a comma '
            "or spaces around it cannot be counted apart",
        ),
        (
            {"approvers": "alice"},
            'spec.steps[2].approval.approvers: Invalid value: "alice": must be an array, not string',
        ),
        ("yes", 'spec.steps[2].approval: Invalid value: "yes": must be an object, not string'),
    ],
)
def test_malformed_approval_is_refused_naming_the_field(approval: Any, error: str) -> None:
    assert with_approval(approval) == [error]


def test_at_most_fifty_approvers() -> None:
    many = [{"kind": "User", "name": f"u{i}"} for i in range(51)]
    assert with_approval({"approvers": many}) == [
        "spec.steps[2].approval.approvers: Too many: 51: must have at most 50 items"
    ]


def test_a_flow_whose_approvals_could_outgrow_etcd_is_refused() -> None:
    # Each approval a gate needs is recorded in its status (approvedBy, the audit): 400 gates needing 50
    # approvals each could not be stored; needing one each, they can.
    def gates(required: int) -> list[str]:
        flow = base_flow()
        flow["spec"]["steps"] = [
            {"name": f"g{i}", "type": "Manual", "approval": {"required": required}} for i in range(400)
        ]
        return [str(e) for e in validate_jobflow(flow)]

    assert gates(1) == []
    [error] = gates(50)
    assert error.startswith("spec: ")
    assert "etcd" in error


subjects = st.lists(
    st.tuples(st.sampled_from(["User", "Group"]), st.sampled_from(["alice", "bob", "carol", "sre"])),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(subjects, st.one_of(st.none(), st.integers(-2, 8)))
def test_an_approval_is_valid_exactly_when_its_count_can_be_met(
    listed: list[tuple[str, str]], required: int | None
) -> None:
    approval: dict[str, Any] = {"approvers": [{"kind": k, "name": n} for k, n in listed]}
    if required is not None:
        approval["required"] = required
    errors = with_approval(approval)
    duplicates = len(listed) != len(set(listed))
    users = {n for k, n in listed if k == "User"}
    groups = any(k == "Group" for k, _ in listed)
    meetable = required is None or (required >= 1 and (groups or not users or required <= len(users)))
    assert (errors == []) == (meetable and not duplicates), errors
    assert all(e.startswith("spec.steps[2].approval") for e in errors)
    if not errors:  # and the controller reads what the validator admitted
        flow = base_flow()
        step(flow, "gate")["approval"] = approval
        gate = JobFlow.model_validate(flow).spec.steps[2]
        assert gate.approval is not None
        assert gate.approval.needed == (required or 1)
