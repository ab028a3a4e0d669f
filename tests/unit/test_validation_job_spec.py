"""A step's Job template against the Job API's rules across its fields (managedBy, podReplacementPolicy,
Indexed Jobs, successPolicy, the template's own podFailurePolicy): what admission accepted and the Job API
refused when the step was reached, failing the flow `JobRejected` hours in."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from validation_samples import (
    ErrorType,
    assert_error,
    assert_valid,
    errors_of,
    job_step,
    job_template,
    make_flow,
)

from zen_flow.planner.jobs import build_job
from zen_flow.validation import validate_jobflowtemplate
from zen_flow_dev.testing.flows import make_flow as model_flow

E = ErrorType
SPEC = "spec.steps[0].template.spec"
PFP = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}


def flow(*, policy: dict[str, Any] | None = None, **job_spec: Any) -> dict[str, Any]:
    extra = {"executionPolicy": {"podFailurePolicy": policy}} if policy is not None else {}
    return make_flow(job_step("a", template=job_template(**job_spec)), **extra)


# --- managedBy ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["kueue.x-k8s.io/multikueue", "example.com/nobody", "nobody", ""])
def test_a_job_another_controller_manages_is_refused_saying_why(value: str) -> None:
    error = assert_error(flow(managedBy=value), SPEC + ".managedBy", E.FORBIDDEN)
    assert "zen-flow reads the Job controller's conditions and pods in this cluster" in str(error)
    assert "MultiKueue is not supported" in str(error)


def test_the_built_in_job_controller_may_be_named() -> None:
    assert_valid(flow(managedBy="kubernetes.io/job-controller"))


def test_a_managed_by_that_is_no_string_is_refused_as_such() -> None:
    assert_error(flow(managedBy=3), SPEC + ".managedBy", E.INVALID, "must be a string")


def test_a_job_flow_template_refuses_it_too() -> None:
    doc = flow(managedBy="kueue.x-k8s.io/multikueue")
    template = {**doc, "kind": "JobFlowTemplate", "metadata": {"name": "t", "namespace": "default"}}
    assert [e.path for e in validate_jobflowtemplate(template)] == [SPEC + ".managedBy"]


# --- podReplacementPolicy -------------------------------------------------------------------------------


def test_an_unknown_pod_replacement_policy_is_refused() -> None:
    assert_error(
        flow(podReplacementPolicy="Never"),
        SPEC + ".podReplacementPolicy",
        E.NOT_SUPPORTED,
        '"Failed", "TerminatingOrFailed"',
    )


@pytest.mark.parametrize("value", ["Failed", "TerminatingOrFailed"])
def test_either_pod_replacement_policy_is_accepted_without_a_pod_failure_policy(value: str) -> None:
    assert_valid(flow(podReplacementPolicy=value))


def test_the_flows_pod_failure_policy_allows_only_failed_naming_the_step_and_the_policy() -> None:
    doc = flow(policy=PFP, podReplacementPolicy="TerminatingOrFailed")
    error = assert_error(doc, SPEC + ".podReplacementPolicy", E.NOT_SUPPORTED, 'supported values: "Failed"')
    assert 'spec.executionPolicy.podFailurePolicy applies to step "a"' in str(error)
    # zen-flow would put the two together itself: the Job it builds carries both.
    model = model_flow(
        [{"name": "a", "template": job_template(podReplacementPolicy="TerminatingOrFailed")}],
        execution_policy={"podFailurePolicy": PFP},
    )
    built = build_job(model, model.spec.steps[0], "f-a-0", 0)["spec"]
    assert built["podReplacementPolicy"] == "TerminatingOrFailed"
    assert built["podFailurePolicy"]
    assert_valid(flow(policy=PFP, podReplacementPolicy="Failed"))


def test_a_templates_own_pod_failure_policy_allows_only_failed() -> None:
    doc = flow(podFailurePolicy=PFP, podReplacementPolicy="TerminatingOrFailed")
    assert_error(doc, SPEC + ".podReplacementPolicy", E.NOT_SUPPORTED, 'supported values: "Failed"')
    # Said once, for its own policy: the flow's does not apply to this step.
    doc = flow(policy=PFP, podFailurePolicy=PFP, podReplacementPolicy="TerminatingOrFailed")
    assert [e.path for e in errors_of(doc)] == [SPEC + ".podReplacementPolicy"]


# --- Indexed Jobs ---------------------------------------------------------------------------------------


def test_an_indexed_job_needs_completions() -> None:
    assert_error(flow(completionMode="Indexed"), SPEC + ".completions", E.REQUIRED, "Indexed")
    assert_valid(flow(completionMode="Indexed", completions=3, parallelism=3))


def test_max_failed_indexes_needs_backoff_limit_per_index() -> None:
    doc = flow(completionMode="Indexed", completions=3, maxFailedIndexes=1)
    assert_error(doc, SPEC + ".backoffLimitPerIndex", E.REQUIRED, "maxFailedIndexes")
    assert_valid(flow(completionMode="Indexed", completions=3, maxFailedIndexes=1, backoffLimitPerIndex=0))


@pytest.mark.parametrize("field", ["backoffLimitPerIndex", "maxFailedIndexes"])
@pytest.mark.parametrize("mode", [{}, {"completionMode": "NonIndexed"}])
def test_per_index_limits_need_an_indexed_job(field: str, mode: dict[str, Any]) -> None:
    doc = flow(**mode, backoffLimitPerIndex=1, maxFailedIndexes=1)
    assert_error(doc, f"{SPEC}.{field}", E.INVALID, "requires indexed completion mode")


def test_max_failed_indexes_is_at_most_completions() -> None:
    doc = flow(completionMode="Indexed", completions=3, backoffLimitPerIndex=1, maxFailedIndexes=4)
    assert_error(doc, SPEC + ".maxFailedIndexes", E.INVALID, "less than or equal to completions")


def test_a_negative_max_failed_indexes_is_refused() -> None:
    doc = flow(completionMode="Indexed", completions=3, backoffLimitPerIndex=1, maxFailedIndexes=-1)
    assert_error(doc, SPEC + ".maxFailedIndexes", E.INVALID, "greater than or equal to 0")


def test_an_indexed_jobs_parallelism_is_bounded() -> None:
    doc = flow(completionMode="Indexed", completions=3, parallelism=100_001)
    assert_error(doc, SPEC + ".parallelism", E.INVALID, "100000")


def test_many_completions_with_a_per_index_limit_need_bounds() -> None:
    doc = flow(completionMode="Indexed", completions=100_001, backoffLimitPerIndex=1, parallelism=10_001)
    assert_error(doc, SPEC + ".maxFailedIndexes", E.REQUIRED, "100000")
    assert_error(doc, SPEC + ".parallelism", E.INVALID, "10000")


# --- successPolicy --------------------------------------------------------------------------------------


def test_a_success_policy_needs_an_indexed_job() -> None:
    doc = flow(successPolicy={"rules": [{"succeededCount": 1}]})
    assert_error(doc, SPEC + ".successPolicy", E.INVALID, "requires indexed completion mode")


def test_an_indexed_jobs_success_policy_is_accepted() -> None:
    policy = {"rules": [{"succeededCount": 2}, {"succeededIndexes": "0,2-3", "succeededCount": 1}]}
    assert_valid(flow(completionMode="Indexed", completions=4, successPolicy=policy))


@pytest.mark.parametrize(
    ("policy", "path", "kind", "text"),
    [
        ({"rules": []}, "successPolicy.rules", E.REQUIRED, "at least one rule"),
        ({}, "successPolicy.rules", E.REQUIRED, "at least one rule"),
        ({"rules": [{"succeededCount": 1}] * 21}, "successPolicy.rules", E.TOO_MANY, "at most 20"),
        ({"rules": [{}]}, "successPolicy.rules[0]", E.REQUIRED, "succeededCount or succeededIndexes"),
        (
            {"rules": [{"succeededCount": 5}]},
            "successPolicy.rules[0].succeededCount",
            E.INVALID,
            "specified completions",
        ),
        ({"rules": [{"succeededCount": -1}]}, "successPolicy.rules[0].succeededCount", E.INVALID, "0"),
        (
            {"rules": [{"succeededIndexes": 3}]},
            "successPolicy.rules[0].succeededIndexes",
            E.INVALID,
            "string",
        ),
    ],
)
def test_a_broken_success_policy_is_refused_naming_the_field(
    policy: dict[str, Any], path: str, kind: ErrorType, text: str
) -> None:
    assert_error(
        flow(completionMode="Indexed", completions=4, successPolicy=policy), f"{SPEC}.{path}", kind, text
    )


# --- the template's own podFailurePolicy, sent as written -----------------------------------------------


def test_a_templates_own_pod_failure_policy_needs_an_operator() -> None:
    own = {"rules": [{"action": "FailJob", "onExitCodes": {"values": [42]}}]}
    error = assert_error(
        flow(podFailurePolicy=own), SPEC + ".podFailurePolicy.rules[0].onExitCodes.operator", E.REQUIRED
    )
    assert '"In", "NotIn"' in str(error)


def test_a_templates_own_exit_codes_must_be_in_order() -> None:
    own = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [3, 1]}}]}
    assert_error(
        flow(podFailurePolicy=own),
        SPEC + ".podFailurePolicy.rules[0].onExitCodes.values",
        E.INVALID,
        "ordered",
    )


def test_the_flows_exit_codes_in_any_order_reach_the_job_in_order() -> None:
    policy = {"rules": [{"action": "Count", "onExitCodes": {"values": [3, 1, 2]}}]}
    assert_valid(flow(policy=policy))
    model = model_flow(
        [{"name": "a", "template": job_template()}], execution_policy={"podFailurePolicy": policy}
    )
    built = build_job(model, model.spec.steps[0], "f-a-0", 0)["spec"]["podFailurePolicy"]
    assert built["rules"][0]["onExitCodes"]["values"] == [1, 2, 3]


# --- properties -----------------------------------------------------------------------------------------


@st.composite
def indexed_specs(draw: st.DrawFn) -> dict[str, Any]:
    """Indexed Job fields the Job API accepts together."""
    completions = draw(st.integers(1, 100_000))
    spec: dict[str, Any] = {"completionMode": "Indexed", "completions": completions}
    spec["parallelism"] = draw(st.integers(0, 100_000))
    if draw(st.booleans()):
        spec["backoffLimitPerIndex"] = draw(st.integers(0, 10))
        if draw(st.booleans()):
            spec["maxFailedIndexes"] = draw(st.integers(0, completions))
    if draw(st.booleans()):
        counts = st.integers(0, completions)
        spec["successPolicy"] = {
            "rules": [{"succeededCount": c} for c in draw(st.lists(counts, min_size=1, max_size=20))]
        }
    if draw(st.booleans()):
        spec["podReplacementPolicy"] = "Failed"
    return spec


@settings(max_examples=150, deadline=None)
@given(indexed_specs(), st.booleans())
def test_every_indexed_job_the_job_api_accepts_is_accepted(spec: dict[str, Any], with_policy: bool) -> None:
    assert_valid(flow(policy=PFP if with_policy else None, **spec))


# A field set to what the Job API refuses beside the rest of a valid Indexed Job, and the field named.
BREAKAGES: list[tuple[dict[str, Any], str]] = [
    ({"completionMode": "NonIndexed"}, "successPolicy"),
    ({"completions": None}, "completions"),
    ({"managedBy": "kueue.x-k8s.io/multikueue"}, "managedBy"),
    ({"podReplacementPolicy": "Sometimes"}, "podReplacementPolicy"),
    ({"backoffLimitPerIndex": None, "maxFailedIndexes": 0}, "backoffLimitPerIndex"),
]


@settings(max_examples=150, deadline=None)
@given(indexed_specs(), st.sampled_from(BREAKAGES))
def test_every_breakage_of_an_indexed_job_is_refused_naming_the_field(
    spec: dict[str, Any], breakage: tuple[dict[str, Any], str]
) -> None:
    change, field = breakage
    spec = {**spec, "successPolicy": {"rules": [{"succeededCount": 1}]}, **change}
    broken = {k: v for k, v in spec.items() if v is not None}
    errors = [str(e) for e in errors_of(flow(**broken))]
    assert errors
    assert all(e.startswith(f"{SPEC}.") for e in errors), errors
    assert any(e.startswith(f"{SPEC}.{field}:") for e in errors), errors


@pytest.mark.parametrize("mode", ["", "Random", 3])
def test_a_completion_mode_of_no_known_kind_is_refused_alone(mode: Any) -> None:
    """Which rules apply is not known: only the mode is named, not a successPolicy that needs Indexed."""
    doc = flow(completionMode=mode, successPolicy={"rules": [{"succeededCount": 1}]})
    assert [e.path for e in errors_of(doc)] == [SPEC + ".completionMode"]
