"""A step's placeholders (`{{inputs.parameters.NAME}}` and the original's forms, core/parameter_forms.py)
name its own input parameters, and it uses no other action on the original's template context
(`{{ .Parameters.x | upper }}`), which nothing would substitute.

The planner fails a step whose Job would keep a placeholder it cannot fill; a typo in a name is knowable
from the spec, so admission refuses it, naming the field that holds it. A template's strings are read
once per distinct template (a fan-out of 500 steps often repeats one; its JSON, ~2 µs, says which, and
whether it holds a placeholder at all, as most do not); each step then only looks its names up among
its inputs. Walking every template of a 500-step flow was half of validating it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import msgspec

from zen_flow.core.parameter_forms import SUPPORTED, marked, placeholders, unsupported
from zen_flow.validation.errors import Path, invalid, not_found, quote
from zen_flow.validation.reader import Reader

# Where a step's placeholders are substituted: its Job template and its metadata (planner/parameters.py),
# its memoize key (planner/memoization.py), and a Flow step's argument values (planner/children.py).
_FIELDS = ("template", "metadata", "memoize", "flow")

_ENCODE = msgspec.json.Encoder().encode

# A template's placeholders: (where, relative to the template, as written, the parameter's name; None
# for an unsupported action).
Found = tuple[tuple[str, str, str | None], ...]


class PlaceholderMemo:
    """The placeholders of each template seen in one validation, by identity (the validation keeps the
    objects alive) and by JSON."""

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[Any, Found]] = {}
        self._by_json: dict[bytes, Found] = {}

    def found(self, node: Any) -> Found:
        entry = self._by_id.get(id(node))
        if entry is None or entry[0] is not node:
            entry = self._by_id[id(node)] = (node, self._of(node))
        return entry[1]

    def _of(self, node: Any) -> Found:
        try:
            key = _ENCODE(node)
        except (TypeError, ValueError, msgspec.EncodeError):  # not JSON (YAML's integer keys): walk it
            return tuple(_collect(node, ""))
        if b"{{" not in key and b"${" not in key:
            return ()
        found = self._by_json.get(key)
        if found is None:
            found = self._by_json[key] = tuple(_collect(node, ""))
        return found


def _collect(node: Any, at: str) -> Iterator[tuple[str, str, str | None]]:
    if isinstance(node, str):
        if marked(node):
            for text in unsupported(node):
                yield at, text, None
            for text, name in placeholders(node):
                yield at, text, name
    elif isinstance(node, dict):
        for key, item in node.items():
            if isinstance(item, str | dict | list):
                yield from _collect(item, f"{at}.{key}" if _plain(key) else f"{at}[{key}]")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            if isinstance(item, str | dict | list):
                yield from _collect(item, f"{at}[{index}]")


def _plain(key: Any) -> bool:
    return isinstance(key, str) and key.replace("_", "a").isalnum()


def input_names(inputs: Mapping[str, Any] | None) -> frozenset[str]:
    params = inputs.get("parameters") if inputs is not None else None
    if not isinstance(params, list):
        return frozenset()
    return frozenset(p["name"] for p in params if isinstance(p, dict) and isinstance(p.get("name"), str))


def check_placeholders(
    r: Reader,
    memo: PlaceholderMemo,
    step: Mapping[str, Any],
    name: str,
    inputs: Mapping[str, Any] | None,
    path: Path,
) -> None:
    """Every placeholder in the step's template and metadata names one of its input parameters."""
    declared: frozenset[str] | None = None
    for field in _FIELDS:
        node = step.get(field)
        if not isinstance(node, dict):
            continue
        for at, text, parameter in memo.found(node):
            if parameter is None:
                r.add(invalid(f"{path}.{field}{at}", text, f"unsupported template action: use {SUPPORTED}"))
                continue
            if declared is None:
                declared = input_names(inputs)
            if parameter not in declared:
                r.add(
                    not_found(
                        f"{path}.{field}{at}",
                        text,
                        f"step {quote(name)} has no input parameter {quote(parameter)} "
                        f"(its inputs.parameters: {', '.join(sorted(declared)) or 'none'})",
                    )
                )
