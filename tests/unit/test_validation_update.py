"""UPDATE rules: spec.steps is immutable once the flow started; everything else stays changeable."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from validation_samples import ErrorType, Flow, base_flow, job_step, step

from zen_flow.validation import COMPILED, has_started, validate_update
from zen_flow.validation import update as update_module

E = ErrorType
FORBIDDEN_LINE = "spec.steps: Forbidden: steps cannot change after the flow started"


def started(phase: str = "Running", step_phases: dict[str, str] | None = None) -> Flow:
    flow = base_flow()
    flow["status"] = {
        "phase": phase,
        "steps": [{"name": n, "phase": p} for n, p in (step_phases or {}).items()],
    }
    return flow


def edited(flow: Flow) -> Flow:
    new = copy.deepcopy(flow)
    new["spec"]["steps"].append(job_step("e", "d"))
    return new


@pytest.mark.parametrize(
    "status",
    [
        None,
        {},
        {"phase": "Pending"},
        {"phase": "Pending", "steps": [{"name": "a", "phase": "Pending"}]},
        {"steps": [{"name": "a"}]},
    ],
)
def test_steps_may_change_before_the_flow_started(status: Any) -> None:
    old = base_flow()
    if status is not None:
        old["status"] = status
    assert not has_started(old)
    assert validate_update(old, edited(old)) == []


@pytest.mark.parametrize(
    "old",
    [
        started("Running"),
        started("Suspended"),
        started("Succeeded"),
        started("Pending", {"a": "Running"}),
        started("", {"a": "Succeeded", "b": "Pending"}),
    ],
    ids=["running", "suspended", "succeeded", "step-running", "step-done"],
)
def test_steps_may_not_change_after_the_flow_started(old: Flow) -> None:
    assert has_started(old)
    errors = validate_update(old, edited(old))
    assert [str(e) for e in errors] == [FORBIDDEN_LINE]


def test_editing_one_field_of_a_step_counts_as_a_change() -> None:
    old = started()
    new = copy.deepcopy(old)
    step(new, "b")["timeoutSeconds"] = 60
    assert [str(e) for e in validate_update(old, new)] == [FORBIDDEN_LINE]


@pytest.mark.parametrize("started_flow", [True, False], ids=["started", "pending"])
def test_arguments_are_frozen_once_the_flow_started(started_flow: bool) -> None:
    old = started("Running" if started_flow else "Pending")
    old["spec"]["arguments"] = {"parameters": [{"name": "env", "value": "staging"}]}
    new = copy.deepcopy(old)
    new["spec"]["arguments"]["parameters"][0]["value"] = "production"
    errors = [str(e) for e in validate_update(old, new)]
    if started_flow:
        assert errors == ["spec.arguments: Forbidden: arguments cannot change after the flow started"]
    else:
        assert errors == []


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f["spec"].update(suspend=True),
        lambda f: f["spec"].update(executionPolicy={"ttlSecondsAfterFinished": 60}),
        lambda f: f["metadata"].update(annotations={"approve.workflow.kube-zen.io/gate": "true"}),
        lambda f: f["metadata"].update(labels={"team": "data"}, finalizers=[]),
        lambda f: f["status"].update(phase="Failed"),
    ],
    ids=["suspend", "ttl", "approve", "labels", "status"],
)
def test_other_changes_stay_possible_after_start(change: Any) -> None:
    old = started()
    new = copy.deepcopy(old)
    change(new)
    assert validate_update(old, new) == []


def test_the_new_object_is_validated_too() -> None:
    old = started()
    new = copy.deepcopy(old)
    new["spec"]["executionPolicy"] = {"backoffLimit": -1}
    assert [e.path for e in validate_update(old, new)] == ["spec.executionPolicy.backoffLimit"]


def test_errors_of_an_unchanged_spec_are_not_reported_so_old_flows_stay_manageable() -> None:
    old = started()
    step(old, "b")["timeoutSeconds"] = 0  # stored before the rule existed
    new = copy.deepcopy(old)
    new["metadata"]["annotations"] = {"approve.workflow.kube-zen.io/gate": "true"}
    assert validate_update(old, new) == []
    new["metadata"]["annotations"] = {"approve.workflow.kube-zen.io/nope": "true"}
    assert [e.path for e in validate_update(old, new)] == [
        "metadata.annotations[approve.workflow.kube-zen.io/nope]"
    ]


def test_steps_removed_after_start_are_forbidden_and_reported_with_new_errors() -> None:
    old = started()
    new = copy.deepcopy(old)
    new["spec"]["steps"] = new["spec"]["steps"][:1]
    new["spec"]["suspend"] = "yes"
    assert [str(e).split(":")[0] for e in validate_update(old, new)] == ["spec.steps", "spec.suspend"]


@pytest.mark.parametrize("old", [None, [], "x", {"status": "Running"}, {"status": {"steps": "x"}}])
def test_a_malformed_old_object_does_not_raise(old: Any) -> None:
    assert validate_update(old, base_flow()) == []


def test_untouched_metadata_problems_do_not_block_unrelated_updates() -> None:
    old = started()
    old["metadata"]["labels"] = {"bad key": "x"}  # stored before the rule existed
    old["metadata"]["finalizers"] = ["example.com/cleanup"]
    new = copy.deepcopy(old)
    new["metadata"]["finalizers"] = []
    assert validate_update(old, new) == []
    new["metadata"]["labels"] = {"bad key": "x", "other bad": "y"}
    assert [e.path for e in validate_update(old, new)] == ["metadata.labels", "metadata.labels"]


def test_approval_annotations_are_rechecked_when_the_steps_change() -> None:
    old = base_flow()
    old["metadata"]["annotations"] = {"approve.workflow.kube-zen.io/gate": "true"}
    new = copy.deepcopy(old)
    new["spec"]["steps"] = [s for s in new["spec"]["steps"] if s["name"] != "gate"]
    step(new, "c")["dependencies"] = ["b"]
    assert [e.path for e in validate_update(old, new)] == [
        "metadata.annotations[approve.workflow.kube-zen.io/gate]"
    ]


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f["spec"].update(suspend=True),
        lambda f: f["spec"].update(executionPolicy={"backoffLimit": 3}),
    ],
    ids=["suspend", "backoff"],
)
def test_a_started_flow_that_breaks_a_later_rule_can_still_be_suspended_and_tuned(change: Any) -> None:
    # Stored before the rule existed: `d`'s `when` names a step that is not among its dependencies.
    old = started()
    step(old, "d")["when"] = "steps.c.phase == 'Succeeded'"
    assert validate_update(old, copy.deepcopy(old)) == []
    new = copy.deepcopy(old)
    change(new)
    assert validate_update(old, new) == []
    # What the update itself breaks is still refused, the old problem still not reported.
    new["spec"]["executionPolicy"] = {"backoffLimit": -1}
    assert [e.path for e in validate_update(old, new)] == ["spec.executionPolicy.backoffLimit"]


@pytest.mark.parametrize("started_flow", [True, False], ids=["started", "pending"])
def test_the_flows_own_locks_are_frozen_once_it_started(started_flow: bool) -> None:
    # It took them when it started and holds what it took until it ends.
    old = started("Running" if started_flow else "Pending")
    old["spec"]["synchronization"] = {"mutexes": [{"name": "db"}]}
    new = copy.deepcopy(old)
    new["spec"]["synchronization"] = {"mutexes": [{"name": "other"}]}
    errors = [str(e) for e in validate_update(old, new)]
    if started_flow:
        assert errors == [
            "spec.synchronization: Forbidden: synchronization cannot change after the flow started"
        ]
    else:
        assert errors == []


@pytest.mark.skipif(
    COMPILED, reason="counts validate_jobflow calls by patching it (compiled calls are direct)"
)
def test_the_stored_flows_problems_are_found_once_to_forgive_them(monkeypatch: pytest.MonkeyPatch) -> None:
    # A flow stored before a rule existed (`d`'s `when` names a step outside its dependencies) whose
    # update breaks another: the stored one is walked once, its problem forgiven, the new one said.
    old = started()
    step(old, "d")["when"] = "steps.c.phase == 'Succeeded'"
    new = copy.deepcopy(old)
    new["spec"]["executionPolicy"] = {"backoffLimit": -1}
    walked: list[object] = []
    real = update_module.validate_jobflow

    def counting(obj: Any, **kwargs: Any) -> Any:
        walked.append(obj)
        return real(obj, **kwargs)

    monkeypatch.setattr(update_module, "validate_jobflow", counting)
    assert [e.path for e in validate_update(old, new)] == ["spec.executionPolicy.backoffLimit"]
    assert sum(obj is old for obj in walked) == 1
