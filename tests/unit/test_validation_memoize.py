"""Admission of `memoize`: Job steps only, no output artifacts, a key (whose placeholders name inputs the
controller can read), a Go duration maxAge and a DNS-1123 ConfigMap name, each error at its field."""

from __future__ import annotations

from typing import Any

import pytest
from test_webhook_review import review
from validation_samples import ErrorType, assert_error, assert_valid, job_step, make_flow, manual_step

from zen_flow.webhook.review import validate_review

E = ErrorType
MEMO = "spec.steps[0].memoize"


def memoize(**fields: Any) -> dict[str, Any]:
    return {
        "key": "build-{{inputs.parameters.version}}",
        "cache": {"configMap": {"name": "build-cache"}},
        **fields,
    }


def memoized(memo: Any = None, **fields: Any) -> dict[str, Any]:
    fields.setdefault("inputs", {"parameters": [{"name": "version", "value": "v1"}]})
    return job_step("a", memoize=memoize() if memo is None else memo, **fields)


def test_a_memoized_job_step_is_valid() -> None:
    assert_valid(make_flow(memoized(memoize(maxAge="24h")), job_step("b", "a")))


def test_a_key_with_the_flow_context_and_no_max_age_is_valid() -> None:
    memo = memoize(key="{{.JobFlow.Namespace}}/{{.StepName}}/{{ inputs.parameters.version }}")
    assert_valid(make_flow(memoized(memo)))


def test_a_manual_step_cannot_be_memoized() -> None:
    flow = make_flow(job_step("a"), manual_step("gate", "a", memoize=memoize()))
    assert_error(flow, "spec.steps[1].memoize", E.FORBIDDEN, "a Manual step runs nothing")


def test_a_step_with_output_artifacts_cannot_be_memoized() -> None:
    outputs = {"artifacts": [{"name": "out", "path": "/work/out", "s3": {"bucket": "results"}}]}
    assert_error(
        make_flow(memoized(outputs=outputs)), MEMO, E.FORBIDDEN, "output artifacts cannot be memoized"
    )


@pytest.mark.parametrize(
    ("memo", "path", "kind", "text"),
    [
        ({"cache": {"configMap": {"name": "c"}}}, MEMO + ".key", E.REQUIRED, ""),
        (memoize(key=""), MEMO + ".key", E.REQUIRED, ""),
        (memoize(key="k" * 1025), MEMO + ".key", E.TOO_LONG, ""),
        (memoize(maxAge="1 day"), MEMO + ".maxAge", E.INVALID, "Go duration"),
        (memoize(maxAge="0s"), MEMO + ".maxAge", E.INVALID, "greater than 0"),
        ({"key": "k"}, MEMO + ".cache", E.REQUIRED, ""),
        ({"key": "k", "cache": {}}, MEMO + ".cache.configMap", E.REQUIRED, ""),
        ({"key": "k", "cache": {"configMap": {}}}, MEMO + ".cache.configMap.name", E.REQUIRED, ""),
        (
            {"key": "k", "cache": {"configMap": {"name": "Build_Cache"}}},
            MEMO + ".cache.configMap.name",
            E.INVALID,
            "",
        ),
        ("yes", MEMO, E.INVALID, ""),
    ],
    ids=[
        "no-key",
        "empty-key",
        "long-key",
        "bad-age",
        "zero-age",
        "no-cache",
        "no-config-map",
        "no-name",
        "bad-name",
        "not-object",
    ],
)
def test_field_errors_name_their_field(memo: Any, path: str, kind: ErrorType, text: str) -> None:
    assert_error(make_flow(memoized(memo)), path, kind, text)


def test_a_key_placeholder_must_name_an_input() -> None:
    flow = make_flow(memoized(memoize(key="{{inputs.parameters.nope}}")))
    assert_error(flow, MEMO + ".key", E.NOT_FOUND, 'no input parameter "nope"')


@pytest.mark.parametrize("source", ["configMapKeyRef", "secretKeyRef"])
def test_a_key_cannot_read_a_parameter_only_the_pod_knows(source: str) -> None:
    inputs = {"parameters": [{"name": "token", "valueFrom": {source: {"name": "x", "key": "y"}}}]}
    flow = make_flow(memoized(memoize(key="t-{{inputs.parameters.token}}"), inputs=inputs))
    assert_error(flow, MEMO + ".key", E.INVALID, "only the pod reads")


def test_the_webhook_denies_a_bad_memoize_naming_the_field() -> None:
    flow = make_flow(memoized(memoize(maxAge="forever")))
    response = validate_review(review(flow))["response"]
    assert response["allowed"] is False
    assert f"{MEMO}.maxAge" in response["status"]["message"]


def reader(source: str) -> dict[str, Any]:
    return job_step("b", "a", inputs={"parameters": [{"name": "n", "valueFrom": {"jsonPath": source}}]})


def test_a_dependent_cannot_read_a_memoized_steps_job_status() -> None:
    # A cache hit runs no Job: the dependent worked after a run and failed the flow after a hit.
    path = "spec.steps[1].inputs.parameters[0].valueFrom.jsonPath"
    error = assert_error(make_flow(memoized(), reader("a:$.succeeded")), path, E.INVALID, "is memoized")
    assert '"$.succeeded"' in str(error)
    assert "a:$.outputs.parameters.NAME" in str(error)
    assert_error(make_flow(memoized(), reader("a:$.status['completionTime']")), path, E.INVALID, "no Job")


def test_a_dependent_reads_a_memoized_steps_stored_outputs_and_others_job_status() -> None:
    outputs = {"parameters": [{"name": "count", "valueFrom": {"jsonPath": "$.succeeded"}}]}
    assert_valid(make_flow(memoized(outputs=outputs), reader("a:$.outputs.parameters.count")))
    assert_valid(make_flow(job_step("a"), reader("a:$.succeeded")))


def test_a_finally_step_cannot_be_memoized() -> None:
    # A rerun runs its finally steps again: a cleanup served from its own earlier entry would not run.
    final = memoized(**{"finally": True})
    error = assert_error(make_flow(final), MEMO, E.FORBIDDEN, "a finally step cannot be memoized")
    assert "must run every time" in str(error)


def test_the_webhook_denies_a_job_status_read_of_a_memoized_step_naming_the_field() -> None:
    response = validate_review(review(make_flow(memoized(), reader("a:$.succeeded"))))["response"]
    assert response["allowed"] is False
    assert "spec.steps[1].inputs.parameters[0].valueFrom.jsonPath" in response["status"]["message"]
