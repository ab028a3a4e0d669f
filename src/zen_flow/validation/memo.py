"""A check that runs once per distinct value within one validation.

A 500-step flow's steps mostly repeat one another apart from their names and wiring: a fan-out of one
worker, a chain of the same stage with the same template, retryPolicy, timeout and outputs. Whether
those parts are valid does not depend on where they are, so a check's errors, found once at ROOT, are
moved under each later path, and its result is moved with `relocate`.

The key is the value's JSON without the top-level fields the check does not read (`ignore`), serialized
by msgspec (~1.6 µs for a rich step; pydantic's `to_json` took ~3-4); a hit is confirmed with `==`,
since YAML input can serialize alike and differ (an integer map key and its string). The memo lives for
one validation: nothing a tenant sends is kept after its review.
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

_ENCODE = msgspec.json.Encoder().encode


class CheckMemo(Generic[T]):
    def __init__(
        self, check: Check[T], relocate: Callable[[T, Path], T], ignore: frozenset[str] = frozenset()
    ) -> None:
        self._check = check
        self._relocate = relocate
        self._ignore = ignore
        self._seen: dict[bytes, tuple[Mapping[str, Any], tuple[FieldError, ...], T]] = {}

    def run(self, r: Reader, value: Mapping[str, Any], path: Path) -> T:
        """`check(r, value, path)`, from the memo when an equal value (ignored fields aside) was seen."""
        ignore = self._ignore
        kept = {k: v for k, v in value.items() if k not in ignore} if ignore else value
        try:
            key = _ENCODE(kept)
        except (TypeError, ValueError, RecursionError):  # not JSON (YAML): checked in place, which reports it
            return self._check(r, value, path)
        found = self._seen.get(key)
        if found is None or found[0] != kept:
            local = Reader([])
            result = self._check(local, value, ROOT)
            found = self._seen[key] = (kept, tuple(local.errors), result)
        _, errors, result = found
        for error in errors:
            r.add(replace(error, path=path + error.path))
        return self._relocate(result, path)
