"""JobFlow custom objects: list/watch, get, JSON patch of /status, delete; create and annotate (the runs
of CronJobFlows)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from zen_flow.api.constants import ANNOTATION_SUSPENDED_BY_PARENT, FIELD_MANAGER, GROUP, PLURAL, VERSION
from zen_flow.kube.client import KubeClient
from zen_flow.kube.errors import TransportError
from zen_flow.kube.flow_templates import FlowTemplateClient
from zen_flow.kube.object_head import object_head
from zen_flow.kube.resource import Resource, ResourceLister
from zen_flow.kube.transport import MERGE_PATCH, METADATA_ONLY

JOBFLOWS = Resource(GROUP, VERSION, PLURAL)

# RFC 6902: a list of operations (a generated client that guesses the type from the body would send a dict
# as this type too, and the apiserver would reject it: craft.md §2.3; we always name it).
JSON_PATCH = "application/json-patch+json"


class _Version(BaseModel):
    model_config = ConfigDict(extra="ignore")
    resource_version: str = Field(alias="resourceVersion")


class _Written(BaseModel):
    """What we read of a written object: its new resourceVersion."""

    model_config = ConfigDict(extra="ignore")
    metadata: _Version


_WRITTEN = TypeAdapter(_Written)


class JobFlowClient(ResourceLister):
    def __init__(self, client: KubeClient, *, page_size: int = 100, label_selector: str = "") -> None:
        """`label_selector`: of the LIST and WATCH only (a controller instance's flows,
        core/instances.py); reads and writes by name reach any flow."""
        # Pages of 100: a JobFlow is 10-50 KB of JSON (up to 1.5 MiB), and a page is parsed whole, so
        # 500 large flows per page made the start-up peak (217 MB at 1,000 20-step flows).
        super().__init__(client, JOBFLOWS, label_selector, page_size=page_size)
        self._client = client
        # The templates flows name (controller/templates.py reads one to expand a flow).
        self.templates = FlowTemplateClient(client)

    async def get(self, namespace: str, name: str) -> dict[str, Any]:
        """The raw object (parsing is the caller's choice: a broken spec must not make `get` fail)."""
        return await self._client.request("GET", JOBFLOWS.path(namespace, name))

    async def patch_status(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> str:
        """JSON-patch (RFC 6902) the /status subresource; returns the flow's new resourceVersion.

        The reconciler's write (`zen_flow.core.jsonpatch.status_ops`): it replaces only the step entries
        that changed, and its `replace` of `/metadata/resourceVersion` makes it conditional (`Conflict`
        if the object changed). An operation that does not apply (a path that is not there) is `Invalid`
        (422).

        The answer is asked for as the flow's metadata only (`METADATA_ONLY`); should the apiserver
        answer with the whole object instead (~30 KB for 20 steps, ~200 KB for 500, where decoding it
        was 8 % of the controller's CPU), the version is read from its front (`object_head`). Anything
        else is parsed, for that field alone.
        """
        raw = await self._client.request_raw(
            "PATCH",
            JOBFLOWS.path(namespace, name, "status"),
            query=[("fieldManager", FIELD_MANAGER)],
            body=ops,
            content_type=JSON_PATCH,
            accept=METADATA_ONLY,
        )
        if (head := object_head(raw)) is not None:
            return head.resource_version
        try:
            return _WRITTEN.validate_json(raw).metadata.resource_version
        except ValidationError as err:
            raise TransportError(f"PATCH {namespace}/{name}/status: unexpected answer {raw[:200]!r}") from err

    async def delete(self, namespace: str, name: str, uid: str | None = None) -> None:
        """Delete (its Jobs go with it through ownerReferences). `NotFound` if gone; with `uid`, `Conflict`
        if the name now belongs to a different JobFlow (deleted and re-created meanwhile)."""
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        await self._client.request("DELETE", JOBFLOWS.path(namespace, name), body=body)

    async def create(self, namespace: str, body: dict[str, Any]) -> str:
        """Create a JobFlow (a CronJobFlow's run); returns its uid. `AlreadyExists` when the name is taken:
        run names are deterministic, so that is a create that already happened (or someone else's flow:
        the caller looks)."""
        created = await self._client.request(
            "POST", JOBFLOWS.path(namespace), query=[("fieldManager", FIELD_MANAGER)], body=body
        )
        meta = created.get("metadata")
        uid = meta.get("uid") if isinstance(meta, dict) else None
        return uid if isinstance(uid, str) else ""

    async def merge(self, namespace: str, name: str, body: dict[str, Any], resource_version: str) -> None:
        """Merge-patch `body` into the flow (not its status), only if it is still at `resource_version`
        (`Conflict` otherwise): a flow's expansion from its template (controller/templates.py)."""
        patch = {**body, "metadata": {**body.get("metadata", {}), "resourceVersion": resource_version}}
        await self._client.request(
            "PATCH",
            JOBFLOWS.path(namespace, name),
            query=[("fieldManager", FIELD_MANAGER)],
            body=patch,
            content_type=MERGE_PATCH,
        )

    async def set_suspend(self, namespace: str, name: str, suspend: bool, uid: str) -> None:
        """Merge `spec.suspend` into the flow (a parent suspending or resuming its child flow), with the
        mark that says its parent suspended it (removed on resume), only if the flow of that name is still
        the one with `uid` (`Conflict` otherwise, as `annotate`)."""
        mark = {ANNOTATION_SUSPENDED_BY_PARENT: "true" if suspend else None}
        await self._client.request(
            "PATCH",
            JOBFLOWS.path(namespace, name),
            query=[("fieldManager", FIELD_MANAGER)],
            body={"metadata": {"uid": uid, "annotations": mark}, "spec": {"suspend": suspend}},
            content_type=MERGE_PATCH,
        )

    async def annotate(
        self, namespace: str, name: str, annotations: dict[str, str], uid: str, resource_version: str = ""
    ) -> None:
        """Merge `annotations` into the flow's (the stop request of a replaced run), only if the flow of
        that name is still the one with `uid`, and (`resource_version` given) still at that version
        (`Conflict` otherwise)."""
        meta: dict[str, Any] = {"uid": uid, "annotations": annotations}
        if resource_version:
            meta["resourceVersion"] = resource_version
        body = {"metadata": meta}
        await self._client.request(
            "PATCH",
            JOBFLOWS.path(namespace, name),
            query=[("fieldManager", FIELD_MANAGER)],
            body=body,
            content_type=MERGE_PATCH,
        )
