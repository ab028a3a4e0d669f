"""Leader election on a thread of its own, so the lease is renewed on time whatever the event loop does.

In client-go the elector is a goroutine: a controller that is busy elsewhere still renews. An asyncio
task is not preemptive: anything that holds the event loop (a burst of watch events, a large decode, a
plan) delays the renewal, and past the renew deadline the leader resigns and every flow stalls while a
successor takes over. So the `LeaderElector` runs here in a thread with its own event loop and its own
API client (its own connection and credentials), and talks to the main loop only through two signals:
"we lead" and "we lost". The main loop's side (`run`) keeps `LeaderElector.run`'s contract: `lead()`
runs while we lead; losing the lease cancels it and raises `LeadershipLost`; when `lead()` ends, or on
cancellation, the lease is released before `run` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from zen_flow.kube.client import KubeClient
from zen_flow.kube.config import load_config
from zen_flow.kube.leases import LeaseClient
from zen_flow.kube.transport import ClientOptions, ResponseHook
from zen_flow.logging import get_logger
from zen_flow.machinery.clock import SystemClock
from zen_flow.machinery.leader import LeaderElector, LeadershipLost

log = get_logger(__name__)

# Lease traffic is a GET and a PUT every retry period at most: a small budget of its own, apart from the
# reconcile workers' (a saturated --qps must not delay a renewal either).
LEASE_CLIENT_OPTIONS = ClientOptions(qps=5.0, burst=10, max_concurrent_requests=2)


class LeaseKeeper:
    def __init__(
        self,
        *,
        kubeconfig: str | None,
        name: str,
        namespace: str,
        identity: str,
        lease_duration: float,
        renew_deadline: float,
        retry_period: float,
        on_response: ResponseHook | None = None,
    ) -> None:
        self._kubeconfig = kubeconfig
        self._name, self._namespace, self.identity = name, namespace, identity
        self._timings = (int(lease_duration), renew_deadline, retry_period)
        self._on_response = on_response
        self._elector: LeaderElector | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._release: asyncio.Event | None = None  # set in the thread's loop: lead() is over
        self._stopping = threading.Event()  # set by the main loop; read by the thread at start

    @property
    def is_leader(self) -> bool:
        return self._elector is not None and self._elector.is_leader

    async def run(self, lead: Callable[[], Awaitable[object]]) -> None:
        loop = asyncio.get_running_loop()
        leading: asyncio.Future[Any] = loop.create_future()
        ended: asyncio.Future[Any] = loop.create_future()

        def tell(future: asyncio.Future[Any], error: BaseException | None = None) -> None:
            def settle() -> None:
                if future.done():
                    return
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)

            loop.call_soon_threadsafe(settle)

        thread = threading.Thread(
            target=self._thread_main, args=(tell, leading, ended), name="lease-keeper", daemon=True
        )
        thread.start()
        lead_task: asyncio.Future[Any] | None = None
        try:
            await asyncio.wait({leading, ended}, return_when=asyncio.FIRST_COMPLETED)
            if ended.done():
                ended.result()  # the campaign failed before we ever led (raises)
                raise LeadershipLost("the lease keeper stopped before leading")
            lead_task = asyncio.ensure_future(lead())
            await asyncio.wait({lead_task, ended}, return_when=asyncio.FIRST_COMPLETED)
            if not lead_task.done():
                await cancel_and_wait(lead_task)
                ended.result()  # LeadershipLost (or what ended the campaign)
                raise LeadershipLost("the lease keeper stopped")
            lead_task.result()
        finally:
            if lead_task is not None and not lead_task.done():
                await cancel_and_wait(lead_task)
            self._stop_campaign()
            # The thread releases the lease (a bounded API call) and ends.
            await asyncio.shield(asyncio.to_thread(thread.join))

    def _stop_campaign(self) -> None:
        # First the flag, then the loop: a thread that has not published its loop yet sees the flag.
        self._stopping.set()
        loop, release = self._thread_loop, self._release
        if loop is not None and release is not None:
            with contextlib.suppress(RuntimeError):  # the thread's loop already closed
                loop.call_soon_threadsafe(release.set)

    def _thread_main(
        self,
        tell: Callable[..., None],
        leading: asyncio.Future[Any],
        ended: asyncio.Future[Any],
    ) -> None:
        try:
            asyncio.run(self._campaign(lambda: tell(leading)))
        except BaseException as exc:
            tell(ended, exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
        else:
            tell(ended)

    async def _campaign(self, now_leading: Callable[[], None]) -> None:
        self._release = release = asyncio.Event()
        self._thread_loop = asyncio.get_running_loop()
        if self._stopping.is_set():
            release.set()
        clock = SystemClock()
        config = await load_config(self._kubeconfig, clock=clock)
        async with KubeClient(
            config, LEASE_CLIENT_OPTIONS, clock=clock, on_response=self._on_response
        ) as kube:
            lease_duration, renew_deadline, retry_period = self._timings
            self._elector = elector = LeaderElector(
                LeaseClient(kube),
                self._name,
                self._namespace,
                self.identity,
                clock,
                lease_duration=lease_duration,
                renew_deadline=renew_deadline,
                retry_period=retry_period,
            )

            async def hold() -> None:
                now_leading()
                await release.wait()

            campaign = asyncio.ensure_future(elector.run(hold))
            stop = asyncio.ensure_future(release.wait())
            await asyncio.wait({campaign, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not campaign.done():  # asked to stop while still campaigning (a standby shutting down)
                await cancel_and_wait(campaign)
            stop.cancel()
            if not campaign.cancelled():
                campaign.result()


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel `task` and wait until it has unwound (shared with shard_keeper.py)."""
    task.cancel()
    with contextlib.suppress(BaseException):
        await asyncio.wait({task})
