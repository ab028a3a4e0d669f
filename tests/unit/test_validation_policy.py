"""spec.executionPolicy (incl. podFailurePolicy as the Job API accepts it) and spec.resourceTemplates."""

from __future__ import annotations

from typing import Any

import pytest
from validation_samples import (
    ErrorType,
    Flow,
    assert_error,
    assert_valid,
    base_flow,
    job_step,
    job_template,
    make_flow,
    mutated,
    pod_spec,
    step,
)

E = ErrorType
EP = "spec.executionPolicy"
PFP = EP + ".podFailurePolicy"


def with_policy(policy: Any) -> Flow:
    return mutated(lambda f: f["spec"].update(executionPolicy=policy))


def with_pfp(*rules: Any) -> Flow:
    return with_policy({"podFailurePolicy": {"rules": list(rules)}})


def exit_rule(*values: int, operator: str = "In", action: str = "FailJob", **extra: Any) -> dict[str, Any]:
    return {"action": action, "onExitCodes": {"operator": operator, "values": list(values), **extra}}


# --- executionPolicy -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy",
    [
        {},
        {
            "concurrencyPolicy": "Allow",
            "ttlSecondsAfterFinished": 0,
            "backoffLimit": 0,
            "activeDeadlineSeconds": 1,
        },
        {"concurrencyPolicy": "Forbid", "ttlSecondsAfterFinished": 86400, "backoffLimit": 6},
        {"concurrencyPolicy": "Replace", "activeDeadlineSeconds": 7200},
        {"parallelism": 1},
        {"parallelism": 500, "concurrencyPolicy": "Allow"},
        {"ttlStrategy": {"secondsAfterSuccess": 0, "secondsAfterFailure": 604800}},
        {"ttlStrategy": {"secondsAfterFailure": 2**31 - 1}, "ttlSecondsAfterFinished": 60},
        {"ttlStrategy": {}},
        {"jobRetention": "All"},
        {"jobRetention": "LastAttempt", "backoffLimit": 3},
        {"jobRetention": "FailedOnly", "ttlSecondsAfterFinished": 3600},
        {"priority": 0},
        {"priority": 1000},
        {"priority": -1000, "parallelism": 2},
        {"podPendingTimeoutSeconds": 1},
        {"podPendingTimeoutSeconds": 86400},
        {"activeDeadlineSeconds": 3600, "finallyGraceSeconds": 300},
        {"activeDeadlineSeconds": 2, "finallyGraceSeconds": 1},
    ],
)
def test_valid_execution_policies(policy: dict[str, Any]) -> None:
    assert_valid(with_policy(policy))


@pytest.mark.parametrize(
    ("policy", "path", "kind", "text"),
    [
        (
            {"concurrencyPolicy": "Queue"},
            "concurrencyPolicy",
            E.NOT_SUPPORTED,
            '"Allow", "Forbid", "Replace"',
        ),
        ({"ttlSecondsAfterFinished": -1}, "ttlSecondsAfterFinished", E.INVALID, "greater than or equal to 0"),
        ({"ttlSecondsAfterFinished": 2**31}, "ttlSecondsAfterFinished", E.INVALID, "2147483647"),
        ({"backoffLimit": -1}, "backoffLimit", E.INVALID, "greater than or equal to 0"),
        ({"backoffLimit": "6"}, "backoffLimit", E.INVALID, "must be an integer"),
        ({"activeDeadlineSeconds": 0}, "activeDeadlineSeconds", E.INVALID, "greater than 0"),
        ({"activeDeadlineSeconds": -10}, "activeDeadlineSeconds", E.INVALID, "greater than 0"),
        ({"podFailurePolicy": []}, "podFailurePolicy", E.INVALID, "must be an object"),
        ({"parallelism": -3}, "parallelism", E.INVALID, "must be at least 1"),
        ({"parallelism": "4"}, "parallelism", E.INVALID, "must be an integer"),
        ({"parallelism": 2.5}, "parallelism", E.INVALID, "must be an integer"),
        ({"parallelism": True}, "parallelism", E.INVALID, "must be an integer"),
        ({"parallelism": 2**31}, "parallelism", E.INVALID, "2147483647"),
        ({"podPendingTimeoutSeconds": 0}, "podPendingTimeoutSeconds", E.INVALID, "between 1 and 86400"),
        ({"podPendingTimeoutSeconds": 86401}, "podPendingTimeoutSeconds", E.INVALID, "(a day)"),
        ({"podPendingTimeoutSeconds": "5m"}, "podPendingTimeoutSeconds", E.INVALID, "must be an integer"),
        ({"priority": 1001}, "priority", E.INVALID, "less than or equal to 1000"),
        ({"priority": -1001}, "priority", E.INVALID, "greater than or equal to -1000"),
        ({"priority": "high"}, "priority", E.INVALID, "must be an integer"),
        ({"priority": 1.5}, "priority", E.INVALID, "must be an integer"),
        ({"ttlStrategy": 3600}, "ttlStrategy", E.INVALID, "must be an object"),
        (
            {"ttlStrategy": {"secondsAfterSuccess": -1}},
            "ttlStrategy.secondsAfterSuccess",
            E.INVALID,
            "greater than or equal to 0",
        ),
        (
            {"ttlStrategy": {"secondsAfterFailure": -5}},
            "ttlStrategy.secondsAfterFailure",
            E.INVALID,
            "greater than or equal to 0",
        ),
        (
            {"ttlStrategy": {"secondsAfterFailure": "1h"}},
            "ttlStrategy.secondsAfterFailure",
            E.INVALID,
            "integer",
        ),
        (
            {"ttlStrategy": {"secondsAfterSuccess": 2**31}},
            "ttlStrategy.secondsAfterSuccess",
            E.INVALID,
            "2147483647",
        ),
        ({"jobRetention": "Last"}, "jobRetention", E.NOT_SUPPORTED, '"All", "LastAttempt", "FailedOnly"'),
        ({"jobRetention": "failedOnly"}, "jobRetention", E.NOT_SUPPORTED, '"FailedOnly"'),
        ({"jobRetention": 1}, "jobRetention", E.INVALID, "must be a string"),
        ({"finallyGraceSeconds": 300}, "finallyGraceSeconds", E.INVALID, "needs activeDeadlineSeconds"),
        (
            {"activeDeadlineSeconds": 300, "finallyGraceSeconds": 301},
            "finallyGraceSeconds",
            E.INVALID,
            "must be less than activeDeadlineSeconds: it is",
        ),
        (
            {"activeDeadlineSeconds": 300, "finallyGraceSeconds": 0},
            "finallyGraceSeconds",
            E.INVALID,
            "greater than 0",
        ),
        (
            {"activeDeadlineSeconds": 300, "finallyGraceSeconds": "5m"},
            "finallyGraceSeconds",
            E.INVALID,
            "must be an integer",
        ),
    ],
)
def test_invalid_execution_policies(policy: dict[str, Any], path: str, kind: ErrorType, text: str) -> None:
    assert_error(with_policy(policy), f"{EP}.{path}", kind, text)


def test_a_parallelism_of_zero_is_refused_naming_the_field() -> None:
    error = assert_error(with_policy({"parallelism": 0}), f"{EP}.parallelism", E.INVALID)
    assert str(error) == "spec.executionPolicy.parallelism: Invalid value: 0: must be at least 1"


def test_a_finally_grace_as_long_as_the_deadline_is_refused_naming_the_field() -> None:
    flow = with_policy({"activeDeadlineSeconds": 300, "finallyGraceSeconds": 300})
    error = assert_error(flow, f"{EP}.finallyGraceSeconds", E.INVALID)
    assert str(error) == (
        "spec.executionPolicy.finallyGraceSeconds: Invalid value: 300: must be less than "
        "activeDeadlineSeconds: it is the last seconds of the flow's deadline, kept for its finally steps"
    )


def test_a_finally_grace_without_a_deadline_is_refused_naming_the_field() -> None:
    error = assert_error(with_policy({"finallyGraceSeconds": 60}), f"{EP}.finallyGraceSeconds", E.INVALID)
    assert str(error) == (
        "spec.executionPolicy.finallyGraceSeconds: Invalid value: 60: needs activeDeadlineSeconds: it is "
        "the last seconds of the flow's deadline, kept for its finally steps"
    )


def test_both_ttl_strategy_errors_are_reported_each_naming_its_field() -> None:
    flow = with_policy({"ttlStrategy": {"secondsAfterSuccess": -1, "secondsAfterFailure": -2}})
    assert_error(flow, f"{EP}.ttlStrategy.secondsAfterSuccess", E.INVALID)
    error = assert_error(flow, f"{EP}.ttlStrategy.secondsAfterFailure", E.INVALID)
    assert str(error) == (
        "spec.executionPolicy.ttlStrategy.secondsAfterFailure: Invalid value: -2: "
        "must be greater than or equal to 0"
    )


def test_execution_policy_must_be_an_object() -> None:
    assert_error(with_policy("Forbid"), EP, E.INVALID, "must be an object")


# --- podFailurePolicy ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rules",
    [
        [exit_rule(1, 2, 42)],
        [exit_rule(0, operator="NotIn", action="Ignore")],
        [exit_rule(3, 1, action="Count")],  # order is not the user's problem: the Job builder sorts
        [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}],
        [{"action": "FailJob", "onPodConditions": [{"type": "ConfigIssue", "status": "Unknown"}]}],
        [exit_rule(1, containerName="main")],
        [{"action": "FailJob", "onExitCodes": {"values": [7]}}],  # operator defaults to In
        [exit_rule(i + 1) for i in range(20)],
        [exit_rule(*range(1, 256))],
    ],
    ids=[
        "in",
        "notin-0",
        "unsorted",
        "pod-conditions",
        "condition-status",
        "container",
        "default-operator",
        "20-rules",
        "255-values",
    ],
)
def test_valid_pod_failure_policies(rules: list[dict[str, Any]]) -> None:
    assert_valid(with_pfp(*rules))


@pytest.mark.parametrize(
    ("pfp", "path", "kind", "text"),
    [
        ({}, "rules", E.REQUIRED, "at least one rule"),
        ({"rules": []}, "rules", E.REQUIRED, "at least one rule"),
        ({"rules": [exit_rule(i + 1) for i in range(21)]}, "rules", E.TOO_MANY, "at most 20"),
        (
            {"rules": [exit_rule(1, action="Retry")]},
            "rules[0].action",
            E.NOT_SUPPORTED,
            '"FailJob", "Ignore", "Count"',
        ),
        (
            {"rules": [exit_rule(1, action="FailIndex")]},
            "rules[0].action",
            E.NOT_SUPPORTED,
            "backoffLimitPerIndex",
        ),
        ({"rules": [{"onExitCodes": {"values": [1]}}]}, "rules[0].action", E.REQUIRED, ""),
        (
            {"rules": [{"action": "FailJob"}]},
            "rules[0].onExitCodes",
            E.REQUIRED,
            "onExitCodes or onPodConditions",
        ),
        (
            {"rules": [{**exit_rule(1), "onPodConditions": [{"type": "DisruptionTarget"}]}]},
            "rules[0].onPodConditions",
            E.FORBIDDEN,
            "together with onExitCodes",
        ),
        (
            {"rules": [exit_rule(1, operator="Between")]},
            "rules[0].onExitCodes.operator",
            E.NOT_SUPPORTED,
            '"In", "NotIn"',
        ),
        ({"rules": [exit_rule()]}, "rules[0].onExitCodes.values", E.REQUIRED, "at least one exit code"),
        (
            {"rules": [{"action": "FailJob", "onExitCodes": {}}]},
            "rules[0].onExitCodes.values",
            E.REQUIRED,
            "",
        ),
        ({"rules": [exit_rule(*range(1, 257))]}, "rules[0].onExitCodes.values", E.TOO_MANY, "at most 255"),
        ({"rules": [exit_rule(256)]}, "rules[0].onExitCodes.values[0]", E.INVALID, "between 0 and 255"),
        ({"rules": [exit_rule(-1)]}, "rules[0].onExitCodes.values[0]", E.INVALID, "between 0 and 255"),
        (
            {"rules": [exit_rule(2, 0)]},
            "rules[0].onExitCodes.values[1]",
            E.INVALID,
            "value 0 cannot be used for the In operator",
        ),
        ({"rules": [exit_rule(1, 2, 1)]}, "rules[0].onExitCodes.values[2]", E.DUPLICATE, ""),
        ({"rules": [exit_rule("1")]}, "rules[0].onExitCodes.values[0]", E.INVALID, "must be an integer"),
        (
            {"rules": [exit_rule(1, containerName="Main")]},
            "rules[0].onExitCodes.containerName",
            E.INVALID,
            "RFC 1123",
        ),
        (
            {"rules": [{"action": "Ignore", "onPodConditions": [{"status": "True"}]}]},
            "rules[0].onPodConditions[0].type",
            E.REQUIRED,
            "",
        ),
        (
            {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "X", "status": "Maybe"}]}]},
            "rules[0].onPodConditions[0].status",
            E.NOT_SUPPORTED,
            '"True", "False", "Unknown"',
        ),
        (
            {"rules": [{"action": "Ignore", "onPodConditions": [{"type": f"T{i}"} for i in range(21)]}]},
            "rules[0].onPodConditions",
            E.TOO_MANY,
            "at most 20",
        ),
    ],
)
def test_invalid_pod_failure_policies(pfp: dict[str, Any], path: str, kind: ErrorType, text: str) -> None:
    assert_error(with_policy({"podFailurePolicy": pfp}), f"{PFP}.{path}", kind, text)


def test_pod_failure_policy_needs_restart_policy_never_in_each_job_step_and_names_the_step() -> None:
    flow = with_pfp(exit_rule(42))
    pod_spec(flow, "d")["restartPolicy"] = "OnFailure"
    error = assert_error(flow, "spec.steps[4].template.spec.template.spec.restartPolicy", E.INVALID)
    assert str(error).startswith(
        'spec.steps[4].template.spec.template.spec.restartPolicy: Invalid value: "OnFailure": '
    )
    assert 'spec.executionPolicy.podFailurePolicy applies to step "d"' in str(error)
    assert "restartPolicy Never" in str(error)


def test_the_original_examples_use_on_failure_so_a_pod_failure_policy_is_rejected_for_each_step() -> None:
    steps = [job_step(n, template=job_template(restart="OnFailure")) for n in ("x", "y")]
    flow = make_flow(*steps, executionPolicy={"podFailurePolicy": {"rules": [exit_rule(1)]}})
    paths = [f"spec.steps[{i}].template.spec.template.spec.restartPolicy" for i in (0, 1)]
    for path in paths:
        assert_error(flow, path, E.INVALID, "restartPolicy Never")


def test_pod_failure_policy_container_must_exist_in_every_job_step() -> None:
    flow = with_pfp(exit_rule(1, containerName="main"))
    pod_spec(flow, "b")["containers"][0]["name"] = "worker"
    error = assert_error(flow, f"{PFP}.rules[0].onExitCodes.containerName", E.NOT_FOUND)
    assert '"b"' in str(error)


def test_an_init_container_counts_for_container_name() -> None:
    flow = with_pfp(exit_rule(1, containerName="setup"))
    for name in ("a", "b", "c", "d"):
        pod_spec(flow, name)["initContainers"] = [{"name": "setup", "image": "x"}]
    assert_valid(flow)


def test_manual_steps_are_not_subject_to_the_pod_failure_policy() -> None:
    flow = with_pfp(exit_rule(1, containerName="main"))
    assert_valid(flow)  # the Manual step "gate" has no containers


def test_a_step_with_its_own_pod_failure_policy_is_exempt_from_the_flows() -> None:
    flow = with_pfp(exit_rule(1, containerName="main"))
    job_spec = step(flow, "d")["template"]["spec"]
    job_spec["template"]["spec"].update(restartPolicy="Never", containers=[{"name": "other", "image": "x"}])
    job_spec["podFailurePolicy"] = {"rules": [exit_rule(3, containerName="other")]}
    assert_valid(flow)


def test_a_templates_own_pod_failure_policy_is_checked_too() -> None:
    flow = base_flow()
    job_spec = step(flow, "a")["template"]["spec"]
    job_spec["template"]["spec"]["restartPolicy"] = "OnFailure"
    job_spec["podFailurePolicy"] = {"rules": [exit_rule(0, containerName="nope")]}
    own = "spec.steps[0].template.spec.podFailurePolicy"
    assert_error(flow, own + ".rules[0].onExitCodes.values[0]", E.INVALID, "value 0")
    assert_error(flow, own + ".rules[0].onExitCodes.containerName", E.NOT_FOUND)
    assert_error(flow, "spec.steps[0].template.spec.template.spec.restartPolicy", E.INVALID, own)


def test_fail_index_is_allowed_only_with_backoff_limit_per_index() -> None:
    flow = base_flow()
    job_spec = step(flow, "a")["template"]["spec"]
    job_spec["podFailurePolicy"] = {"rules": [exit_rule(1, action="FailIndex")]}
    assert_error(flow, "spec.steps[0].template.spec.podFailurePolicy.rules[0].action", E.NOT_SUPPORTED)
    job_spec.update(backoffLimitPerIndex=1, completionMode="Indexed", completions=3)
    assert_valid(flow)


def test_restart_policy_omitted_counts_as_never() -> None:
    flow = with_pfp(exit_rule(1))
    for name in ("a", "b", "c", "d"):
        del pod_spec(flow, name)["restartPolicy"]
    assert_valid(flow)


# --- resourceTemplates ---------------------------------------------------------------------------------


def pvc(name: Any = "data", **spec: Any) -> dict[str, Any]:
    base = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    return {"metadata": {"name": name}, "spec": {**base, **spec}}


def with_templates(**templates: Any) -> Flow:
    return mutated(lambda f: f["spec"].update(resourceTemplates=templates))


def test_valid_resource_templates() -> None:
    assert_valid(
        with_templates(
            volumeClaimTemplates=[pvc(), pvc("scratch", accessModes=["ReadWriteMany", "ReadOnlyMany"])],
            configMapTemplates=[{"metadata": {"name": "settings"}, "data": {"a.yaml": "x: 1", "KEY_2": "v"}}],
        )
    )


@pytest.mark.parametrize(
    ("claim", "path", "kind", "text"),
    [
        ({"spec": pvc()["spec"]}, "metadata", E.REQUIRED, ""),
        (pvc(None), "metadata.name", E.REQUIRED, ""),
        (pvc("Data_1"), "metadata.name", E.INVALID, "RFC 1123 subdomain"),
        (pvc("d" * 250), "metadata.name", E.INVALID, "created as flow-"),
        ({"metadata": {"name": "x"}}, "spec", E.REQUIRED, ""),
        (pvc(accessModes=None), "spec.accessModes", E.REQUIRED, ""),
        (pvc(accessModes=[]), "spec.accessModes", E.REQUIRED, "at least one access mode"),
        (pvc(accessModes=["ReadWriteSometimes"]), "spec.accessModes[0]", E.NOT_SUPPORTED, '"ReadWriteOnce"'),
        (pvc(resources=None), "spec.resources", E.REQUIRED, ""),
        (pvc(resources={}), "spec.resources.requests", E.REQUIRED, ""),
        (pvc(resources={"requests": {}}), "spec.resources.requests[storage]", E.REQUIRED, "request storage"),
        (
            pvc(resources={"requests": {"storage": "0"}}),
            "spec.resources.requests[storage]",
            E.INVALID,
            "greater than 0",
        ),
        (
            pvc(resources={"requests": {"storage": "big"}}),
            "spec.resources.requests[storage]",
            E.INVALID,
            "quantities",
        ),
        (
            pvc(resources={"requests": {"storage": "10Gi\u00a0"}}),
            "spec.resources.requests[storage]",
            E.INVALID,
            "only spaces around a quantity, not U+00A0",
        ),
        # YAML's `enabled: true` would have become the label value "True".
        (
            {**pvc(), "metadata": {"name": "data", "labels": {"enabled": True}}},
            "metadata.labels[enabled]",
            E.INVALID,
            "must be a string",
        ),
    ],
)
def test_invalid_volume_claim_templates(claim: dict[str, Any], path: str, kind: ErrorType, text: str) -> None:
    flow = with_templates(volumeClaimTemplates=[claim])
    assert_error(flow, f"spec.resourceTemplates.volumeClaimTemplates[0].{path}", kind, text)


def test_duplicate_resource_template_names() -> None:
    flow = with_templates(
        volumeClaimTemplates=[pvc(), pvc()], configMapTemplates=[{"metadata": {"name": "c"}}] * 2
    )
    assert_error(flow, "spec.resourceTemplates.volumeClaimTemplates[1].metadata.name", E.DUPLICATE)
    assert_error(flow, "spec.resourceTemplates.configMapTemplates[1].metadata.name", E.DUPLICATE)


def test_config_map_templates_need_a_name_and_valid_keys() -> None:
    flow = with_templates(
        configMapTemplates=[{"metadata": {}}, {"metadata": {"name": "c"}, "data": {"bad key": "v", "k": 1}}]
    )
    assert_error(flow, "spec.resourceTemplates.configMapTemplates[0].metadata.name", E.REQUIRED)
    assert_error(flow, "spec.resourceTemplates.configMapTemplates[1].data", E.INVALID, '"bad key"')
    assert_error(flow, "spec.resourceTemplates.configMapTemplates[1].data[k]", E.INVALID, "must be a string")


def test_config_map_binary_data_must_be_base64() -> None:
    # The apiserver would refuse the ConfigMap when the flow starts, 400: refused here instead.
    ok = {"metadata": {"name": "c"}, "binaryData": {"blob": "aGVsbG8="}}
    assert_valid(with_templates(configMapTemplates=[ok]))
    bad = {"metadata": {"name": "c"}, "binaryData": {"blob": "not base64!"}}
    assert_error(
        with_templates(configMapTemplates=[bad]),
        "spec.resourceTemplates.configMapTemplates[0].binaryData[blob]",
        E.INVALID,
        "base64",
    )
