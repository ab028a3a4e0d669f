"""The JobFlowTemplate and ClusterJobFlowTemplate the controller template tests expand, and the flows that
name them (made without the mutating webhook: no steps)."""

from __future__ import annotations

from typing import Any

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
