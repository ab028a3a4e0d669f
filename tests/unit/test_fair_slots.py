"""Slots shared by groups in turns (machinery/fair_slots.py): a group with many waiting tasks never keeps
another group from the next free slot."""

from __future__ import annotations

import asyncio
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from zen_flow.machinery.fair_slots import FairSlots
from zen_flow_dev.testing.clock import settle


class Holders:
    """Tasks that each hold a slot of `slots` for a group until the test lets them go."""

    def __init__(self, slots: FairSlots) -> None:
        self.slots = slots
        self.got: list[str] = []  # the groups handed a slot, in order
        self.holding: list[tuple[str, asyncio.Event]] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def ask(self, *groups: str) -> None:
        for group in groups:
            self.tasks.append(asyncio.create_task(self._hold(group)))
            await settle()

    async def _hold(self, group: str) -> None:
        done = asyncio.Event()
        async with self.slots.slot(group):
            self.got.append(group)
            self.holding.append((group, done))
            await done.wait()
            self.holding.remove((group, done))

    async def let_go(self, group: str | None = None) -> None:
        """The oldest holder (of `group`) lets its slot go."""
        next(done for held, done in self.holding if group in (None, held)).set()
        await settle()

    async def finish(self) -> None:
        while self.holding:
            await self.let_go()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def test_a_group_takes_no_more_than_its_share_while_a_slot_stays_free_for_others() -> None:
    holders = Holders(FairSlots(2, per_group=1))
    await holders.ask("a", "a", "a", "b")
    # The second slot was free while a's tasks waited for their turn: b took it at once.
    assert holders.got == ["a", "b"]
    assert holders.slots.waiting("a") == 2
    await holders.finish()
    assert holders.got == ["a", "b", "a", "a"]


async def test_a_free_slot_goes_round_the_waiting_groups() -> None:
    holders = Holders(FairSlots(1, per_group=1))
    # a holds the slot and queues three more; then b two, c one: a gets a turn once per round.
    await holders.ask("a", "a", "a", "a", "b", "b", "c")
    assert holders.got == ["a"]
    await holders.finish()
    assert holders.got == ["a", "b", "c", "a", "b", "a", "a"]


async def test_a_cancelled_waiter_leaves_its_place_and_no_slot_behind() -> None:
    holders = Holders(FairSlots(1, per_group=1))
    await holders.ask("a", "b", "c")
    holders.tasks[1].cancel()  # b stops waiting (its reconcile was cancelled)
    await settle()
    await holders.let_go("a")
    assert holders.got == ["a", "c"]
    await holders.finish()
    # Nothing held or waiting is left: a new group takes the slot at once.
    await holders.ask("d")
    assert holders.got[-1] == "d"
    await holders.finish()


@settings(max_examples=40, deadline=None)
@given(
    asks=st.lists(st.sampled_from("abc"), min_size=1, max_size=12),
    slots=st.integers(1, 3),
    per_group=st.integers(1, 3),
)
def test_no_group_holds_more_than_its_share_and_every_task_gets_a_slot(
    asks: list[str], slots: int, per_group: int
) -> None:
    async def run() -> None:
        fair = FairSlots(slots, per_group)
        holders = Holders(fair)
        await holders.ask(*asks)
        while holders.holding:
            held = Counter(group for group, _ in holders.holding)
            assert sum(held.values()) <= slots
            assert max(held.values()) <= min(per_group, slots)
            # Work conserving: a slot stays free only when every waiting group is at its share.
            if sum(held.values()) < slots:
                assert all(held[g] >= min(per_group, slots) for g in asks if fair.waiting(g))
            await holders.let_go()
        await asyncio.gather(*holders.tasks)
        assert Counter(holders.got) == Counter(asks)

    asyncio.run(run())
