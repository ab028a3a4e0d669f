"""A flow that reaches the controller naming a JobFlowTemplate and without steps (created without the
mutating webhook) is expanded by the controller, or fails when its template does not exist; it never
runs as an empty flow nor stalls. The controller runs its real worker loop against FakeApiServer."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from controller_rig import Rig
from structlog.testing import capture_logs

from zen_flow.api import JobFlow
from zen_flow.api.constants import RUN_TTL_SECONDS
from zen_flow.api.cronjobflow import CronJobFlow
from zen_flow.controller.templates import TemplateResolver
from zen_flow.kube.errors import ApiError, from_status
from zen_flow.planner.cron_runs import build_run
from zen_flow.webhook.envelope import parse_review
from zen_flow.webhook.mutation import default_ops
from zen_flow.webhook.patch import apply_patch
from zen_flow.webhook.templates import expand_review
from zen_flow_dev.testing.apiserver_fake import merged
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


# --- ClusterJobFlowTemplates (templateRef.clusterScope: true) ----------------------------------------------

CLUSTER_TEMPLATE: dict[str, Any] = {
    **TEMPLATE,
    "kind": "ClusterJobFlowTemplate",
    "metadata": {"name": "build"},
    "spec": {**TEMPLATE["spec"], "steps": [{"name": "shared", "template": JOB_TEMPLATE}]},
}


def from_cluster_template(name: str = "build") -> JobFlow:
    flow = from_template(name)
    assert flow.spec.template_ref is not None
    ref = flow.spec.template_ref.model_copy(update={"cluster_scope": True})
    return flow.model_copy(update={"spec": flow.spec.model_copy(update={"template_ref": ref})})


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


# --- the webhook and the controller store the same spec --------------------------------------------------

DEFAULTS = {"concurrencyPolicy": "Forbid", "ttlSecondsAfterFinished": 86400, "backoffLimit": 6}
RICH = copy.deepcopy(TEMPLATE)
RICH["spec"]["executionPolicy"] = {
    **DEFAULTS,
    "backoffLimit": 2,
    "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
}
BARE = {**TEMPLATE, "spec": {"steps": TEMPLATE["spec"]["steps"]}}


class Stub:
    """The controller's API for one flow: the raw flow as stored, the template, the write it makes."""

    def __init__(self, raw: dict[str, Any], template: dict[str, Any]) -> None:
        self.raw, self.template = raw, template
        self.patches: list[Mapping[str, Any]] = []

    async def get_flow(self, namespace: str, name: str) -> Mapping[str, Any]:
        return copy.deepcopy(self.raw)

    async def get_flow_template(
        self, namespace: str, name: str, *, cluster: bool = False
    ) -> Mapping[str, Any]:
        self.cluster = cluster
        return copy.deepcopy(self.template)

    async def expand_flow(self, namespace: str, name: str, rv: str, spec: Any, labels: Any) -> None:
        self.patches.append(spec)
        self.labels = dict(labels)

    def emit(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize(
    ("template", "spec"),
    [
        (RICH, {}),
        (
            RICH,
            {
                "executionPolicy": {
                    **DEFAULTS,
                    "podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {"values": [42]}}]},
                }
            },
        ),
        (
            RICH,
            {"executionPolicy": {**DEFAULTS, "ttlStrategy": {"secondsAfterSuccess": 10}}, "suspend": True},
        ),
        (TEMPLATE, {"arguments": {"parameters": [{"name": "env", "value": "prod"}]}}),
        (BARE, {"arguments": {"parameters": []}}),
        (RICH, {"templateRef": {"name": "build", "clusterScope": True}}),
        (TEMPLATE, {"templateRef": {"name": "build", "clusterScope": False}}),
    ],
)
async def test_the_webhook_and_the_controller_store_the_same_spec(
    template: dict[str, Any], spec: dict[str, Any]
) -> None:
    raw = {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "JobFlow",
        "metadata": {"name": "nightly", "namespace": "team", "resourceVersion": "7"},
        "spec": {"templateRef": {"name": "build"}, "executionPolicy": DEFAULTS, **copy.deepcopy(spec)},
    }
    cluster = raw["spec"]["templateRef"].get("clusterScope") is True
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u",
            "kind": {"group": "workflow.kube-zen.io", "version": "v1alpha1", "kind": "JobFlow"},
            "operation": "CREATE",
            "namespace": "team",
            "userInfo": {"username": "alice"},
            "object": raw,
        },
    }
    answer = expand_review(parse_review(json.dumps(review).encode()), template, read=True)["response"]
    by_webhook = apply_patch(raw, json.loads(base64.b64decode(answer["patch"])))["spec"]
    stub = Stub(raw, template)
    assert await TemplateResolver(stub, stub).resolve(JobFlow.model_validate(raw)) is None
    [patch] = stub.patches
    by_controller = merged(raw["spec"], patch)
    assert by_controller == by_webhook
    assert "templateRef" not in by_webhook
    # The same labels too, and the same kind of template read.
    by_webhook_labels = apply_patch(raw, json.loads(base64.b64decode(answer["patch"])))["metadata"]["labels"]
    assert stub.labels == by_webhook_labels
    assert stub.cluster is cluster
    assert by_webhook_labels == {
        "workflow.kube-zen.io/template": "build",
        **({"workflow.kube-zen.io/cluster-template": "true"} if cluster else {}),
    }


async def test_an_expansion_reads_the_template_the_stored_flow_names_not_the_caches() -> None:
    # templateRef may be edited until the flow starts: the cache still names the cluster template
    # `build`, the stored flow (after the user's edit) the namespace's `build`. Expanding the stored spec
    # from the cluster template would store its steps, labelled cluster-template.
    raw = {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "JobFlow",
        "metadata": {"name": "nightly", "namespace": "team", "resourceVersion": "8"},
        "spec": {"templateRef": {"name": "build"}, "executionPolicy": DEFAULTS},
    }
    stub = Stub(raw, CLUSTER_TEMPLATE)
    cached = from_cluster_template()
    assert await TemplateResolver(stub, stub).resolve(cached) is None
    assert stub.patches == []  # nothing written: the edit's watch event brings the flow back
    assert not hasattr(stub, "cluster")  # and no template read for the stale name
    # With the cache caught up, the namespace's template is read and its labels written.
    stub.template = copy.deepcopy(TEMPLATE)
    assert await TemplateResolver(stub, stub).resolve(JobFlow.model_validate(raw)) is None
    assert stub.cluster is False
    assert stub.labels == {"workflow.kube-zen.io/template": "build"}
    assert [s["name"] for s in merged(raw["spec"], stub.patches[0])["steps"]] == ["compile", "test"]


# --- the TTL of a CronJobFlow's run made from a template, by both paths --------------------------------

PLAIN = {"metadata": {"name": "nightly", "namespace": "team"}}


def cron_run(policy: dict[str, Any] | None) -> dict[str, Any]:
    """The run a CronJobFlow creates (its own builder), whose jobFlowTemplate.spec names the template."""
    spec: dict[str, Any] = {"templateRef": {"name": "build"}}
    if policy is not None:
        spec["executionPolicy"] = policy
    cron = CronJobFlow.model_validate(
        {
            "metadata": {"name": "nightly", "namespace": "team", "uid": "cron-uid"},
            "spec": {"schedule": "@weekly", "jobFlowTemplate": {"spec": spec}},
        }
    )
    return build_run(cron, datetime(2026, 5, 3, tzinfo=UTC))


def plain(policy: dict[str, Any] | None) -> dict[str, Any]:
    spec = {"templateRef": {"name": "build"}, **({"executionPolicy": policy} if policy else {})}
    return {**copy.deepcopy(PLAIN), "spec": spec}


def as_stored(body: dict[str, Any]) -> dict[str, Any]:
    """What the apiserver stores from `body`: the CRD's executionPolicy defaults written into it."""
    result: dict[str, Any] = apply_patch(body, default_ops(body))
    return result


@pytest.mark.parametrize(
    ("flow", "template_policy", "ttl"),
    [
        # A run: the template stored with the CRD's day (its author set none) gives none: the
        # CronJobFlow's history limits decide, as for its runs without a template.
        (cron_run(None), None, RUN_TTL_SECONDS),
        (cron_run(None), {"backoffLimit": 2}, RUN_TTL_SECONDS),
        (cron_run(None), {"ttlSecondsAfterFinished": 3600}, 3600),  # the template's own
        (cron_run({"ttlSecondsAfterFinished": 60}), {"ttlSecondsAfterFinished": 3600}, 60),  # the cron's
        (
            cron_run({"ttlSecondsAfterFinished": RUN_TTL_SECONDS}),
            {"ttlSecondsAfterFinished": 3600},
            RUN_TTL_SECONDS,
        ),
        # A flow of no CronJobFlow: its value is a value, "never" included; none is the template's.
        (
            plain({"ttlSecondsAfterFinished": RUN_TTL_SECONDS}),
            {"ttlSecondsAfterFinished": 3600},
            RUN_TTL_SECONDS,
        ),
        (plain(None), {"ttlSecondsAfterFinished": 3600}, 3600),
        (plain(None), None, 86400),
    ],
)
async def test_a_cron_runs_ttl_is_its_cronjobflows_the_templates_or_none_by_both_paths(
    flow: dict[str, Any], template_policy: dict[str, Any] | None, ttl: int
) -> None:
    written = copy.deepcopy(BARE)
    if template_policy is not None:
        written["spec"]["executionPolicy"] = template_policy
    template = as_stored(written)
    raw = as_stored({"apiVersion": "workflow.kube-zen.io/v1alpha1", "kind": "JobFlow", **flow})
    raw["metadata"] = {**raw["metadata"], "namespace": "team", "resourceVersion": "7"}
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u",
            "kind": {"group": "workflow.kube-zen.io", "version": "v1alpha1", "kind": "JobFlow"},
            "operation": "CREATE",
            "namespace": "team",
            "userInfo": {"username": "system:serviceaccount:zen-flow:zen-flow-controller"},
            "object": raw,
        },
    }
    answer = expand_review(parse_review(json.dumps(review).encode()), template, read=True)["response"]
    assert answer["allowed"], answer
    by_webhook = apply_patch(raw, json.loads(base64.b64decode(answer["patch"])))["spec"]
    stub = Stub(raw, template)
    assert await TemplateResolver(stub, stub).resolve(JobFlow.model_validate(raw)) is None
    [patch] = stub.patches
    by_controller = merged(raw["spec"], patch)
    assert by_webhook["executionPolicy"]["ttlSecondsAfterFinished"] == ttl
    assert by_controller["executionPolicy"]["ttlSecondsAfterFinished"] == ttl


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
