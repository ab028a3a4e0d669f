"""Creating a flow's `spec.resourceTemplates` objects (PVCs, ConfigMaps) for the controller.

No informer caches these kinds, so no expectations either: the create's answer carries the UID, the
status write records the object, and only then does a later reconcile start steps. A 409 after a lost
status write is resolved by reading the object: ours (controller UID) is adopted unless it is being
deleted; one on its way out (being deleted, ours included, or a deleted flow's of the same name:
`planner.on_its_way_out`, as for Jobs) is waited for; anything else fails the flow, as does a manifest
the apiserver refuses.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from zen_flow import planner
from zen_flow.api import JobFlow, JobFlowStatus
from zen_flow.api.flow_status import ObjectRef
from zen_flow.api.meta import ObjectMeta
from zen_flow.kube.errors import AlreadyExists, ApiError
from zen_flow.logging import get_logger

log = get_logger(__name__)

# The Warning event while a name is held by an object on its way out (a Job's is `JobNameTaken`).
REASON_RESOURCE_NAME_TAKEN = "ResourceNameTaken"


class ResourceApi(Protocol):
    async def create_resource(self, namespace: str, kind: str, body: dict[str, Any]) -> ObjectMeta: ...
    async def get_resource(self, namespace: str, kind: str, name: str) -> ObjectMeta: ...


@dataclass
class Provisioned:
    """What `create_resources` did: {(kind, name): uid} created or adopted, names held by objects on
    their way out (with why the flow waits, for its Warning event), problems that fail the flow, and
    (when failing) the refs of what was made."""

    uids: dict[tuple[str, str], str] = field(default_factory=dict)
    waiting: dict[tuple[str, str], str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    recorded: list[ObjectRef] = field(default_factory=list)


def with_resource_uids(
    status: JobFlowStatus, uids: dict[tuple[str, str], str], waiting: Container[tuple[str, str]]
) -> JobFlowStatus:
    """Fill in the UIDs of the objects just created or adopted, and drop the refs of those still waiting
    for a namesake to go (not recorded, they are tried again on the next reconcile)."""
    refs = tuple(
        replace(ref, uid=uids[(ref.kind or "", ref.name)])
        if not ref.uid and uids.get((ref.kind or "", ref.name))
        else ref
        for ref in status.resource_refs
        if (ref.kind or "", ref.name) not in waiting
    )
    return status.model_copy(update={"resource_refs": refs})


async def create_resources(api: ResourceApi, flow: JobFlow, actions: Sequence[planner.Action]) -> Provisioned:
    """Create the objects of spec.resourceTemplates the plan asks for.

    See the module's docstring for what a 409 leads to.
    """
    made = Provisioned()
    ns, uid = flow.metadata.namespace, flow.metadata.uid
    for action in actions:
        if not isinstance(action, planner.CreateResource):
            continue
        key = (action.kind, action.name)
        try:
            meta = await api.create_resource(ns, action.kind, action.body)
            made.uids[key] = meta.uid
            log.info("created resource", kind=action.kind, name=action.name)
            continue
        except AlreadyExists:
            meta = await api.get_resource(ns, action.kind, action.name)
        except ApiError as err:
            if not err.permanent:
                raise  # 403 (a quota, a policy), 5xx: retried with backoff; the reconciler says why
            # 400, 413, 422: the apiserver will never take this template (the CRD keeps its fields
            # as written, so only the apiserver finds e.g. binaryData that is not base64).
            made.problems.append(f"{action.kind} {action.name}: {err.status} {err.message or err}")
            continue
        owner, deleting = meta.controller_ref(), meta.deletion_timestamp is not None
        # Our own object being deleted (a user deleted it after the status write recording it was lost)
        # is not adopted: it would vanish under the flow's steps (a PVC being deleted mounts in no new
        # pod). It is waited for, then created again.
        if owner is not None and owner.uid == uid and not deleting:
            made.uids[key] = meta.uid
            log.info("adopted resource", kind=action.kind, name=action.name)
        elif planner.on_its_way_out(owner, deleting, flow):
            # A re-created or restored flow meets its predecessor's objects before the garbage collector
            # has even marked them: failing it would make `delete && apply` fail for good.
            made.waiting[key] = planner.name_taken(action.kind, action.name)
            log.info("resource name held by an object on its way out", kind=action.kind, name=action.name)
        else:
            holder = f"; it belongs to {planner.describe_owner(owner)}" if owner is not None else ""
            made.problems.append(
                f"{action.kind} {action.name} already exists and was not created by this flow{holder}"
            )
    if made.problems:
        made.recorded = [
            ObjectRef(api_version="v1", kind=kind, name=name, namespace=ns, uid=object_uid or None)
            for (kind, name), object_uid in made.uids.items()
        ]
    return made
