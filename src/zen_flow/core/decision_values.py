"""How a Manual gate's decision annotations read, said once for the webhook, the validator and the
planner (which must never disagree on what counts).

A gate without `approval` is decided by the value `true` (any case), as it always was. A gate with
`approval` (a tallied gate) counts each user whose write set its approve annotation to a new value, so it
also takes `true-` and anything after (`zen-flow approve` writes a fresh one per approver). Its
`approved-by` record lists the approvers, comma-separated, exactly as the apiserver named them: a name
with a comma or with spaces around it is refused at admission (webhook/gate_approvers.py), so no two
users read as one, nor one as two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from zen_flow.api.constants import APPROVE_PREFIX, REJECT_PREFIX

TALLY_SEPARATOR = ","


def is_true(value: str | None, *, tallied: bool = False) -> bool:
    """Does this approve./reject. value take the decision? `tallied`: the gate has `approval`."""
    if value is None:
        return False
    text = value.strip().lower()
    return text == "true" or (tallied and text.startswith("true-") and len(text) > len("true-"))


def deciding(annotations: Mapping[str, object], step: str, *, tallied: bool) -> tuple[str, ...]:
    """The annotations that decide `step` (planner.approvals.decision reads them): its approve. and
    reject. keys set true (a value that is no string, in an object not yet validated, is not).
    `tallied`: the step has `approval`."""
    return tuple(
        p + step
        for p in (APPROVE_PREFIX, REJECT_PREFIX)
        if isinstance(value := annotations.get(p + step), str) and is_true(value, tallied=tallied)
    )


def recorded_users(record: str | None) -> list[str]:
    """The distinct users of a tallied gate's approved-by record, in the order they approved."""
    return list(dict.fromkeys(u for u in (record or "").split(TALLY_SEPARATOR) if u))


def countable_name(user: str) -> bool:
    """Can this user name be recorded in approved-by and read back as the same one user?"""
    return TALLY_SEPARATOR not in user and user == user.strip()


def join_users(users: Sequence[str]) -> str:
    return TALLY_SEPARATOR.join(users)
