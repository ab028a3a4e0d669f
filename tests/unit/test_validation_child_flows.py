"""Validation of `type: Flow` steps (child flows): errors name the field."""

from __future__ import annotations

from typing import Any

from zen_flow.validation import validate_jobflow, validate_jobflowtemplate
from zen_flow_dev.testing.flows import flow_manifest, job_step, job_template


def flow_step(name: str = "sub", **fields: Any) -> dict[str, Any]:
    return {"name": name, "type": "Flow", "flow": {"templateRef": {"name": "build"}}, **fields}


def errors(*steps: dict[str, Any]) -> dict[str, str]:
    return {e.path: e.detail for e in validate_jobflow(flow_manifest("f", "default", steps))}


def test_a_flow_step_with_a_template_and_arguments_is_valid() -> None:
    step = flow_step(
        inputs={"parameters": [{"name": "v", "value": "1"}]},
        flow={
            "templateRef": {"name": "build", "clusterScope": True},
            "arguments": {"parameters": [{"name": "ref", "value": "{{inputs.parameters.v}}"}]},
        },
        outputs={"parameters": [{"name": "o", "valueFrom": {"jsonPath": "$.phase"}}]},
    )
    assert errors(job_step("a"), step) == {}


def test_fields_that_make_no_sense_on_a_flow_step_are_refused_naming_them() -> None:
    step = flow_step(
        template=job_template(),
        memoize={"key": "k", "cache": {"configMap": {"name": "c"}}},
        message="hi",
        outputs={
            "artifacts": [{"name": "a", "path": "/out/a"}],
            "parameters": [{"name": "p", "valueFrom": {"terminationMessage": {}}}],
        },
        inputs={"artifacts": [{"name": "x", "http": {"url": "https://example.com/x"}}]},
    )
    found = errors(job_step("a"), step)
    for path in (
        "spec.steps[1].template",
        "spec.steps[1].memoize",
        "spec.steps[1].message",
        "spec.steps[1].outputs.artifacts",
        "spec.steps[1].outputs.parameters[0].valueFrom.terminationMessage",
        "spec.steps[1].inputs.artifacts",
    ):
        assert path in found, (path, found)


def test_a_flow_step_needs_a_template_name_and_matrix_is_refused() -> None:
    found = errors(
        {"name": "a", "type": "Flow", "flow": {"templateRef": {}}},
        {"name": "b", "type": "Flow"},
        flow_step("c", matrix={"parameters": [{"name": "m", "values": ["1", "2"]}]}),
    )
    assert "spec.steps[0].flow.templateRef.name" in found
    assert "spec.steps[1].flow" in found
    assert found["spec.steps[2].matrix"] == "a Flow step cannot fan out"


def test_a_flow_step_with_a_matrix_is_refused_for_its_matrix_alone() -> None:
    # The matrix is not expanded into items for a Flow step (their labels would be refused as the step's
    # metadata): the step is checked as the Flow step it is, and a step after it names it, not its items.
    matrix = {"parameters": [{"name": "m", "values": ["1", "2"]}]}
    flow = flow_manifest("f", "default", [flow_step("c", matrix=matrix), job_step("d", "c")])
    assert [str(e) for e in validate_jobflow(flow)] == [
        "spec.steps[0].matrix: Forbidden: a Flow step cannot fan out"
    ]
    flow = flow_manifest("f", "default", [job_step("a", matrix=matrix), flow_step("c", matrix=matrix)])
    assert [str(e) for e in validate_jobflow(flow)] == [
        "spec.steps[1].matrix: Forbidden: a Flow step cannot fan out"
    ]
    step = flow_step("c", matrix=matrix, podPendingTimeoutSeconds=60)
    assert [str(e) for e in validate_jobflow(flow_manifest("f", "default", [step]))] == [
        "spec.steps[0].matrix: Forbidden: a Flow step cannot fan out",
        "spec.steps[0].podPendingTimeoutSeconds: Forbidden: "
        "a Flow step has no pod of its own: set it on its template's steps",
    ]


def test_a_flow_step_s_matrix_parameters_still_fill_its_arguments() -> None:
    # Set aside, the matrix leaves its parameters as the step's (empty) inputs: an argument naming one is
    # not refused as a placeholder naming no input parameter, only the matrix is.
    matrix = {"parameters": [{"name": "m", "values": ["1", "2"]}]}
    child = {
        "templateRef": {"name": "build"},
        "arguments": {"parameters": [{"name": "n", "value": "{{inputs.parameters.m}}"}]},
    }
    step = flow_step("c", matrix=matrix, flow=child)
    assert [str(e) for e in validate_jobflow(flow_manifest("f", "default", [step]))] == [
        "spec.steps[0].matrix: Forbidden: a Flow step cannot fan out"
    ]


def test_flow_on_a_step_that_is_not_of_type_flow_is_refused() -> None:
    found = errors(job_step("a", flow={"templateRef": {"name": "build"}}))
    assert found == {"spec.steps[0].flow": "only a step of type: Flow runs a child flow"}


def test_duplicate_arguments_are_refused() -> None:
    step = flow_step(
        flow={
            "templateRef": {"name": "build"},
            "arguments": {"parameters": [{"name": "x", "value": "1"}, {"name": "x", "value": "2"}]},
        }
    )
    assert "spec.steps[0].flow.arguments.parameters[1].name" in errors(step)


def test_a_template_whose_flow_step_runs_itself_is_refused() -> None:
    template = {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "JobFlowTemplate",
        "metadata": {"name": "build"},
        "spec": {"steps": [job_step("a"), flow_step("again")]},
    }
    paths = [e.path for e in validate_jobflowtemplate(template)]
    assert paths == ["spec.steps[1].flow.templateRef.name"]
    template["spec"]["steps"][1]["flow"]["templateRef"]["clusterScope"] = True  # another template
    assert validate_jobflowtemplate(template) == []


def test_an_argument_placeholder_naming_no_input_is_refused_naming_the_field() -> None:
    step = flow_step(
        inputs={"parameters": [{"name": "v", "value": "1"}]},
        flow={
            "templateRef": {"name": "build"},
            "arguments": {"parameters": [{"name": "ref", "value": "{{inputs.parameters.zz}}"}]},
        },
    )
    found = errors(step)
    assert list(found) == ["spec.steps[0].flow.arguments.parameters[0].value"]
    assert (
        'step "sub" has no input parameter "zz"' in found["spec.steps[0].flow.arguments.parameters[0].value"]
    )


def test_metadata_on_a_flow_step_is_refused_naming_it() -> None:
    found = errors(flow_step(metadata={"labels": {"team": "a"}}))
    assert "spec.steps[0].metadata" in found
    assert "put labels and annotations in the template" in found["spec.steps[0].metadata"]


def test_the_suggested_output_path_validates() -> None:
    found = errors(
        flow_step(outputs={"parameters": [{"name": "p", "valueFrom": {"terminationMessage": {}}}]})
    )
    [why] = found.values()
    suggested = why.split("(e.g. ")[1].split(":")[0]
    step = flow_step(outputs={"parameters": [{"name": "p", "valueFrom": {"jsonPath": suggested}}]})
    assert errors(step) == {}
