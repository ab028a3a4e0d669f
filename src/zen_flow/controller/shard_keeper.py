"""The shard elector (`--shards N > 1`) on a thread of its own, as the leader's lease keeper runs.

Same reasons as controller/lease_keeper.py: renewals must not wait for a busy event loop, so the
`ShardElector` runs in a thread with its own event loop and API client. It reaches the main loop only
through the `ShardGate`: `granted` and `released` are posted to it (`call_soon_threadsafe`), `drain` runs
there and the thread awaits it. The main loop's side (`run`) keeps the lease keeper's contract: `work()`
runs (the workers, which reconcile only what the gate admits); losing a shard Lease cancels it and raises
`LeadershipLost`; when `work()` ends, or on cancellation, the shard Leases are released and the member
Lease deleted before `run` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import replace

from zen_flow.config import Settings
from zen_flow.controller.lease_keeper import LEASE_CLIENT_OPTIONS
from zen_flow.controller.shard_gate import ShardGate
from zen_flow.core.shards import LABEL_SHARD_COUNT, LABEL_SHARDED_LEASE
from zen_flow.kube.client import KubeClient
from zen_flow.kube.config import load_config
from zen_flow.kube.leases import LeaseClient
from zen_flow.kube.transport import ClientOptions, ResponseHook
from zen_flow.logging import get_logger
from zen_flow.machinery.clock import SystemClock
from zen_flow.machinery.elector_thread import ElectorThread, until_stopped
from zen_flow.machinery.shard_elector import DRAIN_LIMIT_DURATIONS, ShardElector

log = get_logger(__name__)


def shard_client_options(shards: int, retry_period: float) -> ClientOptions:
    """The lease thread's request budget, grown with the shards: every retry period a replica renews its
    member Lease and each shard it holds (all N when alone) and lists them, concurrently; a budget of one
    Lease (LEASE_CLIENT_OPTIONS) would delay renewals past the renew deadline and end the process.

    In flight at once: the renewals of the member Lease and the shards held (h + 1), and the decision's
    one request at a time, or its acquisitions (at most ACQUIRE_BATCH, and never more than N - h): at most
    N + 2. Every Lease is in one namespace, which may hold only its share of the slots
    (kube/request_slots.py), so the slots are sized for that share to be N + 3: a renewal never waits for
    a slot behind acquisitions or the LIST, however slow the apiserver answers."""
    per_period = shards + 3  # the renewals, the member Lease, the list, the leader Lease's GET
    slots = per_period
    while slots - slots // 4 < per_period:  # RequestSlots: one namespace holds all but a quarter
        slots += 1
    return replace(
        LEASE_CLIENT_OPTIONS,
        qps=max(LEASE_CLIENT_OPTIONS.qps, 2 * per_period / retry_period),
        burst=max(LEASE_CLIENT_OPTIONS.burst, 2 * per_period),
        max_concurrent_requests=max(LEASE_CLIENT_OPTIONS.max_concurrent_requests, slots),
    )


class _MainLoopHooks:
    """The elector's hooks, called on the lease thread, carried out on the main loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, gate: ShardGate, drain_limit: float) -> None:
        self._loop, self._gate, self._drain_limit = loop, gate, drain_limit

    def _post(self, callback: Callable[[int], object], shard: int) -> None:
        with contextlib.suppress(RuntimeError):  # the main loop is closing: nothing left to tell
            self._loop.call_soon_threadsafe(callback, shard)

    def granted(self, shard: int) -> None:
        self._post(self._gate.grant, shard)

    def released(self, shard: int) -> None:
        self._post(self._gate.released, shard)

    async def drain(self, shard: int) -> None:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._drain(shard), self._loop))

    async def _drain(self, shard: int) -> None:
        try:
            async with asyncio.timeout(self._drain_limit):
                await self._gate.drain(shard)
        except TimeoutError:
            # The elector ends the process on it (machinery/shard_elector.py): say what hung.
            log.error(
                "shard handover did not drain; exiting",
                shard=shard,
                limit=self._drain_limit,
                in_flight=self._gate.in_flight(shard),
            )
            raise


class ShardKeeper:
    def __init__(
        self,
        *,
        kubeconfig: str | None,
        name: str,
        namespace: str,
        identity: str,
        gate: ShardGate,
        lease_duration: float,
        renew_deadline: float,
        retry_period: float,
        on_response: ResponseHook | None = None,
    ) -> None:
        self._kubeconfig = kubeconfig
        self._name, self._namespace, self.identity = name, namespace, identity
        self._gate = gate
        self._timings = (int(lease_duration), renew_deadline, retry_period)
        self._on_response = on_response

    @property
    def is_leader(self) -> bool:
        """Holds a shard: its reconciles in flight are worth waiting for on shutdown."""
        return bool(self._gate.owned)

    async def run(self, work: Callable[[], Awaitable[object]]) -> None:
        hooks = _MainLoopHooks(
            asyncio.get_running_loop(), self._gate, DRAIN_LIMIT_DURATIONS * self._timings[0]
        )
        await ElectorThread("shard keeper", lambda stop: self._campaign(stop, hooks)).run(work)

    async def _campaign(self, stop: asyncio.Event, hooks: _MainLoopHooks) -> None:
        """On the thread's loop, until `stop` is set (work() is over)."""
        clock = SystemClock()
        config = await load_config(self._kubeconfig, clock=clock)
        lease_duration, renew_deadline, retry_period = self._timings
        options = shard_client_options(self._gate.shards, retry_period)
        async with KubeClient(config, options, clock=clock, on_response=self._on_response) as kube:
            elector = ShardElector(
                LeaseClient(
                    kube,
                    labels={LABEL_SHARDED_LEASE: self._name, LABEL_SHARD_COUNT: str(self._gate.shards)},
                    selector=f"{LABEL_SHARDED_LEASE}={self._name}",
                ),
                self._name,
                self._namespace,
                self.identity,
                clock,
                self._gate.shards,
                hooks,
                lease_duration=lease_duration,
                renew_deadline=renew_deadline,
                retry_period=retry_period,
            )
            log.info(
                "campaigning for shards", lease=self._name, shards=self._gate.shards, identity=self.identity
            )
            await until_stopped(elector.run(), stop)  # releases the shards, deletes the member Lease


def shard_keeper(settings: Settings, gate: ShardGate, on_response: ResponseHook | None) -> ShardKeeper:
    return ShardKeeper(
        kubeconfig=settings.kubeconfig,
        name=settings.lease_name,
        namespace=settings.lease_namespace,
        identity=settings.elector_identity,
        gate=gate,
        lease_duration=settings.lease_duration,
        renew_deadline=settings.renew_deadline,
        retry_period=settings.retry_period,
        on_response=on_response,
    )
