"""LocalSubjectAccessReviews: ask the apiserver's authorizer whether a user may do something in a
namespace (webhook/approvers.py asks whether a user may `approve` a flow). Create only: a review is an
answer, never stored."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from zen_flow.kube.client import KubeClient
from zen_flow.kube.errors import TransportError
from zen_flow.kube.resource import Resource

LOCAL_SUBJECT_ACCESS_REVIEWS = Resource("authorization.k8s.io", "v1", "localsubjectaccessreviews")
# The webhook answers the apiserver within its timeoutSeconds (5): one try, bounded.
REVIEW_TIMEOUT_SECONDS = 3.0


class AccessReviews:
    def __init__(self, client: KubeClient) -> None:
        self._client = client

    async def allowed(self, namespace: str, user: Mapping[str, Any], attributes: Mapping[str, str]) -> bool:
        """May `user` (an admission request's userInfo: username, uid, groups, extra) do what
        `attributes` (resourceAttributes: verb, group, resource, name) say, in `namespace`?"""
        spec: dict[str, Any] = {"resourceAttributes": {**attributes, "namespace": namespace}}
        if isinstance(user.get("username"), str):
            spec["user"] = user["username"]
        for key in ("uid", "groups", "extra"):
            if user.get(key):
                spec[key] = user[key]
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview", "spec": spec}
        try:
            # The whole wait, the client's queue for a request slot included (a fan-out's creates may
            # hold them all), not just the request: else the apiserver's own timeout answers for us.
            async with asyncio.timeout(REVIEW_TIMEOUT_SECONDS):
                answer = await self._client.request(
                    "POST", LOCAL_SUBJECT_ACCESS_REVIEWS.path(namespace), body=body, retry=False
                )
        except TimeoutError:
            raise TransportError(
                f"a LocalSubjectAccessReview in {namespace}: no answer within {REVIEW_TIMEOUT_SECONDS:g}s"
            ) from None
        status = answer.get("status")
        return isinstance(status, dict) and status.get("allowed") is True
