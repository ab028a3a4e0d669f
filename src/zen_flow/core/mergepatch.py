"""RFC 7386 JSON merge patches: the smallest patch that turns one document into another.

Status is written as a merge patch on the /status subresource. A merge patch cannot express "remove"
except as `null`, so a field that disappeared (e.g. a step's `nextRetryTime` once the retry started) must be
sent as null; lists are replaced whole, which is what we want for `status.steps` and `conditions`.
"""

from __future__ import annotations

from typing import Any


def diff(old: Any, new: Any) -> Any:
    """A merge patch `p` with `apply(old, p) == new`; `{}` when they are equal (for dicts)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {}
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = (
                diff(old[key], value) if isinstance(value, dict) and isinstance(old[key], dict) else value
            )
    for key in old:
        if key not in new:
            patch[key] = None
    return patch


def apply(target: Any, patch: Any) -> Any:
    """Apply a merge patch (RFC 7386 §2); used by tests and by the planner's simulator."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply(result.get(key), value)
    return result
