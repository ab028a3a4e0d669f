"""The injected clock: FakeClock drives time by hand, timeout() follows whichever clock it is given."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from zen_flow.machinery.clock import SystemClock, timeout
from zen_flow_dev.testing.clock import FakeClock, settle


async def test_time_stands_still_until_advanced() -> None:
    clock = FakeClock()
    start = clock.monotonic()
    sleeper = asyncio.create_task(clock.sleep(1.0))
    await settle()
    assert not sleeper.done()
    assert clock.monotonic() == start
    await clock.advance(0.999)
    assert not sleeper.done()
    await clock.advance(0.001)
    assert sleeper.done()
    assert clock.monotonic() == start + 1.0


async def test_sleepers_wake_in_deadline_order_ties_in_arming_order() -> None:
    clock = FakeClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(label: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((label, clock.monotonic() - 1000.0))

    tasks = [
        asyncio.create_task(sleeper(label, seconds))
        for label, seconds in [("c", 3.0), ("a", 1.0), ("b1", 2.0), ("b2", 2.0)]
    ]
    await clock.advance(10.0)
    assert woke == [("a", 1.0), ("b1", 2.0), ("b2", 2.0), ("c", 3.0)]
    await asyncio.gather(*tasks)


async def test_a_loop_that_rearms_inside_the_window_fires_every_period() -> None:
    clock = FakeClock()
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            await clock.sleep(2.0)
            ticks.append(clock.monotonic() - 1000.0)

    task = asyncio.create_task(ticker())
    await clock.advance(10.0)
    assert ticks == [2.0, 4.0, 6.0, 8.0, 10.0]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_wall_time_follows_monotonic_time_and_is_aware_utc() -> None:
    wall = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    clock = FakeClock(wall_start=wall)
    assert clock.now() == wall
    await clock.advance(90.5)
    assert clock.now() == wall + timedelta(seconds=90.5)
    assert clock.now().tzinfo is not None
    with pytest.raises(ValueError, match="aware"):
        FakeClock(wall_start=datetime(2031, 1, 1))  # a naive datetime: the point of the test


async def test_cancelled_sleep_and_cancelled_timer_never_fire() -> None:
    clock = FakeClock()
    fired: list[str] = []
    timer = clock.call_later(1.0, lambda: fired.append("timer"))
    sleeper = asyncio.create_task(clock.sleep(1.0))
    await settle()
    assert clock.pending_timers == 2
    timer.cancel()
    sleeper.cancel()
    await asyncio.gather(sleeper, return_exceptions=True)
    assert clock.pending_timers == 0
    assert clock.next_deadline() is None
    await clock.advance(5.0)
    assert fired == []


async def test_zero_delay_timer_runs_without_advancing() -> None:
    clock = FakeClock()
    fired: list[float] = []
    clock.call_later(0.0, lambda: fired.append(clock.monotonic()))
    await settle()
    assert fired == [1000.0]


async def test_jump_runs_due_callbacks_in_order_without_running_tasks() -> None:
    clock = FakeClock()
    seen: list[float] = []
    clock.call_later(2.0, lambda: seen.append(clock.monotonic()))
    clock.call_later(1.0, lambda: seen.append(clock.monotonic()))
    clock.call_later(5.0, lambda: seen.append(clock.monotonic()))
    clock.jump(3.0)
    assert seen == [1001.0, 1002.0]
    assert clock.monotonic() == 1003.0
    assert clock.next_deadline() == 1005.0


async def test_time_never_goes_backwards() -> None:
    clock = FakeClock()
    with pytest.raises(ValueError, match="backwards"):
        await clock.advance(-1.0)
    with pytest.raises(ValueError, match="backwards"):
        clock.jump(-1.0)


async def test_timeout_fires_on_the_fake_clock() -> None:
    clock = FakeClock()
    outcome: list[str] = []

    async def hung_call() -> None:
        try:
            async with timeout(clock, 5.0):
                await asyncio.Event().wait()
        except TimeoutError:
            outcome.append(f"timed out at {clock.monotonic() - 1000.0}")

    task = asyncio.create_task(hung_call())
    await clock.advance(4.9)
    assert outcome == []
    await clock.advance(0.1)
    assert outcome == ["timed out at 5.0"]
    await task


async def test_timeout_that_does_not_expire_leaves_no_timer() -> None:
    clock = FakeClock()
    async with timeout(clock, 5.0):
        await asyncio.sleep(0)
    assert clock.pending_timers == 0
    await clock.advance(10.0)  # a stale timer firing now would raise RuntimeError


async def test_timeout_does_not_swallow_an_outside_cancellation() -> None:
    clock = FakeClock()
    entered = asyncio.Event()

    async def body() -> None:
        async with timeout(clock, 5.0):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(body())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_timeout_works_on_the_system_clock() -> None:
    # A zero deadline expires on the next loop iteration: no real waiting involved.
    with pytest.raises(TimeoutError):
        async with timeout(SystemClock(), 0.0):
            await asyncio.Event().wait()


async def test_system_clock_basics() -> None:
    clock = SystemClock()
    assert clock.now().tzinfo is not None
    first = clock.monotonic()
    assert clock.monotonic() >= first
    fired: list[bool] = []
    clock.call_later(0.0, lambda: fired.append(True))
    await clock.sleep(0)
    await asyncio.sleep(0)
    assert fired == [True]
