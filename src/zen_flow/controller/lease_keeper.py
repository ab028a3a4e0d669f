"""Leader election on a thread of its own, so the lease is renewed on time whatever the event loop does.

In client-go the elector is a goroutine: a controller that is busy elsewhere still renews. An asyncio
task is not preemptive: anything that holds the event loop (a burst of watch events, a large decode, a
plan) delays the renewal, and past the renew deadline the leader resigns and every flow stalls while a
successor takes over. So the `LeaderElector` runs here in a thread with its own event loop and its own
API client (its own connection and credentials), and talks to the main loop only through two signals:
"we lead" and "we lost" (machinery/elector_thread.py, shared with the shard keeper). The main loop's side
(`run`) keeps `LeaderElector.run`'s contract: `lead()` runs while we lead; losing the lease cancels it and
raises `LeadershipLost`; when `lead()` ends, or on cancellation, the lease is released before `run`
returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from zen_flow.kube.client import KubeClient
from zen_flow.kube.config import load_config
from zen_flow.kube.leases import LeaseClient
from zen_flow.kube.transport import ClientOptions, ResponseHook
from zen_flow.logging import get_logger
from zen_flow.machinery.clock import SystemClock
from zen_flow.machinery.elector_thread import ElectorThread, until_stopped
from zen_flow.machinery.leader import LeaderElector

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

    @property
    def is_leader(self) -> bool:
        return self._elector is not None and self._elector.is_leader

    async def run(self, lead: Callable[[], Awaitable[object]]) -> None:
        leading: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        thread = ElectorThread("lease keeper", lambda release: self._campaign(release, thread, leading))
        await thread.run(lead, ready=leading)

    async def _campaign(
        self, release: asyncio.Event, thread: ElectorThread, leading: asyncio.Future[Any]
    ) -> None:
        """On the thread's loop, until `release` is set (lead() is over)."""
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
                thread.tell(leading)
                await release.wait()

            # Stopped while still campaigning: a standby shutting down.
            await until_stopped(elector.run(hold), release)
