"""Who holds and who waits for the step locks of each namespace (planner/locks.py), kept from the flow
informer's events, and the flows a freed lock lets go.

Rebuilt from the cache alone: a flow's Running or Retrying steps that declare a lock hold it, its Pending
steps whose message says so wait for it (a suspended flow's wait for nothing: they keep no one waiting
while it sleeps). A restart lists the flows and finds the same holders and the same line.

The cache lags the controller's own writes, so, as the limits on running flows do (planner/slots.py), a
plan reads its own writes: `claim` reserves, for the plan's time, every lock its flow's unended steps
declare (another flow planned meanwhile counts them held: at worst it waits, and the `settle` that frees
them wakes it), and `settle` keeps reserved the locks of the steps the plan started until the cache shows
them Running (or ended, or the flow gone). Pure; no rule needs coordination between replicas.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from zen_flow.api.constants import LABEL_PARENT, LABEL_PARENT_STEP, MAX_FLOW_DEPTH
from zen_flow.api.flow_status import JobFlowStatus
from zen_flow.api.jobflow import JobFlow
from zen_flow.core.naming import label_value
from zen_flow.planner.locks import (
    HOLDING_PHASES,
    NO_LOCKS,
    LockUse,
    LockView,
    Order,
    lock_names,
    lock_waiting,
    order_of,
    who,
)
from zen_flow.planner.memo import MEMO_STEPS, IdentityMemo
from zen_flow.planner.slot_standing import ended

Steps = Mapping[str, frozenset[str]]  # step -> the names of the locks it holds (or waits for)
Link = tuple[str, str]  # a Flow step: the label value of its flow's name, and the step
_TERMINAL = frozenset({"Succeeded", "Failed", "Skipped"})
_DECLARED: IdentityMemo[Mapping[str, frozenset[str]]] = IdentityMemo(MEMO_STEPS)


@dataclass(frozen=True)
class FlowLocks:
    """One flow's use of locks as its cached copy shows it."""

    uid: str
    order: Order
    holding: Steps
    waiting: Steps

    def names(self) -> set[str]:
        return {n for names in (*self.holding.values(), *self.waiting.values()) for n in names}

    def count(self, steps: Steps, name: str) -> int:
        return sum(1 for names in steps.values() if name in names)


def _declared(flow: JobFlow) -> Mapping[str, frozenset[str]]:
    """The steps that declare locks, and their names; remembered by the identity of the spec's steps
    (every informer event of every flow asks, and the spec rarely changes)."""
    steps = flow.spec.steps
    return _DECLARED.get(steps, lambda: {s.name: names for s in steps if (names := lock_names(s))})


def _parent_link(flow: JobFlow) -> Link | None:
    """The Flow step a child flow says runs it (labels parent, parent-step); None: not a child. Labels
    a tenant could forge, but only to pass its own namespace's locks held by that step."""
    labels = flow.metadata.labels
    parent, step = labels.get(LABEL_PARENT), labels.get(LABEL_PARENT_STEP)
    return (parent, step) if parent and step else None


def flow_locks(flow: JobFlow | None) -> FlowLocks | None:
    """`flow`'s holders and waiters; None when it has none (or it ended, or is being deleted)."""
    if flow is None or ended(flow):
        return None
    declared = _declared(flow)
    if not declared:
        return None
    holding: dict[str, frozenset[str]] = {}
    waiting: dict[str, frozenset[str]] = {}
    for s in flow.status.steps:
        names = declared.get(s.name)
        if names is None:
            continue
        if s.phase in HOLDING_PHASES:
            holding[s.name] = names
        elif s.phase == "Pending" and lock_waiting(s.message) and not flow.spec.suspend:
            waiting[s.name] = names
    if not holding and not waiting:
        return None
    return FlowLocks(flow.metadata.uid, order_of(flow), holding, waiting)


class LockBook:
    def __init__(self) -> None:
        self._flows: dict[str, FlowLocks] = {}
        self._users: dict[tuple[str, str], set[str]] = {}  # (namespace, lock) -> keys holding or waiting
        self._alive: dict[str, str] = {}  # key -> uid of the flows with lock steps, not being deleted
        # key -> (namespace, uid, lock -> steps): the locks a plan in flight may take (`claim`).
        self._planning: dict[str, tuple[str, str, Mapping[str, int]]] = {}
        # key of a flow planning -> the flows whose view counted its reservation: its `settle` wakes them
        # (and only them: waking every waiter would have two waiting flows wake each other for ever).
        self._seen_by: dict[str, set[str]] = {}
        # (namespace, label value of a child flow's name) -> the Flow step that runs it (its labels).
        self._parents: dict[tuple[str, str], Link] = {}
        # key -> (namespace, uid, steps): steps a plan started that the cache does not show holding yet.
        self._reserved: dict[str, tuple[str, str, Steps]] = {}

    def observe(self, old: JobFlow | None, new: JobFlow | None) -> list[str]:
        """`old` became `new` in the cache (None: added or deleted); the keys of the flows to plan again
        because a lock they wait for may be free."""
        flow = new if new is not None else old
        if flow is None:
            return []
        key, ns = flow.metadata.key, flow.metadata.namespace
        link = _parent_link(new) if new is not None and new.metadata.deletion_timestamp is None else None
        if link is not None:
            self._parents[(ns, label_value(flow.metadata.name))] = link
        else:
            self._parents.pop((ns, label_value(flow.metadata.name)), None)
        if new is not None and new.metadata.deletion_timestamp is None and _declared(new):
            self._alive[key] = new.metadata.uid
        else:
            self._alive.pop(key, None)
        before, after = self._flows.get(key), flow_locks(new)
        freed = self._drop_seen(key, new, after)
        if before == after:
            return self._waiters(ns, freed, key)
        for name in before.names() if before is not None else ():
            users = self._users.get((ns, name))
            if users is not None:
                users.discard(key)
                if not users:
                    del self._users[(ns, name)]
        if after is None:
            self._flows.pop(key, None)
        else:
            self._flows[key] = after
            for name in after.names():
                self._users.setdefault((ns, name), set()).add(key)
        if before is not None:
            moved = after is None or after.order != before.order
            for name in before.names():
                was = before.count(before.holding, name), before.count(before.waiting, name)
                now = (
                    (after.count(after.holding, name), after.count(after.waiting, name)) if after else (0, 0)
                )
                if moved or now[0] < was[0] or sum(now) < sum(was):
                    freed.add(name)
        return self._waiters(ns, freed, key)

    def _drop_seen(self, key: str, new: JobFlow | None, after: FlowLocks | None) -> set[str]:
        """A reservation ends for the steps the cache shows holding or ended, all of them when the flow
        is gone; the locks of those it does not show holding are free again."""
        reserved = self._reserved.get(key)
        if reserved is None or key in self._planning:
            return set()
        ns, uid, steps = reserved
        if new is None or new.metadata.uid != uid or (after is None and ended(new)):
            del self._reserved[key]
            return {n for names in steps.values() for n in names}
        phases = {s.name: s.phase for s in new.status.steps}
        kept = {s: names for s, names in steps.items() if phases.get(s) not in (*HOLDING_PHASES, *_TERMINAL)}
        if kept:
            self._reserved[key] = (ns, uid, kept)
        else:
            del self._reserved[key]
        return {
            n for s, names in steps.items() if s not in kept and phases.get(s) in _TERMINAL for n in names
        }

    def claim(self, flow: JobFlow) -> LockView:
        """What the other flows of its namespace hold and wait for, of the locks `flow`'s steps declare;
        the locks of its steps that have neither started nor ended are reserved until `settle`."""
        declared = _declared(flow)
        if not declared or ended(flow):
            return NO_LOCKS
        key, ns = flow.metadata.key, flow.metadata.namespace
        phases = {s.name: s.phase for s in flow.status.steps}
        counts: dict[str, int] = {}
        for step, names in declared.items():
            if phases.get(step, "Pending") not in (*HOLDING_PHASES, *_TERMINAL):
                for n in names:
                    counts[n] = counts.get(n, 0) + 1
        if counts:
            self._planning[key] = (ns, flow.metadata.uid, counts)
        wanted = sorted({n for step_names in declared.values() for n in step_names})
        lineage = self._lineage(flow)
        return LockView({n: use for n in wanted if (use := self._use(ns, n, key, order_of(flow), lineage))})

    def _lineage(self, flow: JobFlow) -> frozenset[Link]:
        """The Flow steps that run `flow` and its ancestors (by their labels, within its namespace)."""
        out: set[Link] = set()
        link = _parent_link(flow)
        for _ in range(MAX_FLOW_DEPTH + 1):
            if link is None or link in out:
                break
            out.add(link)
            link = self._parents.get((flow.metadata.namespace, link[0]))
        return frozenset(out)

    def _use(self, ns: str, name: str, me: str, order: Order, lineage: frozenset[Link]) -> LockUse | None:
        """A child flow runs under the locks of the Flow steps that run it and its ancestors (`lineage`):
        they hold them until it ends, so waiting for them would wait for ever; nor does it wait behind
        its ancestors' waiting steps, which wait for those very steps."""
        held = ahead = 0
        holders: list[tuple[Order, str]] = []
        waiters: list[tuple[Order, str]] = []
        ancestors = {flow for flow, _ in lineage}
        for k in self._users.get((ns, name), ()):
            if k == me:
                continue
            entry = self._flows[k]
            flow_name = k.partition("/")[2]
            named = label_value(flow_name) if lineage else ""
            for step, names in entry.holding.items():
                if name in names and (named, step) not in lineage:
                    held += 1
                    holders.append((entry.order, who(flow_name, step)))
            if entry.order < order and named not in ancestors:
                for step, names in entry.waiting.items():
                    if name in names:
                        ahead += 1
                        waiters.append((entry.order, who(flow_name, step)))
        for k, (n, _, steps) in self._reserved.items():
            if k == me or n != ns:
                continue
            shown = self._flows.get(k)
            named = label_value(k.partition("/")[2]) if lineage else ""
            for step, names in steps.items():
                if (
                    name in names
                    and (shown is None or step not in shown.holding)
                    and (named, step) not in lineage
                ):
                    held += 1
                    holders.append((order, who(k.partition("/")[2], step)))
        for k, (n, _, counts) in self._planning.items():
            if k != me and n == ns and counts.get(name):
                held += counts[name]
                holders.append((order, f"jobflow/{k.partition('/')[2]}"))
                self._seen_by.setdefault(k, set()).add(me)
        if not held and not ahead:
            return None
        return LockUse(
            held, ahead, min(holders)[1] if holders else None, min(waiters)[1] if waiters else None
        )

    def settle(self, flow: JobFlow, status: JobFlowStatus | None) -> list[str]:
        """The plan of `flow` made `status` (None: no plan); the steps it started keep their locks
        reserved until the cache shows them; the keys of the flows that may take the others."""
        key, ns, uid = flow.metadata.key, flow.metadata.namespace, flow.metadata.uid
        planning = self._planning.get(key)
        if planning is None or planning[1] != uid:
            return []
        del self._planning[key]
        viewers = self._seen_by.pop(key, set())
        if status is not None and self._alive.get(key) == uid:
            declared = _declared(flow)
            shown = self._flows.get(key)
            started = {
                s.name: declared[s.name]
                for s in status.steps
                if s.name in declared
                and s.phase in HOLDING_PHASES
                and (shown is None or s.name not in shown.holding)
            }
            if started:
                self._reserved[key] = (ns, uid, started)
            else:
                self._reserved.pop(key, None)
        return sorted(k for k in viewers if k != key and k in self._alive)

    def _waiters(self, ns: str, names: Iterable[str], me: str) -> list[str]:
        """The flows with steps waiting for one of `names` in namespace `ns`, first in line first."""
        found: dict[str, Order] = {}
        for name in names:
            for k in self._users.get((ns, name), ()):
                entry = self._flows[k]
                if k != me and any(name in n for n in entry.waiting.values()):
                    found[k] = entry.order
        return sorted(found, key=lambda k: found[k])

    def holders(self, ns: str, name: str) -> list[str]:
        """The steps the cache shows holding lock `name` in `ns`, as messages name them (tests read it)."""
        return sorted(
            who(k.partition("/")[2], step)
            for k in self._users.get((ns, name), ())
            for step, names in self._flows[k].holding.items()
            if name in names
        )
