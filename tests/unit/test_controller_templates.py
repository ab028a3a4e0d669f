"""A flow that reaches the controller naming a JobFlowTemplate and without steps (created without the
mutating webhook) is expanded by the controller, or fails when its template does not exist or its
expansion would be refused; it never runs as an empty flow nor stalls. The controller runs its real
worker loop against FakeApiServer."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest
from controller_rig import Rig
from structlog.testing import capture_logs
from template_flows_rig import FROM_TEMPLATE, JOB_TEMPLATE, TEMPLATE, from_template

from zen_flow.kube.errors import ApiError


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
    assert flow.spec.template_ref is None  # removed: a stored flow holds steps or templateRef, not both
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


@pytest.mark.parametrize("rig", [from_template("..")], indirect=True)
async def test_a_flow_naming_a_template_by_a_name_that_cannot_be_one_fails_without_a_read(rig: Rig) -> None:
    # Stored without the webhook: the name is checked before it goes into the read's URL path.
    api = rig.api
    read: list[str] = []

    async def get_flow_template(
        namespace: str, name: str, *, cluster: bool = False
    ) -> Mapping[str, Any] | None:
        read.append(name)
        return None

    api.get_flow_template = get_flow_template  # type: ignore[method-assign]
    api.sync()
    await rig.settle()
    assert read == []
    valid = next(c for c in rig.flow.status.conditions if c.type == "Valid")
    assert (valid.status, valid.reason) == ("False", "InvalidSpec")
    assert valid.message.startswith('cannot expand the flow: spec.templateRef.name: Invalid value: "..": ')
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
    read = api.get_flow

    async def read_then_label(namespace: str, name: str) -> Any:
        # A user labels the flow between the controller's read and its write: the write is refused.
        raw = await read(namespace, name)
        if not api.refused:
            api.update_flow(rig.key, lambda f: f.model_copy(update={"metadata": f.metadata.model_copy(
                update={"labels": {"owner": "data-team"}})}))  # fmt: skip
        return raw

    api.get_flow = read_then_label  # type: ignore[method-assign]
    await rig.settle()
    # Refused (retried with backoff, as any conflict), never written over the label; then made again.
    assert api.refused == ["409 Conflict"]
    api.sync()
    await rig.settle()
    assert [s.name for s in rig.flow.spec.steps] == ["compile", "test"]
    assert rig.flow.metadata.labels == {"owner": "data-team", "workflow.kube-zen.io/template": "build"}


# --- an expansion that would be refused ------------------------------------------------------------------

CYCLE = copy.deepcopy(TEMPLATE)
CYCLE["spec"]["steps"][1]["dependencies"] = ["test"]  # on itself
GATE = copy.deepcopy(TEMPLATE)
GATE["spec"]["steps"][1]["type"] = "Manual"  # with a template: runs nothing, takes none


@pytest.mark.parametrize(
    ("template", "error"),
    [
        (CYCLE, 'spec.steps[1].dependencies: Invalid value: "test -> test": the dependencies form a cycle'),
        (GATE, "spec.steps[1].template: Forbidden: Manual steps take no template"),
    ],
)
@pytest.mark.parametrize("rig", [FROM_TEMPLATE], indirect=True)
async def test_a_template_written_without_the_webhook_fails_its_flows_naming_the_field(
    rig: Rig, template: dict[str, Any], error: str
) -> None:
    # Nothing checked such a template when it was written: the apiserver's admission policies would
    # refuse the expansion's write for good. The controller's validator refuses it before it is sent.
    api = rig.api
    api.templates[("team", "build")] = copy.deepcopy(template)
    written: list[str] = []
    expand_flow = api.expand_flow

    async def recorded(namespace: str, name: str, *args: Any) -> None:
        written.append(name)
        await expand_flow(namespace, name, *args)

    api.expand_flow = recorded  # type: ignore[method-assign]
    api.sync()
    await rig.settle()
    status = rig.flow.status
    valid = next(c for c in status.conditions if c.type == "Valid")
    assert (status.phase, valid.status, valid.reason) == ("Failed", "False", "InvalidSpec")
    assert (valid.message or "").startswith(f"cannot expand the flow: {error}")
    assert written == []
    assert api.job_creates == []


REFUSED = 'jobflows.workflow.kube-zen.io "nightly" is forbidden: ValidatingAdmissionPolicy denied request'


@pytest.mark.parametrize("code", [422, 403])
@pytest.mark.parametrize("rig", [FROM_TEMPLATE], indirect=True)
async def test_a_write_the_apiserver_refuses_for_good_fails_the_flow_with_its_message(
    rig: Rig, code: int
) -> None:
    api = rig.api
    api.templates[("team", "build")] = copy.deepcopy(TEMPLATE)
    attempts: list[str] = []

    async def refuse(namespace: str, name: str, *args: Any) -> None:
        attempts.append(name)
        raise ApiError(code, "Invalid" if code == 422 else "Forbidden", REFUSED)

    api.expand_flow = refuse  # type: ignore[method-assign]
    api.sync()
    with capture_logs():
        for _ in range(5):
            await rig.settle(60)
    status = rig.flow.status
    valid = next(c for c in status.conditions if c.type == "Valid")
    assert (status.phase, valid.reason) == ("Failed", "InvalidSpec")
    assert valid.message == f"cannot expand the flow: the apiserver refused the expanded flow: {REFUSED}"
    assert attempts == ["nightly"]  # once, not retried for ever
    assert any(reason == "FlowFailed" for _, reason, _ in api.events)


GRACED = from_template(
    executionPolicy={"backoffLimit": 6, "concurrencyPolicy": "Forbid", "finallyGraceSeconds": 600}
)


@pytest.mark.parametrize(("deadline", "runs"), [(3600, True), (300, False)])
@pytest.mark.parametrize("rig", [GRACED], indirect=True)
async def test_a_flows_grace_is_checked_with_its_templates_deadline_at_expansion(
    rig: Rig, deadline: int, runs: bool
) -> None:
    # Admitted unexpanded (its deadline is the template's), the flow is checked merged: under a template
    # deadline of 300 s its grace of 600 s fails it, naming the field, before anything is written.
    api = rig.api
    template = copy.deepcopy(TEMPLATE)
    template["spec"]["executionPolicy"]["activeDeadlineSeconds"] = deadline
    api.templates[("team", "build")] = template
    api.sync()
    await rig.settle()
    status = rig.flow.status
    if runs:
        policy = rig.flow.spec.execution_policy
        assert policy is not None
        assert (policy.active_deadline_seconds, policy.finally_grace_seconds) == (3600, 600)
        assert status.phase != "Failed"
        return
    valid = next(c for c in status.conditions if c.type == "Valid")
    assert (status.phase, valid.status, valid.reason) == ("Failed", "False", "InvalidSpec")
    assert (valid.message or "").startswith(
        "cannot expand the flow: spec.executionPolicy.finallyGraceSeconds: Invalid value: 600: must be less "
        "than activeDeadlineSeconds"
    )
    assert api.job_creates == []
