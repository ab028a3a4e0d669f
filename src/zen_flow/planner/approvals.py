"""The audit trail: who created the flow, and the decisions taken on its Manual approval gates.

A decision is an annotation `approve.workflow.kube-zen.io/<step>: "true"` or
`reject.workflow.kube-zen.io/<step>: "true"` (any case; on a gate with `approval` also `true-` and
anything after: a fresh value, so that each approver's write is a change the webhook sees; reject wins
when both are set; core/decision_values.py). The mutating webhook writes who made it to
`approved-by.workflow.kube-zen.io/<step>` from the admission request.

A gate with `approval` is tallied: approved-by lists the first `required` distinct users whose write set
its approve annotation, comma-separated, and it is approved once `approval.required` of them did; who
rejected it is recorded in `rejected-by.workflow.kube-zen.io/<step>` (webhook/mutation.py).

A gate with supplied outputs takes their values from `values.workflow.kube-zen.io/<step>` when it is
approved (`gate_outputs`, core/gate_values.py); who set them (`values-by.`, written by the webhook) goes
in the audit entry of the approval that opens it. Without the webhook it is whatever a user wrote there:
as for approved-by, nothing here can tell who wrote an annotation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from zen_flow.api.constants import (
    ANNOTATION_APPROVED_BY_PREFIX,
    ANNOTATION_CORRELATION_ID,
    ANNOTATION_CREATED_BY,
    ANNOTATION_REJECTED_BY_PREFIX,
    ANNOTATION_VALUES_BY_PREFIX,
    APPROVE_PREFIX,
    REJECT_PREFIX,
    VALUES_PREFIX,
)
from zen_flow.api.flow_status import Approval, Audit, Initiator, ParameterValue, StepOutputValues
from zen_flow.api.jobflow import Step, StepApproval
from zen_flow.core.decision_values import is_true, recorded_users
from zen_flow.core.gate_values import gate_values, supplied_of

_SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
# A tallied gate's waiting message begins so (`tally_message`); the flow's message repeats it (`tally`).
_TALLY = re.compile(r"(approvals \d+/\d+)(?: \(.*?\))?; waiting for \d+ more")


def approvers_so_far(annotations: Mapping[str, str], step: str, needed: int) -> tuple[str, ...]:
    """The distinct users the webhook recorded approving a tallied gate, in the order they did, the
    first `needed` (they decide it; the status and audit stay bounded, validation/size.py); none unless
    its approve annotation is set (the webhook clears the list when it is taken back)."""
    if not is_true(annotations.get(APPROVE_PREFIX + step), tallied=True):
        return ()
    # Read as the webhook wrote it (recorded_users): the two never disagree on who counts.
    return tuple(recorded_users(annotations.get(ANNOTATION_APPROVED_BY_PREFIX + step)))[:needed]


def approval_count(annotations: Mapping[str, str], step: str, users: Sequence[str]) -> int:
    """A tallied gate's approvals: its recorded approvers; without the webhook nothing is recorded, and
    the annotation alone is one approval by nobody known (a gate needing one still opens)."""
    return len(users) or int(is_true(annotations.get(APPROVE_PREFIX + step), tallied=True))


def decision(
    annotations: Mapping[str, str], step: str, approval: StepApproval | None = None
) -> tuple[str, str | None] | None:
    """("Approved" | "Rejected", user or None), or None while nobody decided. A tallied gate (one with
    `approval`) is Approved once `approval.required` distinct users approved it (user: all of them,
    ", "-joined), Rejected by one rejection (user: who rejected it)."""
    if approval is not None:
        if is_true(annotations.get(REJECT_PREFIX + step), tallied=True):
            return "Rejected", annotations.get(ANNOTATION_REJECTED_BY_PREFIX + step) or None
        users = approvers_so_far(annotations, step, approval.needed)
        if (count := approval_count(annotations, step, users)) and count >= approval.needed:
            return "Approved", ", ".join(users) or None
        return None
    user = annotations.get(ANNOTATION_APPROVED_BY_PREFIX + step) or None
    if is_true(annotations.get(REJECT_PREFIX + step)):
        return "Rejected", user
    if is_true(annotations.get(APPROVE_PREFIX + step)):
        return "Approved", user
    return None


def gate_outputs(annotations: Mapping[str, str], spec: Step) -> StepOutputValues | None:
    """The outputs of an approved gate: its supplied values, each given one or its default (None: it
    declares none). ValuesError (core/gate_values.py) names a parameter that has neither, a value its
    enum does not allow, or a name the gate does not declare: the webhook refuses each, so only a flow
    it did not check gets there."""
    params = supplied_of(spec)
    if not params:
        return None
    values = gate_values(params, annotations.get(VALUES_PREFIX + spec.name))
    return StepOutputValues(parameters=tuple(ParameterValue(name=k, value=v) for k, v in values.items()))


def supplier(annotations: Mapping[str, str], spec: Step) -> str | None:
    """Who set the values of a gate with supplied outputs, as the webhook recorded it (None: no record,
    or the gate takes no values)."""
    return (annotations.get(ANNOTATION_VALUES_BY_PREFIX + spec.name) or None) if supplied_of(spec) else None


def values_refused(user: str | None, problem: str, step: str) -> str:
    """The message of an approved gate whose values cannot be taken: it fails, naming the parameter."""
    who = f"approved by {user}" if user else "approved"
    return f"{who}, but its values cannot be taken ({VALUES_PREFIX}{step}): {problem}"


def waiting_message(spec: Step) -> str:
    """A gate's message while it waits (no approval counted yet on a gate one approval opens)."""
    return spec.message or f"waiting for manual approval of step {spec.name}"


def tally_message(users: Sequence[str], count: int, needed: int, message: str | None) -> str:
    """A tallied gate's message while it waits: `approvals 1/2 (alice); waiting for 1 more`, then the
    step's own `message` after a colon. `count`: the approvals (one unrecorded without the webhook)."""
    who = f" ({', '.join(users)})" if users else ""
    text = f"approvals {count}/{needed}{who}; waiting for {needed - count} more"
    return f"{text}: {message}" if message else text


def tally(message: str | None) -> tuple[str, str] | None:
    """The count a waiting gate's message begins with (`tally_message`), short (`approvals 1/2`) and
    whole, or None: no count (not a tallied gate, or one approval opens it and none came yet)."""
    found = _TALLY.match(message or "")
    return (found.group(1), found.group(0)) if found else None


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


def with_approvals(audit: Audit | None, approvals: Sequence[Approval], specs: Iterable[Step]) -> Audit | None:
    """The audit with this reconcile's decisions appended (the same object when there are none), each
    gate's newest entries kept, as many as one reach of it writes at most (`audited`): a rerun reaches a
    gate again and audits it afresh, and the admission size bound (validation/size.py) counts room for
    one reach per gate. What an earlier reach audited goes first; the current reach is kept whole."""
    if not approvals:
        return audit
    base = audit or Audit()
    entries = (*base.approvals, *approvals)
    room = {s.name: s.approval.audited if s.approval is not None else 1 for s in specs if s.is_manual}
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.step] = counts.get(entry.step, 0) + 1
    if any(n > room.get(step, 1) for step, n in counts.items()):
        kept: list[Approval] = []
        taken: dict[str, int] = {}
        for entry in reversed(entries):  # newest first
            if taken.get(entry.step, 0) < room.get(entry.step, 1):
                taken[entry.step] = taken.get(entry.step, 0) + 1
                kept.append(entry)
        entries = tuple(reversed(kept))
    return base.model_copy(update={"approvals": entries})
