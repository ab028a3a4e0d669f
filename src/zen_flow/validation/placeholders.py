"""A step's placeholders (`{{inputs.parameters.NAME}}` and the original's forms, core/parameter_forms.py)
name its own input parameters, and it uses no other action on the original's template context
(`{{ .Parameters.x | upper }}`), which nothing would substitute.

The planner fails a step whose Job would keep a placeholder it cannot fill; a typo in a name is knowable
from the spec, so admission refuses it, naming the field that holds it. A template's strings are read
once per distinct template (a fan-out of 500 steps often repeats one; its JSON, ~2 µs, says which, and
whether it holds a placeholder at all, as most do not); each step then only looks its names up among
its inputs. Walking every template of a 500-step flow was half of validating it.

What literal values will add to the Job is known here too: each placeholder of a parameter with a
`value`, and that value again in every container's env var. Past MAX_SUBSTITUTED_BYTES the planner would
fail the step, so admission refuses it, naming the value that fills most of it (values from arguments,
outputs and Job statuses are counted by the planner as it substitutes). The context fields
(`{{.StepName}}`, `{{.JobFlow.Name}}`, ...) count too, each at its longest: 30,000 `{{.StepName}}` of a
matrix item's name are 1.9 MB in each of its Jobs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import msgspec

from zen_flow.core.parameter_forms import (
    MAX_SUBSTITUTED_BYTES,
    SUBSTITUTED,
    SUPPORTED,
    context_field,
    marked,
    placeholders,
    unsupported,
)
from zen_flow.validation.errors import Path, forbidden, invalid, not_found, quote
from zen_flow.validation.reader import Reader

# Where a step's placeholders are substituted: its Job template and its metadata (planner/parameters.py),
# its memoize key (planner/memoization.py), and a Flow step's argument values (planner/children.py).
_FIELDS = ("template", "metadata", "memoize", "flow")

_ENCODE = msgspec.json.Encoder().encode
# A context field's placeholder in `Found`: this prefix and the field (no parameter's name holds a `{`).
CONTEXT = "{{."
# The most a context field puts in: a name (of the flow, its namespace, a matrix item's step) is at most
# 63 characters; the scheduled time is always 20 (2006-01-02T15:04:05Z).
_LONGEST = {"Name": 63, "Namespace": 63, "StepName": 63, "ScheduledTime": 20}

# A template's placeholders: (where, relative to the template, as written, the parameter's name (CONTEXT
# and the field for a context placeholder); None for an unsupported action).
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
            for match in SUBSTITUTED.finditer(node):
                if (field := context_field(match)) is not None:
                    yield at, match.group(0), CONTEXT + field
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
    """Every placeholder in the step's template and metadata names one of its input parameters, and
    literal values do not make the Job (or a child flow's arguments) too large."""
    declared: frozenset[str] | None = None
    counts: dict[str, dict[str, int]] = {}  # object (Job, child flow) -> parameter -> placeholders
    context: dict[str, tuple[int, str, str]] = {}  # object -> (bytes at most, first one's path, as written)
    for field in _FIELDS:
        node = step.get(field)
        if not isinstance(node, dict):
            continue
        for at, text, parameter in memo.found(node):
            if parameter is not None and parameter.startswith(CONTEXT):
                if field != "memoize":
                    made_by = "flow" if field == "flow" else "template"
                    size, first, written = context.get(made_by, (0, f"{path}.{field}{at}", text))
                    context[made_by] = (size + _LONGEST[parameter[len(CONTEXT) :]], first, written)
                continue
            if parameter is not None and field != "memoize":
                made = counts.setdefault("flow" if field == "flow" else "template", {})
                made[parameter] = made.get(parameter, 0) + 1
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
    _check_substituted_size(r, step, counts, context, inputs or {}, path)


def _literals(inputs: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """Each input parameter with a literal `value`: (its index, its size in bytes)."""
    params = inputs.get("parameters")
    out: dict[str, tuple[int, int]] = {}
    for i, p in enumerate(params if isinstance(params, list) else ()):
        if isinstance(p, dict) and isinstance(p.get("name"), str) and isinstance(p.get("value"), str):
            out[p["name"]] = (i, len(p["value"].encode()))
    return out


def _containers(step: Mapping[str, Any]) -> int:
    template = step.get("template")
    spec = template.get("spec") if isinstance(template, dict) else None
    pod = spec.get("template") if isinstance(spec, dict) else None
    pod_spec = pod.get("spec") if isinstance(pod, dict) else None
    if not isinstance(pod_spec, dict):
        return 0
    return sum(len(c) for f in ("containers", "initContainers") if isinstance(c := pod_spec.get(f), list))


def _check_substituted_size(
    r: Reader,
    step: Mapping[str, Any],
    counts: Mapping[str, Mapping[str, int]],
    context: Mapping[str, tuple[int, str, str]],
    inputs: Mapping[str, Any],
    path: Path,
) -> None:
    literals = _literals(inputs)
    if not literals and not context:
        return
    containers = _containers(step)
    for made in ("template", "flow"):
        uses = dict(counts.get(made, {}))
        if made == "template":  # every container gets every parameter as an env var
            for name in literals:
                uses[name] = uses.get(name, 0) + containers
        added = {n: k * literals[n][1] for n, k in uses.items() if n in literals}
        fields, first, written = context.get(made, (0, "", ""))
        total = sum(added.values()) + fields
        if total <= MAX_SUBSTITUTED_BYTES:
            continue
        what = "the Job" if made == "template" else "the child flow's arguments"
        if fields >= max(added.values(), default=0):
            # Said without the total: a matrix step's items share the template (and `fields`) but not
            # their literal values, and one field to edit gets one error (validation.matrix.said_once).
            beyond = "" if fields > MAX_SUBSTITUTED_BYTES else " with the literal input values"
            r.add(
                forbidden(
                    first,
                    f"{written} and the step's other context placeholders may add {fields:,} bytes (a name "
                    f"counted at its longest, 63) to {what}, more than {MAX_SUBSTITUTED_BYTES:,}{beyond} "
                    "(1 MiB; the apiserver refuses an object over 1.5 MiB): use them in fewer places",
                )
            )
            continue
        largest = max(added, key=lambda n: added[n])
        index, size = literals[largest]
        r.add(
            forbidden(
                f"{path}.inputs.parameters[{index}].value",
                f"its {size:,} bytes are substituted {uses[largest]:,} times (placeholders and env vars): "
                f"the literal input values would add {total:,} bytes to {what}, more than "
                f"{MAX_SUBSTITUTED_BYTES:,} (1 MiB; the apiserver refuses an object over 1.5 MiB): use the "
                "parameter in fewer places, or pass large data as an artifact",
            )
        )
