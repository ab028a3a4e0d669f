"""`spec.steps[].approval`: who may decide a Manual step (`approvers`) and how many distinct users must
approve it (`required`). The admission webhook enforces both (webhook/gate_approvers.py, mutation.py);
this checks that the object can be met at all."""

from __future__ import annotations

from typing import Any

from zen_flow.api.constants import APPROVER_KINDS, JOB_APPROVAL, MAX_APPROVERS
from zen_flow.validation.errors import Path, duplicate, forbidden, invalid, not_supported, too_long, too_many
from zen_flow.validation.reader import Reader

MAX_SUBJECT_NAME = 512  # CRD approvers[].name maxLength: a service account's full user name fits
# approved-by lists the approvers comma-separated: a name with a comma would read as two users.
TALLY_SEPARATOR = ","


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
        elif kind == "User" and TALLY_SEPARATOR in name:
            r.add(invalid(item_path + ".name", name, "a user name with a comma cannot be counted apart"))
        elif (kind, name) in seen:
            r.add(duplicate(item_path, f"{kind} {name}"))
        else:
            seen.add((kind, name))
            users += kind == "User"
            groups += kind == "Group"
    return users, groups
