"""Rules for a step's `synchronization` (planner/locks.py): the named mutexes and semaphores it takes
when it would start and holds until it ends.

A lock's name is a DNS-1123 label (it is said in messages and metric-free: names are the namespace's
own); a semaphore's `limit` is 1..10000; a step takes at most `MAX_LOCKS` locks, each name once (a name
both a mutex and a semaphore of one step would make it wait for itself). Refused on a Manual step (a
gate waits for a person: holding a lock meanwhile would stall the namespace's other steps for as long),
and on a Flow step (it would hold its locks while its child flow's steps wait for others: two such
families would wait for each other for ever). A matrix step's items each take its locks (validated as
the items' own field, at the matrix step's path).

The flow's own `spec.synchronization` (held from before its first step to its end) has the same shape and
limits, and two rules of its own (`check_flow_locks`), so that no holder of a lock ever waits for another
(no hold and wait: no deadlock, as for steps, which take all their locks at once): none on a flow with a
Flow step (it would hold them while its child flows wait for theirs: the reason a Flow step takes none),
and none on a flow whose steps take locks (it would hold its own while a step waits for another: two flows
taking two locks in opposite orders would wait for each other for ever, and a step naming one of the
flow's own would wait for its own flow).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from zen_flow.validation.errors import Path, duplicate, forbidden, invalid, required, too_many
from zen_flow.validation.formats import label_problem
from zen_flow.validation.reader import Reader

MAX_LOCKS = 8
MAX_SEMAPHORE_LIMIT = 10000
MANUAL_LOCKS = (
    "a Manual step runs nothing: holding a lock while it waits for a person would stall the "
    "namespace's other steps that need it; put the lock on the step that does the work"
)
FLOW_LOCKS = (
    "a Flow step cannot take locks: it would hold them while its child flow's steps wait for other "
    "locks, and two such flows would wait for each other for ever; put the locks on the steps of the "
    "child's template"
)


OWN = "spec.synchronization"
FLOW_STEP_OWN_LOCKS = (
    "a flow with a Flow step ({step}) cannot take locks of its own: it would hold them while its child "
    "flows wait for theirs, and two such families would wait for each other for ever; put them in the "
    "child's template (spec.synchronization there) or on the Job steps"
)
STEP_LOCKS_UNDER_OWN = (
    "the flow takes locks of its own (spec.synchronization), which it holds from before its first step "
    "to its end: a step taking more would wait for them while its flow holds its own, and two flows "
    "taking two locks in opposite orders would wait for each other for ever{again}; name every lock the "
    "flow needs in spec.synchronization, or none there"
)


def check_synchronization(r: Reader, raw: Any, path: Path, *, kind: str) -> None:
    """The field's own rules (`path`: spec.steps[N].synchronization, or spec.synchronization with `kind`
    "JobFlow"; `kind`: the step's type)."""
    sync = r.mapping(raw, path)
    if sync is None:
        return
    if kind in ("Manual", "Flow"):
        r.add(forbidden(path, MANUAL_LOCKS if kind == "Manual" else FLOW_LOCKS))
        return
    holder = "the flow" if kind == "JobFlow" else "a step"
    seen: set[str] = set()
    count = 0
    mistyped = False  # a list that is not one has its own error: "name at least one lock" would mislead
    for field in ("mutexes", "semaphores"):
        raw_items = sync.get(field)
        mistyped |= raw_items is not None and not isinstance(raw_items, list)
        items = r.mappings(raw_items, f"{path}.{field}")
        count += len(items)
        for item_path, item in items:
            _check_lock(r, item, item_path, seen, holder, semaphore=field == "semaphores")
    if count == 0 and mistyped:
        return
    if count == 0:
        r.add(required(path, "name at least one lock in mutexes or semaphores, or drop synchronization"))
    elif count > MAX_LOCKS:
        r.add(too_many(path, count, MAX_LOCKS, "locks in mutexes and semaphores together"))


def _check_lock(
    r: Reader, item: Mapping[str, Any], path: Path, seen: set[str], holder: str, *, semaphore: bool
) -> None:
    name = r.string(item.get("name"), path + ".name", require=True)
    if name is not None:
        if (problem := label_problem(name)) is not None:
            r.add(invalid(path + ".name", name, problem))
        elif name in seen:
            r.add(duplicate(path + ".name", name, f"{holder} names each lock once"))
        seen.add(name)
    if not semaphore:
        return
    limit = r.integer(item.get("limit"), path + ".limit")
    if item.get("limit") is None:
        r.add(required(path + ".limit", f"a semaphore's limit, 1..{MAX_SEMAPHORE_LIMIT}"))
    elif limit is not None and not 1 <= limit <= MAX_SEMAPHORE_LIMIT:
        r.add(invalid(path + ".limit", limit, f"must be between 1 and {MAX_SEMAPHORE_LIMIT}"))


def check_flow_locks(r: Reader, spec: Mapping[str, Any], steps: Sequence[Any]) -> None:
    """The rules of `spec.synchronization` that read the flow's steps (the raw `steps`, before any
    matrix expansion: a step's field is named where the user wrote it)."""
    own = spec.get("synchronization")
    if not isinstance(own, Mapping):
        return
    mine = set(_names(own))
    flow_step = next(
        (i for i, s in enumerate(steps) if isinstance(s, Mapping) and s.get("type") == "Flow"), None
    )
    if flow_step is not None:
        r.add(forbidden(OWN, FLOW_STEP_OWN_LOCKS.format(step=f"spec.steps[{flow_step}]")))
    for i, step in enumerate(steps):
        sync = step.get("synchronization") if isinstance(step, Mapping) else None
        if isinstance(sync, Mapping):
            again = sorted(mine.intersection(_names(sync)))
            said = (
                f" (and this step would wait for its own flow: it holds {', '.join(again)})" if again else ""
            )
            r.add(forbidden(f"spec.steps[{i}].synchronization", STEP_LOCKS_UNDER_OWN.format(again=said)))


def _names(sync: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    for field in ("mutexes", "semaphores"):
        items = sync.get(field)
        for item in items if isinstance(items, list) else ():
            if isinstance(item, Mapping) and isinstance(item.get("name"), str):
                found.append(item["name"])
    return found
