"""CronJobFlow custom objects: list/watch (the informer's source) and a merge patch of /status."""

from __future__ import annotations

from typing import Any

from zen_flow.api.constants import CRON_PLURAL, FIELD_MANAGER, GROUP, VERSION
from zen_flow.kube.client import KubeClient
from zen_flow.kube.resource import Resource, ResourceLister
from zen_flow.kube.transport import MERGE_PATCH

CRONJOBFLOWS = Resource(GROUP, VERSION, CRON_PLURAL)


class CronJobFlowClient(ResourceLister):
    def __init__(self, client: KubeClient, label_selector: str = "") -> None:
        """`label_selector`: of the LIST and WATCH only (a controller instance's CronJobFlows)."""
        super().__init__(client, CRONJOBFLOWS, label_selector)
        self._client = client

    async def patch_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str
    ) -> None:
        """Replace the status's fields with `status` (a merge patch: a field set to None is removed),
        conditional on `resource_version` (`Conflict` if the object changed since it was read)."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": status}
        await self._client.request(
            "PATCH",
            CRONJOBFLOWS.path(namespace, name, "status"),
            query=[("fieldManager", FIELD_MANAGER)],
            body=body,
            content_type=MERGE_PATCH,
        )
