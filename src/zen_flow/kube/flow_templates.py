"""JobFlowTemplate custom objects: get only (the mutating webhook and the controller expand the flows that
name one; neither ever writes a template)."""

from __future__ import annotations

import asyncio
from typing import Any

from zen_flow.api.constants import GROUP, TEMPLATE_KIND, TEMPLATE_PLURAL, VERSION
from zen_flow.kube.client import KubeClient
from zen_flow.kube.errors import NotFound, TransportError
from zen_flow.kube.resource import Resource

FLOW_TEMPLATES = Resource(GROUP, VERSION, TEMPLATE_PLURAL)
# The webhook answers the apiserver within its timeoutSeconds (5): one try, bounded, the wait for a
# request slot included (as kube/access_reviews.py).
WEBHOOK_TIMEOUT_SECONDS = 3.0


class FlowTemplateClient:
    def __init__(self, client: KubeClient, *, timeout: float | None = None) -> None:
        """`timeout`: the whole wait of a get, one try (the webhook's); None: the client's own retries."""
        self._client = client
        self._timeout = timeout

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The raw template; None when there is none of that name."""
        try:
            if self._timeout is None:
                return await self._client.request("GET", FLOW_TEMPLATES.path(namespace, name))
            async with asyncio.timeout(self._timeout):
                return await self._client.request("GET", FLOW_TEMPLATES.path(namespace, name), retry=False)
        except NotFound:
            return None
        except TimeoutError:
            raise TransportError(
                f"{TEMPLATE_KIND} {namespace}/{name}: no answer within {self._timeout:g}s"
            ) from None
