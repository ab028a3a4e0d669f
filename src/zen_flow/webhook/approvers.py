"""Who may decide a Manual step: the apiserver's authorizer says, through a LocalSubjectAccessReview.

A decision is an annotation, so anyone who may patch a flow could approve its steps, and anyone who may
create one could pre-approve its gates (docs/SECURITY.md). With this check, the validating webhook also
asks whether the requesting user may `approve` the flow (verb `approve` on `jobflows` in group
`workflow.kube-zen.io`, a verb of RBAC's own making, as `approve` on `signers` is for certificate
signing requests): a Role grants it like any other verb, per namespace and, with `resourceNames`, per
flow. The question goes to the apiserver in the flow's namespace only (the controller may ask there as
it may do anything else there). A request whose user may not is denied (403), and so is one the check
could not be made for (the webhook fails closed, as its `failurePolicy: Fail` does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from zen_flow.api.constants import GROUP, PLURAL
from zen_flow.kube.errors import KubeError
from zen_flow.logging import get_logger
from zen_flow.webhook.review import Decisions

log = get_logger(__name__)

APPROVE_VERB = "approve"


class Reviews(Protocol):
    async def allowed(
        self, namespace: str, user: Mapping[str, Any], attributes: Mapping[str, str]
    ) -> bool: ...


class ApprovalAuthorizer:
    """`await authorizer(decisions)`: None when the user may take them, else why not (the denial)."""

    def __init__(self, reviews: Reviews) -> None:
        self._reviews = reviews

    async def __call__(self, decisions: Decisions) -> str | None:
        username = decisions.user.get("username") or ""
        steps = ", ".join(decisions.steps)
        flow = (
            f"{decisions.namespace}/{decisions.name}"
            if decisions.name
            else f"(a new one) in {decisions.namespace}"
        )
        attributes = {"verb": APPROVE_VERB, "group": GROUP, "resource": PLURAL}
        if decisions.name:
            attributes["name"] = decisions.name
        try:
            allowed = await self._reviews.allowed(decisions.namespace, decisions.user, attributes)
        except KubeError as err:
            log.warning("could not check an approver; denying", user=username, flow=flow, error=str(err))
            return f"could not check that {username!r} may decide step {steps} of jobflow {flow}: {err}"
        if allowed:
            return None
        return (
            f"user {username!r} may not decide step {steps} of jobflow {flow}: deciding a Manual step needs "
            f'the verb "{APPROVE_VERB}" on {PLURAL}.{GROUP} (RBAC), beside "patch" (docs/SECURITY.md)'
        )
