"""Step rules for how a step runs: retryPolicy (and the nodes its retries avoid), timeoutSeconds,
podPendingTimeoutSeconds, `when`, continueOnFailure, allowFailure, dependencyPolicy."""

from __future__ import annotations

from typing import Any

import pytest
from validation_samples import (
    ErrorType,
    assert_error,
    assert_valid,
    errors_of,
    job_step,
    make_flow,
    manual_step,
    mutated,
    pod_spec,
    step,
)

from zen_flow.validation import render
from zen_flow.validation.cronjobflow import validate_cronjobflow
from zen_flow.validation.flow_template import validate_jobflowtemplate

E = ErrorType


# --- retryPolicy ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "retry",
    [
        {"limit": 0},
        {"limit": 3, "backoff": {"type": "Exponential", "factor": 1, "duration": "10s", "maxDuration": "1h"}},
        {"backoff": {"type": "Linear", "duration": "1m30s"}},
        {"backoff": {"type": "Fixed", "duration": "720h", "factor": 2.5}},
        {"backoff": {"duration": "0.5s"}},
        {"backoff": {"duration": "1500ms"}},
    ],
)
def test_valid_retry_policies(retry: dict[str, Any]) -> None:
    assert_valid(mutated(lambda f: step(f, "a").update(retryPolicy=retry)))


@pytest.mark.parametrize(
    ("retry", "path", "kind", "text"),
    [
        ({"limit": -1}, "limit", E.INVALID, "greater than or equal to 0"),
        ({"limit": "3"}, "limit", E.INVALID, "must be an integer"),
        ({"limit": 2**31}, "limit", E.INVALID, "less than or equal to 2147483647"),
        (
            {"backoff": {"type": "Random"}},
            "backoff.type",
            E.NOT_SUPPORTED,
            '"Exponential", "Linear", "Fixed"',
        ),
        ({"backoff": {"factor": 0.5}}, "backoff.factor", E.INVALID, "greater than or equal to 1"),
        ({"backoff": {"factor": "2"}}, "backoff.factor", E.INVALID, "must be a number"),
        ({"backoff": {"duration": "0"}}, "backoff.duration", E.INVALID, "greater than 0"),
        ({"backoff": {"duration": "0s"}}, "backoff.duration", E.INVALID, "greater than 0"),
        ({"backoff": {"duration": "10"}}, "backoff.duration", E.INVALID, "Go duration"),
        ({"backoff": {"duration": "-5s"}}, "backoff.duration", E.INVALID, "Go duration"),
        ({"backoff": {"duration": "1d"}}, "backoff.duration", E.INVALID, "Go duration"),
        ({"backoff": {"duration": "721h"}}, "backoff.duration", E.INVALID, "at most 720h (30 days)"),
        ({"backoff": {"maxDuration": "soon"}}, "backoff.maxDuration", E.INVALID, "Go duration"),
        ({"backoff": "10s"}, "backoff", E.INVALID, "must be an object"),
    ],
)
def test_invalid_retry_policies(retry: dict[str, Any], path: str, kind: ErrorType, text: str) -> None:
    flow = mutated(lambda f: step(f, "a").update(retryPolicy=retry))
    assert_error(flow, f"spec.steps[0].retryPolicy.{path}", kind, text)


# --- timeoutSeconds ------------------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [1, 3600, 2_592_000])
def test_valid_timeouts(timeout: int) -> None:
    assert_valid(mutated(lambda f: step(f, "a").update(timeoutSeconds=timeout)))


@pytest.mark.parametrize(
    ("timeout", "text"),
    [
        (0, "greater than 0"),
        (-5, "greater than 0"),
        (2_592_001, "at most 2592000 (30 days)"),
        ("60", "must be an integer"),
        (1.5, "integer"),
    ],
)
def test_invalid_timeouts(timeout: Any, text: str) -> None:
    assert_error(
        mutated(lambda f: step(f, "a").update(timeoutSeconds=timeout)),
        "spec.steps[0].timeoutSeconds",
        E.INVALID,
        text,
    )


# --- podPendingTimeoutSeconds --------------------------------------------------------------------------


def test_a_job_step_may_bound_how_long_its_pod_waits() -> None:
    assert_valid(mutated(lambda f: step(f, "a").update(podPendingTimeoutSeconds=300)))


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "between 1 and 86400"), (86401, "between 1 and 86400 (a day)"), (True, "must be an integer")],
)
def test_invalid_pod_pending_timeouts(value: Any, text: str) -> None:
    flow = mutated(lambda f: step(f, "a").update(podPendingTimeoutSeconds=value))
    assert_error(flow, "spec.steps[0].podPendingTimeoutSeconds", E.INVALID, text)


def test_a_step_without_a_pod_of_its_own_has_no_pod_pending_timeout() -> None:
    gate = mutated(lambda f: step(f, "gate").update(podPendingTimeoutSeconds=60))
    assert_error(gate, "spec.steps[2].podPendingTimeoutSeconds", E.FORBIDDEN, "a Manual step runs no pod")
    child = {
        "name": "sub",
        "type": "Flow",
        "flow": {"templateRef": {"name": "t"}},
        "podPendingTimeoutSeconds": 60,
    }
    flow = mutated(lambda f: f["spec"]["steps"].append(child))
    assert_error(flow, "spec.steps[5].podPendingTimeoutSeconds", E.FORBIDDEN, "no pod of its own")


# --- retryPolicy.affinity ------------------------------------------------------------------------------

AVOID = {"limit": 2, "affinity": {"nodeAntiAffinity": {}}}


def test_a_job_steps_retries_may_avoid_the_nodes_its_failed_attempts_ran_on() -> None:
    assert_valid(mutated(lambda f: step(f, "a").update(retryPolicy=AVOID)))
    assert_valid(mutated(lambda f: step(f, "a").update(retryPolicy={"affinity": {}})))  # avoids nothing


@pytest.mark.parametrize(
    ("affinity", "path", "text"),
    [
        (
            {"nodeAntiAffinity": {"x": 1}},
            "spec.steps[0].retryPolicy.affinity.nodeAntiAffinity",
            "must be an empty object: {}",
        ),
        (
            {"nodeAntiAffinity": True},
            "spec.steps[0].retryPolicy.affinity.nodeAntiAffinity",
            "must be an object",
        ),
        ("yes", "spec.steps[0].retryPolicy.affinity", "must be an object"),
    ],
)
def test_invalid_retry_affinities(affinity: Any, path: str, text: str) -> None:
    flow = mutated(lambda f: step(f, "a").update(retryPolicy={"affinity": affinity}))
    assert_error(flow, path, E.INVALID, text)


def test_a_step_without_a_pod_of_its_own_has_no_retry_affinity() -> None:
    gate = mutated(lambda f: step(f, "gate").update(retryPolicy=AVOID))
    assert_error(gate, "spec.steps[2].retryPolicy.affinity", E.FORBIDDEN, "a Manual step runs no pod")
    child = {"name": "sub", "type": "Flow", "flow": {"templateRef": {"name": "t"}}, "retryPolicy": AVOID}
    flow = mutated(lambda f: f["spec"]["steps"].append(child))
    assert_error(flow, "spec.steps[5].retryPolicy.affinity", E.FORBIDDEN, "no pod of its own")


def test_a_pod_pinned_by_node_name_cannot_avoid_its_node() -> None:
    def pin(f: Any) -> None:
        step(f, "a").update(retryPolicy=AVOID)
        pod_spec(f, "a")["nodeName"] = "gpu-7"

    assert_error(
        mutated(pin),
        "spec.steps[0].retryPolicy.affinity.nodeAntiAffinity",
        E.FORBIDDEN,
        "pinned to a node by its template.spec.template.spec.nodeName",
    )
    assert_valid(mutated(lambda f: pod_spec(f, "a").update(nodeName="gpu-7")))  # without it: as before


def test_two_large_matrix_steps_that_avoid_nodes_fit_at_the_default_limit() -> None:
    # 150 items each: refused while every item was counted 16 names of 253 characters.
    matrix = {"parameters": [{"name": "shard", "values": [str(i) for i in range(150)]}]}
    policy = {"affinity": {"nodeAntiAffinity": {}}}
    assert_valid(
        make_flow(
            job_step("a", matrix=matrix, retryPolicy=policy), job_step("b", matrix=matrix, retryPolicy=policy)
        )
    )


def test_a_size_refusal_mostly_from_the_failed_nodes_names_them() -> None:
    matrix = {"parameters": [{"name": "shard", "values": [str(i) for i in range(240)]}]}
    policy = {"limit": 20, "affinity": {"nodeAntiAffinity": {}}}
    flow = make_flow(*[job_step(f"s{i}", matrix=matrix, retryPolicy=policy) for i in range(2)])
    refused = assert_error(flow, "spec", E.FORBIDDEN, "too large to run")
    assert "status.steps[].failedNodes" in refused.detail
    assert "retryPolicy.limit" in refused.detail
    plain = make_flow(*[job_step(f"s{i}", matrix=matrix, retryPolicy={"limit": 20}) for i in range(2)])
    assert_valid(plain)


# --- when ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "when",
    [
        "always",
        "never",
        "true",
        "False",
        "steps.b.phase == 'Succeeded'",
        "steps.a.phase == 'Succeeded'",  # a is an indirect dependency of c
        "steps['gate'].phase == 'Succeeded' && steps.a.phase != 'Failed'",
    ],
)
def test_valid_when(when: str) -> None:
    assert_valid(mutated(lambda f: step(f, "c").update(when=when)))


def test_when_must_compile() -> None:
    flow = mutated(lambda f: step(f, "c").update(when="steps.b.phase == "))
    error = assert_error(flow, "spec.steps[3].when", E.INVALID, "does not compile")
    assert "\n" not in str(error)


def test_when_must_name_existing_steps() -> None:
    flow = mutated(lambda f: step(f, "c").update(when="steps.zzz.phase == 'Succeeded'"))
    error = assert_error(flow, "spec.steps[3].when", E.NOT_FOUND)
    assert str(error).startswith('spec.steps[3].when: Not found: "zzz"')


def test_when_may_only_read_steps_it_depends_on() -> None:
    flow = mutated(lambda f: step(f, "c").update(when="steps.d.phase == 'Succeeded'"))
    error = assert_error(flow, "spec.steps[3].when", E.INVALID, "not among the dependencies")
    assert '"d"' in str(error)
    assert '"c"' in str(error)


def test_when_is_bounded_and_a_string() -> None:
    long = "true || " * 200 + "true"
    assert_error(mutated(lambda f: step(f, "c").update(when=long)), "spec.steps[3].when", E.TOO_LONG)
    assert_error(
        mutated(lambda f: step(f, "c").update(when=True)), "spec.steps[3].when", E.INVALID, "must be a string"
    )


def test_continue_on_failure_is_a_boolean() -> None:
    assert_valid(mutated(lambda f: step(f, "a").update(continueOnFailure=True)))
    assert_error(
        mutated(lambda f: step(f, "a").update(continueOnFailure="yes")),
        "spec.steps[0].continueOnFailure",
        E.INVALID,
    )


def test_allow_failure_is_a_boolean() -> None:
    assert_error(
        mutated(lambda f: step(f, "a").update(allowFailure="yes")),
        "spec.steps[0].allowFailure",
        E.INVALID,
    )


@pytest.mark.parametrize("name", ["a", "gate"])
def test_allow_failure_is_allowed_on_job_and_manual_steps_and_beside_continue_on_failure(name: str) -> None:
    assert_valid(mutated(lambda f: step(f, name).update(allowFailure=True)))
    assert_valid(mutated(lambda f: step(f, name).update(allowFailure=True, continueOnFailure=True)))


@pytest.mark.parametrize("policy", ["AllSucceeded", "SucceededOrSkipped", "AnySucceeded"])
def test_dependency_policy_takes_the_three_documented_values(policy: str) -> None:
    assert_valid(mutated(lambda f: step(f, "c").update(dependencyPolicy=policy)))


def test_an_unknown_dependency_policy_is_refused_naming_the_field_and_the_values() -> None:
    flow = mutated(lambda f: step(f, "c").update(dependencyPolicy="AnyOf"))
    assert render(errors_of(flow)) == (
        'spec.steps[3].dependencyPolicy: Unsupported value: "AnyOf": '
        'supported values: "AllSucceeded", "SucceededOrSkipped", "AnySucceeded"'
    )
    assert_error(
        mutated(lambda f: step(f, "c").update(dependencyPolicy=1)),
        "spec.steps[3].dependencyPolicy",
        E.INVALID,
    )


def test_a_templates_and_a_cronjobflows_steps_take_the_retry_affinity_checked_at_their_paths() -> None:
    steps = [job_step("a", retryPolicy=AVOID), manual_step("gate", retryPolicy=AVOID)]
    template = {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "JobFlowTemplate",
        "metadata": {"name": "t", "namespace": "ns"},
        "spec": {"steps": steps},
    }
    assert [e.path for e in validate_jobflowtemplate(template)] == ["spec.steps[1].retryPolicy.affinity"]
    cron = {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "CronJobFlow",
        "metadata": {"name": "c", "namespace": "ns"},
        "spec": {"schedule": "@daily", "jobFlowTemplate": {"spec": {"steps": steps}}},
    }
    assert [e.path for e in validate_cronjobflow(cron)] == [
        "spec.jobFlowTemplate.spec.steps[1].retryPolicy.affinity"
    ]
