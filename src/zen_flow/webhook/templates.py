"""JobFlowTemplates and ClusterJobFlowTemplates at admission: pure review functions.

`/validate-jobflowtemplate` checks a template with `validate_jobflowtemplate` (its spec with the JobFlow
rules, errors named by field as for a JobFlow), `/validate-clusterjobflowtemplate` a cluster template
with the same rules; an UPDATE that keeps the stored spec is not checked again (ratcheting, as for
JobFlows and CronJobFlows).

The mutating webhook expands a JobFlow created with `spec.templateRef` and no steps: the server reads the
template (`template_to_read`, then a GET; a name that cannot be a template's is refused unread), and
`expand_review` writes the expansion into the flow (validation/expansion.py: the template's steps and
resourceTemplates, its arguments with the flow's values, the policies merged), removes `templateRef`,
labels it `workflow.kube-zen.io/template: NAME` (and `workflow.kube-zen.io/cluster-template: "true"` for
a ClusterJobFlowTemplate; for a JobFlowTemplate that label is removed, should the user have set it), and
adds the usual defaults and audit annotations. The validating webhook then sees an ordinary flow. A
create that sets both steps and templateRef is refused (a stored flow never holds both: a flow read back
with `kubectl get -o yaml` has steps only, and the apiserver calling this webhook again on its own output
sees no templateRef).
"""

from __future__ import annotations

from typing import Any

from zen_flow.api.constants import CLUSTER_TEMPLATE_KIND, TEMPLATE_KIND
from zen_flow.validation import validate_clusterjobflowtemplate, validate_jobflowtemplate
from zen_flow.validation.expansion import (
    TemplateName,
    expand,
    flow_shape,
    is_cron_run,
    missing_template,
    template_name_problem,
    template_ref,
    unreadable_template,
)
from zen_flow.webhook.envelope import AdmissionRequest
from zen_flow.webhook.mutation import mutation_ops
from zen_flow.webhook.patch import pointer
from zen_flow.webhook.review import _internal, allow, deny, deny_invalid, mutate_request, review_whole


def validate_template_review(body: bytes) -> dict[str, Any]:
    return review_whole(body, validate_jobflowtemplate, TEMPLATE_KIND)


def validate_cluster_template_review(body: bytes) -> dict[str, Any]:
    return review_whole(body, validate_clusterjobflowtemplate, CLUSTER_TEMPLATE_KIND)


def names_template(request: AdmissionRequest) -> bool:
    """A JobFlow create whose spec has a `templateRef` (expanded by `expand_review`)."""
    if request.sub_resource or request.operation != "CREATE":
        return False
    members = request.object.members_of("spec")
    return members is not None and "templateRef" in members


def template_to_read(request: AdmissionRequest) -> TemplateName | None:
    """The template `expand_review` needs for this create (one `names_template` said names one), None
    when it has steps already or names none it could read."""
    members = request.object.members_of("spec")
    if members is None or "steps" in members:
        return None
    ref = template_ref(request.object.member_part("spec", ("templateRef",)))
    # A name that cannot be a template's is refused by `expand_review`, never put into a read's URL path.
    return ref if ref is not None and template_name_problem(ref.name) is None else None


def expand_review(request: AdmissionRequest, template: Any, *, read: bool) -> dict[str, Any]:
    """The mutating webhook's answer to a create `names_template` picked: `template` is the raw template
    `template_to_read` named (None: it does not exist), when it was `read`; not read, the flow is left
    for the controller to expand (a webhook with no API client)."""
    try:
        obj = request.object.decode()
        spec = obj.get("spec") if isinstance(obj, dict) else None
        ref = template_ref(spec)
        if not isinstance(spec, dict) or ref is None:
            return mutate_request(request)  # nothing to expand; the validating webhook says why
        if (problem := flow_shape(spec) or template_name_problem(ref.name)) is not None:
            return deny_invalid(request, [problem])  # steps and templateRef, or a name no template has
        if not read:
            return mutate_request(request)
        if template is None:
            return deny_invalid(request, [missing_template(ref, request.namespace)])
        expansion = expand(spec, template, request.namespace, run=is_cron_run(obj.get("metadata")))
        if expansion.spec is None:
            return deny_invalid(request, list(expansion.errors))
        # The whole spec, `expand`'s: the controller's merge patch stores the same (controller/templates.py).
        ops: list[dict[str, Any]] = [{"op": "replace", "path": "/spec", "value": expansion.spec}]
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            return mutate_request(request)  # the validating webhook says why
        labels = meta.get("labels")
        if isinstance(labels, dict):
            # A cluster-template label the user set, on a flow from the namespace's template, goes.
            stale = ref.stale_labels(labels)
            ops += [{"op": "remove", "path": pointer("metadata", "labels", key)} for key in stale]
            ops += [
                {"op": "add", "path": pointer("metadata", "labels", key), "value": value}
                for key, value in ref.labels.items()
            ]
            labels = {key: value for key, value in labels.items() if key not in stale}
        else:
            labels = {}
            ops.append({"op": "add", "path": "/metadata/labels", "value": ref.labels})
        expanded = {
            **obj,
            "spec": expansion.spec,
            "metadata": {**meta, "labels": {**labels, **ref.labels}},
        }
        ops += mutation_ops(request.operation, expanded, None, request.username)
    except Exception as exc:  # fail closed, with a message, never a 500 traceback
        return _internal(request, "template expansion", exc)
    return allow(request.uid, ops)


def unreadable(request: AdmissionRequest, ref: TemplateName, why: str) -> dict[str, Any]:
    """The answer when the template could not be read (the webhook fails closed, as its failurePolicy)."""
    where = "" if ref.cluster else f" in namespace {request.namespace!r}"
    return deny(
        request.uid,
        503,
        "ServiceUnavailable",
        f"could not read {ref.kind} {ref.name!r}{where} to expand the flow: " + why,
    )


def refused_read(request: AdmissionRequest, ref: TemplateName, why: str) -> dict[str, Any]:
    """The answer when the apiserver forbids reading the template (403: RBAC): a field error naming
    `spec.templateRef.name` and the grant zen-flow lacks, not a 503 that suggests trying again."""
    return deny_invalid(request, [unreadable_template(ref, request.namespace, why)])
