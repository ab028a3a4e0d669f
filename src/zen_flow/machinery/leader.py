"""Leader election on a coordination.k8s.io/v1 Lease, after client-go's `tools/leaderelection`.

Rules (craft.md §5):

* Candidates act on **locally observed** time only. The Lease's timestamps are written for humans and
  only used to notice that the record *changed*; a lease counts as expired once `leaseDurationSeconds`
  have passed on our own monotonic clock since we last saw it change. Any clock skew between replicas is
  harmless (a rate skew is not); there is no fencing, so this never guarantees a single leader.
* Writes are conditional on the Lease's resourceVersion; a 409 means another candidate won the race,
  which is normal and logged quietly. Taking over from someone else increments `leaseTransitions`;
  renewing keeps `acquireTime`.
* Every attempt (at most a GET and an UPDATE/CREATE) runs under a clock-driven timeout, so a hung API
  call cannot keep us "leading" past the renew deadline. If no renewal succeeds within `renew_deadline`
  of the last successful one (or the Lease shows another holder), leadership is lost.
* Leaving gracefully releases the lease (holder `""`, `leaseDurationSeconds: 1`, as client-go's
  `ReleaseOnCancel`), so a successor takes over within one retry period instead of a lease duration.

Usage (Go controllers exit when they lose leadership; we do the same by letting `LeadershipLost`
propagate out of the TaskGroup that owns the process)::

    elector = LeaderElector(store, "zen-flow", namespace, make_identity(), SystemClock())
    async with asyncio.TaskGroup() as tg:
        tg.create_task(informers.run())
        tg.create_task(elector.run(run_workers))   # workers run only while we lead
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import NoReturn, Protocol

from zen_flow.logging import get_logger
from zen_flow.machinery.clock import Clock, timeout

log = get_logger(__name__)


@dataclass(frozen=True)
class LeaseRecord:
    """The parts of a Lease the elector reads and writes. `holder_identity == ""` means nobody holds it."""

    name: str
    namespace: str
    holder_identity: str = ""
    lease_duration_seconds: int = 15
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    lease_transitions: int = 0
    resource_version: str = ""  # empty for a record that was never stored
    # As read (sorted pairs); written only at create, by a store that labels what it creates (shards).
    labels: tuple[tuple[str, str], ...] = ()

    def same_claim(self, other: LeaseRecord) -> bool:
        """Equal spec (the resourceVersion may differ, e.g. after a label change): nothing was renewed."""
        return replace(self, resource_version="") == replace(other, resource_version="")


class ConflictError(Exception):
    """HTTP 409: the Lease changed since it was read (update), or already exists (create)."""


class LeadershipLost(Exception):
    """Raised by `LeaderElector.run()` when we stop being the leader without having chosen to."""


class LeaseStore(Protocol):
    """The elector's view of the API; the implementation lives in `zen_flow.kube`.

    Notes for implementers: `acquire_time` / `renew_time` are aware datetimes, written as MicroTime
    (RFC 3339 with microseconds and `Z`); `update` must be conditional on
    `record.resource_version` (a PUT, or a merge patch carrying `metadata.resourceVersion`). Bound
    nothing yourself: the elector wraps every attempt in its own timeout and retries on its period.
    """

    async def get(self, name: str, namespace: str) -> LeaseRecord | None:
        """The Lease, or None if it does not exist (404)."""
        ...

    async def create(self, record: LeaseRecord) -> LeaseRecord:
        """Create the Lease; return it as stored (with its resourceVersion). 409 → `ConflictError`."""
        ...

    async def update(self, record: LeaseRecord) -> LeaseRecord:
        """Replace the Lease if its resourceVersion is still `record.resource_version`; return it as
        stored. 409 → `ConflictError`; any other failure raises whatever the client raises."""
        ...


def make_identity() -> str:
    """`<POD_NAME or hostname>_<8 hex chars>`: unique per process, readable in `kubectl get lease`."""
    host = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{host}_{uuid.uuid4().hex[:8]}"


class LeaderElector:
    """Campaigns for one Lease; see the module docstring. Defaults are client-go's (15 s / 10 s / 2 s).

    `call_timeout` bounds one attempt (default `renew_deadline / 2`, so a hung call leaves time for a
    retry before the deadline). `rng` makes the retry jitter reproducible in tests.
    """

    def __init__(
        self,
        store: LeaseStore,
        name: str,
        namespace: str,
        identity: str,
        clock: Clock,
        lease_duration: int = 15,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        *,
        jitter_factor: float = 1.2,
        call_timeout: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not identity:
            raise ValueError("identity must not be empty")
        if retry_period <= 0 or jitter_factor < 0:
            raise ValueError("retry_period must be positive and jitter_factor not negative")
        if not lease_duration > renew_deadline > jitter_factor * retry_period:
            raise ValueError("need lease_duration > renew_deadline > jitter_factor * retry_period")
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self._store = store
        self._clock = clock
        self._lease_duration = lease_duration
        self._renew_deadline = renew_deadline
        self._retry_period = retry_period
        self._jitter_factor = jitter_factor
        self._call_timeout = call_timeout if call_timeout is not None else renew_deadline / 2
        if self._call_timeout <= 0:
            raise ValueError("call_timeout must be positive")
        self._rng = rng or random.Random()
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0  # local monotonic time the observed record last changed
        self._renewed_at: float | None = None  # start of our last successful write; None = not leading
        self._writing_at = 0.0  # when the attempt under way sent its write (or began, before its GET)
        self._released = False
        self._leading = asyncio.Event()

    # -- observing ----------------------------------------------------------------------------------
    @property
    def is_leader(self) -> bool:
        """True while we hold the lease and the last successful renewal is within the renew deadline."""
        return (
            self._renewed_at is not None and self._clock.monotonic() - self._renewed_at < self._renew_deadline
        )

    @property
    def observed_holder(self) -> str | None:
        """The holder in the last Lease we read or wrote ("" = released, None = never read)."""
        return self._observed.holder_identity if self._observed is not None else None

    @property
    def observed(self) -> LeaseRecord | None:
        """The Lease as last read or written (None = never read)."""
        return self._observed

    async def wait_for_leadership(self) -> None:
        """Return once we lead (immediately if we already do)."""
        await self._leading.wait()

    # -- campaigning --------------------------------------------------------------------------------
    async def run(self, lead: Callable[[], Awaitable[object]]) -> None:
        """Wait until we lead, then run `lead()` while renewing the lease in the background.

        * Leadership lost: `lead()` is cancelled (and awaited), then `LeadershipLost` is raised.
        * `lead()` returns or raises: the lease is released, then run() returns / re-raises.
        * run() is cancelled: `lead()` is cancelled and awaited first, then the lease is released, so
          a successor never overlaps with our last writes.
        """
        self._released = False
        await self._acquire()
        lead_task = asyncio.create_task(self._call(lead), name=f"lead:{self.namespace}/{self.name}")
        renew_task = asyncio.create_task(self._keep_renewing(), name=f"renew:{self.namespace}/{self.name}")
        try:
            await asyncio.wait({lead_task, renew_task}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await _cancel_and_wait(lead_task)
            await _cancel_and_wait(renew_task)
            await self.release()
            raise
        if lead_task.done():
            await _cancel_and_wait(renew_task)
            await self.release()
            lead_task.result()  # re-raise whatever lead() raised
            return
        await _cancel_and_wait(lead_task)
        renew_task.result()  # raises LeadershipLost
        raise AssertionError("the renew loop only ends by raising")

    async def release(self) -> bool:
        """Give the lease up if we hold it: holder "", leaseDurationSeconds 1. Stops leading first.

        Returns False if the write failed (the lease then simply expires). Idempotent; `run()` calls it.
        """
        self._released = True
        self._stop_leading()
        held = self._observed
        if held is None or held.holder_identity != self.identity:
            return True
        now = self._clock.now()
        released = replace(
            held, holder_identity="", lease_duration_seconds=1, acquire_time=now, renew_time=now
        )
        try:
            async with timeout(self._clock, self._renew_deadline):
                stored = await self._store.update(released)
        except Exception as exc:  # any failure just means the lease expires on its own
            log.warning("lease release failed", lease=self._ref, error=repr(exc))
            return False
        self._observe(stored)
        log.info("lease released", lease=self._ref)
        return True

    def saw(self, record: LeaseRecord, changed_at: float) -> None:
        """Another reader of the Lease (the shard elector's LIST) saw `record`, unchanged since local
        monotonic time `changed_at`: count its expiry from then, not from this elector's first read."""
        if self._observed is None or not record.same_claim(self._observed):
            self._observed, self._observed_at = record, changed_at
        else:
            self._observed_at = min(self._observed_at, changed_at)

    async def step(self) -> bool:
        """One acquire-or-renew attempt, for a caller that keeps its own schedule (the shard elector runs
        many Leases on one loop). Returns whether we hold the lease now. Raises `LeadershipLost`, as
        `run()` does, when a lease we held was not renewed within the renew deadline or shows another
        holder. A lease released by `release()` is campaigned for again by the next step."""
        held = self._renewed_at is not None
        if not held:
            self._released = False
        elif self._renew_remaining() <= 0:
            self._lose(f"no renewal succeeded within {self._renew_deadline}s")
        limit = min(self._call_timeout, self._renew_remaining()) if held else self._call_timeout
        self._writing_at = self._clock.monotonic()
        if await self._attempt(limit):
            # From when the write was sent for, not when the attempt began: a GET (and its wait for a
            # request slot) before it renews nothing, yet the others count from the change they see.
            self._renewed_at = self._writing_at
            self._leading.set()
            return True
        if held:
            holder = self.observed_holder
            if holder and holder != self.identity:
                self._lose(f"the lease is held by {holder}")
            if self._renew_remaining() <= 0:
                self._lose(f"no renewal succeeded within {self._renew_deadline}s")
        return False

    # -- internals ----------------------------------------------------------------------------------
    @property
    def _ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @staticmethod
    async def _call(lead: Callable[[], Awaitable[object]]) -> None:
        await lead()

    async def _acquire(self) -> None:
        while True:
            self._writing_at = self._clock.monotonic()
            if await self._attempt(self._call_timeout):
                self._renewed_at = self._writing_at
                self._leading.set()
                log.info("became leader", lease=self._ref, identity=self.identity)
                return
            await self._clock.sleep(self._retry_period * (1 + self._rng.random() * self._jitter_factor))

    async def _keep_renewing(self) -> None:
        while True:
            await self._clock.sleep(self._retry_period)
            while True:
                if self._released:
                    raise LeadershipLost("the lease was released")
                remaining = self._renew_remaining()
                if remaining <= 0:
                    self._lose(f"no renewal succeeded within {self._renew_deadline}s")
                self._writing_at = self._clock.monotonic()
                if await self._attempt(min(self._call_timeout, remaining)):
                    self._renewed_at = self._writing_at
                    break
                holder = self.observed_holder
                if holder and holder != self.identity:
                    self._lose(f"the lease is held by {holder}")
                await self._clock.sleep(min(self._retry_period, max(self._renew_remaining(), 0.0)))

    def _renew_remaining(self) -> float:
        if self._renewed_at is None:
            return 0.0
        return self._renewed_at + self._renew_deadline - self._clock.monotonic()

    def _lose(self, reason: str) -> NoReturn:
        self._stop_leading()
        log.error("lost leadership", lease=self._ref, identity=self.identity, reason=reason)
        raise LeadershipLost(reason)

    def _stop_leading(self) -> None:
        self._renewed_at = None
        self._leading.clear()

    async def _attempt(self, limit: float) -> bool:
        try:
            async with timeout(self._clock, limit):
                return await self._try_acquire_or_renew()
        except TimeoutError:
            log.warning("lease request timed out", lease=self._ref, timeout=limit)
        except Exception as exc:  # an API failure is a failed attempt, retried
            log.warning("lease request failed", lease=self._ref, error=repr(exc))
        return False

    async def _try_acquire_or_renew(self) -> bool:
        if self._released:
            return False
        now = self._clock.now()
        # Fast path (client-go does the same): the leader writes over the record it last wrote, whose
        # resourceVersion is still current unless someone else wrote meanwhile.
        if self.is_leader and self._observed is not None and self._lease_valid():
            try:
                self._observe(await self._store.update(self._claim(self._observed, now)))
                return True
            except ConflictError:
                log.debug("lease changed under us; re-reading", lease=self._ref)
        current = await self._store.get(self.name, self.namespace)
        if current is None:
            fresh = LeaseRecord(self.name, self.namespace, lease_duration_seconds=self._lease_duration)
            try:
                self._writing_at = self._clock.monotonic()
                self._observe(await self._store.create(self._claim(fresh, now, takeover=False)))
            except ConflictError:
                log.debug("another candidate created the lease first", lease=self._ref)
                return False
            return True
        if self._observed is None or not current.same_claim(self._observed):
            self._observe(current)
        else:
            self._observed = current  # same claim: keep the time we first saw it, take the new version
        if current.holder_identity not in ("", self.identity) and self._lease_valid():
            return False
        try:
            self._writing_at = self._clock.monotonic()
            self._observe(await self._store.update(self._claim(current, now)))
        except ConflictError:
            log.debug("lost the race for the lease", lease=self._ref)
            return False
        return True

    def _claim(self, base: LeaseRecord, now: datetime, *, takeover: bool = True) -> LeaseRecord:
        """`base` rewritten to name us the holder as of `now`."""
        if base.holder_identity == self.identity:
            return replace(base, lease_duration_seconds=self._lease_duration, renew_time=now)
        return replace(
            base,
            holder_identity=self.identity,
            lease_duration_seconds=self._lease_duration,
            acquire_time=now,
            renew_time=now,
            lease_transitions=base.lease_transitions + 1 if takeover else base.lease_transitions,
        )

    def _observe(self, record: LeaseRecord) -> None:
        self._observed = record
        self._observed_at = self._clock.monotonic()

    def _lease_valid(self) -> bool:
        observed = self._observed
        return (
            observed is not None
            and self._observed_at + observed.lease_duration_seconds > self._clock.monotonic()
        )


async def _cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel `task` and wait until it has finished unwinding (without raising its CancelledError)."""
    task.cancel()
    await asyncio.wait({task})
