"""retryPolicy.expression at admission: `when`'s language over `lastRetry` and `flow`, on Job steps only
(validation/retry_policy.py)."""

from __future__ import annotations

from typing import Any

import pytest
from validation_samples import (
    ErrorType,
    assert_error,
    assert_valid,
    job_step,
    make_flow,
    manual_step,
    mutated,
    step,
)

from zen_flow.validation.cronjobflow import validate_cronjobflow
from zen_flow.validation.flow_template import validate_jobflowtemplate
from zen_flow.validation.limits import MAX_WHEN

E = ErrorType
PATH = "spec.steps[0].retryPolicy.expression"


def retried_when(expression: Any) -> dict[str, Any]:
    return {"limit": 3, "expression": expression}


@pytest.mark.parametrize(
    "expression",
    [
        "lastRetry.exitCode != 2",
        'lastRetry.status == "Error" || lastRetry.duration < 300.0',
        "!lastRetry.message.contains('bad input') && flow.labels['tier'] == 'batch'",
        "flow.annotations.exists(k, k == 'retry')",
        "true",
    ],
)
def test_a_job_step_takes_a_retry_condition(expression: str) -> None:
    assert_valid(mutated(lambda f: step(f, "a").update(retryPolicy=retried_when(expression))))


@pytest.mark.parametrize(
    ("expression", "text"),
    [
        ("lastRetry.exitCode !=", "does not compile"),
        ("steps.a.phase == 'Succeeded'", "unknown variable 'steps': only 'lastRetry' and 'flow' are defined"),
        ("retries < 3", "unknown variable 'retries'"),
    ],
)
def test_a_retry_condition_that_does_not_compile_is_refused_naming_the_field(
    expression: str, text: str
) -> None:
    flow = mutated(lambda f: step(f, "a").update(retryPolicy=retried_when(expression)))
    assert_error(flow, PATH, E.INVALID, text)


def test_a_retry_condition_as_long_as_a_when_may_be() -> None:
    fits = "lastRetry.exitCode != 2" + " " * (MAX_WHEN - 23)
    assert_valid(mutated(lambda f: step(f, "a").update(retryPolicy=retried_when(fits))))
    too_long = fits + " "
    assert_error(mutated(lambda f: step(f, "a").update(retryPolicy=retried_when(too_long))), PATH, E.TOO_LONG)


def test_a_retry_condition_is_a_string() -> None:
    assert_error(mutated(lambda f: step(f, "a").update(retryPolicy=retried_when(2))), PATH, E.INVALID)


def test_a_step_without_a_pod_of_its_own_has_no_retry_condition() -> None:
    gate = mutated(lambda f: step(f, "gate").update(retryPolicy=retried_when("true")))
    assert_error(gate, "spec.steps[2].retryPolicy.expression", E.FORBIDDEN, "a Manual step runs no pod")
    child = {
        "name": "sub",
        "type": "Flow",
        "flow": {"templateRef": {"name": "t"}},
        "retryPolicy": retried_when("lastRetry.exitCode != 2"),
    }
    flow = mutated(lambda f: f["spec"]["steps"].append(child))
    assert_error(flow, "spec.steps[5].retryPolicy.expression", E.FORBIDDEN, "no pod of its own")


def test_a_matrix_step_takes_one() -> None:
    matrix = {"parameters": [{"name": "shard", "values": ["1", "2"]}]}
    assert_valid(make_flow(job_step("a", matrix=matrix, retryPolicy=retried_when("lastRetry.exitCode != 2"))))


def test_templates_and_cronjobflows_check_it_at_their_paths() -> None:
    steps = [
        job_step("a", retryPolicy=retried_when("lastRetry.exitCode !=")),
        manual_step("gate", retryPolicy=retried_when("true")),
    ]
    template = {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "JobFlowTemplate",
        "metadata": {"name": "t", "namespace": "ns"},
        "spec": {"steps": steps},
    }
    assert [e.path for e in validate_jobflowtemplate(template)] == [
        "spec.steps[0].retryPolicy.expression",
        "spec.steps[1].retryPolicy.expression",
    ]
    cron = {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "CronJobFlow",
        "metadata": {"name": "c", "namespace": "ns"},
        "spec": {"schedule": "@daily", "jobFlowTemplate": {"spec": {"steps": steps}}},
    }
    assert [e.path for e in validate_cronjobflow(cron)] == [
        "spec.jobFlowTemplate.spec.steps[0].retryPolicy.expression",
        "spec.jobFlowTemplate.spec.steps[1].retryPolicy.expression",
    ]


@pytest.mark.parametrize(
    ("expression", "field"),
    [
        ("lastRetry.exitcode != 2", "exitcode"),
        ("lastRetry['signal'] == 9", "signal"),
        ("lastRetry.status == 'Error' || lastRetry.reason == 'OOMKilled'", "reason"),
    ],
)
def test_a_field_lastretry_does_not_have_is_refused_naming_the_known_ones(
    expression: str, field: str
) -> None:
    # Compiled, it would fail at every failure ("no such key"): never retried, for a typo.
    flow = mutated(lambda f: step(f, "a").update(retryPolicy=retried_when(expression)))
    assert_error(
        flow,
        PATH,
        E.INVALID,
        f'lastRetry has no field "{field}" (its fields: exitCode, status, duration, message)',
    )


@pytest.mark.parametrize(
    ("expression", "text"),
    [
        ("lastRetry.exitCode != '2'", "compares lastRetry.exitCode, a number, with '2'"),
        ("'137' == lastRetry.exitCode", "compares lastRetry.exitCode, a number, with '137'"),
        ("lastRetry.status == 1", "compares lastRetry.status, a string, with 1"),
        ("lastRetry.duration > '60'", "orders lastRetry.duration, a number, against '60'"),
        ("lastRetry.status != 'failed'", 'lastRetry.status is "Failed" or "Error", never \'failed\''),
        ("'OOMKilled' == lastRetry.status", 'lastRetry.status is "Failed" or "Error", never \'OOMKilled\''),
    ],
)
def test_a_comparison_that_never_holds_is_refused(expression: str, text: str) -> None:
    # In CEL 2 != '2' is true: `lastRetry.exitCode != '2'` would retry every failure.
    flow = mutated(lambda f: step(f, "a").update(retryPolicy=retried_when(expression)))
    assert_error(flow, PATH, E.INVALID, text)


@pytest.mark.parametrize(
    "expression",
    [
        "!(lastRetry.exitCode in [2, 3])",
        "lastRetry.message.size() > 0",
        "lastRetry['exitCode'] != 2 && lastRetry.duration < 60.0",
        "[lastRetry].exists(r, r.exitCode != 2)",
    ],
)
def test_the_known_fields_compared_with_their_types_are_admitted(expression: str) -> None:
    assert_valid(mutated(lambda f: step(f, "a").update(retryPolicy=retried_when(expression))))


def test_an_ordering_with_a_literal_of_another_type_is_not_said_to_be_unequal() -> None:
    # CEL has no `<` between a number and a string: every evaluation fails (no retry), it is not "true".
    flow = mutated(lambda f: step(f, "a").update(retryPolicy=retried_when("lastRetry.duration > '60'")))
    assert_error(
        flow,
        PATH,
        E.INVALID,
        "orders lastRetry.duration, a number, against '60', a string: CEL has no such comparison, so "
        "every evaluation fails (no retry, ever): compare with a number",
    )


def test_an_equality_with_a_literal_of_another_type_is_said_to_never_hold() -> None:
    flow = mutated(lambda f: step(f, "a").update(retryPolicy=retried_when("lastRetry.exitCode != '2'")))
    error = assert_error(flow, PATH, E.INVALID, "never equals")
    assert error.detail == (
        "compares lastRetry.exitCode, a number, with '2', which never equals it in CEL (2 != '2' is true): "
        "compare with a number"
    )


@pytest.mark.parametrize("expression", ["lastRetry.status == 'Failed'", '"Error" != lastRetry.status'])
def test_the_status_compared_with_one_of_its_values_is_admitted(expression: str) -> None:
    assert_valid(mutated(lambda f: step(f, "a").update(retryPolicy=retried_when(expression))))
