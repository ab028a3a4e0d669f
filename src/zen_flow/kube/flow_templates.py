"""JobFlowTemplate and ClusterJobFlowTemplate custom objects: get only (the mutating webhook and the
controller expand the flows that name one; neither ever writes a template)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from zen_flow.api.constants import CLUSTER_TEMPLATE_PLURAL, GROUP, TEMPLATE_PLURAL, VERSION
from zen_flow.kube.client import KubeClient
from zen_flow.kube.errors import NotFound, TransportError
from zen_flow.kube.resource import Resource

FLOW_TEMPLATES = Resource(GROUP, VERSION, TEMPLATE_PLURAL)
CLUSTER_FLOW_TEMPLATES = Resource(GROUP, VERSION, CLUSTER_TEMPLATE_PLURAL)
# The webhook answers the apiserver within its timeoutSeconds (5): one try, bounded, the wait for a
# request slot included (as kube/access_reviews.py).
WEBHOOK_TIMEOUT_SECONDS = 3.0


class FlowTemplateClient:
    def __init__(self, client: KubeClient, *, timeout: float | None = None) -> None:
        """`timeout`: the whole wait of a get, one try (the webhook's); None: the client's own retries."""
        self._client = client
        self._timeout = timeout

    async def get(self, namespace: str, name: str, *, cluster: bool = False) -> dict[str, Any] | None:
        """The raw JobFlowTemplate of `namespace`, or (`cluster`) the raw ClusterJobFlowTemplate; None
        when there is none of that name. `Forbidden` and other `ApiError`s are the caller's."""
        retry = self._timeout is None
        if cluster:
            read = self._client.request("GET", CLUSTER_FLOW_TEMPLATES.path(None, name), retry=retry)
            what = f"{CLUSTER_TEMPLATE_PLURAL} {name}"
        else:
            read = self._client.request("GET", FLOW_TEMPLATES.path(namespace, name), retry=retry)
            what = f"{TEMPLATE_PLURAL} {namespace}/{name}"
        return await self._bounded(read, what)

    async def _bounded(self, read: Awaitable[dict[str, Any]], what: str) -> dict[str, Any] | None:
        try:
            if self._timeout is None:
                return await read
            async with asyncio.timeout(self._timeout):
                return await read
        except NotFound:
            return None
        except TimeoutError:
            raise TransportError(f"{what}: no answer within {self._timeout:g}s") from None
