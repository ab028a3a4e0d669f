"""An invalid spec's errors are listed up to `MAX_ERRORS`, the first ones found, then one entry counting
the rest: in the validator's answer, the webhook's denial (message and causes) and what the controller
keeps per flow. A 1 MB spec of 250 steps with 500 unknown dependencies each has 125,001 errors; listed
whole they made a 6.9 MB denial and 16 MiB kept per flow."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from validation_samples import base_flow, job_step, make_flow, step

from zen_flow.api import JobFlow
from zen_flow.controller.validity import Validity
from zen_flow.validation import ErrorType, validate_cronjobflow, validate_jobflow, validate_update
from zen_flow.validation.errors import MAX_ERRORS, FieldError, listed
from zen_flow.webhook.review import validate_review

UNLISTED = f"more errors not listed (at most {MAX_ERRORS} are)"


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
def test_the_first_errors_are_listed_in_order_then_how_many_more(unknown: int) -> None:
    flow = make_flow(job_step("a", *(f"missing-{i}" for i in range(unknown))))
    errors = validate_jobflow(flow)
    shown = min(unknown, MAX_ERRORS)
    assert [e.path for e in errors[:shown]] == [f"spec.steps[0].dependencies[{i}]" for i in range(shown)]
    if unknown <= MAX_ERRORS:
        assert len(errors) == unknown
    else:
        assert len(errors) == MAX_ERRORS + 1
        assert str(errors[-1]) == f"Too many: {unknown - MAX_ERRORS}: {UNLISTED}"
        assert errors[-1].type == ErrorType.TOO_MANY
    assert validate_jobflow(flow) == errors  # the same first problems every time


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.sampled_from(["", "spec", "metadata.name", "spec.steps[0].name"]), max_size=3 * MAX_ERRORS)
)
def test_listing_keeps_whole_object_errors_and_the_first_others_in_order(paths: list[str]) -> None:
    errors = [FieldError(path, ErrorType.INVALID, i, f"problem {i}") for i, path in enumerate(paths)]
    shown = listed(errors)
    if len(errors) <= MAX_ERRORS:
        assert shown == errors
        return
    *kept, rest = shown
    assert len(kept) == MAX_ERRORS
    assert [e.value for e in kept] == sorted(e.value for e in kept)  # in the order found
    whole = [e for e in errors if e.path in ("", "spec")]
    assert [e for e in kept if e.path in ("", "spec")] == whole[:MAX_ERRORS]
    others = [e for e in errors if e.path not in ("", "spec")]
    assert [e for e in kept if e.path not in ("", "spec")] == others[: MAX_ERRORS - len(whole[:MAX_ERRORS])]
    assert (rest.type, rest.value) == (ErrorType.TOO_MANY, len(errors) - MAX_ERRORS)


def test_a_megabyte_of_unknown_dependencies_is_denied_in_kilobytes() -> None:
    answer = validate_review(review(huge_invalid_flow()))
    status = answer["response"]["status"]
    assert status["code"] == 422
    assert len(json.dumps(answer)) < 64 * 1024  # was 6,901,632 bytes
    lines = status["message"].splitlines()
    assert lines[0] == 'JobFlow "flow" is invalid:'
    assert lines[1] == 'spec.steps[0].dependencies[0]: Not found: "u0"'
    assert lines[-1] == f"Too many: {125_001 - MAX_ERRORS}: {UNLISTED}"
    assert len(lines) == MAX_ERRORS + 2
    # The size, checked last, is listed though 125,000 errors came before it; the rest in order.
    assert lines[-2].startswith("spec: Forbidden: too large to run")
    assert lines[-3] == f'spec.steps[0].dependencies[{MAX_ERRORS - 2}]: Not found: "u{MAX_ERRORS - 2}"'
    causes = status["details"]["causes"]
    assert len(causes) == MAX_ERRORS + 1
    assert causes[-1] == {
        "reason": "FieldValueTooMany",
        "message": f"Too many: {125_001 - MAX_ERRORS}: {UNLISTED}",
        "field": "",
    }


def test_the_controller_keeps_the_listed_errors_of_a_flow() -> None:
    flow = JobFlow.model_validate(
        {**huge_invalid_flow(), "metadata": {"name": "f", "namespace": "d", "uid": "1"}}
    )
    errors = Validity(lambda key: None).errors(flow)
    assert len(errors) == MAX_ERRORS + 1  # was 125,001 strings, kept until the flow is deleted
    assert errors[0] == 'spec.steps[0].dependencies[0]: Not found: "u0"'
    assert errors[-1] == f"Too many: {125_001 - MAX_ERRORS}: {UNLISTED}"


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


def test_a_cronjobflow_lists_its_template_errors_the_same_way() -> None:
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
    assert str(errors[-1]) == f"Too many: {MAX_ERRORS}: {UNLISTED}"
