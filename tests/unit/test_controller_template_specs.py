"""The webhook and the controller store the same spec when they expand a template, including the TTL of a
CronJobFlow's run made from one."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from template_flows_rig import CLUSTER_TEMPLATE, TEMPLATE, from_cluster_template

from zen_flow.api import JobFlow
from zen_flow.api.constants import RUN_TTL_SECONDS
from zen_flow.api.cronjobflow import CronJobFlow
from zen_flow.controller.templates import TemplateResolver
from zen_flow.planner.cron_runs import build_run
from zen_flow.webhook.envelope import parse_review
from zen_flow.webhook.mutation import default_ops
from zen_flow.webhook.patch import apply_patch
from zen_flow.webhook.templates import expand_review
from zen_flow_dev.testing.apiserver_fake import merged

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
