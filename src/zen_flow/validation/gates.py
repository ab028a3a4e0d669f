"""`spec.steps[].approval`: who may decide a Manual step (`approvers`) and how many distinct users must
approve it (`required`). The admission webhook enforces both (webhook/gate_approvers.py, mutation.py);
this checks that the object can be met at all."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zen_flow.api.constants import APPROVER_KINDS, JOB_APPROVAL, MAX_APPROVERS
from zen_flow.core.decision_values import countable_name, deciding
from zen_flow.validation.errors import (
    FieldError,
    Path,
    duplicate,
    forbidden,
    invalid,
    not_supported,
    too_long,
    too_many,
)
from zen_flow.validation.reader import Reader

MAX_SUBJECT_NAME = 512  # CRD approvers[].name maxLength: a service account's full user name fits


def check_approval(r: Reader, raw: Any, path: Path, *, manual: bool) -> None:
    """The rules of one step's `approval` (absent: nothing to check)."""
    if raw is None:
        return
    if not manual:
        r.add(forbidden(path, JOB_APPROVAL))
        return
    approval = r.mapping(raw, path)
    if approval is None:
        return
    users, groups = _check_approvers(r, approval.get("approvers"), path + ".approvers")
    required = r.integer(approval.get("required"), path + ".required", maximum=MAX_APPROVERS)
    if required is None:
        return
    if required < 1:
        r.add(invalid(path + ".required", required, "must be at least 1"))
    elif not groups and users and required > users:
        r.add(
            invalid(
                path + ".required",
                required,
                f"more than the {users} User approver(s) listed, and no Group: it could never be met",
            )
        )


def _check_approvers(r: Reader, raw: Any, path: Path) -> tuple[int, int]:
    """(distinct User approvers, Group approvers) of a valid list."""
    items = r.mappings(raw, path)
    if len(items) > MAX_APPROVERS:
        r.add(too_many(path, len(items), MAX_APPROVERS))
    seen: set[tuple[str, str]] = set()
    users = groups = 0
    for item_path, item in items:
        kind = r.string(item.get("kind"), item_path + ".kind", require=True)
        name = r.string(item.get("name"), item_path + ".name", require=True)
        if kind is not None and kind not in APPROVER_KINDS:
            r.add(not_supported(item_path + ".kind", kind, APPROVER_KINDS))
            continue
        if kind is None or name is None:
            continue
        if len(name) > MAX_SUBJECT_NAME:
            r.add(too_long(item_path + ".name", name, MAX_SUBJECT_NAME))
        elif kind == "User" and not countable_name(name):
            # approved-by lists the approvers comma-separated (core/decision_values.py): such a user
            # would be refused when deciding.
            r.add(
                invalid(
                    item_path + ".name",
                    name,
                    "a user name with a comma or spaces around it cannot be counted apart",
                )
            )
        elif (kind, name) in seen:
            r.add(duplicate(item_path, f"{kind} {name}"))
        else:
            seen.add((kind, name))
            users += kind == "User"
            groups += kind == "Group"
    return users, groups


def approval_edits(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[FieldError]:
    """An update that adds, removes or changes a step's `approval` while a decision on that step is
    recorded (its approve or reject annotation set, under either rule) is refused: the decision was taken
    under other rules of who may decide and how many must, and would count under the new ones (the
    webhook records and the controller counts whoever approved). Taking it back first is the way (the
    spec changes only before the flow starts, so nothing was acted on yet)."""
    meta = new.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    if not isinstance(annotations, Mapping):
        return []
    before = _approvals(old)
    errors: list[FieldError] = []
    for index, step in enumerate(_steps(new)):
        name = step.get("name")
        if not isinstance(name, str) or step.get("approval") == before.get(name):
            continue
        taken = deciding(annotations, name, tallied=True)
        if taken:
            errors.append(
                forbidden(
                    f"spec.steps[{index}].approval",
                    f"cannot change while step {name} carries a decision taken under the old approval "
                    f"({', '.join(taken)}): remove it first, then ask again",
                )
            )
    return errors


def _steps(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    spec = obj.get("spec")
    steps = spec.get("steps") if isinstance(spec, Mapping) else None
    return [s for s in steps if isinstance(s, Mapping)] if isinstance(steps, list | tuple) else []


def _approvals(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {s["name"]: s.get("approval") for s in _steps(obj) if isinstance(s.get("name"), str)}
