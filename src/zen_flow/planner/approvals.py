"""Manual approval gates: reading decisions from the flow's annotations, recording them in the audit.

A decision is an annotation `approve.workflow.kube-zen.io/<step>: "true"` or
`reject.workflow.kube-zen.io/<step>: "true"` (any case; reject wins when both are set). The mutating
webhook writes who made it to `approved-by.workflow.kube-zen.io/<step>` from the admission request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from zen_flow.api.constants import ANNOTATION_APPROVED_BY_PREFIX, APPROVE_PREFIX, REJECT_PREFIX
from zen_flow.api.jobflow import Approval, Audit


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


def with_approvals(audit: Audit | None, approvals: Sequence[Approval]) -> Audit | None:
    """The audit with this reconcile's decisions appended (the same object when there are none)."""
    if not approvals:
        return audit
    base = audit or Audit()
    return base.model_copy(update={"approvals": (*base.approvals, *approvals)})
