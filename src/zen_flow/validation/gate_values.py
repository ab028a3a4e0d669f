"""Values supplied at a Manual gate: the annotation `values.workflow.kube-zen.io/<step>`
(core/gate_values.py).

Checked at admission (and by `zen-flow validate`) beside the approval annotations (approvals.py): the
annotation names a Manual step, is a JSON object of strings, names only the step's supplied outputs,
each value within its `enum` and at most 1 KiB; and an approval of a gate whose supplied parameter has
neither a value nor a default is refused, naming it. The controller never fails a running flow for an
annotation: a gate approved with a value it cannot take fails, naming the parameter (planner).

`frozen_values` is the UPDATE rule: every approval approves the values present when it is given, so once
the stored flow carries an approval of the gate (its approve annotation: one approval, or the first of a
tally), its values stay as they are until the approvals are taken back: else one user could change what
two approved, or what the approver of a gate not reached yet approved. The request that gives the first
approval may set them with it (the stored flow has none yet). And once the status records the gate
decided (Succeeded or Failed), its values stay as they were, so the outputs users read never disagree
with the annotation, until a rerun reaches the gate again (it goes back to Pending).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zen_flow.api.constants import APPROVE_PREFIX, REJECT_PREFIX, VALUES_PREFIX, StepPhase
from zen_flow.core.decision_values import is_true
from zen_flow.core.gate_values import (
    Supplied,
    ValuesError,
    missing,
    read_values,
    unknown_names,
    value_problem,
)
from zen_flow.validation.errors import FieldError, forbidden, invalid, not_found, required

_ANNOTATIONS = "metadata.annotations"
_DECIDED = frozenset({StepPhase.SUCCEEDED, StepPhase.FAILED})


def supplied_params(step: Mapping[str, Any]) -> tuple[Supplied, ...]:
    """The supplied output parameters of a raw step (what is malformed is the flow validator's to say)."""
    outputs = step.get("outputs")
    params = outputs.get("parameters") if isinstance(outputs, Mapping) else None
    found: list[Supplied] = []
    for param in params if isinstance(params, list | tuple) else ():
        source = param.get("valueFrom") if isinstance(param, Mapping) else None
        supplied = source.get("supplied") if isinstance(source, Mapping) else None
        name = param.get("name") if isinstance(param, Mapping) else None
        if not isinstance(supplied, Mapping) or not isinstance(name, str):
            continue
        default = supplied.get("default")
        enum = supplied.get("enum")
        found.append(
            Supplied(
                name,
                default if isinstance(default, str) else None,
                tuple(e for e in enum if isinstance(e, str)) if isinstance(enum, list | tuple) else (),
            )
        )
    return tuple(found)


def check_values(
    annotations: Mapping[Any, Any],
    gates: Mapping[str, tuple[Supplied, ...]],
    names: set[str],
    tallied: set[str],
    flow: str,
) -> list[FieldError]:
    """The rules of every values annotation, and of every approval of a gate with supplied outputs.
    `gates`: the Manual steps and their supplied parameters; `names`: every step; `tallied`: the gates
    with `approval`; `flow`: the flow's name, for the command the error suggests."""
    errors: list[FieldError] = []
    for key, text in annotations.items():
        if not isinstance(key, str) or not key.startswith(VALUES_PREFIX):
            continue
        step, path = key[len(VALUES_PREFIX) :], f"{_ANNOTATIONS}[{key}]"
        if step not in names:
            errors.append(not_found(path, step, "this flow has no step of that name"))
            continue
        if step not in gates:
            errors.append(invalid(path, step, "only a Manual step is given values at its approval"))
            continue
        try:
            values = read_values(text if isinstance(text, str) else None)
        except ValuesError as err:
            errors.append(invalid(path, text, str(err)))
            continue
        params = gates[step]
        if unknown := unknown_names(params, values):
            declared = ", ".join(p.name for p in params) or "none"
            errors.append(
                invalid(
                    path,
                    unknown[0],
                    f"step {step} has no supplied output parameter of that name (declared: {declared})",
                )
            )
            continue
        by_name = {p.name: p for p in params}
        for name, value in values.items():
            if (problem := value_problem(by_name[name], value)) is not None:
                errors.append(invalid(path, value, problem))
    for step, params in gates.items():
        approve, reject = annotations.get(APPROVE_PREFIX + step), annotations.get(REJECT_PREFIX + step)
        counted = step in tallied
        if not params or not isinstance(approve, str) or not is_true(approve, tallied=counted):
            continue
        if isinstance(reject, str) and is_true(reject, tallied=counted):
            continue  # rejected: no value is taken
        text = annotations.get(VALUES_PREFIX + step)
        try:
            values = read_values(text if isinstance(text, str) else None)
        except ValuesError:
            continue  # said above
        if lacking := missing(params, values):
            errors.append(
                required(
                    f"{_ANNOTATIONS}[{APPROVE_PREFIX}{step}]",
                    f"step {step} needs a value for parameter {lacking[0]!r}: "
                    f"zen-flow approve {flow} {step} -p {lacking[0]}=...",
                )
            )
    return errors


def frozen_values(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[FieldError]:
    """An update that sets, changes or removes the values of a gate the status records decided, or of one
    the stored flow carries an approval of."""
    before, after = _annotations(old), _annotations(new)
    changed = {
        key[len(VALUES_PREFIX) :]
        for key in before.keys() | after.keys()
        if isinstance(key, str) and key.startswith(VALUES_PREFIX) and before.get(key) != after.get(key)
    }
    if not changed:
        return []
    status = old.get("status") if isinstance(old, Mapping) else None
    steps = status.get("steps") if isinstance(status, Mapping) else None
    errors: list[FieldError] = []
    decided: set[str] = set()
    for entry in steps if isinstance(steps, list | tuple) else ():
        if not isinstance(entry, Mapping) or entry.get("name") not in changed:
            continue
        phase = entry.get("phase")
        if phase in _DECIDED:
            step = entry["name"]
            decided.add(step)
            errors.append(
                forbidden(
                    f"{_ANNOTATIONS}[{VALUES_PREFIX}{step}]",
                    f"step {step} is {phase}: its values are recorded with its decision and cannot change "
                    "until a rerun reaches it again",
                )
            )
    flow = _name(new) or _name(old) or "FLOW"
    for step in sorted(changed - decided):
        approve = before.get(APPROVE_PREFIX + step)
        if not isinstance(approve, str) or not is_true(approve, tallied=_tallied(old, new, step)):
            continue
        errors.append(
            forbidden(
                f"{_ANNOTATIONS}[{VALUES_PREFIX}{step}]",
                f"step {step} carries an approval ({APPROVE_PREFIX}{step}), which approved the values "
                "present when it was given: they cannot change while it stands; take the approvals back "
                f"first (kubectl annotate jobflow {flow} {APPROVE_PREFIX}{step}-), then set the values "
                "and approve again",
            )
        )
    return errors


def _tallied(old: Mapping[str, Any], new: Mapping[str, Any], step: str) -> bool:
    """Has the step an `approval` (then `true-…` approves too)? Read from whichever object carries the
    steps (the webhook may leave the spec out of one of an unchanged pair); True when neither does: an
    approve annotation that may approve is taken as one (refusing a values edit is the safe side)."""
    for obj in (old, new):
        spec = obj.get("spec") if isinstance(obj, Mapping) else None
        steps = spec.get("steps") if isinstance(spec, Mapping) else None
        if not isinstance(steps, list | tuple):
            continue
        for entry in steps:
            if isinstance(entry, Mapping) and entry.get("name") == step:
                return entry.get("approval") is not None
        return False
    return True


def _name(obj: Any) -> str:
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return name if isinstance(name, str) else ""


def _annotations(obj: Any) -> Mapping[Any, Any]:
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    return annotations if isinstance(annotations, Mapping) else {}
