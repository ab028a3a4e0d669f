"""A flow that reaches the controller naming a JobFlowTemplate and without steps (created without the
mutating webhook) is expanded by the controller, or fails when its template does not exist; it never
runs as an empty flow nor stalls. The controller runs its real worker loop against FakeApiServer."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from controller_rig import Rig

from zen_flow.api import JobFlow
from zen_flow_dev.testing.flows import job_template

JOB_TEMPLATE = job_template()
TEMPLATE: dict[str, Any] = {
    "apiVersion": "workflow.kube-zen.io/v1alpha1",
    "kind": "JobFlowTemplate",
    "metadata": {"name": "build", "namespace": "team"},
    "spec": {
        "steps": [
            {"name": "compile", "template": JOB_TEMPLATE},
            {"name": "test", "dependencies": ["compile"], "template": JOB_TEMPLATE},
        ],
        "arguments": {"parameters": [{"name": "env", "value": "dev", "enum": ["dev", "prod"]}]},
        "executionPolicy": {"backoffLimit": 2},
    },
}


def from_template(name: str = "build", **spec: Any) -> JobFlow:
    return JobFlow.model_validate(
        {
            "metadata": {"name": "nightly", "namespace": "team"},
            "spec": {
                "templateRef": {"name": name},
                "executionPolicy": {"backoffLimit": 6, "concurrencyPolicy": "Forbid"},
                **spec,
            },
        }
    )


FROM_TEMPLATE = from_template(arguments={"parameters": [{"name": "env", "value": "prod"}]})


@pytest.mark.parametrize("rig", [FROM_TEMPLATE], indirect=True)
async def test_the_controller_expands_a_flow_and_then_runs_its_steps(rig: Rig) -> None:
    api = rig.api
    api.templates[("team", "build")] = copy.deepcopy(TEMPLATE)
    api.sync()
    await rig.settle()
    flow = rig.flow
    assert [s.name for s in flow.spec.steps] == ["compile", "test"]
    assert flow.spec.arguments is not None
    assert [(p.name, p.value) for p in flow.spec.arguments.parameters] == [("env", "prod")]
    assert flow.spec.execution_policy is not None
    assert flow.spec.execution_policy.backoff_limit == 2
    assert flow.spec.template_ref is not None
    assert flow.spec.template_ref.name == "build"
    assert flow.metadata.labels["workflow.kube-zen.io/template"] == "build"
    assert api.job_creates == []  # the expansion is the reconcile's only write
    assert ("Normal", "TemplateExpanded") in {(t, r) for t, r, _ in api.events}
    # A later edit of the template does not reach the flow: it is a snapshot.
    api.templates[("team", "build")]["spec"]["steps"] = [{"name": "other", "template": JOB_TEMPLATE}]
    api.sync()
    await rig.settle()
    assert rig.step("compile") == "Running"
    assert [s.name for s in rig.flow.spec.steps] == ["compile", "test"]


@pytest.mark.parametrize("rig", [from_template("ghost")], indirect=True)
async def test_a_flow_whose_template_does_not_exist_fails_invalid_naming_it(rig: Rig) -> None:
    api = rig.api
    api.sync()
    await rig.settle()
    status = rig.flow.status
    assert status.phase == "Failed"
    valid = next(c for c in status.conditions if c.type == "Valid")
    message = (
        'spec.templateRef.name: Not found: "ghost": JobFlowTemplate "ghost" not found in namespace "team"'
    )
    assert (valid.status, valid.reason) == ("False", "TemplateNotFound")
    assert valid.message == f"cannot expand the flow: {message}"
    assert ("Warning", "TemplateNotFound", message) in api.events
    assert api.job_creates == []
    # Finished: later reconciles read the template no more and change nothing.
    events = len(api.events)
    api.sync()
    await rig.settle(60)
    assert len(api.events) == events
    assert rig.flow.status.phase == "Failed"


UNDECLARED = from_template(arguments={"parameters": [{"name": "x", "value": "1"}]})


@pytest.mark.parametrize("rig", [UNDECLARED], indirect=True)
async def test_a_flow_the_template_cannot_take_fails_with_the_expansions_errors(rig: Rig) -> None:
    api = rig.api
    api.templates[("team", "build")] = copy.deepcopy(TEMPLATE)
    api.sync()
    await rig.settle()
    valid = next(c for c in rig.flow.status.conditions if c.type == "Valid")
    assert (rig.flow.status.phase, valid.reason) == ("Failed", "InvalidSpec")
    assert 'spec.arguments.parameters[0].name: Not found: "x"' in (valid.message or "")


@pytest.mark.parametrize("rig", [FROM_TEMPLATE], indirect=True)
async def test_an_expansion_that_loses_a_race_is_tried_again_from_the_new_version(rig: Rig) -> None:
    api = rig.api
    api.templates[("team", "build")] = copy.deepcopy(TEMPLATE)
    api.sync()
    # A user labels the flow before the controller's write: the write is refused, then made again.
    api.update_flow(rig.key, lambda f: f.model_copy(update={"metadata": f.metadata.model_copy(
        update={"labels": {"owner": "data-team"}})}))  # fmt: skip
    await rig.settle()
    # Refused while the cache lags (retried with backoff, as any conflict), never written over the label.
    assert api.refused
    assert set(api.refused) == {"409 Conflict"}
    assert rig.flow.spec.steps == ()
    api.sync()
    await rig.settle()
    assert [s.name for s in rig.flow.spec.steps] == ["compile", "test"]
    assert rig.flow.metadata.labels == {"owner": "data-team", "workflow.kube-zen.io/template": "build"}
