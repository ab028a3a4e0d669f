"""Step rules for what a step is: type and template (a batch/v1 Job), container resources, message and
metadata."""

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
    mutated,
    pod_spec,
    step,
)

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
            backoffLimit=0, activeDeadlineSeconds=1, completionMode="Indexed", completions=1
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
