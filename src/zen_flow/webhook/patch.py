"""RFC 6902 JSON Patch: building operations, and applying them (tests, and the idempotency check)."""

from __future__ import annotations

import copy
from typing import Any


def pointer(*tokens: str) -> str:
    """A JSON Pointer (RFC 6901): `~` becomes `~0` and `/` becomes `~1` (annotation keys contain `/`)."""
    return "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens)


def _tokens(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ValueError(f"JSON pointer must start with '/': {path!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def apply_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """Apply add/replace/remove operations (what our mutating webhook emits) to a copy of `doc`."""
    result = copy.deepcopy(doc)
    for op in ops:
        *parents, last = _tokens(op["path"])
        target = result
        for token in parents:
            target = target[int(token)] if isinstance(target, list) else target[token]
        kind = op["op"]
        if isinstance(target, list):
            index = len(target) if last == "-" else int(last)
            if kind == "add":
                target.insert(index, copy.deepcopy(op["value"]))
            elif kind == "replace":
                target[index] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del target[index]
            else:
                raise ValueError(f"unsupported op {kind!r}")
        elif kind in ("add", "replace"):
            if kind == "replace" and last not in target:
                raise KeyError(op["path"])
            target[last] = copy.deepcopy(op["value"])
        elif kind == "remove":
            del target[last]
        else:
            raise ValueError(f"unsupported op {kind!r}")
    return result
