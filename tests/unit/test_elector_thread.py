"""An elector on a thread of its own (the lease keeper's and the shard keeper's plumbing): the work runs
while the campaign does, a campaign that ends first stops the work, and the work's end stops the campaign
and waits for its thread (which releases its Leases) before `run` returns."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from zen_flow.machinery.elector_thread import ElectorThread, until_stopped
from zen_flow.machinery.leader import LeadershipLost


class Campaign:
    """A campaign that says "we lead" at once, then runs until told to stop or to fail."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.fail = fail
        self.released = threading.Event()  # set once the campaign unwound (its Leases released)
        self.thread: str | None = None

    async def __call__(self, stop: asyncio.Event, lead: Any = None) -> None:
        self.thread = threading.current_thread().name
        if lead is not None:
            lead()
        try:
            if self.fail is not None:
                raise self.fail
            await until_stopped(asyncio.Event().wait(), stop)
        finally:
            self.released.set()


async def test_the_work_ends_the_campaign_and_run_returns_once_its_thread_released() -> None:
    campaign = Campaign()
    thread = ElectorThread("lease keeper", campaign)
    ran: list[str] = []

    async def work() -> None:
        ran.append(threading.current_thread().name)

    await thread.run(work)
    assert ran == ["MainThread"]
    assert campaign.thread == "lease-keeper"  # the campaign ran on a thread of its own
    assert campaign.released.is_set()


async def test_a_campaign_that_ends_cancels_the_work_and_raises_what_ended_it() -> None:
    campaign = Campaign(fail=LeadershipLost("lease taken"))
    cancelled = asyncio.Event()

    async def work() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(LeadershipLost, match="lease taken"):
        await ElectorThread("shard keeper", campaign).run(work)
    assert cancelled.is_set()


async def test_work_waits_until_the_campaign_says_it_leads() -> None:
    loop = asyncio.get_running_loop()
    leading: asyncio.Future[Any] = loop.create_future()
    campaign = Campaign()
    thread = ElectorThread("lease keeper", lambda stop: campaign(stop, lambda: thread.tell(leading)))
    seen: list[bool] = []

    async def work() -> None:
        seen.append(leading.done())

    await thread.run(work, ready=leading)
    assert seen == [True]
    assert campaign.released.is_set()


async def test_a_campaign_that_fails_before_leading_never_runs_the_work() -> None:
    leading: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    ran: list[bool] = []

    async def work() -> None:
        ran.append(True)

    with pytest.raises(ValueError, match="no kubeconfig"):
        await ElectorThread("lease keeper", Campaign(fail=ValueError("no kubeconfig"))).run(work, leading)
    assert ran == []
