"""An invalid spec's errors are listed up to `MAX_ERRORS`, the first ones found, then one entry counting
the rest: in the validator's answer, the webhook's denial (message and causes) and what the controller
keeps per flow. A 1 MB spec of 250 steps with 500 unknown dependencies each has 125,001 errors; listed
whole they made a 6.9 MB denial and 16 MiB kept per flow."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any, cast

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from validation_samples import base_flow, job_step, make_flow, step

from zen_flow.api import JobFlow
from zen_flow.controller.validity import Validity
from zen_flow.validation import (
    ErrorType,
    validate_cronjobflow,
    validate_jobflow,
    validate_jobflowtemplate,
    validate_update,
)
from zen_flow.validation import errors as errors_module
from zen_flow.validation import steps as steps_module
from zen_flow.validation.errors import MAX_ERRORS, STOPPED, FieldError, invalid, listed
from zen_flow.webhook.envelope import AdmissionRequest
from zen_flow.webhook.review import deny_invalid, validate_review

UNLISTED = f"more errors not listed (at most {MAX_ERRORS} are)"
# The walk stops past MAX_ERRORS errors when they are only listed: no count of the rest.
STOPPED_HERE = f"Too many: {UNLISTED}; {STOPPED}"


def spy_not_found(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the unknown-dependency errors built from now on."""
    built: list[str] = []

    def not_found(path: str, value: Any, detail: str = "") -> FieldError:
        built.append(path)
        return errors_module.not_found(path, value, detail)

    monkeypatch.setattr(steps_module, "not_found", not_found)
    return built


def huge_invalid_flow() -> dict[str, Any]:
    """250 steps of 500 unknown dependencies (the CRD's maxItems): 125,000 errors and the size's."""
    return make_flow(*(job_step(f"s{i}", *(f"u{j}" for j in range(500))) for i in range(250)))


def review(obj: dict[str, Any]) -> bytes:
    request = {
        "uid": "u-1",
        "kind": {"group": "workflow.kube-zen.io", "version": "v1alpha1", "kind": "JobFlow"},
        "resource": {"group": "workflow.kube-zen.io", "version": "v1alpha1", "resource": "jobflows"},
        "name": obj["metadata"]["name"],
        "namespace": "default",
        "operation": "CREATE",
        "userInfo": {"username": "alice@example.com"},
        "object": obj,
        "dryRun": True,
    }
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    ).encode()


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=1, max_value=3 * MAX_ERRORS))
@example(MAX_ERRORS + 1)
def test_the_first_errors_are_listed_in_order_then_how_many_more(unknown: int) -> None:
    flow = make_flow(job_step("a", *(f"missing-{i}" for i in range(unknown))))
    errors = validate_jobflow(flow)
    shown = min(unknown, MAX_ERRORS)
    assert [e.path for e in errors[:shown]] == [f"spec.steps[0].dependencies[{i}]" for i in range(shown)]
    if unknown <= MAX_ERRORS:
        assert len(errors) == unknown
    else:
        assert len(errors) == MAX_ERRORS + 1
        # One error past those listed is the last one the walk finds: it ended, so the count is known.
        counted = f"Too many: {unknown - MAX_ERRORS}: {UNLISTED}"
        assert str(errors[-1]) == (counted if unknown == MAX_ERRORS + 1 else STOPPED_HERE)
        assert errors[-1].type == ErrorType.TOO_MANY
        every = validate_jobflow(flow, every=True)  # ratcheting's: all of them, counted
        assert len(every) == unknown
        assert errors[:-1] == every[:MAX_ERRORS]
    assert validate_jobflow(flow) == errors  # the same first problems every time


def test_the_validator_stops_looking_past_the_listed_errors_but_checks_the_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 125,000 unknown dependencies took 0.6 s of the webhook's CPU to report, though 100 were listed.
    built: list[str] = []

    def not_found(path: str, value: Any, detail: str = "") -> FieldError:
        built.append(path)
        return errors_module.not_found(path, value, detail)

    monkeypatch.setattr(steps_module, "not_found", not_found)
    flow = huge_invalid_flow()
    errors = validate_jobflow(flow)
    assert len(built) == MAX_ERRORS + 1  # of 125,000: the first step's, up to one past those listed
    assert str(errors[-2]).startswith("spec: Forbidden: too large to run")
    assert str(errors[-1]) == STOPPED_HERE
    built.clear()
    assert len(validate_jobflow(flow, every=True)) == 125_001  # ratcheting still compares them all
    assert len(built) == 125_000


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.sampled_from(["", "spec", "metadata.name", "spec.steps[0].name"]),
        min_size=MAX_ERRORS + 1,  # drawn past the cut every time
        max_size=3 * MAX_ERRORS,
    )
)
@example(["metadata.name"] * MAX_ERRORS + ["spec"])  # the size, found last, among the first
@example(["spec"] + ["metadata.name"] * MAX_ERRORS + [""])
def test_listing_keeps_whole_object_errors_and_the_first_others_in_order(paths: list[str]) -> None:
    errors = [FieldError(path, ErrorType.INVALID, i, f"problem {i}") for i, path in enumerate(paths)]
    shown = listed(errors)
    *kept, rest = shown
    assert len(kept) == MAX_ERRORS
    assert [e.value for e in kept] == sorted(e.value for e in kept)  # in the order found
    whole = [e for e in errors if e.path in ("", "spec")]
    assert [e for e in kept if e.path in ("", "spec")] == whole[:MAX_ERRORS]
    others = [e for e in errors if e.path not in ("", "spec")]
    assert [e for e in kept if e.path not in ("", "spec")] == others[: MAX_ERRORS - len(whole[:MAX_ERRORS])]
    assert (rest.type, rest.value) == (ErrorType.TOO_MANY, len(errors) - MAX_ERRORS)


def test_listing_as_few_errors_as_are_listed_keeps_them_all() -> None:
    errors = [FieldError("spec.steps[0].name", ErrorType.INVALID, i, "") for i in range(MAX_ERRORS)]
    assert listed(errors) == errors


def test_a_megabyte_of_unknown_dependencies_is_denied_in_kilobytes() -> None:
    answer = validate_review(review(huge_invalid_flow()))
    status = answer["response"]["status"]
    assert status["code"] == 422
    assert len(json.dumps(answer)) < 64 * 1024  # was 6,901,632 bytes
    lines = status["message"].splitlines()
    assert lines[0] == 'JobFlow "flow" is invalid:'
    assert lines[1] == 'spec.steps[0].dependencies[0]: Not found: "u0"'
    assert lines[-1] == STOPPED_HERE
    assert len(lines) == MAX_ERRORS + 2
    # The size, checked last, is listed though 125,000 errors came before it; the rest in order.
    assert lines[-2].startswith("spec: Forbidden: too large to run")
    assert lines[-3] == f'spec.steps[0].dependencies[{MAX_ERRORS - 2}]: Not found: "u{MAX_ERRORS - 2}"'
    causes = status["details"]["causes"]
    assert len(causes) == MAX_ERRORS + 1
    assert causes[-1] == {
        "reason": "FieldValueTooMany",
        "message": STOPPED_HERE,
        "field": "",
    }


async def test_the_controller_keeps_the_listed_errors_of_a_flow() -> None:
    flow = JobFlow.model_validate(
        {**huge_invalid_flow(), "metadata": {"name": "f", "namespace": "d", "uid": "1"}}
    )
    errors = await Validity(lambda key: None).checked(flow)
    assert len(errors) == MAX_ERRORS + 1  # was 125,001 strings, kept until the flow is deleted
    assert errors[0] == 'spec.steps[0].dependencies[0]: Not found: "u0"'
    assert errors[-1] == STOPPED_HERE


def test_an_update_adding_a_problem_past_the_listed_ones_is_still_refused() -> None:
    # Ratcheting forgives the old object's errors one by one: it compares every error, not the listed
    # ones, or a new problem after 100 old ones would pass as old.
    old = base_flow()
    step(old, "b")["dependencies"] = [f"missing-{i}" for i in range(MAX_ERRORS + 20)]
    new = json.loads(json.dumps(old))
    step(new, "d")["timeoutSeconds"] = 0
    errors = validate_update(old, new)
    assert [str(e) for e in errors] == [
        "spec.steps[4].timeoutSeconds: Invalid value: 0: must be greater than 0"
    ]


def test_a_cronjobflow_lists_its_template_errors_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    # Their own errors are listed with the template's, which stop as a flow's do.
    built = spy_not_found(monkeypatch)
    cron = {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "CronJobFlow",
        "metadata": {"name": "nightly", "namespace": "default"},
        "spec": {
            "schedule": "0 1 * * *",
            "jobFlowTemplate": {
                "spec": {"steps": [job_step("a", *(f"missing-{i}" for i in range(2 * MAX_ERRORS)))]}
            },
        },
    }
    errors = validate_cronjobflow(cron)
    assert len(errors) == MAX_ERRORS + 1
    assert errors[0].path == "spec.jobFlowTemplate.spec.steps[0].dependencies[0]"
    assert str(errors[-1]) == STOPPED_HERE
    assert len(built) == MAX_ERRORS + 1


def test_a_template_lists_its_errors_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    # Their own errors are listed with the template's, which stop as a flow's do.
    built = spy_not_found(monkeypatch)
    template = {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "JobFlowTemplate",
        "metadata": {"name": "etl", "namespace": "default"},
        "spec": {"steps": [job_step("a", *(f"missing-{i}" for i in range(2 * MAX_ERRORS)))]},
    }
    errors = validate_jobflowtemplate(template)
    assert len(errors) == MAX_ERRORS + 1
    assert errors[0].path == "spec.steps[0].dependencies[0]"
    assert str(errors[-1]) == STOPPED_HERE
    assert len(built) == MAX_ERRORS + 1


def test_a_create_lists_its_spec_and_approval_errors_together() -> None:
    # The spec's errors were listed (100 and a count), then the approvals' joined them: the denial cut
    # them again and said two counts, `Too many: ...` and `and 1 more errors`.
    flow = make_flow(job_step("a", *(f"missing-{i}" for i in range(2 * MAX_ERRORS))))
    flow["metadata"]["annotations"] = {"approve.workflow.kube-zen.io/gat": "true"}
    lines = validate_review(review(flow))["response"]["status"]["message"].splitlines()
    assert len(lines) == MAX_ERRORS + 2
    assert lines[-1] == STOPPED_HERE
    assert [line for line in lines if "more errors" in line] == [lines[-1]]


def test_a_denial_lists_at_most_the_listed_number_of_errors() -> None:
    # deny_invalid's own cap, whatever it is given (the validators list theirs first).
    errors = [invalid(f"spec.steps[{i}].name", i, "bad") for i in range(3 * MAX_ERRORS)]
    request = cast("AdmissionRequest", SimpleNamespace(uid="u-1", name="flow"))
    status = deny_invalid(request, errors)["response"]["status"]
    lines = status["message"].splitlines()
    assert len(lines) == MAX_ERRORS + 3  # the title, the causes shown and how many more
    assert lines[-1] == f"and {3 * MAX_ERRORS - MAX_ERRORS - 1} more errors"
    assert len(status["details"]["causes"]) == MAX_ERRORS + 2


def test_an_updates_own_errors_are_listed_before_the_specs_and_never_cut() -> None:
    # A started flow whose update changes its scheduled time and its steps, adding 150 bad dependencies:
    # the two errors the user must fix first were cut by the 100 dependency errors before them.
    old = base_flow()
    old["status"] = {"phase": "Running"}
    new = json.loads(json.dumps(old))
    new["metadata"]["annotations"] = {"workflow.kube-zen.io/scheduled-time": "2025-01-02T00:00:00Z"}
    step(new, "b")["dependencies"] = [f"missing-{i}" for i in range(150)]
    errors = [str(e) for e in validate_update(old, new)]
    assert errors[:2] == [
        "spec.steps: Forbidden: steps cannot change after the flow started",
        "metadata.annotations[workflow.kube-zen.io/scheduled-time]: Forbidden: "
        "the scheduled time cannot change after the flow started",
    ]
    assert errors[2] == 'spec.steps[1].dependencies[0]: Not found: "missing-0"'
    assert errors[-1].startswith("Too many: ")
    assert len(errors) == 2 + MAX_ERRORS + 1


def test_an_update_of_a_valid_flow_stops_checking_past_the_listed_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing stored can be forgiven, so a 125,000-error spec is walked no further than a CREATE's.
    built: list[str] = []

    def not_found(path: str, value: Any, detail: str = "") -> FieldError:
        built.append(path)
        return errors_module.not_found(path, value, detail)

    monkeypatch.setattr(steps_module, "not_found", not_found)
    old = make_flow(*(job_step(f"s{i}") for i in range(250)))
    new = huge_invalid_flow()
    new["metadata"] = old["metadata"]
    errors = validate_update(old, new)
    assert len(built) == MAX_ERRORS + 1  # of 125,000
    assert str(errors[-2]).startswith("spec: Forbidden: too large to run")
    assert str(errors[-1]) == STOPPED_HERE


def test_an_update_forgiving_old_problems_still_lists_at_most_the_listed_number() -> None:
    # The stored flow has problems, so both are checked to the end: the result is listed all the same.
    old = base_flow()
    step(old, "b")["dependencies"] = ["missing-old"]
    new = json.loads(json.dumps(old))
    step(new, "d")["dependencies"] = [f"missing-{i}" for i in range(MAX_ERRORS + 50)]
    errors = validate_update(old, new)
    assert len(errors) == MAX_ERRORS + 1
    assert str(errors[-1]) == f"Too many: 50: {UNLISTED}"
