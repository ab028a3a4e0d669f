"""`spec.resourceTemplates`: the PersistentVolumeClaims and ConfigMaps a flow gets before its first step.

Each template becomes `<flow>-<metadata.name>` in the flow's namespace, with our labels and a controller
ownerReference to the flow (the garbage collector deletes it with the flow). An object counts as created
once `status.resourceRefs` lists it: the plan that creates it also records it, and that status write is
what lets a later reconcile start steps. The names are deterministic, so a create repeated after a lost
status write answers 409, and the controller adopts the object if the flow owns it and it is not being
deleted (controller/provisioning.py).

A template's labels and annotations under zen-flow's own domain (core/own_keys.py) are never sent: the
controller creates the object under its identity, and trusts those keys (a ConfigMap labelled as a memoize
cache serves other flows' steps). Admission refuses them; a flow that got one past it (no webhook, stored
before the rule) fails when the object would be made, naming the field and the key (`refusals`), rather
than running without the labels it asked for. Objects an earlier version made are left as they are.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from zen_flow.api.constants import LABEL_FLOW, LABEL_MANAGED_BY, MANAGED_BY
from zen_flow.api.flow_status import ObjectRef
from zen_flow.api.jobflow import JobFlow
from zen_flow.core.instances import instance_labels
from zen_flow.core.naming import label_value, resource_name
from zen_flow.core.own_keys import OWN_KEY_REFUSAL, is_own_key
from zen_flow.planner.actions import CreateResource, EventSpec, Plan
from zen_flow.planner.jobs import owner_reference
from zen_flow.planner.lifecycle import fail_invalid, unpromised

PVC = "PersistentVolumeClaim"
CONFIG_MAP = "ConfigMap"
API_VERSION = "v1"
REASON_RESOURCE_CONFLICT = "ResourceConflict"
# The Normal event of a plan that creates objects (dropped when a create fails: `fail_resources`).
REASON_RESOURCES_CREATED = "ResourcesCreated"

# Server-populated fields a template copied from `kubectl get -o yaml` may carry.
_SERVER_FIELDS = (
    "generateName",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "managedFields",
    "selfLink",
    "finalizers",
)


def resource_labels(flow: JobFlow) -> dict[str, str]:
    return {
        LABEL_FLOW: label_value(flow.metadata.name),
        LABEL_MANAGED_BY: MANAGED_BY,
        **instance_labels(flow.metadata.labels),
    }


def _template_name(template: Mapping[str, Any]) -> str:
    meta = template.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return name if isinstance(name, str) else ""


def _foreign(value: object) -> dict[str, str]:
    """A template's labels or annotations without zen-flow's own keys."""
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items() if not is_own_key(str(k))}


def build_resource(flow: JobFlow, kind: str, template: Mapping[str, Any]) -> dict[str, Any]:
    """Deep copy of the template with our name, namespace, labels and ownerReference, and zen-flow's own
    label and annotation keys dropped from it (a flow whose template has one fails first: `refusals`)."""
    body = copy.deepcopy(dict(template))
    body["apiVersion"] = API_VERSION
    body["kind"] = kind
    body.pop("status", None)
    meta = body.get("metadata")
    meta = dict(meta) if isinstance(meta, Mapping) else {}
    for field in _SERVER_FIELDS:
        meta.pop(field, None)
    meta["name"] = resource_name(flow.metadata.name, _template_name(template))
    meta["namespace"] = flow.metadata.namespace
    meta["labels"] = {**_foreign(meta.get("labels")), **resource_labels(flow)}
    if (annotations := _foreign(meta.get("annotations"))) or "annotations" in meta:
        meta["annotations"] = annotations
    # Only ours: an object has at most one controller, and it must be the flow for GC and adoption.
    meta["ownerReferences"] = [owner_reference(flow)]
    body["metadata"] = meta
    return body


def _templates(flow: JobFlow) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(kind, field path, template) of every named template, PVCs first, in spec order. Templates without
    a name are left out (the validator rejects them; the controller validates a flow before planning it)."""
    templates = flow.spec.resource_templates
    if templates is None:
        return []
    return [
        (kind, f"spec.resourceTemplates.{field}[{i}]", template)
        for kind, field, items in (
            (PVC, "volumeClaimTemplates", templates.volume_claim_templates),
            (CONFIG_MAP, "configMapTemplates", templates.config_map_templates),
        )
        for i, template in enumerate(items)
        if _template_name(template)
    ]


def _unrecorded(flow: JobFlow) -> list[tuple[str, str, Mapping[str, Any]]]:
    """The templates whose objects `status.resourceRefs` does not list yet."""
    templates = _templates(flow)
    if not templates:
        return []
    recorded = {(ref.kind, ref.name) for ref in flow.status.resource_refs}
    flow_name = flow.metadata.name
    return [
        (kind, path, t)
        for kind, path, t in templates
        if (kind, resource_name(flow_name, _template_name(t))) not in recorded
    ]


def wanted(flow: JobFlow) -> tuple[CreateResource, ...]:
    """Every object the flow's templates describe."""
    return tuple(CreateResource(kind, build_resource(flow, kind, t)) for kind, _, t in _templates(flow))


def missing(flow: JobFlow) -> tuple[CreateResource, ...]:
    """The objects `status.resourceRefs` does not list yet: to create before any step may start.
    Cheap once they are all recorded (no manifest is built): it runs on every reconcile."""
    return tuple(CreateResource(kind, build_resource(flow, kind, t)) for kind, _, t in _unrecorded(flow))


def refusals(flow: JobFlow) -> list[str]:
    """Why the objects still to create cannot be: each label or annotation key of zen-flow's own in
    their templates, as admission words it (`ConfigMap ci-cache: spec.resourceTemplates...labels[KEY]:
    Forbidden: ...`). Empty for a flow whose objects are all recorded (made by an earlier version)."""
    found: list[str] = []
    for kind, path, template in _unrecorded(flow):
        meta = template.get("metadata")
        if not isinstance(meta, Mapping):
            continue
        name = resource_name(flow.metadata.name, _template_name(template))
        for field in ("labels", "annotations"):
            keys = meta.get(field)
            for key in keys if isinstance(keys, Mapping) else ():
                if is_own_key(str(key)):
                    found.append(
                        f"{kind} {name}: {path}.metadata.{field}[{key}]: Forbidden: {OWN_KEY_REFUSAL}"
                    )
    return found


def resource_ref(flow: JobFlow, create: CreateResource, uid: str | None = None) -> ObjectRef:
    return ObjectRef(
        api_version=API_VERSION,
        kind=create.kind,
        name=create.name,
        namespace=flow.metadata.namespace,
        uid=uid or None,
    )


def describe(creates: tuple[CreateResource, ...]) -> str:
    return ", ".join(f"{c.kind} {c.name}" for c in creates)


def fail_resources(
    flow: JobFlow,
    problems: Sequence[str],
    now: datetime,
    recorded: Sequence[ObjectRef] = (),
    planned: Plan | None = None,
) -> Plan:
    """Objects that cannot be created (the name belongs to an object the flow does not own, or the
    apiserver refuses the template): the flow fails once, condition Failed with reason
    ResourceConflict. `recorded`: the objects this reconcile did create or adopt; they are the flow's
    and are listed in `status.resourceRefs` so that nobody wonders where they came from.

    `planned`: the plan that asked for the objects. The flow fails from its status (without the refs it
    added for the objects), and keeps its events but `ResourcesCreated`: a rerun it honoured stays
    recorded in `status.audit.retries` with its `FlowRetried` event (from the cached Failed status it
    would be honoured again on every reconcile), and a step that ended in it stays ended."""
    base = flow.status
    kept: tuple[EventSpec, ...] = ()
    if planned is not None:
        base = planned.status.model_copy(update={"resource_refs": flow.status.resource_refs})
        kept = tuple(e for e in planned.events if e.reason != REASON_RESOURCES_CREATED)
    result = fail_invalid(
        # A rerun reopened a Failed flow: it fails again from the rerun's status (the Failed condition
        # turns True anew, the TTL counts from now), with a FlowFailed event.
        flow.model_copy(update={"status": base}),
        problems,
        now,
        reason=REASON_RESOURCE_CONFLICT,
        prefix="cannot create the flow's resources",
        # A template added to a running flow: its running steps' Jobs are stopped with it (a failed flow
        # with Jobs still running would hold their pods, and a rerun would start a second attempt beside).
        base=base,
    )
    status = result.status
    if recorded:
        known = {(ref.kind, ref.name) for ref in base.resource_refs}
        refs = (*base.resource_refs, *(r for r in recorded if (r.kind, r.name) not in known))
        status = status.model_copy(update={"resource_refs": refs})
    return Plan(result.actions, status, (*unpromised(kept, status), *result.events), result.requeue_after)
