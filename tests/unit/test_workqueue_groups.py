"""The work queue's groups (tenants): they take turns, each within its limit, and a reserve is left to a
group with no key in hand; under random schedules too."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zen_flow.machinery.workqueue import Priority, QueueShutDown, WorkQueue
from zen_flow_dev.testing.clock import FakeClock, settle


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
