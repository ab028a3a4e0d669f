"""The work queue keeps client-go's promises (FIFO, deduplicated, one worker per key, shutdown), and serves
work in progress before new work without starving the new work."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from workqueue_rig import make_queue

from zen_flow.machinery.workqueue import NORMAL_STREAK, Priority, QueueShutDown, WorkQueue
from zen_flow_dev.testing.clock import FakeClock, settle


async def test_keys_come_out_in_the_order_they_went_in() -> None:
    q = make_queue()
    for key in ["ns/c", "ns/a", "ns/b"]:
        q.add(key)
    assert [await q.get() for _ in range(3)] == ["ns/c", "ns/a", "ns/b"]


async def test_a_key_added_twice_while_queued_is_held_once() -> None:
    q = make_queue()
    q.add("ns/a")
    q.add("ns/b")
    q.add("ns/a")
    assert len(q) == 2
    assert [await q.get(), await q.get()] == ["ns/a", "ns/b"]
    assert len(q) == 0


async def test_a_key_added_while_processing_waits_for_done_then_comes_back_once() -> None:
    q = make_queue()
    q.add("ns/a")
    key = await q.get()
    q.add("ns/a")
    q.add("ns/a")
    assert len(q) == 0  # not handed to a second worker while the first holds it
    q.done(key)
    assert len(q) == 1
    assert await q.get() == "ns/a"
    q.done("ns/a")
    assert len(q) == 0


async def test_normal_keys_are_handed_out_before_low_keys_added_earlier() -> None:
    q = make_queue()
    q.add("ns/new-1", Priority.LOW)
    q.add("ns/new-2", Priority.LOW)
    q.add("ns/running-1")
    q.add("ns/running-2")
    assert [await q.get() for _ in range(4)] == ["ns/running-1", "ns/running-2", "ns/new-1", "ns/new-2"]


async def test_a_waiting_low_key_added_again_as_normal_moves_up_and_is_held_once() -> None:
    q = make_queue()
    q.add("ns/a", Priority.LOW)
    q.add("ns/b", Priority.LOW)
    q.add("ns/c")
    q.add("ns/b")  # b's Job changed: it joins the normal line behind c
    q.add("ns/c", Priority.LOW)  # a later low add never lowers a key
    assert len(q) == 3
    assert [await q.get() for _ in range(3)] == ["ns/c", "ns/b", "ns/a"]
    assert len(q) == 0


async def test_a_key_raised_while_processing_comes_back_in_the_normal_line() -> None:
    q = make_queue()
    q.add("ns/a", Priority.LOW)
    assert await q.get() == "ns/a"
    q.add("ns/a", Priority.LOW)
    q.add("ns/a")
    q.add("ns/b", Priority.LOW)
    q.done("ns/a")
    assert [await q.get(), await q.get()] == ["ns/a", "ns/b"]


async def test_low_keys_are_never_starved_by_a_stream_of_normal_keys() -> None:
    q = make_queue()
    for i in range(3):
        q.add(f"ns/new-{i}", Priority.LOW)
    handed: list[str] = []
    for i in range(3 * (NORMAL_STREAK + 1)):
        q.add(f"ns/running-{i}")  # always more normal work waiting than there are workers
        q.add(f"ns/running-{i}-b")
        key = await q.get()
        handed.append(key)
        q.done(key)
    low = [i for i, key in enumerate(handed) if key.startswith("ns/new-")]
    assert low == [NORMAL_STREAK, 2 * NORMAL_STREAK + 1, 3 * NORMAL_STREAK + 2]
    assert [handed[i] for i in low] == ["ns/new-0", "ns/new-1", "ns/new-2"]


async def test_low_keys_beyond_the_limit_wait_and_leave_workers_for_normal_keys() -> None:
    q = WorkQueue[str](name="test", clock=FakeClock(), low_limit=2)
    for i in range(4):
        q.add(f"ns/new-{i}", Priority.LOW)
    assert [await q.get(), await q.get()] == ["ns/new-0", "ns/new-1"]
    third = asyncio.create_task(q.get())
    await settle()
    assert not third.done(), "a third low key must wait while two are processed"
    q.add("ns/running", Priority.NORMAL)  # a running flow's Job changed: a free worker takes it at once
    await settle()
    assert third.done()
    assert third.result() == "ns/running"
    fourth = asyncio.create_task(q.get())
    await settle()
    assert not fourth.done()
    q.done("ns/new-0")  # a low slot frees: the waiting worker takes the next low key
    await settle()
    assert fourth.done()
    assert fourth.result() == "ns/new-2"


async def test_a_held_back_low_key_raised_to_normal_wakes_an_idle_worker() -> None:
    # A new flow waiting behind the low limit gets an event that makes it urgent: a worker kept free
    # for urgent keys takes it now, not at the next unrelated add.
    q = WorkQueue[str](name="test", clock=FakeClock(), low_limit=1)
    q.add("ns/new-0", Priority.LOW)
    q.add("ns/new-1", Priority.LOW)
    assert await q.get() == "ns/new-0"
    idle = asyncio.create_task(q.get())
    await settle()
    assert not idle.done()
    q.add("ns/new-1", Priority.NORMAL)
    await settle()
    assert idle.done()
    assert idle.result() == "ns/new-1"


async def test_low_keys_held_back_by_the_limit_are_still_drained_at_shutdown() -> None:
    q = WorkQueue[str](name="test", clock=FakeClock(), low_limit=1)
    q.add("ns/a", Priority.LOW)
    q.add("ns/b", Priority.LOW)
    first = await q.get()
    waiting = asyncio.create_task(q.get())
    drained = asyncio.create_task(q.shutdown_with_drain())
    await settle()
    assert not waiting.done()
    assert not drained.done()
    q.done(first)
    await settle()
    assert waiting.result() == "ns/b"
    q.done("ns/b")
    await settle()
    assert drained.done()


async def test_get_waits_for_an_add() -> None:
    q = make_queue()
    getter = asyncio.create_task(q.get())
    await settle()
    assert not getter.done()
    q.add("ns/a")
    assert await getter == "ns/a"


async def test_done_for_a_key_not_being_processed_is_an_error() -> None:
    q = make_queue()
    q.add("ns/a")
    with pytest.raises(ValueError, match="not being processed"):
        q.done("ns/a")


async def test_a_cancelled_getter_does_not_swallow_the_key_it_was_woken_for() -> None:
    q = make_queue()
    first = asyncio.create_task(q.get())
    second = asyncio.create_task(q.get())
    await settle()
    q.add("ns/a")  # wakes `first`...
    first.cancel()  # ...which is cancelled before it runs
    await asyncio.gather(first, return_exceptions=True)
    assert await asyncio.wait_for(second, timeout=5) == "ns/a"


async def test_several_workers_never_process_one_key_at_once() -> None:
    clock = FakeClock()
    q = make_queue(clock)
    active: set[str] = set()
    overlaps: list[str] = []
    processed: Counter[str] = Counter()

    async def worker() -> None:
        while True:
            try:
                key = await q.get()
            except QueueShutDown:
                return
            if key in active:
                overlaps.append(key)
            active.add(key)
            await clock.sleep(1.0)  # work takes time; meanwhile producers keep adding
            active.discard(key)
            processed[key] += 1
            q.done(key)

    workers = [asyncio.create_task(worker()) for _ in range(8)]
    for _ in range(20):
        for key in ["ns/a", "ns/b", "ns/c"]:
            q.add(key)
        await clock.advance(0.25)
    await clock.advance(5.0)
    drain = asyncio.create_task(q.shutdown_with_drain())
    await clock.advance(5.0)
    await drain
    await asyncio.gather(*workers)
    assert overlaps == []
    # 20 adds over 5 s, work takes 1 s: each key is processed about once a second, not 20 times.
    assert all(3 <= processed[key] <= 7 for key in ["ns/a", "ns/b", "ns/c"]), processed


async def test_shutdown_wakes_every_getter_and_stops_everything() -> None:
    clock = FakeClock()
    q = make_queue(clock)
    getters = [asyncio.create_task(q.get()) for _ in range(3)]
    q.add_after("ns/later", 5.0)
    await settle()
    q.shutdown()
    results = await asyncio.gather(*getters, return_exceptions=True)
    assert all(isinstance(r, QueueShutDown) for r in results)
    assert q.shutting_down
    assert clock.pending_timers == 0  # delayed adds were cancelled
    q.add("ns/a")
    q.add_after("ns/b", 0)
    assert len(q) == 0
    with pytest.raises(QueueShutDown):
        await q.get()


async def test_shutdown_drops_queued_keys_but_lets_in_flight_work_finish() -> None:
    q = make_queue()
    q.add("ns/a")
    q.add("ns/b")
    key = await q.get()
    q.shutdown()
    with pytest.raises(QueueShutDown):
        await q.get()
    q.done(key)  # still allowed
    assert len(q) == 0


async def test_shutdown_with_drain_hands_out_what_is_queued_and_waits_for_done() -> None:
    q = make_queue()
    for key in ["ns/a", "ns/b"]:
        q.add(key)
    held = await q.get()
    drain = asyncio.create_task(q.shutdown_with_drain())
    await settle()
    q.add("ns/c")  # ignored: draining
    assert await q.get() == "ns/b"
    with pytest.raises(QueueShutDown):
        await q.get()
    assert not drain.done()
    q.done(held)
    q.done("ns/b")
    await asyncio.wait_for(drain, timeout=5)


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from(["a", "b", "c", "d"])),
        st.tuples(st.just("low"), st.sampled_from(["a", "b", "c", "d"])),
        st.tuples(st.just("get"), st.just("")),
        st.tuples(st.just("done"), st.integers(min_value=0, max_value=3).map(str)),
    ),
    max_size=60,
)


@settings(deadline=None)
@given(ops=_ops)
async def test_no_key_is_held_twice_and_no_add_is_lost(ops: list[tuple[str, str]]) -> None:
    """Under any interleaving of add/get/done, a key is never handed out while held, the queue never
    holds duplicates, and every add is followed by a get of that key (once everything is drained)."""
    q = make_queue()
    held: list[str] = []
    step = 0
    last_add: dict[str, int] = {}
    last_get: dict[str, int] = {}

    async def take() -> None:
        nonlocal step
        key = await q.get()  # only called when len(q) > 0, so it returns at once
        assert key not in held
        held.append(key)
        step += 1
        last_get[key] = step

    for op, arg in ops:
        if op in ("add", "low"):
            q.add(arg, Priority.LOW if op == "low" else Priority.NORMAL)
            step += 1
            last_add[arg] = step
        elif op == "get" and len(q):
            await take()
        elif op == "done" and held:
            q.done(held.pop(int(arg) % len(held)))
        assert len(q) <= len(set(last_add))
    while held or len(q):  # drain: workers finish, then take what is left
        while held:
            q.done(held.pop())
        while len(q):
            await take()
    assert all(last_get.get(key, -1) > added for key, added in last_add.items())
