"""A hand-driven `Clock` for tests: time stands still until the test moves it.

Usage::

    clock = FakeClock()
    queue = WorkQueue[str](clock=clock)
    queue.add_after("ns/a", 5.0)
    await clock.advance(4.9)   # nothing due yet
    assert len(queue) == 0
    await clock.advance(0.1)   # the timer fires at exactly t=5
    assert len(queue) == 1

Timers (`call_later`, `sleep`, `zen_flow.machinery.clock.timeout`) fire in deadline order, ties in the
order they were armed, and `monotonic()` reads exactly the timer's deadline while its callback runs.
`advance()` lets the event loop run to idle after each timer, so a task that re-arms a timer inside
the advanced window (a retry loop, a renew loop) fires again within the same `advance()` call,
like it would in real time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from zen_flow.machinery.clock import Timer

_DEFAULT_WALL_START = datetime(2030, 1, 1, tzinfo=UTC)


@dataclass(order=True)
class _Entry:
    deadline: float
    seq: int
    callback: Callable[[], object] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class _SoonTimer:
    """A zero-delay timer: runs on the next loop iteration, no `advance()` needed (as with a real clock)."""

    def __init__(self, handle: asyncio.Handle) -> None:
        self._handle = handle

    def cancel(self) -> None:
        self._handle.cancel()


async def settle(max_rounds: int = 10_000) -> None:
    """Yield to the event loop until no callback is ready: every task that can run has run and is waiting.

    The trio equivalent is `wait_all_tasks_blocked`. It reads the loop's ready queue (a CPython
    `BaseEventLoop` detail); on loops without one it falls back to a fixed number of yields.
    """
    loop = asyncio.get_running_loop()
    ready = getattr(loop, "_ready", None)
    if ready is None:
        for _ in range(100):
            await asyncio.sleep(0)
        return
    for _ in range(max_rounds):
        await asyncio.sleep(0)
        if not ready:
            return
    raise RuntimeError(f"the event loop did not go idle within {max_rounds} rounds (a task busy-loops?)")


class FakeClock:
    """A `zen_flow.machinery.clock.Clock` whose time only moves when the test calls `advance()` or `jump()`.

    `now()` is `wall_start` plus the monotonic time elapsed since construction.
    """

    def __init__(self, *, start: float = 1000.0, wall_start: datetime = _DEFAULT_WALL_START) -> None:
        if wall_start.tzinfo is None:
            raise ValueError("wall_start must be timezone-aware")
        self._start = start
        self._now = start
        self._wall_start = wall_start.astimezone(UTC)
        self._timers: list[_Entry] = []
        self._seq = itertools.count()

    # -- the Clock protocol -------------------------------------------------------------------------
    def monotonic(self) -> float:
        return self._now

    def now(self) -> datetime:
        return self._wall_start + timedelta(seconds=self._now - self._start)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not waiter.done():
                waiter.set_result(None)

        timer = self.call_later(seconds, wake)
        try:
            await waiter
        finally:
            timer.cancel()  # cancelled sleepers leave no live timer behind

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        if delay <= 0:
            return _SoonTimer(asyncio.get_running_loop().call_soon(callback))
        entry = _Entry(self._now + delay, next(self._seq), callback)
        heapq.heappush(self._timers, entry)
        return entry

    # -- driving time -------------------------------------------------------------------------------
    @property
    def pending_timers(self) -> int:
        """Armed timers (sleeps included) that have not fired and were not cancelled."""
        return sum(1 for entry in self._timers if not entry.cancelled)

    def next_deadline(self) -> float | None:
        """The monotonic time at which the next armed timer fires, or None."""
        self._drop_cancelled()
        return self._timers[0].deadline if self._timers else None

    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, firing due timers in order and letting woken tasks run."""
        if seconds < 0:
            raise ValueError("time does not go backwards")
        target = self._now + seconds
        await settle()  # tasks that are about to arm a timer get to do so first
        while (entry := self._pop_due(target)) is not None:
            self._now = max(self._now, entry.deadline)
            entry.callback()
            await settle()
        self._now = target
        await settle()

    def jump(self, seconds: float) -> None:
        """Move time forward synchronously; due callbacks run (futures resolve) but no task runs yet.

        For code that only reads the clock (rate limiters, expectations). Prefer `advance()` whenever
        tasks sleep: `jump()` cannot fire a timer that a woken task would re-arm inside the window.
        """
        if seconds < 0:
            raise ValueError("time does not go backwards")
        target = self._now + seconds
        while (entry := self._pop_due(target)) is not None:
            self._now = max(self._now, entry.deadline)
            entry.callback()
        self._now = target

    def _pop_due(self, target: float) -> _Entry | None:
        self._drop_cancelled()
        if self._timers and self._timers[0].deadline <= target:
            return heapq.heappop(self._timers)
        return None

    def _drop_cancelled(self) -> None:
        while self._timers and self._timers[0].cancelled:
            heapq.heappop(self._timers)
