"""RFC 6902 JSON patches of a flow's status that carry only what changed.

A merge patch (RFC 7386) replaces a list whole, so every status write of an n-step flow resent all n step
entries: a chain of n steps cost O(n^2) bytes sent and decoded (docs/BENCHMARKS.md, "Cost as flows
grow"). A JSON patch can address one list entry by index. An index is only safe against the list it was
computed from, so every patch also sets `metadata.resourceVersion` to the version it was computed from:
the apiserver then refuses it with 409 Conflict when the object changed meanwhile, as it does a
conditional merge patch (tests/integration/test_fake_contract.py checks this against a real apiserver).

Server-side apply with `steps` as a list-map was the other way in; it was not taken because an apply
must carry every entry its manager owns (an omitted entry is removed), which is the whole list again.
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import is_not
from typing import Any

from pydantic import TypeAdapter

from zen_flow.api.flow_status import JobFlowStatus, StepStatus

# The apiserver refuses a JSON patch of more than 10,000 operations; past a quarter of the entries
# changed, one `add` of the whole list is smaller than the entries one by one anyway.
WHOLE_LIST_FRACTION = 0.25

Operation = dict[str, Any]

_NEVER_WRITTEN = JobFlowStatus()
_STEP: TypeAdapter[StepStatus] = TypeAdapter(StepStatus)


def pointer(*parts: str | int) -> str:
    """An RFC 6901 JSON pointer to `parts`."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def status_ops(old: JobFlowStatus, new: JobFlowStatus, resource_version: str) -> list[Operation]:
    """The operations that turn status `old` into `new`, conditional on the object still being at
    `resource_version`; `[]` when nothing changed.

    Models in, not wire dicts: the planner keeps the model of every step that did not change, so
    unchanged entries are skipped by identity and only what changed is serialised (dumping a 500-step
    status twice per reconcile cost more than planning it). `old` is the status as the cache parsed it,
    so a member it shows may be a default the stored object does not spell out: members are written with
    `add` (which replaces an existing one), changed step entries with `replace` of the whole entry (never
    a field inside one, which might be absent).
    """
    if old is new or old == new:
        return []
    if old == _NEVER_WRITTEN:  # the stored object may have no status at all
        return whole_status_ops(new, resource_version)
    ops: list[Operation] = []
    changed: set[str] = set()
    for name, field in JobFlowStatus.model_fields.items():
        before, after = getattr(old, name), getattr(new, name)
        if before is after or before == after:
            continue
        if name == "steps" and (entries := _entry_ops(before, after)) is not None:
            ops.extend(entries)
        elif after is None:
            ops.append({"op": "remove", "path": pointer("status", field.alias or name)})
        else:
            changed.add(name)
    written = new.model_dump(include=changed, by_alias=True, exclude_none=True, mode="json")
    ops.extend({"op": "add", "path": pointer("status", k), "value": v} for k, v in written.items())
    return [_condition(resource_version), *ops]


def whole_status_ops(new: JobFlowStatus, resource_version: str) -> list[Operation]:
    """The whole status in one operation, conditional on `resource_version`: for an object that has no
    status yet, and to fall back on when the stored status does not have an entry or member that the
    cache showed (someone edited it by hand): `add` of `/status` applies to any object."""
    return [_condition(resource_version), {"op": "add", "path": "/status", "value": new.to_wire()}]


def writes_whole(ops: list[Operation]) -> bool:
    """Do `ops` write the status whole (`whole_status_ops`)?"""
    return any(op["path"] == "/status" for op in ops)


def _condition(resource_version: str) -> Operation:
    return {"op": "replace", "path": "/metadata/resourceVersion", "value": resource_version}


def _entry_ops(old: tuple[StepStatus, ...], new: tuple[StepStatus, ...]) -> list[Operation] | None:
    """`replace` of each changed entry, or None when the list should be sent whole: the entries do not
    line up name by name (a step more or fewer, another order), or so many changed that the whole list is
    smaller."""
    if len(old) != len(new) or not old or any(a.name != b.name for a, b in zip(old, new, strict=True)):
        return None
    changed = [i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a is not b and a != b]
    if len(changed) > max(1, int(len(new) * WHOLE_LIST_FRACTION)):
        return None
    return [
        {"op": "replace", "path": pointer("status", "steps", i), "value": new[i].to_wire()} for i in changed
    ]


def patched_status(old: JobFlowStatus, ops: list[Operation]) -> JobFlowStatus | None:
    """The status the apiserver holds once `ops` (from `status_ops`, against `old`) applied, as decoding
    it would give it: what was written is decoded from the operations' own values (a timestamp as the
    wire has it, not as the planner held it), everything else is `old`'s, the same objects. None when the
    operations write the status or the step list whole (rare; those are decoded from the watch event).

    The controller knows its write's result before the watch event brings it back, and recognising that
    event is ~25 µs where decoding a 500-step flow's is ~1.8 ms (`zen_flow.informer`'s `expect`).
    """
    steps = list(old.steps)
    members: dict[str, Any] = {}
    removed: list[str] = []
    for op in ops:
        parts = op["path"].split("/")[1:]
        if parts[0] == "metadata":
            continue  # the condition on the resourceVersion
        if len(parts) == 3 and parts[1] == "steps" and op["op"] == "replace":
            steps[int(parts[2])] = _STEP.validate_python(op["value"])
        elif len(parts) == 2 and parts[1] != "steps" and op["op"] in ("add", "remove"):
            if op["op"] == "add":
                members[_unescape(parts[1])] = op["value"]
            else:
                removed.append(_unescape(parts[1]))
        else:
            return None
    written = JobFlowStatus.model_validate(members)
    update: dict[str, Any] = {}
    for name, field in JobFlowStatus.model_fields.items():
        alias = field.alias or name
        if alias in members:
            update[name] = getattr(written, name)
        elif alias in removed:
            update[name] = field.default
    if any(map(is_not, steps, old.steps)):
        update["steps"] = tuple(steps)
    return old.model_copy(update=update)


class PatchError(ValueError):
    """A JSON patch that does not apply (the apiserver answers 422)."""


def apply(document: Mapping[str, Any], ops: list[Operation]) -> dict[str, Any]:
    """`document` with the `add`/`replace`/`remove` operations applied (a copy; for fakes and tests)."""
    result: dict[str, Any] = _copy(dict(document))
    for op in ops:
        *parents, last = [_unescape(part) for part in op["path"].split("/")[1:]]
        target: Any = result
        for part in parents:
            target = _child(target, part, op)
        kind = op["op"]
        if isinstance(target, list):
            index = len(target) if last == "-" and kind == "add" else _index(target, last, op, kind)
            if kind == "add":
                target.insert(index, _copy(op["value"]))
            elif kind == "replace":
                target[index] = _copy(op["value"])
            else:
                del target[index]
        elif isinstance(target, dict):
            if kind != "add" and last not in target:
                raise PatchError(f"{kind} {op['path']}: no such member")
            if kind == "remove":
                del target[last]
            else:
                target[last] = _copy(op["value"])
        else:
            raise PatchError(f"{kind} {op['path']}: parent is not a container")
    return result


def _child(target: Any, part: str, op: Operation) -> Any:
    if isinstance(target, list):
        return target[_index(target, part, op, "walk")]
    if isinstance(target, dict) and part in target:
        return target[part]
    raise PatchError(f"{op['op']} {op['path']}: no such member {part!r}")


def _index(target: list[Any], part: str, op: Operation, kind: str) -> int:
    limit = len(target) + (1 if kind == "add" else 0)
    # isascii(): str.isdigit() takes a superscript (int() refuses it) and other scripts' digits.
    if not (part.isascii() and part.isdigit()) or int(part) >= limit:
        raise PatchError(f"{op['op']} {op['path']}: index out of range")
    return int(part)


def _unescape(part: str) -> str:
    return part.replace("~1", "/").replace("~0", "~")


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
