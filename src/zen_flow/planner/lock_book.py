"""Who holds and who waits for the locks of each namespace (planner/locks.py), kept from the flow
informer's events, and the flows a freed lock lets go.

Rebuilt from the cache alone (each flow as planner/lock_holders.py reads it: its steps', its matrix
items' and its own locks): a restart lists the flows and their Jobs and finds the same holders and line.

The cache lags the controller's own writes, so, as the limits on running flows do (planner/slots.py), a
plan reads its own writes: `claim` reserves, for the plan's time, every lock its flow's steps (and the
flow itself) not holding one declare, as the plan will see them (a rerun's reset steps included; another
flow planned meanwhile counts them held: at worst it waits, and the `settle` that frees them wakes it),
and `settle` keeps reserved the locks of the steps the plan started (and the flow's own, when it took
them) until the cache shows them held (or ended, or the flow gone).

A freed place wakes only the waiters that can now take it, in line (`_next_in_line`): a hand-over costs
one plan, not one per waiter. A wake-up the book holds back because a plan in flight counts as holding
is given by that plan's `settle`. Pure; no rule needs coordination between replicas.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from zen_flow.api.flow_status import JobFlowStatus
from zen_flow.api.jobflow import JobFlow
from zen_flow.core.matrix import effective_flow
from zen_flow.planner.lock_holders import (
    SETTLED,
    TERMINAL,
    Expand,
    FlowLocks,
    Steps,
    declared,
    expanded,
    flow_locks,
    phases_of,
)
from zen_flow.planner.locks import HOLDING_PHASES, NO_LOCKS, LockUse, LockView, Order, order_of, who
from zen_flow.planner.slot_standing import JobsFor, as_planned, ended

__all__ = ["Expand", "LockBook"]


class LockBook:
    def __init__(self, jobs_for: JobsFor | None = None, effective: Expand = effective_flow) -> None:
        """`jobs_for`: the flows' cached Jobs by UID (`observe(flow, flow)` when they change); `effective`:
        a stored flow's effective flow (the controller's remembers each flow's expansion)."""
        self._jobs_for = jobs_for
        self._effective = effective
        self._flows: dict[str, FlowLocks] = {}
        self._users: dict[tuple[str, str], set[str]] = {}  # (namespace, lock) -> keys holding or waiting
        # key -> uid of the flows with lock steps, not ended nor being deleted (the only ones woken)
        self._alive: dict[str, str] = {}
        # key -> (namespace, uid, lock -> steps): the locks a plan in flight may take (`claim`).
        self._planning: dict[str, tuple[str, str, Mapping[str, int]]] = {}
        # key of a flow planning -> the flows whose view counted its reservation: its `settle` wakes them
        # (and only them: waking every waiter would have two waiting flows wake each other for ever).
        self._seen_by: dict[str, set[str]] = {}
        # key of a flow planning -> the locks whose wake-ups counted its reservation held: its `settle`
        # gives them (none is lost for a plan that took less than it reserved).
        self._held_back: dict[str, set[str]] = {}
        # key -> (namespace, uid, steps): steps a plan started that the cache does not show holding yet.
        self._reserved: dict[str, tuple[str, str, Steps]] = {}

    def observe(self, old: JobFlow | None, new: JobFlow | None) -> list[str]:
        """`old` became `new` in the cache (None: added or deleted); the keys of the flows to plan again
        because a lock they wait for may be free to them."""
        flow = new if new is not None else old
        if flow is None:
            return []
        key, ns = flow.metadata.key, flow.metadata.namespace
        if new is not None and not ended(new):
            new = expanded(new, self._effective)
        if new is not None and not ended(new) and declared(new):
            self._alive[key] = new.metadata.uid
        else:
            self._alive.pop(key, None)
        before, after = self._flows.get(key), flow_locks(new, self._jobs_for)
        freed = self._drop_seen(key, new, after)
        if before == after:
            return self._next_in_line(ns, freed, key)
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
                # A holder gone, or a waiter gone from the line (started: one of a smaller limit kept
                # the wider ones behind it waiting; suspended, deleted, moved): those behind may go.
                if moved or now[0] < was[0] or now[1] < was[1]:
                    freed.add(name)
        return self._next_in_line(ns, freed, key)

    def _drop_seen(self, key: str, new: JobFlow | None, after: FlowLocks | None) -> set[str]:
        """A reservation ends for the steps the cache shows holding or ended, all of them when the flow
        is gone; the locks of those it does not show holding are free again."""
        reserved = self._reserved.get(key)
        if reserved is None or key in self._planning:
            return set()
        ns, uid, steps = reserved
        if new is None or new.metadata.uid != uid or (after is None and ended(new)):
            del self._reserved[key]
            return {n for limits in steps.values() for n in limits}
        phases = phases_of(new.status)
        kept = {s: limits for s, limits in steps.items() if phases.get(s) not in SETTLED}
        if kept:
            self._reserved[key] = (ns, uid, kept)
        else:
            del self._reserved[key]
        return {
            n for s, limits in steps.items() if s not in kept and phases.get(s) in TERMINAL for n in limits
        }

    def claim(self, flow: JobFlow) -> LockView:
        """What the other flows of its namespace hold and wait for, of the locks `flow` and its steps
        declare (`flow`: the effective flow its plan gets); the locks of its steps not holding theirs (and
        its own, when it does not hold them), as its plan will see them (a rerun resets failed steps to
        Pending), are reserved until `settle`."""
        found = declared(flow)
        if not found or ended(flow):
            return NO_LOCKS
        key, ns = flow.metadata.key, flow.metadata.namespace
        planned, _ = as_planned(flow)
        phases = phases_of(planned.status)
        counts: dict[str, int] = {}
        for step, limits in found.items():
            if phases.get(step, "Pending") not in SETTLED:
                for n in limits:
                    counts[n] = counts.get(n, 0) + 1
        if counts:
            self._planning[key] = (ns, flow.metadata.uid, counts)
        wanted = sorted({n for limits in found.values() for n in limits})
        order = order_of(flow)
        return LockView({n: use for n in wanted if (use := self._use(ns, n, key, order))})

    def _held(self, ns: str, name: str) -> tuple[int, list[str], list[str]]:
        """The steps holding lock `name` in `ns` (the cache's, the reserved starts it does not show yet,
        the plans in flight's claims), those named, and the keys of the plans in flight counted."""
        held = 0
        holders: list[str] = []
        for k in self._users.get((ns, name), ()):
            for step, limits in self._flows[k].holding.items():
                if name in limits:
                    held += 1
                    holders.append(who(k.partition("/")[2], step))
        for k, (n, _, steps) in self._reserved.items():
            if n != ns:
                continue
            shown = self._flows.get(k)
            for step, limits in steps.items():
                if name in limits and (shown is None or step not in shown.holding):
                    held += 1
                    holders.append(who(k.partition("/")[2], step))
        planning = [k for k, (n, _, counts) in self._planning.items() if n == ns and counts.get(name)]
        for k in planning:
            held += self._planning[k][2][name]
            holders.append(f"jobflow/{k.partition('/')[2]}")
        return held, holders, planning

    def _use(self, ns: str, name: str, me: str, order: Order) -> LockUse | None:
        held = ahead = 0
        tightest: int | None = None
        holders: list[tuple[Order, str]] = []
        waiters: list[tuple[Order, str]] = []
        for k in self._users.get((ns, name), ()):
            if k == me:
                continue
            entry = self._flows[k]
            flow_name = k.partition("/")[2]
            for step, limits in entry.holding.items():
                if name in limits:
                    held += 1
                    holders.append((entry.order, who(flow_name, step)))
            if entry.order < order:
                for step, limits in entry.waiting.items():
                    if name in limits:
                        ahead += 1
                        tightest = min(limits[name], tightest or limits[name])
                        waiters.append((entry.order, who(flow_name, step)))
        for k, (n, _, steps) in self._reserved.items():
            if k == me or n != ns:
                continue
            shown = self._flows.get(k)
            for step, limits in steps.items():
                if name in limits and (shown is None or step not in shown.holding):
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
            held,
            ahead,
            tightest,
            min(holders)[1] if holders else None,
            min(waiters)[1] if waiters else None,
        )

    def settle(self, flow: JobFlow, status: JobFlowStatus | None) -> list[str]:
        """The plan of `flow` (as `claim` had it) made `status` (None: no plan); the steps it started
        keep their locks reserved until the cache shows them; the keys of the flows that may take the
        others."""
        key, ns, uid = flow.metadata.key, flow.metadata.namespace, flow.metadata.uid
        planning = self._planning.get(key)
        if planning is None or planning[1] != uid:
            return []
        del self._planning[key]
        viewers = self._seen_by.pop(key, set())
        held_back = self._held_back.pop(key, set())
        freed = set(held_back)
        before = self._reserved.get(key)
        if before is not None:
            freed |= {n for limits in before[2].values() for n in limits}
        if status is not None and self._alive.get(key) == uid:
            found = declared(flow)
            shown = self._flows.get(key)
            started = {
                step: found[step]
                for step, phase in phases_of(status).items()
                if step in found and phase in HOLDING_PHASES and (shown is None or step not in shown.holding)
            }
            if started:
                self._reserved[key] = (ns, uid, started)
            else:
                self._reserved.pop(key, None)
        elif before is not None and (self._alive.get(key) != uid or before[1] != uid):
            # The flow is gone (deleted while it planned: its `observe` kept the reservation for this
            # plan), or another of its name: nothing it reserved is held.
            del self._reserved[key]
        woken = set(self._next_in_line(ns, freed, key))
        # A wake-up held back for this very flow (a lock it waits for freed while its plan, from the older
        # view, was in flight): a plan that changed nothing writes nothing, so no event of its own would
        # queue it again. Queued while it is processed, it is planned again once this reconcile is done.
        if held_back and key in self._next_in_line(ns, held_back, None):
            woken.add(key)
        return sorted(k for k in woken | viewers if k in self._alive)

    def _next_in_line(self, ns: str, names: Iterable[str], me: str | None) -> list[str]:
        """The flows with a step that may now take one of `names` in `ns` (as far as that lock goes), in
        line: for each lock, the waiters while the holders and those ahead are fewer than their limit
        (and the smallest limit of those ahead). A plan in flight counted as holding gives the wake-ups
        it holds back when it settles. `me`'s own event queues it."""
        found: dict[str, Order] = {}
        for name in names:
            held, _, planning = self._held(ns, name)
            for k in planning:
                self._held_back.setdefault(k, set()).add(name)
            tightest: int | None = None
            for ahead, (order, _, k, _, limit) in enumerate(self._line(ns, name)):  # `ahead`: before it
                room = min(limit, tightest) if tightest is not None else limit
                if held + ahead < room and k != me:
                    found.setdefault(k, order)
                tightest = room
                if held + ahead + 1 >= tightest:  # none behind it can go
                    break
        return sorted(found, key=lambda k: found[k])

    def _line(self, ns: str, name: str) -> list[tuple[Order, int, str, str, int]]:
        """The steps waiting for lock `name` in `ns`, in line: (their flow's order, their index among its
        waiting steps (spec order), the flow's key, the step, the limit it heeds)."""
        return sorted(
            (entry.order, i, k, step, limits[name])
            for k in self._users.get((ns, name), ())
            for entry in (self._flows[k],)
            for i, (step, limits) in enumerate(entry.waiting.items())
            if name in limits
        )

    def line(self, ns: str, name: str) -> list[tuple[str, str]]:
        """The steps waiting for lock `name` in `ns` as (flow key, step), first in line first: the order
        in which they take it (`zen-flow get` shows a waiting step's place in it)."""
        return [(k, step) for _, _, k, step, _ in self._line(ns, name)]

    def holders(self, ns: str, name: str) -> list[str]:
        """The steps the cache shows holding lock `name` in `ns`, as messages name them (`zen-flow get`
        shows them beside a waiting step; tests read them)."""
        return sorted(
            who(k.partition("/")[2], step)
            for k in self._users.get((ns, name), ())
            for step, limits in self._flows[k].holding.items()
            if name in limits
        )
