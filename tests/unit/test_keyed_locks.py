"""One lock per key while it is used: mutual exclusion per key, and nothing kept once nobody uses it."""

from __future__ import annotations

import asyncio

from zen_flow.machinery.keyed_locks import KeyedLocks
from zen_flow_dev.testing.clock import settle


async def test_one_holder_per_key_and_no_lock_left_behind() -> None:
    locks = KeyedLocks()
    inside: list[str] = []
    release = asyncio.Event()
    overlaps: list[tuple[str, ...]] = []

    async def use(key: str, name: str) -> None:
        async with locks.hold(key):
            inside.append(name)
            overlaps.append(tuple(inside))
            await release.wait()
            inside.remove(name)

    tasks = [asyncio.create_task(use("ns/a", "a1")), asyncio.create_task(use("ns/a", "a2"))]
    tasks.append(asyncio.create_task(use("ns/b", "b1")))
    await settle()
    assert sorted(inside) == ["a1", "b1"]  # a2 waits for a1; another key does not
    assert len(locks) == 2
    release.set()
    await asyncio.gather(*tasks)
    assert all(not ("a1" in seen and "a2" in seen) for seen in overlaps)
    assert len(locks) == 0  # every key's lock went with its last user


async def test_a_waiter_keeps_the_key_locked_for_whoever_comes_next() -> None:
    # The first holder leaves while a second waits: a third must queue behind the second, not get a
    # fresh lock of its own and run beside it.
    locks = KeyedLocks()
    order: list[str] = []
    gate = asyncio.Event()

    async def use(name: str, wait: asyncio.Event | None = None) -> None:
        async with locks.hold("ns/g"):
            order.append(f"+{name}")
            if wait is not None:
                await wait.wait()
            await asyncio.sleep(0)
            order.append(f"-{name}")

    first = asyncio.create_task(use("1", gate))
    await settle()
    second = asyncio.create_task(use("2"))
    await settle()
    gate.set()
    third = asyncio.create_task(use("3"))
    await asyncio.gather(first, second, third)
    assert order in (["+1", "-1", "+2", "-2", "+3", "-3"], ["+1", "-1", "+3", "-3", "+2", "-2"])
    assert len(locks) == 0
