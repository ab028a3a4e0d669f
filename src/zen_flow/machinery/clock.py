"""Time, injected: every timer, sleep and timestamp in the runtime layer comes from a `Clock`.

The work queue's delayed adds, the rate limiters, expectations' TTL and the leader elector all take a
`Clock` argument so unit tests can drive time by hand with `zen_flow_dev.testing.clock.FakeClock` instead of
sleeping. Production code passes `SystemClock()`.

The protocol has four members. `monotonic()` measures intervals and orders deadlines; `now()` is the wall
time written into Kubernetes objects (Lease `renewTime`, status timestamps) and never used to measure
anything. `sleep()` suspends a task. `call_later()` arms a timer that runs a plain callback: it lets the
work queue keep one timer per delayed key without owning a background task, and `timeout()` below builds
clock-driven deadlines on it, so a test can make a hung API call time out by advancing a fake clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Protocol


class Timer(Protocol):
    """A pending `call_later` callback; `cancel()` is idempotent and safe after it fired."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never jumps backwards; only differences are meaningful."""
        ...

    def now(self) -> datetime:
        """Aware UTC wall time, for timestamps written to the API."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the calling task for `seconds` of this clock's time (<= 0 just yields)."""
        ...

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        """Run `callback()` on the event loop once `delay` seconds of this clock's time have passed."""
        ...


class SystemClock:
    """The real clocks: `time.monotonic`, UTC wall time, and the running event loop's timers."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        return asyncio.get_running_loop().call_later(max(delay, 0.0), callback)


@asynccontextmanager
async def timeout(clock: Clock, seconds: float) -> AsyncIterator[None]:
    """Like `asyncio.timeout(seconds)`, but the deadline is measured on `clock`.

    Raises `TimeoutError` out of the block when the deadline passes first. It reuses asyncio's own
    `Timeout` (armed with no deadline, then expired from a clock timer) so cancellation counting and the
    CancelledError → TimeoutError conversion behave exactly as with `asyncio.timeout`.
    """
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(None) as deadline:

        def expire() -> None:
            # Expire "now" on the loop's own clock: asyncio then cancels the task from a loop callback.
            deadline.reschedule(loop.time())

        timer = clock.call_later(seconds, expire)
        try:
            yield
        finally:
            # Synchronously, before the Timeout exits: a timer firing after exit would be an error.
            timer.cancel()
