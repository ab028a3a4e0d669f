"""The work queue's delayed and rate-limited adds, and what it measures as client-go does (waits, work
time, retries)."""

from __future__ import annotations

import pytest
from workqueue_rig import make_queue

from zen_flow.machinery.ratelimit import ItemExponentialFailureRateLimiter
from zen_flow.machinery.workqueue import WorkQueue
from zen_flow_dev.testing.clock import FakeClock


async def test_add_after_adds_when_the_delay_has_passed() -> None:
    clock = FakeClock()
    q = make_queue(clock)
    q.add_after("ns/a", 5.0)
    assert q.delayed == 1
    await clock.advance(4.999)
    assert len(q) == 0
    await clock.advance(0.001)
    assert len(q) == 1
    assert q.delayed == 0


async def test_add_after_keeps_only_the_earliest_timer_per_key() -> None:
    clock = FakeClock()
    q = make_queue(clock)
    q.add_after("ns/a", 10.0)
    q.add_after("ns/a", 3.0)  # earlier: replaces
    q.add_after("ns/a", 7.0)  # later: ignored
    assert clock.pending_timers == 1
    await clock.advance(3.0)
    assert await q.get() == "ns/a"
    q.done("ns/a")
    await clock.advance(20.0)
    assert len(q) == 0  # neither the 7 s nor the 10 s timer survived


async def test_cancel_after_drops_the_keys_timer_and_nothing_else() -> None:
    # A deleted flow's TTL wake-up (a day by default) or a deleted CronJobFlow's next run: held until
    # due, one per deleted object, unless its delete cancels it.
    clock = FakeClock()
    q = make_queue(clock)
    q.add_after("ns/gone", 86400.0)
    q.add_after("ns/kept", 60.0)
    q.add("ns/gone")  # its delete event queues it once more, as the handlers do
    q.cancel_after("ns/gone")
    q.cancel_after("ns/never-delayed")  # nothing to cancel: nothing happens
    assert (q.delayed, clock.pending_timers) == (1, 1)
    assert await q.get() == "ns/gone"  # a key already queued stays queued
    q.done("ns/gone")
    await clock.advance(86400.0)
    assert await q.get() == "ns/kept"
    q.done("ns/kept")
    assert (len(q), q.delayed) == (0, 0)


async def test_add_after_without_delay_adds_at_once_and_delayed_duplicates_collapse() -> None:
    clock = FakeClock()
    q = make_queue(clock)
    q.add_after("ns/a", 0)
    assert len(q) == 1
    q.add_after("ns/b", 1.0)
    q.add("ns/b")
    await clock.advance(1.0)
    assert len(q) == 2  # ns/b fired while still queued: deduplicated


async def test_add_rate_limited_backs_off_per_key_and_forget_resets() -> None:
    clock = FakeClock()
    q = WorkQueue[str](
        clock=clock, rate_limiter=ItemExponentialFailureRateLimiter(base_delay=1.0, max_delay=8.0)
    )
    for expected_delay in [1.0, 2.0, 4.0, 8.0, 8.0]:
        q.add_rate_limited("ns/a")
        await clock.advance(expected_delay - 0.01)
        assert len(q) == 0
        await clock.advance(0.01)
        assert await q.get() == "ns/a"
        q.done("ns/a")
    assert q.num_requeues("ns/a") == 5
    q.forget("ns/a")
    assert q.num_requeues("ns/a") == 0
    q.add_rate_limited("ns/a")
    await clock.advance(1.0)
    assert len(q) == 1


async def test_the_default_limiter_is_client_gos() -> None:
    clock = FakeClock()
    q = make_queue(clock)
    q.add_rate_limited("ns/a")
    await clock.advance(0.004)
    assert len(q) == 0
    await clock.advance(0.001)
    assert len(q) == 1


async def test_a_key_being_processed_says_how_long_it_waited() -> None:
    clock = FakeClock()
    q = make_queue(clock)
    q.add("a")
    await clock.advance(1.5)
    q.add("a")  # already waiting: the wait counts from the first add
    await clock.advance(0.5)
    key = await q.get()
    assert (q.waited(key), q.waited("b")) == (2.0, None)
    q.add("a")  # while processing: it waits for done() too
    await clock.advance(3.0)
    q.done(key)
    assert q.waited("a") is None  # queued again, not being processed
    await clock.advance(1.0)
    assert await q.get() == "a"
    assert q.waited("a") == 4.0


async def test_metrics_follow_client_go_semantics() -> None:
    clock = FakeClock()
    events: list[tuple[str, float]] = []

    class Recorder:
        def add(self, name: str) -> None:
            events.append(("add", 1))

        def depth(self, name: str, depth: int) -> None:
            events.append(("depth", depth))

        def queue_duration(self, name: str, seconds: float) -> None:
            events.append(("queue", seconds))

        def work_duration(self, name: str, seconds: float) -> None:
            events.append(("work", seconds))

        def retry(self, name: str) -> None:
            events.append(("retry", 1))

    q = WorkQueue[str](name="flows", clock=clock, metrics=Recorder())
    q.add("ns/a")
    q.add("ns/a")  # duplicate: not an add
    await clock.advance(3.0)
    a = await q.get()
    q.add("ns/b")
    await clock.advance(2.0)
    b = await q.get()
    await clock.advance(4.0)
    assert q.unfinished_work_seconds() == pytest.approx(6.0 + 4.0)
    assert q.longest_running_processor_seconds() == pytest.approx(6.0)
    q.done(a)
    q.done(b)
    assert q.longest_running_processor_seconds() == 0.0
    q.add_rate_limited("ns/a")
    assert events == [
        ("add", 1),
        ("depth", 1),
        ("queue", 3.0),
        ("depth", 0),
        ("add", 1),
        ("depth", 1),
        ("queue", 2.0),
        ("depth", 0),
        ("work", 6.0),
        ("work", 4.0),
        ("retry", 1),
    ]
