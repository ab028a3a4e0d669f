"""Step rules: type and template (a batch/v1 Job), message and metadata, retryPolicy, timeoutSeconds,
`when`, continueOnFailure, allowFailure, dependencyPolicy."""

from __future__ import annotations

from typing import Any

import pytest
from validation_samples import (
    ErrorType,
    Mutation,
    assert_error,
    assert_valid,
    base_flow,
    container,
    errors_of,
    job_step,
    job_template,
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
POD = "spec.steps[0].template.spec.template.spec"
C0 = POD + ".containers[0]"

# --- type and template ---------------------------------------------------------------------------------


def test_type_must_be_job_or_manual() -> None:
    assert_error(
        mutated(lambda f: step(f, "a").update(type="Cron")),
        "spec.steps[0].type",
        E.NOT_SUPPORTED,
        '"Job", "Manual"',
    )


def test_manual_step_takes_no_template() -> None:
    flow = mutated(lambda f: step(f, "gate").update(template=step(f, "a")["template"]))
    error = assert_error(flow, "spec.steps[2].template", E.FORBIDDEN)
    assert "Manual steps take no template" in str(error)


@pytest.mark.parametrize("template", [None, {}], ids=["missing", "empty"])
def test_job_step_needs_a_template(template: Any) -> None:
    flow = mutated(lambda f: step(f, "a").update(type="Job", template=template))
    assert_error(flow, "spec.steps[0].template", E.REQUIRED, "Job steps need a template")


def test_a_step_without_type_and_template_is_an_approval_gate_as_in_the_original() -> None:
    assert_valid(make_flow({"name": "gate"}, job_step("b", "gate")))


def test_template_must_be_an_object() -> None:
    assert_error(mutated(lambda f: step(f, "a").update(template="job")), "spec.steps[0].template", E.INVALID)


@pytest.mark.parametrize(
    ("mutation", "path", "kind", "text"),
    [
        (
            lambda f: step(f, "a")["template"].update(apiVersion="batch/v1beta1"),
            "spec.steps[0].template.apiVersion",
            E.NOT_SUPPORTED,
            '"batch/v1"',
        ),
        (
            lambda f: step(f, "a")["template"].update(kind="CronJob"),
            "spec.steps[0].template.kind",
            E.NOT_SUPPORTED,
            '"Job"',
        ),
        (lambda f: step(f, "a")["template"].pop("spec"), "spec.steps[0].template.spec", E.REQUIRED, ""),
        (
            lambda f: step(f, "a")["template"].update(spec=[]),
            "spec.steps[0].template.spec",
            E.INVALID,
            "must be an object",
        ),
        (
            lambda f: step(f, "a")["template"]["spec"].pop("template"),
            "spec.steps[0].template.spec.template",
            E.REQUIRED,
            "",
        ),
        (lambda f: step(f, "a")["template"]["spec"]["template"].pop("spec"), POD, E.REQUIRED, ""),
        (lambda f: pod_spec(f, "a").pop("containers"), POD + ".containers", E.REQUIRED, ""),
        (
            lambda f: pod_spec(f, "a").update(containers=[]),
            POD + ".containers",
            E.REQUIRED,
            "at least one container",
        ),
        (
            lambda f: pod_spec(f, "a").update(containers={"name": "main"}),
            POD + ".containers",
            E.INVALID,
            "must be an array",
        ),
        (
            lambda f: pod_spec(f, "a").update(containers=["main"]),
            POD + ".containers[0]",
            E.INVALID,
            "must be an object",
        ),
        (lambda f: container(f, "a").pop("name"), C0 + ".name", E.REQUIRED, ""),
        (lambda f: container(f, "a").update(name="Main"), C0 + ".name", E.INVALID, "RFC 1123 label"),
        (lambda f: container(f, "a").pop("image"), C0 + ".image", E.REQUIRED, ""),
        (lambda f: container(f, "a").update(image=""), C0 + ".image", E.REQUIRED, ""),
        (lambda f: container(f, "a").update(command="true"), C0 + ".command", E.INVALID, "must be an array"),
        (lambda f: container(f, "a").update(args=[1]), C0 + ".args[0]", E.INVALID, "must be a string"),
        (lambda f: container(f, "a").update(env=[{"value": "x"}]), C0 + ".env[0].name", E.REQUIRED, ""),
        (
            lambda f: container(f, "a").update(env=[{"name": "X", "value": 1}]),
            C0 + ".env[0].value",
            E.INVALID,
            "must be a string",
        ),
        (lambda f: container(f, "a").update(ports={}), C0 + ".ports", E.INVALID, "must be an array"),
        (
            lambda f: pod_spec(f, "a")["containers"].append({"name": "main", "image": "x"}),
            POD + ".containers[1].name",
            E.DUPLICATE,
            "",
        ),
        (
            lambda f: pod_spec(f, "a").update(initContainers=[{"name": "main", "image": "x"}]),
            POD + ".initContainers[0].name",
            E.DUPLICATE,
            "",
        ),
        (
            lambda f: pod_spec(f, "a").update(initContainers=[{"name": "init"}]),
            POD + ".initContainers[0].image",
            E.REQUIRED,
            "",
        ),
        (lambda f: pod_spec(f, "a").update(volumes=[{}]), POD + ".volumes[0].name", E.REQUIRED, ""),
        (
            lambda f: pod_spec(f, "a").update(restartPolicy="Always"),
            POD + ".restartPolicy",
            E.NOT_SUPPORTED,
            '"OnFailure", "Never"',
        ),
        (
            lambda f: step(f, "a")["template"]["spec"].update(backoffLimit=-1),
            "spec.steps[0].template.spec.backoffLimit",
            E.INVALID,
            "greater than or equal to 0",
        ),
        (
            lambda f: step(f, "a")["template"]["spec"].update(backoffLimit="6"),
            "spec.steps[0].template.spec.backoffLimit",
            E.INVALID,
            "must be an integer",
        ),
        (
            lambda f: step(f, "a")["template"]["spec"].update(activeDeadlineSeconds=0),
            "spec.steps[0].template.spec.activeDeadlineSeconds",
            E.INVALID,
            "greater than 0",
        ),
        (
            lambda f: step(f, "a")["template"]["spec"].update(parallelism=-2),
            "spec.steps[0].template.spec.parallelism",
            E.INVALID,
            "",
        ),
        (
            lambda f: step(f, "a")["template"]["spec"].update(completions=1.5),
            "spec.steps[0].template.spec.completions",
            E.INVALID,
            "integer",
        ),
        (
            lambda f: step(f, "a")["template"]["spec"].update(completionMode="Random"),
            "spec.steps[0].template.spec.completionMode",
            E.NOT_SUPPORTED,
            "",
        ),
        (
            lambda f: step(f, "a")["template"]["spec"].update(suspend="no"),
            "spec.steps[0].template.spec.suspend",
            E.INVALID,
            "boolean",
        ),
        (
            lambda f: step(f, "a")["template"]["spec"].update(selector={"matchLabels": {"a": "b"}}),
            "spec.steps[0].template.spec.selector",
            E.FORBIDDEN,
            "manualSelector",
        ),
        (
            lambda f: step(f, "a")["template"].update(metadata={"labels": {"x": "a b"}}),
            "spec.steps[0].template.metadata.labels[x]",
            E.INVALID,
            "",
        ),
        (
            lambda f: step(f, "a")["template"]["spec"]["template"].update(metadata={"labels": {"-x": "y"}}),
            "spec.steps[0].template.spec.template.metadata.labels",
            E.INVALID,
            "",
        ),
    ],
)
def test_template_must_be_a_valid_job(mutation: Mutation, path: str, kind: ErrorType, text: str) -> None:
    assert_error(mutated(mutation), path, kind, text)


@pytest.mark.parametrize(
    "mutation",
    [
        lambda f: step(f, "a")["template"].pop("apiVersion"),
        lambda f: step(f, "a")["template"].pop("kind"),
        lambda f: pod_spec(f, "a").pop("restartPolicy"),
        lambda f: pod_spec(f, "a").update(restartPolicy="OnFailure"),
        lambda f: step(f, "a")["template"]["spec"].update(
            backoffLimit=0, activeDeadlineSeconds=1, completionMode="Indexed"
        ),
        lambda f: step(f, "a")["template"]["spec"].update(
            selector={"matchLabels": {"a": "b"}}, manualSelector=True
        ),
        lambda f: pod_spec(f, "a").update(
            initContainers=[{"name": "init", "image": "x"}], volumes=[{"name": "v", "emptyDir": {}}]
        ),
        lambda f: step(f, "a")["template"].update(
            metadata={"labels": {"team": "data"}, "annotations": {"example.com/x": "y"}}
        ),
    ],
    ids=[
        "no-apiVersion",
        "no-kind",
        "no-restartPolicy",
        "OnFailure",
        "limits-at-edge",
        "manualSelector",
        "init",
        "metadata",
    ],
)
def test_valid_templates(mutation: Mutation) -> None:
    assert_valid(mutated(mutation))


# --- container resources -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "resources",
    [
        {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "64Mi"}},
        {"requests": {"cpu": 1}, "limits": {"cpu": 2.5}},
        {"limits": {"nvidia.com/gpu": "1", "ephemeral-storage": "1e9"}},
        {"requests": {"memory": "1Gi"}, "limits": {"memory": "1074M"}},
        # The apiserver trims the spaces around a quantity in the Job the controller sends, so do we.
        {"requests": {"memory": " 1Gi  "}},
    ],
)
def test_valid_resources(resources: dict[str, Any]) -> None:
    assert_valid(mutated(lambda f: container(f, "a").update(resources=resources)))


@pytest.mark.parametrize(
    ("resources", "path", "text"),
    [
        ({"requests": {"cpu": "-1"}}, "requests[cpu]", "greater than 0"),
        ({"requests": {"cpu": "0"}}, "requests[cpu]", "greater than 0"),
        ({"limits": {"memory": 0}}, "limits[memory]", "greater than 0"),
        ({"limits": {"memory": "lots"}}, "limits[memory]", "quantities must match"),
        ({"limits": {"memory": "1.2.3"}}, "limits[memory]", "quantities must match"),
        (
            {"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}},
            "requests[cpu]",
            "must be less than or equal to cpu limit of 1500m",
        ),
        ({"requests": {"memory": "2Gi"}, "limits": {"memory": "2G"}}, "requests[memory]", "limit of 2G"),
        ({"requests": {"cpu": True}}, "requests[cpu]", "quantities must match"),
        # Any other white space reaches it escaped, and it refuses the quantity: the step's Job with it
        # (tests/integration/test_quantities_agree.py).
        ({"limits": {"memory": "\t1Gi"}}, "limits[memory]", "not U+0009"),
        ({"limits": {"memory": "1Gi\n"}}, "limits[memory]", "not U+000A"),
        ({"requests": {"memory": "\u00a01Gi"}}, "requests[memory]", "not U+00A0"),
        ({"limits": {"memory": "1Gi\x1c"}}, "limits[memory]", "not U+001C"),
    ],
)
def test_invalid_resources(resources: dict[str, Any], path: str, text: str) -> None:
    flow = mutated(lambda f: container(f, "a").update(resources=resources))
    assert_error(flow, f"{C0}.resources.{path}", E.INVALID, text)


def test_resources_must_be_objects() -> None:
    flow = mutated(lambda f: container(f, "a").update(resources={"limits": ["1"]}))
    assert_error(flow, C0 + ".resources.limits", E.INVALID, "must be an object")


# --- message and metadata ------------------------------------------------------------------------------


def test_message_is_a_bounded_string() -> None:
    assert_valid(mutated(lambda f: step(f, "gate").update(message="m" * 1024)))
    assert_error(
        mutated(lambda f: step(f, "gate").update(message="m" * 1025)), "spec.steps[2].message", E.TOO_LONG
    )
    assert_error(mutated(lambda f: step(f, "gate").update(message=3)), "spec.steps[2].message", E.INVALID)


def test_step_metadata_labels_and_annotations_are_valid_for_the_job() -> None:
    assert_valid(
        mutated(
            lambda f: step(f, "a").update(
                metadata={"labels": {"team": "x"}, "annotations": {"a.io/b": "long text"}}
            )
        )
    )
    flow = mutated(
        lambda f: step(f, "a").update(metadata={"labels": {"team": "x" * 64}, "annotations": {"_bad": "v"}})
    )
    assert_error(flow, "spec.steps[0].metadata.labels[team]", E.INVALID, "no more than 63")
    assert_error(flow, "spec.steps[0].metadata.annotations", E.INVALID, '"_bad"')
    assert_error(
        mutated(lambda f: step(f, "a").update(metadata={"labels": {"a": 1}})),
        "spec.steps[0].metadata.labels[a]",
        E.INVALID,
    )


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


def test_base_flow_steps_are_where_the_tests_think() -> None:
    assert [s["name"] for s in base_flow()["spec"]["steps"]] == ["a", "b", "gate", "c", "d"]
    assert make_flow(job_step("x"))["spec"]["steps"][0]["name"] == "x"


def test_a_null_in_a_list_of_strings_is_an_error_not_an_absence() -> None:
    """The apiserver refuses `[null]` in a string list; the validator must too (the models cannot read it)."""
    assert_error(
        mutated(lambda f: step(f, "b").update(dependencies=[None])),
        "spec.steps[1].dependencies[0]",
        E.INVALID,
        "must be a string, not null",
    )


def test_steps_alike_but_for_their_wiring_each_get_their_own_errors() -> None:
    """A fan-out repeats one step under many names; each copy's problems are reported at its own path,
    and each copy's references are checked against its own name (`validation/memo.py`)."""
    fields = {"retryPolicy": {"limit": -1}, "template": job_template(restart="Always")}
    outputs = {"parameters": [{"name": "n", "valueFrom": {"jsonPath": "w0:$.succeeded"}}]}
    flow = make_flow(
        job_step("w0", outputs=outputs, **fields),
        job_step("w1", "w0", when="steps.w0.phase == 'Succeeded'", outputs=outputs, **fields),
        job_step("w2", "w9", outputs=outputs, **fields),
    )
    errors = {(e.path, e.type) for e in errors_of(flow)}
    for i in range(3):
        assert (f"spec.steps[{i}].retryPolicy.limit", E.INVALID) in errors
        assert (f"spec.steps[{i}].template.spec.template.spec.restartPolicy", E.NOT_SUPPORTED) in errors
    prefix = ".outputs.parameters[0].valueFrom.jsonPath"
    assert ("spec.steps[0]" + prefix, E.INVALID) not in errors  # "w0:" names w0 itself
    assert {("spec.steps[1]" + prefix, E.INVALID), ("spec.steps[2]" + prefix, E.INVALID)} <= errors
    assert ("spec.steps[2].dependencies[0]", E.NOT_FOUND) in errors
    assert len(errors) == 9


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
