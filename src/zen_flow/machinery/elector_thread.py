"""An elector on a thread of its own, with its own event loop: the plumbing the lease keeper (one leader
Lease) and the shard keeper (`--shards N`) share.

An asyncio task is not preemptive: anything that holds the main loop (a burst of watch events, a large
decode, a plan) would delay a renewal past its deadline. So the campaign runs in a thread with its own
loop, and the two loops talk only through futures settled across them (`tell`, `call_soon_threadsafe`).
`run(work)` keeps `LeaderElector.run`'s contract on the main loop: `work()` runs (once `ready`, if given,
is settled: "we lead"); the campaign ending first cancels it and raises (`LeadershipLost`, or what ended
the campaign); when `work()` ends, or on cancellation, the campaign is told to stop and the thread is
joined (it releases its Leases, bounded calls) before `run` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from zen_flow.machinery.leader import LeadershipLost

# The campaign, run on the thread's loop; it ends once `stop` (an event of that loop) is set.
Campaign = Callable[[asyncio.Event], Awaitable[None]]


class ElectorThread:
    def __init__(self, name: str, campaign: Campaign) -> None:
        """`name`: what the errors and the thread are called ("lease keeper")."""
        self._name = name
        self._campaign = campaign
        self._loop: asyncio.AbstractEventLoop | None = None  # the main loop
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None  # set in the thread's loop: work() is over
        self._stopping = threading.Event()  # set by the main loop; read by the thread at its start

    def tell(self, future: asyncio.Future[Any], error: BaseException | None = None) -> None:
        """From the thread: settle `future`, a future of the main loop (once; later calls do nothing)."""

        def settle() -> None:
            if future.done():
                return
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the main loop is closing: nothing left to tell
                self._loop.call_soon_threadsafe(settle)

    async def run(
        self, work: Callable[[], Awaitable[object]], ready: asyncio.Future[Any] | None = None
    ) -> None:
        """Run the campaign on its thread and `work()` here (once `ready` is settled, if given)."""
        self._loop = loop = asyncio.get_running_loop()
        ended: asyncio.Future[Any] = loop.create_future()
        thread = threading.Thread(
            target=self._thread_main, args=(ended,), name=self._name.replace(" ", "-"), daemon=True
        )
        thread.start()
        work_task: asyncio.Future[Any] | None = None
        try:
            if ready is not None:
                await asyncio.wait({ready, ended}, return_when=asyncio.FIRST_COMPLETED)
                if ended.done():
                    ended.result()  # the campaign failed before we ever led (raises)
                    raise LeadershipLost(f"the {self._name} stopped before leading")
            work_task = asyncio.ensure_future(work())
            await asyncio.wait({work_task, ended}, return_when=asyncio.FIRST_COMPLETED)
            if not work_task.done():
                await cancel_and_wait(work_task)
                ended.result()  # LeadershipLost (or what ended the campaign)
                raise LeadershipLost(f"the {self._name} stopped")
            work_task.result()
        finally:
            if work_task is not None and not work_task.done():
                await cancel_and_wait(work_task)
            self._stop_campaign()
            await asyncio.shield(asyncio.to_thread(thread.join))

    def _stop_campaign(self) -> None:
        # First the flag, then the loop: a thread that has not published its loop yet sees the flag.
        self._stopping.set()
        loop, stop = self._thread_loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the thread's loop already closed
                loop.call_soon_threadsafe(stop.set)

    def _thread_main(self, ended: asyncio.Future[Any]) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self.tell(ended, exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
        else:
            self.tell(ended)

    async def _main(self) -> None:
        self._stop = stop = asyncio.Event()
        self._thread_loop = asyncio.get_running_loop()
        if self._stopping.is_set():
            stop.set()
        await self._campaign(stop)


async def until_stopped(campaign: Awaitable[None], stop: asyncio.Event) -> None:
    """Await `campaign` (on the thread's loop) until it ends, or `stop` is set: then it is cancelled
    (an elector releases its Leases as it unwinds). Raises what ended it, but its cancellation."""
    running = asyncio.ensure_future(campaign)
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not running.done():
        await cancel_and_wait(running)
    stopping.cancel()
    if not running.cancelled():
        running.result()


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel `task` and wait until it has unwound."""
    task.cancel()
    with contextlib.suppress(BaseException):
        await asyncio.wait({task})
