"""A check that runs once per distinct value within one validation.

A 500-step flow's steps mostly repeat one another apart from their names and wiring: a fan-out of one
worker, a chain of the same stage with the same template, retryPolicy, timeout and outputs. Whether
those parts are valid does not depend on where they are, so a check's errors, found once at ROOT, are
moved under each later path, and its result is moved with `relocate`.

The key is the value's JSON without the top-level fields the check does not read (`ignore`), serialized
by msgspec (~1.6 µs for a rich step; pydantic's `to_json` took ~3-4); a hit is confirmed with `==`,
since YAML input can serialize alike and differ (an integer map key and its string). Before that, a
value whose fields are the very objects of one seen before is a hit without serialising anything: the
webhook decodes a spec's steps so that equal members are one object (webhook/envelope.py), and
serialising each step for its key was ~10 % of validating a new 500-step flow. The memo lives for one
validation and holds the values it saw, so an identity stays theirs; nothing a tenant sends is kept
after its review.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Generic, TypeVar

import msgspec

from zen_flow.validation.errors import ROOT, FieldError, Path
from zen_flow.validation.reader import Reader

T = TypeVar("T")

Check = Callable[[Reader, Mapping[str, Any], Path], T]
# What a check found for a value: the value (kept, so the ids in `_same` stay its objects'), its errors at
# ROOT and its result.
_Entry = tuple[Mapping[str, Any], tuple[FieldError, ...], T]

_ENCODE = msgspec.json.Encoder().encode


class CheckMemo(Generic[T]):
    def __init__(
        self, check: Check[T], relocate: Callable[[T, Path], T], ignore: frozenset[str] = frozenset()
    ) -> None:
        self._check = check
        self._relocate = relocate
        self._ignore = ignore
        self._seen: dict[bytes, _Entry[T]] = {}
        self._same: dict[tuple[Any, ...], _Entry[T]] = {}  # by field names and the ids of their values

    def run(self, r: Reader, value: Mapping[str, Any], path: Path) -> T:
        """`check(r, value, path)`, from the memo when an equal value (ignored fields aside) was seen."""
        ignore = self._ignore
        kept = {k: v for k, v in value.items() if k not in ignore} if ignore else value
        same = (*kept, *map(id, kept.values()))
        found = self._same.get(same)
        if found is None:
            try:
                key = _ENCODE(kept)
            except (TypeError, ValueError, RecursionError):  # not JSON (YAML): checked in place
                return self._check(r, value, path)
            found = self._seen.get(key)
            try:
                if found is not None and found[0] != kept:
                    found = None
            except RecursionError:  # nested too deep to compare (the check says so): checked in place
                return self._check(r, value, path)
            if found is None:
                local = Reader([])
                result = self._check(local, value, ROOT)
                found = self._seen[key] = (kept, tuple(local.errors), result)
            self._same[same] = found = (kept, found[1], found[2])  # holds this value's objects too
        _, errors, result = found
        for error in errors:
            r.add(replace(error, path=path + error.path))
        return self._relocate(result, path)
