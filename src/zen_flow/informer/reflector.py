"""The reflector: LIST, then WATCH from the list's resourceVersion, forever (client-go's `ListAndWatch`).

Per scope (one namespace, or all) one reflector keeps `resource_version`, the position in the resource's
history that the cache reflects. Its loop:

- **List** and hand the items to `on_list` (the informer's `Store.replace`, which turns vanished objects
  into DELETED tombstones). The *first* list uses `resourceVersion=""`, a consistent read: `"0"` would
  be cheaper on old apiservers but may serve arbitrarily stale data from the watch cache, and a stale
  first list after a restart or failover could show a deleted JobFlow and make us act on it. Since
  Kubernetes 1.31 (ConsistentListFromCache) `""` is served from the watch cache anyway. Relists after a
  410 ask for "at least as fresh as" our last RV, in pages (the watch cache answers them from 1.33;
  before, etcd does), falling back to `""` if the server still answers Expired (an RV too large for its
  cache).
- **Watch** from `resource_version` with bookmarks, a server-side timeout random in [5, 10) min (to
  spread reconnects), a client timeout 30 s longer, and an inactivity watchdog: kubernetes watches can
  hang silently (kubernetes_asyncio#360), so if nothing (not even a BOOKMARK) arrives for
  `inactivity_timeout`, the watch is dropped and reopened from the last RV.
- Every event advances `resource_version`; a BOOKMARK does only that. A normal end (the server's
  timeout) rewatches at once. `Expired` (410) relists. Any other failure, and a watch that ends within a
  second without a single event (client-go's `VeryShortWatchError`), waits out an exponential backoff:
  0.8 s doubling to 30 s, then up to 100 % jitter on top (30-60 s at the cap, as client-go), reset
  after 2 healthy minutes.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from zen_flow.kube.errors import Expired, KubeError
from zen_flow.kube.streams import Decoder, ListResult, WatchEvent
from zen_flow.logging import get_logger
from zen_flow.machinery.clock import Clock, Timer


class ListerWatcher(Protocol):
    """What a reflector needs from the API (`zen_flow.kube.JobClient`/`JobFlowClient` provide it)."""

    async def list(
        self, namespace: str | None, resource_version: str = "", decoder: Decoder | None = None
    ) -> ListResult:
        """Every object, decoded by `decoder` as it arrives."""
        ...

    def watch(
        self,
        namespace: str | None,
        resource_version: str,
        timeout_seconds: int,
        decoder: Decoder | None = None,
    ) -> AbstractAsyncContextManager[AsyncIterator[WatchEvent]]:
        """Events with their objects decoded by `decoder`."""
        ...


# A watch that ends before this share of the timeout it asked for was ended by the server.
EARLY_CLOSE_FRACTION = 0.9


@dataclass(frozen=True)
class ReflectorOptions:
    min_watch_timeout: int = 300
    max_watch_timeout: int = 600
    # Measured on kube-apiserver 1.36: a quiet watch gets its first BOOKMARK after ~120 s, then one a
    # minute. A shorter watchdog would drop every quiet watch before its first bookmark.
    inactivity_timeout: float = 150.0
    backoff_initial: float = 0.8
    backoff_max: float = 30.0
    backoff_factor: float = 2.0
    backoff_jitter: float = 1.0
    backoff_reset: float = 120.0
    short_watch: float = 1.0


class VeryShortWatch(Exception):
    """The watch closed within `short_watch` seconds without delivering anything."""


class Backoff:
    """client-go's exponential backoff manager: delay doubles per failure, resets after a quiet period."""

    def __init__(self, options: ReflectorOptions, clock: Clock, rng: random.Random) -> None:
        self._options = options
        self._clock = clock
        self._rng = rng
        self._delay = options.backoff_initial
        self._last: float | None = None

    def next(self) -> float:
        opts = self._options
        now = self._clock.monotonic()
        if self._last is not None and now - self._last > opts.backoff_reset:
            self._delay = opts.backoff_initial
        self._last = now
        delay = self._delay
        self._delay = min(self._delay * opts.backoff_factor, opts.backoff_max)
        # Jitter on top of the capped delay, as client-go's wait.Jitter: at the cap, 30-60 s, so a fleet
        # of controllers that lost the apiserver together does not come back in step.
        return delay * (1 + opts.backoff_jitter * self._rng.random())


class _Watchdog:
    """Expires an `asyncio.timeout` once `seconds` pass on `clock` without `feed()`.

    One timer per quiet period, not one per event: when it fires early (events arrived meanwhile) it
    re-arms itself for the remaining time.
    """

    def __init__(self, clock: Clock, seconds: float, deadline: asyncio.Timeout) -> None:
        self._clock = clock
        self._seconds = seconds
        self._deadline = deadline
        self._loop = asyncio.get_running_loop()
        self._last = clock.monotonic()
        self.fired = False
        self._timer: Timer = clock.call_later(seconds, self._check)

    def feed(self) -> None:
        self._last = self._clock.monotonic()

    def cancel(self) -> None:
        self._timer.cancel()

    def _check(self) -> None:
        remaining = self._last + self._seconds - self._clock.monotonic()
        if remaining > 0:
            self._timer = self._clock.call_later(remaining, self._check)
            return
        self.fired = True
        self._deadline.reschedule(self._loop.time())


class Reflector:
    def __init__(
        self,
        name: str,
        source: ListerWatcher,
        namespace: str | None,
        *,
        decoder: Decoder,
        on_list: Callable[[Sequence[Any]], None],
        on_event: Callable[[str, Any], None],
        clock: Clock,
        options: ReflectorOptions | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.resource_version = ""
        self.has_synced = False
        self.synced = asyncio.Event()
        self._source = source
        self._decoder = decoder
        self._on_list = on_list
        self._on_event = on_event
        self._clock = clock
        self._options = options or ReflectorOptions()
        self._rng = rng or random.Random()
        self._backoff = Backoff(self._options, clock, self._rng)
        self.last_progress = clock.monotonic()
        # Why the last list or watch failed, until a list succeeds: readiness says it while not synced.
        self.last_error: str | None = None
        self._expired_streak = False  # the last watch expired and nothing arrived since the relist
        # Watches the server ended well before the timeout we asked for: the apiserver closes the watch
        # of a client that reads too slowly (apiserver_terminated_watchers_total counts them for every
        # client; this says which client it was).
        self.closed_early = 0
        self._log = get_logger(__name__).bind(informer=name, namespace=namespace or "*")

    async def run(self) -> None:
        need_list = True
        list_rv = ""
        while True:
            try:
                if need_list:
                    await self._list(list_rv)
                    need_list = False
                await self._watch()
            except Expired as err:
                if need_list:
                    # The list itself was at an RV the server no longer has (or not yet): read consistently.
                    self._log.info("list resourceVersion unavailable; listing consistently", error=str(err))
                    if list_rv == "":
                        await self._clock.sleep(self._backoff.next())
                    list_rv = ""
                else:
                    self._log.info("watch expired; relisting", resource_version=self.resource_version)
                    if self._expired_streak:
                        # Expired again without a single event since the last relist: do not spin.
                        await self._clock.sleep(self._backoff.next())
                    self._expired_streak = True
                    need_list, list_rv = True, self.resource_version
            except (KubeError, VeryShortWatch) as err:
                # Anything else (a bug in a handler, say) escapes: crash, don't limp.
                self.last_error = str(err) or repr(err)
                delay = self._backoff.next()
                self._log.warning(
                    "list/watch failed; retrying", error=str(err) or repr(err), retry_in=round(delay, 2)
                )
                await self._clock.sleep(delay)

    async def _list(self, resource_version: str) -> None:
        result = await self._source.list(self.namespace, resource_version, self._decoder)
        self._on_list(result.items)
        self.resource_version = result.resource_version
        self.last_error = None
        self._progress()
        if not self.has_synced:
            self.has_synced = True
            self.synced.set()
            self._log.info("synced", objects=len(result.items), resource_version=result.resource_version)

    async def _watch(self) -> None:
        opts = self._options
        timeout_seconds = self._rng.randint(opts.min_watch_timeout, opts.max_watch_timeout)
        started = self._clock.monotonic()
        events = 0
        try:
            async with asyncio.timeout(None) as deadline:
                watchdog = _Watchdog(self._clock, opts.inactivity_timeout, deadline)
                try:
                    async with self._source.watch(
                        self.namespace, self.resource_version, timeout_seconds, self._decoder
                    ) as stream:
                        # Progress is what the stream delivers (`_handle` stamps it; bookmarks too, about
                        # once a minute on a quiet one) or its clean end, not the answer to the request: a
                        # watch cut after its headers every time would otherwise look alive while the
                        # cache stood still.
                        async for event in stream:
                            watchdog.feed()
                            events += 1
                            self._handle(event)
                finally:
                    watchdog.cancel()
        except TimeoutError:
            if not watchdog.fired:
                raise
            self._log.info("watch silent for too long; reopening", seconds=opts.inactivity_timeout)
            return
        lasted = self._clock.monotonic() - started
        if events == 0 and lasted < opts.short_watch:
            raise VeryShortWatch(f"watch closed within {opts.short_watch}s without events")
        if lasted < timeout_seconds * EARLY_CLOSE_FRACTION:
            self.closed_early += 1
            self._log.info(
                "watch closed by the server early; resuming",
                seconds=round(lasted, 1),
                asked=timeout_seconds,
                events=events,
                resource_version=self.resource_version,
            )
        self._progress()

    def _handle(self, event: WatchEvent) -> None:
        self._expired_streak = False
        if event.type in ("ADDED", "MODIFIED", "DELETED"):
            self._on_event(event.type, event.object)
        elif event.type != "BOOKMARK":
            self._log.warning("ignoring unknown watch event type", type=event.type)
        if rv := event.resource_version:
            self.resource_version = rv
        self._progress()

    def _progress(self) -> None:
        self.last_progress = self._clock.monotonic()
