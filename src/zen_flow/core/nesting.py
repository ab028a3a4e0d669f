"""How deep a JSON value nests, without recursion.

A step's `template` and the resource templates are schemaless in the CRD, and the apiserver stores JSON
nested up to 10,000 levels. Python's `json` and msgspec decode recursively and raise `RecursionError`
at about a thousand levels, pydantic's parser stops at 200 and its serializer at 255: a tenant's flow
nested 400 levels deep once took the controller down on every start (its LIST could not be decoded). So
depth is measured by loops here, a flow whose free-form fields nest deeper than `MAX_TEMPLATE_DEPTH` is
refused (admission, or Failed naming the field), and bytes too deep for the decoder are cut first
(`loads`): the object that held them still reads as too deep, and is reported, never decoded.
"""

from __future__ import annotations

import json
import re
from typing import Any

# A Job's deepest fields (affinity's match expressions, an ephemeral volume's selector) sit ~15 levels
# below a step's `template`; no template needs four times that.
MAX_TEMPLATE_DEPTH = 64
# What the controller decodes of any object: twice what a valid JobFlow can nest (its templates start
# 4 levels down), well inside every decoder above. `loads` cuts containers below it, so an object that
# was deeper still is, and the informer caches it as a placeholder that says so.
MAX_OBJECT_DEPTH = 128
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def deepest_path(value: Any, limit: int) -> tuple[str | int, ...] | None:
    """The path to the first container nested more than `limit` levels deep in `value` (`value`
    itself is level 1), or None when none is."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        if len(path) >= limit:
            return path
        if isinstance(node, dict):
            stack.extend((v, (*path, k)) for k, v in node.items() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend((v, (*path, i)) for i, v in enumerate(node) if isinstance(v, dict | list))
    return None


def describe_depth(path: tuple[str | int, ...], limit: int) -> str:
    """What the error says: where the nesting went too deep (the first levels; the rest is `...`)."""
    shown = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path[:6])
    return f"nested more than {limit} levels deep (at {shown.lstrip('.')}...)"


def cut_deep(raw: bytes, depth: int = MAX_OBJECT_DEPTH + 4) -> bytes:
    """`raw` (JSON) with every array or object that opens below `depth` levels replaced by `[]`: the
    result nests at most `depth` + 1 levels. The default leaves an object wrapped a few levels down (a
    LIST page's item, a watch event's or an AdmissionReview's object) still more than MAX_OBJECT_DEPTH
    deep when it was: what was too deep still is, and says so."""
    out: list[bytes] = []
    level, kept, skip_from = 0, 0, -1
    for token in _TOKENS.finditer(raw):
        char = raw[token.start()]
        if char in b"[{":
            level += 1
            if level == depth + 1 and skip_from < 0:
                skip_from = token.start()
        elif char in b"]}":
            if level == depth + 1 and skip_from >= 0:
                out.append(raw[kept:skip_from])
                out.append(b"[]")
                kept, skip_from = token.end(), -1
            level -= 1
    out.append(raw[kept:])
    return b"".join(out)


def loads(raw: bytes | str) -> Any:
    """`json.loads`, also for JSON nested too deep for it (cut by `cut_deep` first)."""
    try:
        return json.loads(raw)
    except RecursionError:
        return json.loads(cut_deep(raw.encode() if isinstance(raw, str) else raw))
