"""Rules for a step's `synchronization` (planner/locks.py): the named mutexes and semaphores it takes
when it would start and holds until it ends.

A lock's name is a DNS-1123 label (it is said in messages and metric-free: names are the namespace's
own); a semaphore's `limit` is 1..10000; a step takes at most `MAX_LOCKS` locks, each name once (a name
both a mutex and a semaphore of one step would make it wait for itself). Refused on a Manual step (a
gate waits for a person: holding a lock meanwhile would stall the namespace's other steps for as long),
and on a Flow step (it would hold its locks while its child flow's steps wait for others: two such
families would wait for each other for ever). A matrix step's items each take its locks (validated as
the items' own field, at the matrix step's path).
"""

from __future__ import annotations

from collections.abc import Mapping
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


def check_synchronization(r: Reader, raw: Any, path: Path, *, kind: str) -> None:
    """The field's own rules (`path`: spec.steps[N].synchronization; `kind`: the step's type)."""
    sync = r.mapping(raw, path)
    if sync is None:
        return
    if kind in ("Manual", "Flow"):
        r.add(forbidden(path, MANUAL_LOCKS if kind == "Manual" else FLOW_LOCKS))
        return
    seen: set[str] = set()
    count = 0
    mistyped = False  # a list that is not one has its own error: "name at least one lock" would mislead
    for field in ("mutexes", "semaphores"):
        raw_items = sync.get(field)
        mistyped |= raw_items is not None and not isinstance(raw_items, list)
        items = r.mappings(raw_items, f"{path}.{field}")
        count += len(items)
        for item_path, item in items:
            _check_lock(r, item, item_path, seen, semaphore=field == "semaphores")
    if count == 0 and mistyped:
        return
    if count == 0:
        r.add(required(path, "name at least one lock in mutexes or semaphores, or drop synchronization"))
    elif count > MAX_LOCKS:
        r.add(too_many(path, count, MAX_LOCKS, "locks in mutexes and semaphores together"))


def _check_lock(r: Reader, item: Mapping[str, Any], path: Path, seen: set[str], *, semaphore: bool) -> None:
    name = r.string(item.get("name"), path + ".name", require=True)
    if name is not None:
        if (problem := label_problem(name)) is not None:
            r.add(invalid(path + ".name", name, problem))
        elif name in seen:
            r.add(duplicate(path + ".name", name, "a step names each lock once"))
        seen.add(name)
    if not semaphore:
        return
    limit = r.integer(item.get("limit"), path + ".limit")
    if item.get("limit") is None:
        r.add(required(path + ".limit", f"a semaphore's limit, 1..{MAX_SEMAPHORE_LIMIT}"))
    elif limit is not None and not 1 <= limit <= MAX_SEMAPHORE_LIMIT:
        r.add(invalid(path + ".limit", limit, f"must be between 1 and {MAX_SEMAPHORE_LIMIT}"))
