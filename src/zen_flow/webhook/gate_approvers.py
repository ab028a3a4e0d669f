"""Who a gate's own `approval.approvers` let decide it: the validating webhook's check, beside RBAC's.

RBAC's verb `approve` (webhook/approvers.py) says who may decide the flows of a namespace, or one flow;
a step's `approval.approvers` names, in the flow itself, the users and groups who may decide that gate
(Tekton's ApprovalTask approvers). Both must agree. The check reads only the admission request (its
userInfo carries the user's groups as the apiserver authenticated them), so it asks nothing and costs
nothing more than decoding the steps of a request that decides one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from zen_flow.core.decision_values import countable_name

MAX_NAMED = 5  # approvers named in a denial; the rest counted


def _approval(steps: Any, name: str) -> Mapping[str, Any] | None:
    for step in steps if isinstance(steps, list) else ():
        if isinstance(step, Mapping) and step.get("name") == name:
            approval = step.get("approval")
            return approval if isinstance(approval, Mapping) else None
    return None


def _subjects(approval: Mapping[str, Any]) -> list[tuple[str, str]]:
    listed = approval.get("approvers")
    return [
        (item["kind"], item["name"])
        for item in (listed if isinstance(listed, list) else ())
        if isinstance(item, Mapping)
        and isinstance(item.get("kind"), str)
        and isinstance(item.get("name"), str)
    ]


def named(subjects: Iterable[tuple[str, str]], user: Mapping[str, Any]) -> bool:
    """Is the user one of `subjects` (kind, name), by name or by one of its groups?"""
    username = user.get("username")
    groups = user.get("groups")
    member = set(groups) if isinstance(groups, list) else set()
    return any(
        (kind == "User" and name == username) or (kind == "Group" and name in member)
        for kind, name in subjects
    )


def gate_refusal(steps: Any, decided: Iterable[str], user: Mapping[str, Any], flow: str) -> str | None:
    """Why the user may not take these decisions under their gates' `approval`, or None. `steps`: the
    object's spec.steps as decoded; `flow`: how to name it."""
    username = user.get("username")
    username = username if isinstance(username, str) else ""
    for step in sorted(decided):
        approval = _approval(steps, step)
        if approval is None:
            continue
        if not countable_name(username):
            return (
                f"user {username!r} may not decide step {step} of jobflow {flow}: its approvals are "
                "counted by user name, comma-separated, and this name has a comma or spaces around it"
            )
        subjects = _subjects(approval)
        if subjects and not named(subjects, user):
            shown = ", ".join(f"{kind} {name}" for kind, name in subjects[:MAX_NAMED])
            more = f" and {len(subjects) - MAX_NAMED} more" if len(subjects) > MAX_NAMED else ""
            return (
                f"user {username!r} may not decide step {step} of jobflow {flow}: only its approvers may "
                f"({shown}{more}; spec.steps[].approval.approvers)"
            )
    return None
