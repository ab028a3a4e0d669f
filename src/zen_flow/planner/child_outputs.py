"""What a Flow step's output paths (and a later step's `<flow step>:` inputs) read: its child's status,
its `steps` laid out in the child's spec order (docs/API.md, "Child flows": `$.steps[1]` is the second
step of the template).

The child's `status.steps` holds one entry per step of its effective spec, where a matrix step is
replaced by its items (`build-0`, `build-1`, ...): read as it is, a matrix shifts every later step's
place by its item count less one, so a path written against the template would silently read another
step's value. Here a matrix step is one entry at its place, read as a dependent reads it in its own flow
(planner.readiness.matrix_producer): its phase (Failed when an item failed), each output its items
declare as a JSON array of their values in index order (null for an item with none), and its items'
own entries under `items`, in index order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from zen_flow.api.constants import StepPhase
from zen_flow.api.jobflow import JobFlow, Step
from zen_flow.core.matrix import effective_spec
from zen_flow.core.matrix_items import aggregate


def child_document(child: JobFlow) -> dict[str, Any]:
    """The child's status as JSON, `steps` in its spec order (each matrix step one entry)."""
    dumped = child.status.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert isinstance(dumped, dict)
    if not any(s.matrix is not None for s in child.spec.steps):
        return dumped  # its status entries are its spec's steps, in order (planner.steps.Works)
    groups = effective_spec(child.spec, child.status.steps)[0].matrix_groups
    entries = {e["name"]: e for e in dumped.get("steps", ()) if isinstance(e, dict) and "name" in e}
    steps: list[dict[str, Any]] = []
    for step in child.spec.steps:
        items = groups.get(step.name)
        if items is None:
            if step.name in entries:
                steps.append(entries[step.name])
            continue
        steps.append(_matrix_entry(step, [entries[i] for i in items if i in entries]))
    return {**dumped, "steps": steps}


def _matrix_entry(step: Step, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    phases = [item.get("phase", StepPhase.PENDING.value) for item in items]
    terminal = {p.value for p in StepPhase if p.terminal}
    waiting = next((p for p in phases if p not in terminal), None)
    failed = StepPhase.FAILED.value in phases
    phase = waiting or (StepPhase.FAILED if failed else StepPhase.SUCCEEDED).value
    names = [p.name for p in step.outputs.parameters] if step.outputs is not None else []
    stored = [_values(item) for item in items]
    parameters = [{"name": n, "value": aggregate([values.get(n) for values in stored])} for n in names]
    return {
        "name": step.name,
        "phase": phase,
        **({"outputs": {"parameters": parameters}} if parameters else {}),
        "items": list(items),
    }


def _values(item: Mapping[str, Any]) -> dict[str, str]:
    outputs = item.get("outputs")
    params = outputs.get("parameters", ()) if isinstance(outputs, Mapping) else ()
    return {p["name"]: p.get("value", "") for p in params if isinstance(p, Mapping) and "name" in p}
