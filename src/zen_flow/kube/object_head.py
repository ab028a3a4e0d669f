"""An object's uid and resourceVersion, read from the front of its JSON without parsing the rest.

A status write of a 500-step flow is answered with the whole ~200 KB object, and comes back once more as a
watch event of the same size. Parsing either for two strings cost 0.6-0.8 ms (pydantic reads every byte
even when it builds nothing), decoding the event 1.8 ms; this reads them in ~25 µs (measured,
docs/BENCHMARKS.md). It relies on how the apiserver writes JSON: an object's members in key order, so
`apiVersion`, `kind` and `metadata` come first, and a watch event's `type` before its `object`. Bytes
written otherwise are not recognised (None), and the caller parses them whole: never a wrong answer,
only the slower one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

# Strings cannot hold an unescaped quote, so these match only the object's own first members.
_OBJECT = re.compile(rb'\{"apiVersion":"[^"\\]*","kind":"[^"\\]*","metadata":')
_EVENT = re.compile(rb'\{"type":"([A-Z]+)","object":')
_DECODER = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class ObjectHead:
    uid: str
    resource_version: str


def object_head(raw: bytes, start: int = 0) -> ObjectHead | None:
    """The uid and resourceVersion of the object whose JSON starts at `raw[start]`; None if they cannot
    be read from its front (see the module's note)."""
    match = _OBJECT.match(raw, start)
    if match is None:
        return None
    try:
        # Only the metadata object is parsed: raw_decode stops at its closing brace.
        metadata, _ = _DECODER.raw_decode(str(memoryview(raw)[match.end() :], "utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(metadata, dict):
        return None
    uid, version = metadata.get("uid"), metadata.get("resourceVersion")
    if not isinstance(uid, str) or not isinstance(version, str) or not uid or not version:
        return None
    return ObjectHead(uid, version)


def event_head(raw: bytes) -> tuple[str, ObjectHead] | None:
    """A watch event's type and its object's head; None if they cannot be read from its front."""
    match = _EVENT.match(raw)
    if match is None:
        return None
    head = object_head(raw, match.end())
    return None if head is None else (match.group(1).decode(), head)
