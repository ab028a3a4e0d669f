"""The audit trail: who created the flow, and the decisions taken on its Manual approval gates.

A decision is an annotation `approve.workflow.kube-zen.io/<step>: "true"` or
`reject.workflow.kube-zen.io/<step>: "true"` (any case; reject wins when both are set). The mutating
webhook writes who made it to `approved-by.workflow.kube-zen.io/<step>` from the admission request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from zen_flow.api.constants import (
    ANNOTATION_APPROVED_BY_PREFIX,
    ANNOTATION_CORRELATION_ID,
    ANNOTATION_CREATED_BY,
    APPROVE_PREFIX,
    REJECT_PREFIX,
)
from zen_flow.api.jobflow import Approval, Audit, Initiator

_SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


def _true(value: str | None) -> bool:
    return value is not None and value.strip().lower() == "true"


def decision(annotations: Mapping[str, str], step: str) -> tuple[str, str | None] | None:
    """("Approved" | "Rejected", user or None), or None while nobody decided."""
    user = annotations.get(ANNOTATION_APPROVED_BY_PREFIX + step) or None
    if _true(annotations.get(REJECT_PREFIX + step)):
        return "Rejected", user
    if _true(annotations.get(APPROVE_PREFIX + step)):
        return "Approved", user
    return None


def deciding(annotations: Mapping[str, str], step: str) -> tuple[str, ...]:
    """The annotations that decide `step` (`decision` reads them): its approve. and reject. keys set true."""
    return tuple(p + step for p in (APPROVE_PREFIX, REJECT_PREFIX) if _true(annotations.get(p + step)))


def with_origin(audit: Audit | None, annotations: Mapping[str, str]) -> Audit | None:
    """The audit with `initiatedBy` (from the webhook's created-by annotation) and `correlationID`
    recorded, each once: a later annotation edit never rewrites the record. The same object when
    there is nothing new (no webhook ran, or both are recorded)."""
    base = audit or Audit()
    update: dict[str, object] = {}
    user = annotations.get(ANNOTATION_CREATED_BY)
    if base.initiated_by is None and user:
        kind = "ServiceAccount" if user.startswith(_SERVICE_ACCOUNT_PREFIX) else "User"
        update["initiated_by"] = Initiator(user=user, type=kind)
    correlation = annotations.get(ANNOTATION_CORRELATION_ID)
    if base.correlation_id is None and correlation:
        update["correlation_id"] = correlation
    return base.model_copy(update=update) if update else audit


def with_approvals(audit: Audit | None, approvals: Sequence[Approval]) -> Audit | None:
    """The audit with this reconcile's decisions appended (the same object when there are none)."""
    if not approvals:
        return audit
    base = audit or Audit()
    return base.model_copy(update={"approvals": (*base.approvals, *approvals)})
