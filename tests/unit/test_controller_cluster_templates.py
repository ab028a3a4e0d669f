"""A flow naming a ClusterJobFlowTemplate (templateRef.clusterScope: true) expanded by the controller: a
missing one, one its RBAC forbids for now or for good, and the label that says which kind it came from."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from controller_rig import Rig
from structlog.testing import capture_logs
from template_flows_rig import CLUSTER_TEMPLATE, TEMPLATE, from_cluster_template, from_template

from zen_flow.kube.errors import from_status


@pytest.mark.parametrize("rig", [from_cluster_template()], indirect=True)
async def test_the_controller_expands_a_flow_from_a_cluster_template(rig: Rig) -> None:
    api = rig.api
    api.templates[("team", "build")] = copy.deepcopy(TEMPLATE)  # the namespace's: not the one named
    api.cluster_templates["build"] = copy.deepcopy(CLUSTER_TEMPLATE)
    api.sync()
    await rig.settle()
    flow = rig.flow
    assert [s.name for s in flow.spec.steps] == ["shared"]
    assert flow.spec.template_ref is None
    assert flow.metadata.labels["workflow.kube-zen.io/template"] == "build"
    assert flow.metadata.labels["workflow.kube-zen.io/cluster-template"] == "true"
    assert ("Normal", "TemplateExpanded", "steps taken from ClusterJobFlowTemplate build") in api.events
    api.sync()
    await rig.settle()
    assert rig.step("shared") == "Running"  # in the flow's namespace, as any flow's


@pytest.mark.parametrize("rig", [from_cluster_template("ghost")], indirect=True)
async def test_a_flow_whose_cluster_template_does_not_exist_fails_naming_it(rig: Rig) -> None:
    api = rig.api
    api.templates[("team", "ghost")] = copy.deepcopy(TEMPLATE)  # the namespace's: not the one named
    api.sync()
    await rig.settle()
    valid = next(c for c in rig.flow.status.conditions if c.type == "Valid")
    message = 'spec.templateRef.name: Not found: "ghost": ClusterJobFlowTemplate "ghost" not found'
    assert (rig.flow.status.phase, valid.status, valid.reason) == ("Failed", "False", "TemplateNotFound")
    assert valid.message == f"cannot expand the flow: {message}"
    assert ("Warning", "TemplateNotFound", message) in api.events
    assert api.job_creates == []


DENIED = 'clusterjobflowtemplates.workflow.kube-zen.io "build" is forbidden: User "sa" cannot get'
FORBIDDEN_MESSAGE = (
    "spec.templateRef.name: Forbidden: zen-flow may not read "
    'ClusterJobFlowTemplate "build" (grant its controller `get` on clusterjobflowtemplates: '
    f"docs/RBAC.md): {DENIED}"
)


def count_template_reads(api: Any) -> list[str]:
    reads: list[str] = []
    read = api.get_flow_template

    async def counted(namespace: str, name: str, *, cluster: bool = False) -> Any:
        reads.append(name)
        return await read(namespace, name, cluster=cluster)

    api.get_flow_template = counted
    return reads


def forbid_cluster_template(api: Any) -> list[str]:
    """The cluster template `build` exists, but the apiserver answers 403 to its reads; the reads made."""
    api.cluster_templates["build"] = copy.deepcopy(CLUSTER_TEMPLATE)
    api.cluster_template_error = from_status(403, {"reason": "Forbidden", "message": DENIED})
    return count_template_reads(api)


@pytest.mark.parametrize("rig", [from_cluster_template()], indirect=True)
async def test_a_template_rbac_forbids_is_retried_so_a_grant_applied_later_lets_the_flow_run(
    rig: Rig,
) -> None:
    # A rollout that applies the controller before its RBAC: the 403 must not fail the flow at once.
    api = rig.api
    reads = forbid_cluster_template(api)
    api.sync()
    with capture_logs():
        for _ in range(3):
            await rig.settle(30)
    assert rig.flow.status.phase in (None, "", "Pending")
    assert not rig.flow.status.conditions
    assert len(reads) > 1  # retried with backoff
    warnings = [e for e in api.events if e[1] == "TemplateForbidden"]
    assert warnings == [
        (
            "Warning",
            "TemplateForbidden",
            f"{FORBIDDEN_MESSAGE} (retried with backoff for 300s, then the flow fails)",
        )
    ]  # once
    api.cluster_template_error = None  # the grant is applied
    for _ in range(6):
        await rig.settle(30)
    assert [s.name for s in rig.flow.spec.steps] == ["shared"]
    api.sync()
    await rig.settle()
    assert rig.step("shared") == "Running"


@pytest.mark.parametrize("rig", [from_cluster_template()], indirect=True)
async def test_a_template_rbac_forbids_for_good_fails_the_flow_template_forbidden_naming_the_grant(
    rig: Rig,
) -> None:
    # A controller bound by RoleBindings only: the apiserver answers 403 to the read of any
    # cluster-scoped object. After the retries the flow fails saying so; nothing is retried for ever.
    api = rig.api
    reads = forbid_cluster_template(api)
    api.sync()
    with capture_logs():
        for _ in range(20):
            await rig.settle(60)
    status = rig.flow.status
    valid = next(c for c in status.conditions if c.type == "Valid")
    assert (status.phase, valid.status, valid.reason) == ("Failed", "False", "TemplateForbidden")
    assert valid.message == f"cannot expand the flow: {FORBIDDEN_MESSAGE}"
    assert next(e for e in api.events if e[1] == "TemplateForbidden")[0] == "Warning"
    assert api.job_creates == []
    done = len(reads)
    for _ in range(5):
        await rig.settle(600)
    assert len(reads) == done  # failed: read no more


@pytest.mark.parametrize(
    "rig",
    [
        from_template().model_copy(
            update={
                "metadata": from_template().metadata.model_copy(
                    update={"labels": {"owner": "data-team", "workflow.kube-zen.io/cluster-template": "true"}}
                )
            }
        )
    ],
    indirect=True,
)
async def test_a_cluster_template_label_set_by_hand_goes_from_a_flow_of_the_namespaces_template(
    rig: Rig,
) -> None:
    api = rig.api
    api.templates[("team", "build")] = copy.deepcopy(TEMPLATE)
    api.sync()
    await rig.settle()
    assert [s.name for s in rig.flow.spec.steps] == ["compile", "test"]
    assert rig.flow.metadata.labels == {"owner": "data-team", "workflow.kube-zen.io/template": "build"}
