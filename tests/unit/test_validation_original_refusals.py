"""docs/API.md, "Manifests the original accepted": every form listed there as refused is refused, at the
field the list names, and the two forms listed as accepted are accepted and do what it says."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from validation_samples import Flow, assert_valid, errors_of, job_step, job_template, make_flow, manual_step

from zen_flow.api import JobFlow
from zen_flow.planner import CreateJob
from zen_flow_dev.testing.simulator import Simulator

FAIL_ON_EXIT_1 = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [1]}}]}
S3 = {"bucket": "results"}


def reading(path: str) -> dict[str, Any]:
    return {"parameters": [{"name": "p", "valueFrom": {"jsonPath": path}}]}


REFUSED: dict[str, tuple[Flow, str]] = {
    "podFailurePolicy with restartPolicy OnFailure": (
        make_flow(
            job_step("a", template=job_template(restart="OnFailure")),
            executionPolicy={"podFailurePolicy": FAIL_ON_EXIT_1},
        ),
        "spec.steps[0].template.spec.template.spec.restartPolicy",
    ),
    "podFailurePolicy naming a container the Job lacks": (
        make_flow(
            job_step("a", template=job_template(container="app")),
            executionPolicy={
                "podFailurePolicy": {
                    "rules": [
                        {
                            "action": "FailJob",
                            "onExitCodes": {"containerName": "main", "operator": "In", "values": [1]},
                        }
                    ]
                }
            },
        ),
        "spec.executionPolicy.podFailurePolicy.rules[0].onExitCodes.containerName",
    ),
    "timeoutSeconds 0": (make_flow(job_step("a", timeoutSeconds=0)), "spec.steps[0].timeoutSeconds"),
    "a dotted step name": (make_flow(job_step("load.db")), "spec.steps[0].name"),
    "a step name of 64 characters": (make_flow(job_step("s" * 64)), "spec.steps[0].name"),
    "a flow name of 64 characters": (make_flow(job_step("a"), name="f" * 64), "metadata.name"),
    "a Go-template when": (
        make_flow(job_step("a"), job_step("b", "a", when='{{ eq .StepStatus.a.Phase "Succeeded" }}')),
        "spec.steps[1].when",
    ),
    "a when naming a step it does not depend on": (
        make_flow(job_step("a"), job_step("x"), job_step("b", "a", when="steps.x.phase == 'Succeeded'")),
        "spec.steps[2].when",
    ),
    "an input jsonPath without its step": (
        make_flow(job_step("a"), job_step("b", "a", inputs=reading("$.succeeded"))),
        "spec.steps[1].inputs.parameters[0].valueFrom.jsonPath",
    ),
    "an input jsonPath from a step it does not depend on": (
        make_flow(job_step("a"), job_step("x"), job_step("b", "a", inputs=reading("x:$.succeeded"))),
        "spec.steps[2].inputs.parameters[0].valueFrom.jsonPath",
    ),
    "an input jsonPath from no such step": (
        make_flow(job_step("a"), job_step("b", "a", inputs=reading("zz:$.succeeded"))),
        "spec.steps[1].inputs.parameters[0].valueFrom.jsonPath",
    ),
    "an output jsonPath prefixed with another step": (
        make_flow(job_step("a"), job_step("b", "a", outputs=reading("a:$.succeeded"))),
        "spec.steps[1].outputs.parameters[0].valueFrom.jsonPath",
    ),
    "a JSONPath wildcard": (
        make_flow(job_step("a"), job_step("b", "a", inputs=reading("a:$.conditions[*].type"))),
        "spec.steps[1].inputs.parameters[0].valueFrom.jsonPath",
    ),
    "from an output without s3": (
        make_flow(
            job_step("a", outputs={"artifacts": [{"name": "rep", "path": "/out/rep.txt"}]}),
            job_step(
                "b", "a", inputs={"artifacts": [{"name": "rep", "from": "a/rep", "path": "/in/rep.txt"}]}
            ),
        ),
        "spec.steps[1].inputs.artifacts[0].from",
    ),
    "an output with s3 directly under /": (
        make_flow(job_step("a", outputs={"artifacts": [{"name": "rep", "path": "/rep.txt", "s3": S3}]})),
        "spec.steps[0].outputs.artifacts[0].path",
    ),
    "a Manual step with a template": (
        make_flow(job_step("a"), manual_step("gate", "a", template=job_template())),
        "spec.steps[1].template",
    ),
    "an empty dependency": (
        make_flow(job_step("a"), job_step("b", "a", "")),
        "spec.steps[1].dependencies[1]",
    ),
    "duplicate parameter names": (
        make_flow(
            job_step("a", inputs={"parameters": [{"name": "p", "value": "1"}, {"name": "p", "value": "2"}]})
        ),
        "spec.steps[0].inputs.parameters[1].name",
    ),
    "a template that is not a Job": (
        make_flow(job_step("a", template={"apiVersion": "v1", "kind": "Pod", "spec": {}})),
        "spec.steps[0].template.kind",
    ),
}


@pytest.mark.parametrize(("flow", "path"), list(REFUSED.values()), ids=list(REFUSED))
def test_a_form_the_original_accepted_is_refused_at_its_field(flow: Flow, path: str) -> None:
    assert path in [e.path for e in errors_of(flow)]


def test_an_output_without_s3_is_stored_nowhere_and_the_simple_go_template_forms_are_filled_in() -> None:
    flow = make_flow(
        job_step(
            "a",
            template=job_template(),
            outputs={"artifacts": [{"name": "rep", "path": "/out/rep.txt"}]},
            inputs={"parameters": [{"name": "x", "value": "1"}]},
        )
    )
    flow["spec"]["steps"][0]["template"]["spec"]["template"]["spec"]["containers"][0]["command"] = [
        "echo {{.JobFlow.Name}} {{.Parameters.x}} {{.metadata.name}}"
    ]
    assert_valid(flow)
    flow["metadata"]["uid"] = "uid-1"
    plan = Simulator(JobFlow.model_validate(flow), datetime(2025, 1, 1, tzinfo=UTC)).reconcile()
    [create] = [a for a in plan.actions if isinstance(a, CreateJob)]
    pod = create.body["spec"]["template"]["spec"]
    # The original's simple forms are filled in; other `{{ }}` text (a kubectl go-template) is left alone.
    assert pod["containers"][0]["command"] == [f"echo {flow['metadata']['name']} 1 {{{{.metadata.name}}}}"]
    assert "initContainers" not in pod  # no uploader: the output is stored nowhere
