"""A few slots (threads of a pool) shared by groups (namespaces) in turns.

A task asks for a slot for its group and waits until one is free and its group's turn has come. A group
holds at most `per_group` slots, so a group with many waiting tasks leaves the other slots to the others;
a free slot goes to the waiting group that holds the fewest, and among those in turns: to the one handed
a slot longest ago (one never handed one first, in the order they began to wait). A group's wait is
bounded by the work the slots' holders are doing, not by how many tasks another group sends.

Used for plans too large for the event loop (controller/plan_cpu.py): one tenant's forty 500-step flows
of 150 dependencies each must not keep another tenant's large flow from its plan for seconds; and for the
admission reviews' work (webhook/review_threads.py): one namespace's flood of reviews must not keep
another's review past the apiserver's timeout.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter, deque
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager


class FairSlots:
    def __init__(self, slots: int, per_group: int) -> None:
        self._slots = slots
        self._per_group = max(1, min(per_group, slots))
        self._busy = 0
        self._held: Counter[Hashable] = Counter()
        self._waiting: dict[Hashable, deque[asyncio.Future[None]]] = {}
        # While a group holds or waits: when it was last handed a slot, and when it began to wait (a count)
        self._served: dict[Hashable, int] = {}
        self._since: dict[Hashable, int] = {}
        self._clock = itertools.count()

    @asynccontextmanager
    async def slot(self, group: Hashable) -> AsyncIterator[None]:
        """Hold one slot for `group` (waiting for it in turns) for the body of the `async with`."""
        await self._acquire(group)
        try:
            yield
        finally:
            self._release(group)

    async def take(self, group: Hashable) -> None:
        """One slot for `group` (waiting for it in turns), until `give_back`: for a holder whose work
        outlives the task that waited (a thread's, which a cancelled await does not stop)."""
        await self._acquire(group)

    def give_back(self, group: Hashable) -> None:
        self._release(group)

    def held(self, group: Hashable) -> int:
        return self._held[group]

    def waiting(self, group: Hashable) -> int:
        return sum(not f.done() for f in self._waiting.get(group, ()))

    async def _acquire(self, group: Hashable) -> None:
        if not self._waiting and self._may_take(group):
            self._take(group)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if group not in self._waiting:
            self._waiting[group] = deque()
            self._since[group] = next(self._clock)
        self._waiting[group].append(future)
        self._hand_out()  # a group under its share may find a free slot others may not take
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release(group)  # handed a slot as the waiter was cancelled: it goes on
            else:
                self._drop(group, future)
            raise

    def _may_take(self, group: Hashable) -> bool:
        return self._busy < self._slots and self._held[group] < self._per_group

    def _take(self, group: Hashable) -> None:
        self._busy += 1
        self._held[group] += 1
        self._served[group] = next(self._clock)  # to the back of the turns

    def _release(self, group: Hashable) -> None:
        self._busy -= 1
        self._held[group] -= 1
        if not self._held[group]:
            del self._held[group]
            if group not in self._waiting:
                self._served.pop(group, None)
        self._hand_out()

    def _drop(self, group: Hashable, future: asyncio.Future[None]) -> None:
        waiters = self._waiting.get(group)
        if waiters is not None and future in waiters:
            waiters.remove(future)
            if not waiters:
                self._forget_waiting(group)
        self._hand_out()

    def _forget_waiting(self, group: Hashable) -> None:
        del self._waiting[group]
        del self._since[group]
        if not self._held[group]:
            self._served.pop(group, None)

    def _hand_out(self) -> None:
        """Free slots to the waiting groups: fewest held first, then in turns."""
        while self._busy < self._slots:
            for group in [g for g, waiters in self._waiting.items() if all(f.done() for f in waiters)]:
                self._forget_waiting(group)  # its waiters were all cancelled
            takers = [g for g in self._waiting if self._held[g] < self._per_group]
            if not takers:
                return
            group = min(takers, key=lambda g: (self._held[g], self._served.get(g, -1), self._since[g]))
            waiters = self._waiting[group]
            while waiters[0].done():  # cancelled while waiting
                waiters.popleft()
            future = waiters.popleft()
            if not waiters:
                self._forget_waiting(group)
            self._take(group)
            future.set_result(None)
