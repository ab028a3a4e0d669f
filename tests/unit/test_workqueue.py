"""The work queue keeps client-go's promises (FIFO, deduplicated, one worker per key, delays, shutdown), and
serves work in progress before new work without starving the new work."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zen_flow.machinery.ratelimit import ItemExponentialFailureRateLimiter
from zen_flow.machinery.workqueue import NORMAL_STREAK, Priority, QueueShutDown, WorkQueue
from zen_flow_dev.testing.clock import FakeClock, settle


def make_queue(clock: FakeClock | None = None) -> WorkQueue[str]:
    return WorkQueue[str](name="test", clock=clock or FakeClock())


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


@settings(deadline=None, max_examples=50)
@given(
    adds=st.lists(
        st.tuples(
            st.sampled_from(["x/a", "x/b", "x/c", "y/d", "y/e"]), st.integers(0, 3), st.sampled_from(Priority)
        ),
        min_size=1,
        max_size=40,
    ),
    work=st.lists(st.integers(0, 4), min_size=1, max_size=10),
    low_limit=st.sampled_from([None, 1, 2]),
    group_limits=st.sampled_from([None, (1, None), (2, 1), (None, 1)]),
    reserve=st.sampled_from([None, 1, 2]),
)
async def test_concurrent_workers_under_random_schedules(
    adds: list[tuple[str, int, Priority]],
    work: list[int],
    low_limit: int | None,
    group_limits: tuple[int | None, int | None] | None,
    reserve: int | None,
) -> None:
    """Three workers, any schedule, with or without limits on low keys, per group and a reserve: no key is
    handed to two workers, no group has more keys in hand than its limit, a group with a key in hand takes
    another only while more than the reserve is free, every add is followed by a start of its key, and the
    drain never hangs."""
    group_limit, group_low_limit = group_limits or (None, None)
    q = WorkQueue[str](
        name="test",
        clock=FakeClock(),
        low_limit=low_limit,
        group_of=by_namespace if group_limits or reserve else None,
        group_limit=group_limit,
        group_low_limit=group_low_limit,
        workers=3 if reserve else None,
        reserve=reserve,
    )
    active: set[str] = set()
    over_limit: list[str] = []
    step = 0
    last_add: dict[str, int] = {}
    last_start: dict[str, int] = {}

    async def worker(index: int) -> None:
        nonlocal step
        rounds = 0
        while True:
            try:
                key = await q.get()
            except QueueShutDown:
                return
            assert key not in active, f"{key} handed to two workers"
            in_hand = sum(by_namespace(k) == by_namespace(key) for k in active) + 1
            if reserve is not None and in_hand > 1 and 3 - len(active) <= reserve:
                over_limit.append(key)  # took from the reserve beside a key in hand
            active.add(key)
            if group_limit is not None and in_hand > group_limit:
                over_limit.append(key)  # asserted at the end: an assert here would hang the drain
            step += 1
            last_start[key] = step
            for _ in range(work[(index + rounds) % len(work)]):
                await asyncio.sleep(0)  # yield: lets producers and other workers interleave
            rounds += 1
            active.discard(key)
            q.done(key)

    workers = [asyncio.create_task(worker(i)) for i in range(3)]
    for key, pause, priority in adds:
        q.add(key, priority)
        step += 1
        last_add[key] = step
        for _ in range(pause):
            await asyncio.sleep(0)
    await asyncio.wait_for(q.shutdown_with_drain(), timeout=10)
    await asyncio.gather(*workers)
    assert all(last_start.get(key, -1) > added for key, added in last_add.items())
    assert over_limit == [], "more keys of one group in hand than its limit, or from the reserve"


def by_namespace(key: str) -> str:
    return key.split("/", 1)[0]


async def test_new_flows_of_one_tenant_do_not_hold_back_another_tenants() -> None:
    # One namespace creates 100 flows at once; another creates one just after: it is handed out second,
    # not 101st. Each tenant's own flows keep their order.
    q = WorkQueue[str](name="test", clock=FakeClock(), group_of=by_namespace)
    for i in range(100):
        q.add(f"busy/f{i}", Priority.LOW)
    q.add("quiet/f", Priority.LOW)
    q.add("busy/f0", Priority.NORMAL)  # moved up a line: its low entry is skipped
    handed = [await q.get() for _ in range(4)]
    assert handed == ["busy/f0", "busy/f1", "quiet/f", "busy/f2"]


async def test_running_flows_of_one_tenant_do_not_hold_back_another_tenants() -> None:
    # 1,000 of one tenant's running flows had a Job finish at once; another tenant's flow too, just
    # after: it is handed out second, not 1,001st.
    q = WorkQueue[str](name="test", clock=FakeClock(), group_of=by_namespace)
    for i in range(1000):
        q.add(f"busy/f{i}")
    q.add("quiet/f")
    assert [await q.get() for _ in range(3)] == ["busy/f0", "quiet/f", "busy/f1"]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 9)), max_size=40))
async def test_low_keys_take_turns_by_group_and_are_each_handed_out_once(adds: list[tuple[str, int]]) -> None:
    q = WorkQueue[str](name="test", clock=FakeClock(), group_of=by_namespace)
    for group, n in adds:
        q.add(f"{group}/{n}", Priority.LOW)
    expected = list(dict.fromkeys(f"{g}/{n}" for g, n in adds))
    handed = [await q.get() for _ in range(len(expected))]
    assert sorted(handed) == sorted(expected)
    for group in "abc":  # each group in the order it added its keys
        assert [k for k in handed if k[0] == group] == [k for k in expected if k[0] == group]
    # In turns: while every group still had keys, no group was served twice before another once.
    left = Counter(by_namespace(k) for k in expected)
    served: Counter[str] = Counter()
    for key in handed:
        group = by_namespace(key)
        waiting = [g for g in left if left[g] > 0]
        assert served[group] <= min(served[g] for g in waiting)
        served[group] += 1
        left[group] -= 1


async def test_a_group_with_its_limit_in_hand_waits_while_another_groups_key_is_handed_out() -> None:
    # One tenant's flows hold two workers each for as long as their slow Job creates take; a third worker
    # is free. It must take the other tenant's flow, not a third of the slow tenant's.
    q = WorkQueue[str](name="test", clock=FakeClock(), group_of=by_namespace, group_limit=2)
    for i in range(5):
        q.add(f"slow/f{i}")
    assert [await q.get(), await q.get()] == ["slow/f0", "slow/f1"]
    q.add("quiet/f")  # behind the slow tenant's three others in turn, but they may not be handed out
    assert await q.get() == "quiet/f"
    idle = asyncio.create_task(q.get())
    await settle()
    assert not idle.done(), "the slow tenant already has its limit in hand"
    q.done("quiet/f")  # another group's key done frees nothing of the slow tenant's limit
    await settle()
    assert not idle.done()
    q.done("slow/f0")
    await settle()
    assert idle.result() == "slow/f2"


async def test_a_group_alone_is_limited_only_by_its_limit() -> None:
    q = WorkQueue[str](name="test", clock=FakeClock(), group_of=by_namespace, group_limit=3, low_limit=5)
    for i in range(4):
        q.add(f"one/f{i}", Priority.LOW)
    assert [await q.get() for _ in range(3)] == ["one/f0", "one/f1", "one/f2"]
    assert len(q) == 1


async def test_a_groups_low_limit_leaves_its_other_workers_to_its_running_flows() -> None:
    q = WorkQueue[str](
        name="test", clock=FakeClock(), group_of=by_namespace, group_limit=3, group_low_limit=2, low_limit=4
    )
    for i in range(3):
        q.add(f"a/new-{i}", Priority.LOW)
        q.add(f"b/new-{i}", Priority.LOW)
    handed = [await q.get() for _ in range(4)]
    assert sorted(handed) == ["a/new-0", "a/new-1", "b/new-0", "b/new-1"]
    waiting = asyncio.create_task(q.get())
    await settle()
    assert not waiting.done(), "both groups have their low limit in hand"
    q.add("a/running")
    await settle()
    assert waiting.result() == "a/running"


async def test_groups_with_keys_in_hand_leave_the_reserve_to_a_group_with_none() -> None:
    # Two tenants' flows wait on their slow Job creates; each may hold 3 of the 4 workers, so without the
    # reserve they held all 4 between them. With one worker kept in reserve, a third tenant's flow takes it
    # at once; a slow tenant's next key waits until more than one worker is free.
    q = WorkQueue[str](
        name="test", clock=FakeClock(), group_of=by_namespace, group_limit=3, workers=4, reserve=1
    )
    for i in range(3):
        q.add(f"a/f{i}")
        q.add(f"b/f{i}")
    assert [await q.get() for _ in range(3)] == ["a/f0", "b/f0", "a/f1"]
    slow = asyncio.create_task(q.get())
    await settle()
    assert not slow.done(), "a group with keys in hand does not take the last worker"
    q.add("c/f")
    await settle()
    assert slow.result() == "c/f"
    idle = asyncio.create_task(q.get())
    q.done("c/f")  # one worker free again: still the reserve
    await settle()
    assert not idle.done()
    q.done("a/f0")  # two free: one may go to a group in hand
    await settle()
    assert idle.result() == "b/f1"


async def test_a_group_alone_does_not_reach_the_reserve_below_its_limit() -> None:
    q = WorkQueue[str](
        name="test", clock=FakeClock(), group_of=by_namespace, group_limit=8, workers=16, reserve=4
    )
    for i in range(9):
        q.add(f"one/f{i}")
    assert [await q.get() for _ in range(8)] == [f"one/f{i}" for i in range(8)]


def test_a_reserve_needs_the_number_of_workers() -> None:
    with pytest.raises(ValueError, match="workers"):
        WorkQueue[str](name="test", group_of=by_namespace, reserve=2)


def test_a_limit_per_group_needs_groups() -> None:
    with pytest.raises(ValueError, match="group_of"):
        WorkQueue[str](name="test", group_limit=2)
