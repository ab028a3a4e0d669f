"""What the mutating webhook changes, as RFC 6902 operations.

1. executionPolicy defaults (JOBFLOW_API.md decision 15): only missing fields, the same values as the
   CRD schema defaults, so the result is identical whether the webhook or the apiserver filled them in.
2. Audit annotations the user cannot forge: `workflow.kube-zen.io/created-by` is the creating user
   (CREATE), and `approved-by.workflow.kube-zen.io/<step>` is the user who added or changed the step's
   approve./reject. annotation, and `workflow.kube-zen.io/retried-by` the user who set or changed the
   rerun request `workflow.kube-zen.io/retry`, and `workflow.kube-zen.io/stopped-by` the user who set the
   stop request `workflow.kube-zen.io/stop`, and `values-by.workflow.kube-zen.io/<step>` the user who set
   or changed the values supplied at that gate (`values.workflow.kube-zen.io/<step>`), and
   `suspend-requested-by`/`resume-requested-by` the user who last flipped `spec.suspend` to true (or
   created the flow suspended) / to false or absent (`_suspension`). Any other value a
   user writes into these keys is put back (UPDATE) or dropped (CREATE): the controller copies them into
   status.audit, so they must be trustworthy.
   So is `decision-message.workflow.kube-zen.io/<step>`, recorded beside the approver's name: it is kept
   only when written in the request that takes the decision (else put back, or dropped, so that a message
   planted earlier never reads as the approver's words); on a tallied gate, only when that request
   records its user (appended to approved-by, or the rejecter): the controller audits it as theirs.
   On a gate with `approval` (a tallied gate), `approved-by.` instead lists the first `required` distinct
   users who set its approve annotation to a new true value, and `rejected-by.workflow.kube-zen.io/<step>`
   is who set or changed its reject annotation (`_tally`).

Every function is idempotent: run on its own output it returns no operations (the apiserver may
re-invoke mutating webhooks). They read the metadata, `spec.executionPolicy` and `spec.suspend`, nothing
else of the spec (`SPEC_READ`), but for a request that takes a decision, whose steps say which gates are
tallied: the webhook decodes no more of a 500-step spec than that.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zen_flow.api.constants import (
    ANNOTATION_APPROVED_BY_PREFIX,
    ANNOTATION_CREATED_BY,
    ANNOTATION_DECISION_MESSAGE_PREFIX,
    ANNOTATION_REJECTED_BY_PREFIX,
    ANNOTATION_RESUME_REQUESTED_BY,
    ANNOTATION_RETRIED_BY,
    ANNOTATION_RETRY,
    ANNOTATION_RETRY_STEPS,
    ANNOTATION_STOP,
    ANNOTATION_STOPPED_BY,
    ANNOTATION_SUSPEND_REQUESTED_BY,
    ANNOTATION_VALUES_BY_PREFIX,
    APPROVE_PREFIX,
    DEFAULT_BACKOFF_LIMIT,
    DEFAULT_CONCURRENCY_POLICY,
    DEFAULT_TTL_SECONDS_AFTER_FINISHED,
    REJECT_PREFIX,
    VALUES_PREFIX,
)
from zen_flow.api.jobflow import needed_approvals
from zen_flow.core.decision_values import is_true, join_users, recorded_users
from zen_flow.webhook.patch import pointer

Op = dict[str, Any]

EXECUTION_POLICY_DEFAULTS: Mapping[str, Any] = {
    "concurrencyPolicy": str(DEFAULT_CONCURRENCY_POLICY),
    "ttlSecondsAfterFinished": DEFAULT_TTL_SECONDS_AFTER_FINISHED,
    "backoffLimit": DEFAULT_BACKOFF_LIMIT,
}


def default_ops(obj: Mapping[str, Any]) -> list[Op]:
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        return []  # validation reports it
    policy = spec.get("executionPolicy")
    if policy is None:
        return [{"op": "add", "path": "/spec/executionPolicy", "value": dict(EXECUTION_POLICY_DEFAULTS)}]
    if not isinstance(policy, Mapping):
        return []
    return [
        {"op": "add", "path": pointer("spec", "executionPolicy", key), "value": value}
        for key, value in EXECUTION_POLICY_DEFAULTS.items()
        if policy.get(key) is None
    ]


def _annotations(obj: Any) -> dict[str, str]:
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    if not isinstance(annotations, Mapping):
        return {}
    return {k: v for k, v in annotations.items() if isinstance(k, str) and isinstance(v, str)}


def _decisions(annotations: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """step -> (approve value, reject value) for every step with an approval annotation."""
    out: dict[str, tuple[str, str]] = {}
    for key in annotations:
        for prefix in (APPROVE_PREFIX, REJECT_PREFIX):
            if key.startswith(prefix) and key != prefix:
                step = key[len(prefix) :]
                out[step] = (
                    annotations.get(APPROVE_PREFIX + step, ""),
                    annotations.get(REJECT_PREFIX + step, ""),
                )
    return out


def changed_decisions(new_ann: Mapping[str, str], old_ann: Mapping[str, str]) -> tuple[set[str], set[str]]:
    """(the Manual steps whose decision, an approve./reject. annotation, the request adds, changes or
    removes; those of them that still carry one): the first is what needs authorizing (a reject taken
    back reopens the gate: a decision too), the second who gets a new `approved-by`."""
    before, after = _decisions(old_ann), _decisions(new_ann)
    changed = {step for step in before.keys() | after.keys() if before.get(step) != after.get(step)}
    return changed, changed & after.keys()


def changed_values(new_ann: Mapping[str, str], old_ann: Mapping[str, str]) -> set[str]:
    """The steps whose supplied values (values.workflow.kube-zen.io/<step>) the request sets, changes or
    removes: they need the authority of a decision on the step (webhook/review.py)."""
    return {
        key[len(VALUES_PREFIX) :]
        for key in new_ann.keys() | old_ann.keys()
        if key.startswith(VALUES_PREFIX) and key != VALUES_PREFIX and new_ann.get(key) != old_ann.get(key)
    }


def request_values(operation: str, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> set[str]:
    """`changed_values` of an admission request's objects."""
    return changed_values(_annotations(obj), _annotations(old) if operation == "UPDATE" and old else {})


def request_decisions(operation: str, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> set[str]:
    """`changed_decisions` of an admission request's objects: every step whose decision it touches."""
    return changed_decisions(_annotations(obj), _annotations(old) if operation == "UPDATE" and old else {})[0]


def withdrawals(operation: str, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> set[str]:
    """The steps whose approval the request only takes back: their approve annotation removed, or set to
    a value that approves nothing, their reject annotation untouched. Taking back can only lower a
    count, never open a gate nor reopen a rejected one (webhook/gate_approvers.py)."""
    if operation != "UPDATE" or old is None:
        return set()
    before, after = _decisions(_annotations(old)), _decisions(_annotations(obj))
    return {
        step
        for step, (approve, reject) in before.items()
        if approve
        and not is_true(after.get(step, ("", ""))[0], tallied=True)
        and after.get(step, ("", ""))[1] == reject
    }


def desired_audit(
    operation: str, obj: Mapping[str, Any], old: Mapping[str, Any] | None, username: str
) -> dict[str, str | None]:
    """The audit annotations the object must carry: key -> value, or None for "must be absent"."""
    new_ann = _annotations(obj)
    old_ann = _annotations(old) if operation == "UPDATE" and old is not None else {}
    want: dict[str, str | None] = {}
    if operation == "CREATE":
        want[ANNOTATION_CREATED_BY] = username or None
    else:
        want[ANNOTATION_CREATED_BY] = old_ann.get(ANNOTATION_CREATED_BY)
    # Who asked for a rerun: whoever set or changed the request (kept otherwise, dropped with it).
    retry = new_ann.get(ANNOTATION_RETRY)
    if not retry:
        want[ANNOTATION_RETRIED_BY] = None
    elif retry != old_ann.get(ANNOTATION_RETRY) or new_ann.get(ANNOTATION_RETRY_STEPS) != old_ann.get(
        ANNOTATION_RETRY_STEPS
    ):
        want[ANNOTATION_RETRIED_BY] = username or None
    else:
        want[ANNOTATION_RETRIED_BY] = old_ann.get(ANNOTATION_RETRIED_BY)
    stop = new_ann.get(ANNOTATION_STOP)
    if not stop:
        want[ANNOTATION_STOPPED_BY] = None
    elif stop != old_ann.get(ANNOTATION_STOP):
        want[ANNOTATION_STOPPED_BY] = username or None
    else:
        want[ANNOTATION_STOPPED_BY] = old_ann.get(ANNOTATION_STOPPED_BY)
    want.update(_suspension(obj, old if operation == "UPDATE" else None, old_ann, username))
    for key in new_ann.keys() | old_ann.keys():
        if key.startswith(
            (ANNOTATION_APPROVED_BY_PREFIX, ANNOTATION_REJECTED_BY_PREFIX, ANNOTATION_VALUES_BY_PREFIX)
        ):
            want[key] = old_ann.get(key)  # only the webhook writes these
    # Who supplied a gate's values: whoever set or changed them last (dropped with them).
    for step in changed_values(new_ann, old_ann):
        given = VALUES_PREFIX + step in new_ann
        want[ANNOTATION_VALUES_BY_PREFIX + step] = (username or None) if given else None
    changed, decided = changed_decisions(new_ann, old_ann)
    tallied = tallied_steps(obj) if changed else {}
    for step in decided - tallied.keys():
        want[ANNOTATION_APPROVED_BY_PREFIX + step] = username or None
    silent: set[str] = set()  # tallied gates this request decides without recording its user
    for step in changed & tallied.keys():
        record, recorded = _tally(step, tallied[step], new_ann, old_ann, username)
        want.update(record)
        if not recorded:
            silent.add(step)
    for key in new_ann.keys() | old_ann.keys():
        step = key[len(ANNOTATION_DECISION_MESSAGE_PREFIX) :]
        if not key.startswith(ANNOTATION_DECISION_MESSAGE_PREFIX) or not step:
            continue
        if step not in decided:
            want[key] = old_ann.get(key)  # a message goes with a decision, or not at all
        elif new_ann.get(key) == old_ann.get(key) or step in silent:
            # There before this decision, or written by a user it does not record (an approver counted
            # already, one past the count, a reject value that rejects nothing): not the words of the
            # user the controller audits for it (the last one recorded, or the rejecter).
            want[key] = None
    return want


def _suspended(obj: Mapping[str, Any] | None) -> bool:
    spec = obj.get("spec") if isinstance(obj, Mapping) else None
    return isinstance(spec, Mapping) and spec.get("suspend") is True


def _suspension(
    obj: Mapping[str, Any], old: Mapping[str, Any] | None, old_ann: Mapping[str, str], user: str
) -> dict[str, str | None]:
    """Who suspended and who resumed the flow: the request's user for the way spec.suspend flips (a
    CREATE flips it from "not suspended"), the recorded one for the other way and for a request that
    flips nothing. Removing the field resumes, as the controller reads it."""
    want: dict[str, str | None] = {
        ANNOTATION_SUSPEND_REQUESTED_BY: old_ann.get(ANNOTATION_SUSPEND_REQUESTED_BY),
        ANNOTATION_RESUME_REQUESTED_BY: old_ann.get(ANNOTATION_RESUME_REQUESTED_BY),
    }
    now, before = _suspended(obj), _suspended(old)
    if now != before:
        flipped = ANNOTATION_SUSPEND_REQUESTED_BY if now else ANNOTATION_RESUME_REQUESTED_BY
        want[flipped] = user or None
    return want


def tallied_steps(obj: Mapping[str, Any]) -> dict[str, int]:
    """The steps with an `approval` (tallied gates) and the approvals each needs, when the object's
    spec.steps was decoded (`SPEC_READ_DECIDING`: only for a request that changes a decision)."""
    spec = obj.get("spec")
    steps = spec.get("steps") if isinstance(spec, Mapping) else None
    out: dict[str, int] = {}
    for step in steps if isinstance(steps, list) else ():
        approval = step.get("approval") if isinstance(step, Mapping) else None
        if approval is not None and isinstance(step.get("name"), str):
            required = approval.get("required") if isinstance(approval, Mapping) else None
            out[step["name"]] = needed_approvals(required)
    return out


def _tally(
    step: str, needed: int, new_ann: Mapping[str, str], old_ann: Mapping[str, str], user: str
) -> tuple[dict[str, str | None], bool]:
    """A tallied gate's record: approved-by lists, comma-separated in order, each distinct user whose
    write set its approve annotation (a changed value: `zen-flow approve` writes a fresh one), up to the
    `needed` that decide it (more would only grow the flow), cleared when the annotation is taken back;
    rejected-by is who set or changed its reject annotation. And whether this request's user is now
    the one the controller audits for it: appended last to approved-by, or who rejected it."""
    approve, before = APPROVE_PREFIX + step, old_ann.get(APPROVE_PREFIX + step)
    approved_by = ANNOTATION_APPROVED_BY_PREFIX + step
    want: dict[str, str | None] = {}
    recorded = False
    if not is_true(new_ann.get(approve), tallied=True):
        want[approved_by] = None
    elif new_ann.get(approve) != before:
        users = recorded_users(old_ann.get(approved_by)) if is_true(before, tallied=True) else []
        if user and user not in users and len(users) < needed:
            users.append(user)
            recorded = True
        want[approved_by] = join_users(users) or None
    reject = REJECT_PREFIX + step
    if reject not in new_ann:
        want[ANNOTATION_REJECTED_BY_PREFIX + step] = None
    elif new_ann.get(reject) != old_ann.get(reject):
        want[ANNOTATION_REJECTED_BY_PREFIX + step] = user or None
        recorded = recorded or is_true(new_ann.get(reject), tallied=True)
    return want, recorded


def audit_ops(
    operation: str, obj: Mapping[str, Any], old: Mapping[str, Any] | None, username: str
) -> list[Op]:
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return []  # validation reports it
    current = meta.get("annotations")
    if current is not None and not isinstance(current, Mapping):
        return []
    have = dict(current or {})
    want = desired_audit(operation, obj, old, username)
    changes = {k: v for k, v in want.items() if have.get(k) != v}
    if not changes:
        return []
    if current is None:
        values = {k: v for k, v in changes.items() if v is not None}
        return [{"op": "add", "path": "/metadata/annotations", "value": values}] if values else []
    ops: list[Op] = []
    for key, value in sorted(changes.items()):
        path = pointer("metadata", "annotations", key)
        if value is None:
            if key in have:
                ops.append({"op": "remove", "path": path})
        else:
            ops.append({"op": "add", "path": path, "value": value})
    return ops


# The spec members mutation reads; the webhook decodes only these (zen_flow.webhook.review), and the
# steps only for a request that changes a decision (`tallied_steps`).
SPEC_READ = ("executionPolicy", "suspend")
SPEC_READ_DECIDING = (*SPEC_READ, "steps")


def mutation_ops(
    operation: str, obj: Mapping[str, Any], old: Mapping[str, Any] | None, username: str
) -> list[Op]:
    """Every operation for a CREATE or UPDATE of a JobFlow (empty when nothing changes)."""
    return [*default_ops(obj), *audit_ops(operation, obj, old, username)]
