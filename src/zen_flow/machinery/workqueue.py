"""client-go's rate-limited work queue (`util/workqueue`), ported to asyncio.

Guarantees, as in client-go:

* **Fair**: keys are handed out in the order they were added (FIFO), within two priorities; with
  `group_of`, keys of each priority take turns between their groups (a tenant's namespace:
  queue_lines.py), so one group's backlog never queues another group's key behind all of it.
* **No group holds every worker**: with `group_limit`, at most that many keys of one group are processed
  at once (with `group_low_limit`, at most that many of them low). Run more workers than `group_limit`
  and one group's slow keys (a tenant's Job creates waiting on a slow admission webhook of its namespace,
  10-30 s each) leave workers to the others; the limit holds a group back only while it has that many
  keys in hand, so one group alone goes as fast as before.
* **Groups with nothing in hand find a worker**: with `workers` and `reserve`, a group that has a key in
  hand takes another only while more than `reserve` workers are free (group_limits.py): two groups' slow
  keys do not hold every worker between them, and a group with none in hand is served at once while the
  reserve lasts.
* **Work in progress first**: a key added with `Priority.LOW` (a flow that has not started yet, a periodic
  resync) waits behind `Priority.NORMAL` keys (a Job of a running flow changed), so a burst of new flows
  does not queue the next step of every running flow behind all of their first reconciles (measured:
  1,000 flows created at once held transitions for up to 13 s). Unlike controller-runtime's priority queue
  (strict order) a low key is never starved: while low keys wait, every `NORMAL_STREAK + 1`-th key handed
  out is a low one. A key keeps the highest priority it was added with until it is handed out.
  With `low_limit`, at most that many low keys are processed at once: the other workers stay free for
  normal keys (while 1,000 new flows started, a running flow's next step waited 12-25 ms at p50 for a
  worker without it, well under 1 ms with it; docs/BENCHMARKS.md).
* **Stingy**: a key waiting in the queue is held once, however often it is added (the `dirty` map);
  a key is never handed to two workers at once (the `processing` set). Adding a key that a worker is
  processing marks it dirty; `done()` then puts it back in the queue, so the change is seen again.
* **Delayed and rate-limited adds**: `add_after` keeps only the earliest pending timer per key, and
  `cancel_after` drops it (the key's object was deleted); `add_rate_limited` asks the limiter for the
  delay (per-key backoff, global bucket); `forget` clears the key's failure history and must be called
  when a key succeeds.
* **Shutdown notification**: `get()` raises `QueueShutDown` once there is nothing more to hand out.

Worker loop::

    while True:
        try:
            key = await queue.get()
        except QueueShutDown:
            return
        try:
            requeue_after = await reconcile(key)
        except Exception:
            queue.add_rate_limited(key)          # back off
        else:
            queue.forget(key)                    # success: reset the backoff
            if requeue_after is not None:
                queue.add_after(key, requeue_after)
        finally:
            queue.done(key)                      # always, or the key is stuck forever

Everything runs on one event loop, and no method awaits between reading and changing the queue's state,
so no lock is needed. Timers come from the injected clock (`Clock.call_later`), so no background task is
owned by the queue and `FakeClock` drives delayed adds in tests.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable, Hashable
from enum import IntEnum
from typing import Generic, TypeVar

from zen_flow.machinery.clock import Clock, SystemClock, Timer
from zen_flow.machinery.group_limits import GroupLimits
from zen_flow.machinery.queue_lines import Line, TurnLine
from zen_flow.machinery.queue_metrics import NoQueueMetrics, QueueMetrics
from zen_flow.machinery.ratelimit import RateLimiter, default_controller_rate_limiter

K = TypeVar("K", bound=Hashable)


class Priority(IntEnum):
    """Which of the queue's two lines a key waits in (higher is served first)."""

    LOW = 0
    NORMAL = 1


# While low keys wait, at most this many normal keys are handed out in a row before a low one.
NORMAL_STREAK = 4


class QueueShutDown(Exception):
    """Raised by `WorkQueue.get()` once the queue is shut down and has nothing left to hand out."""


class WorkQueue(Generic[K]):
    """A deduplicating two-priority FIFO of keys with delayed and rate-limited adds (module docstring).

    Parameters (keyword-only):
        name: the `name` label passed to the metrics hooks.
        clock: time source for delays and durations (default `SystemClock()`).
        rate_limiter: consulted by `add_rate_limited` (default client-go's controller limiter).
        metrics: event hooks (default: none).
        low_limit: at most this many low keys are processed at once (default: no limit), so that a
            burst of low keys leaves workers free for normal ones.
        group_of: keys of different groups take turns within each priority (default: one FIFO line
            per priority), so that a burst of one group's keys does not hold another group's back.
        group_limit, group_low_limit: at most that many keys of one group (of them low) are processed at
            once (default: no limit; needs `group_of`).
        workers, reserve: with `workers` workers taking keys, a group with a key in hand takes another
            only while more than `reserve` of them are free (default: no reserve; needs `group_of`).
    """

    def __init__(
        self,
        *,
        name: str = "",
        clock: Clock | None = None,
        rate_limiter: RateLimiter | None = None,
        metrics: QueueMetrics | None = None,
        low_limit: int | None = None,
        group_of: Callable[[K], Hashable] | None = None,
        group_limit: int | None = None,
        group_low_limit: int | None = None,
        workers: int | None = None,
        reserve: int | None = None,
    ) -> None:
        self._groups = GroupLimits(
            limit=group_limit, low_limit=group_low_limit, workers=workers, reserve=reserve
        )
        if group_of is None and self._groups.limited:
            raise ValueError("a limit per group needs group_of")
        self.name = name
        self._low_limit = low_limit
        self._group_of = group_of
        self._clock: Clock = clock or SystemClock()
        self._limiter: RateLimiter = rate_limiter or default_controller_rate_limiter(self._clock)
        self._metrics: QueueMetrics = metrics or NoQueueMetrics()
        # One line per priority, of (sequence, key): an entry is live while `_queued[key]` is its sequence,
        # so raising a waiting key's priority appends a new entry and leaves the old one to be skipped.
        self._queued: dict[K, int] = {}

        def line() -> Line[K] | TurnLine[K]:
            return Line(self._is_live) if group_of is None else TurnLine(self._is_live, group_of)

        self._lines: tuple[Line[K] | TurnLine[K], Line[K] | TurnLine[K]] = (line(), line())
        self._sequence = itertools.count()
        self._streak = 0  # normal keys handed out in a row while low keys waited
        self._dirty: dict[K, Priority] = {}  # key -> highest priority it was added with since it got dirty
        self._processing: dict[K, float] = {}  # key -> monotonic time of its get()
        self._processing_low: set[K] = set()  # keys being processed that were handed out as low
        self._added_at: dict[K, float] = {}  # key -> monotonic time it became dirty
        self._waited: dict[K, float] = {}  # key being processed -> seconds it waited before its get()
        self._timers: dict[K, tuple[float, Timer]] = {}  # key -> (deadline, timer): earliest only
        self._getters: deque[asyncio.Future[None]] = deque()
        self._shutting_down = False
        self._drained = asyncio.Event()

    # -- producers ----------------------------------------------------------------------------------
    def add(self, key: K, priority: Priority = Priority.NORMAL) -> None:
        """Queue `key` unless it is already waiting (then only raise its priority); ignored after shutdown."""
        if self._shutting_down:
            return
        held = self._dirty.get(key)
        if held is not None:
            if priority > held:
                self._dirty[key] = priority
                if key in self._queued:
                    self._enqueue(key, priority)  # moves up a line; its old entry is skipped
                    # A worker kept idle for the higher lines (the low ones were all taken) may take it.
                    self._wake_one()
            return
        self._dirty[key] = priority
        self._added_at.setdefault(key, self._clock.monotonic())
        self._metrics.add(self.name)
        self._metrics.depth(self.name, len(self._dirty))
        if key in self._processing:
            return  # done() re-queues it: never two workers on one key
        self._enqueue(key, priority)
        self._wake_one()

    def add_after(self, key: K, delay: float, priority: Priority = Priority.NORMAL) -> None:
        """Add `key` (at `priority`) once `delay` seconds have passed; a later deadline never replaces an
        earlier one."""
        if self._shutting_down:
            return
        self._metrics.retry(self.name)
        if delay <= 0:
            self.add(key, priority)
            return
        deadline = self._clock.monotonic() + delay
        pending = self._timers.get(key)
        if pending is not None:
            if pending[0] <= deadline:
                return
            pending[1].cancel()
        timer = self._clock.call_later(delay, lambda: self._fire(key, deadline, priority))
        self._timers[key] = (deadline, timer)

    def cancel_after(self, key: K) -> None:
        """Drop `key`'s pending `add_after` timer, if any (its object was deleted: a finished flow's TTL
        wake-up, a CronJobFlow's next run time would otherwise stay on the event loop until due, up to a
        day or a year). A key already queued stays queued."""
        pending = self._timers.pop(key, None)
        if pending is not None:
            pending[1].cancel()

    def add_rate_limited(self, key: K, priority: Priority = Priority.NORMAL) -> None:
        """Add `key` (at `priority`) after the delay the rate limiter assigns it (counts one more failure)."""
        self.add_after(key, self._limiter.when(key), priority)

    def forget(self, key: K) -> None:
        """Clear `key`'s failure history (its next `add_rate_limited` starts from the base delay)."""
        self._limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        return self._limiter.num_requeues(key)

    # -- consumers ----------------------------------------------------------------------------------
    async def get(self) -> K:
        """Wait for a key and mark it processing; the caller must call `done(key)` (in a `finally`).

        Raises `QueueShutDown` after `shutdown()`, or after `shutdown_with_drain()` once the queue is
        empty. A getter cancelled while waiting takes no key.
        """
        while True:
            if self._takeable():
                return self._take()
            if self._shutting_down and not self._queued:  # low keys held back by the limit still wait
                raise QueueShutDown
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # we were woken for a key we will not take: pass the wakeup on
                raise

    def done(self, key: K) -> None:
        """Finish processing `key`; if it was added meanwhile, it goes to the back of its priority's line."""
        started = self._processing.pop(key, None)
        if started is None:
            raise ValueError(f"done({key!r}) for a key that is not being processed")
        low = key in self._processing_low
        self._processing_low.discard(key)
        if self._group_of is not None:
            self._groups.released(self._group_of(key), low=low)
        if low or self._groups.limited:
            if self._shutting_down and not self._queued:
                self._wake_all()  # getters that waited for held-back keys: nothing is left for them
            elif self._takeable():
                self._wake_one()  # a key may have been held back by a limit
        self._waited.pop(key, None)
        self._metrics.work_duration(self.name, self._clock.monotonic() - started)
        priority = self._dirty.get(key)
        if priority is not None:
            self._enqueue(key, priority)
            self._wake_one()
        self._check_drained()

    def waited(self, key: K) -> float | None:
        """For a key being processed: how long it waited, from the add that made it dirty to its `get()`
        (what `queue_duration` observed); None for any other key."""
        return self._waited.get(key)

    # -- shutdown -----------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop now: later adds are ignored, pending delayed adds and queued keys are dropped, and every
        waiting or future `get()` raises `QueueShutDown`. Keys being processed may still call `done`.

        Unlike client-go's `ShutDown` (which still hands out queued items) this drops them: reconcile is
        level-based, so a key dropped here is picked up again by whoever reconciles next.
        """
        self._begin_shutdown()
        for line in self._lines:
            line.clear()
        self._queued.clear()
        self._dirty.clear()
        self._added_at.clear()
        self._metrics.depth(self.name, 0)
        self._wake_all()
        self._check_drained()

    async def shutdown_with_drain(self) -> None:
        """Stop accepting adds, keep handing out the keys already queued, and return once the queue is
        empty and every key handed out is `done` (client-go's `ShutDownWithDrain`). Getters raise
        `QueueShutDown` as soon as nothing is left to hand out. Bound it with a timeout if workers may hang.
        """
        self._begin_shutdown()
        self._wake_all()
        self._check_drained()
        await self._drained.wait()

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    # -- introspection ------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Keys queued and ready to be handed out (not counting keys being processed or delayed)."""
        return len(self._queued)

    @property
    def processing(self) -> frozenset[K]:
        return frozenset(self._processing)

    @property
    def delayed(self) -> int:
        """Keys waiting on an `add_after` timer."""
        return len(self._timers)

    def unfinished_work_seconds(self) -> float:
        """Sum of the time every in-progress key has been processing (workqueue_unfinished_work_seconds)."""
        now = self._clock.monotonic()
        return sum(now - started for started in self._processing.values())

    def longest_running_processor_seconds(self) -> float:
        """How long the oldest in-progress key has been processing (0 when idle)."""
        if not self._processing:
            return 0.0
        return self._clock.monotonic() - min(self._processing.values())

    # -- internals ----------------------------------------------------------------------------------
    def _enqueue(self, key: K, priority: Priority) -> None:
        sequence = next(self._sequence)
        self._queued[key] = sequence
        self._lines[priority].append((sequence, key))

    def _is_live(self, entry: tuple[int, K]) -> bool:
        return self._queued.get(entry[1]) == entry[0]  # else it moved up a line, or was handed out

    def _low_allowed(self) -> bool:
        return self._low_limit is None or len(self._processing_low) < self._low_limit

    def _takeable(self) -> bool:
        normal, low = self._groups.eligible()
        return self._lines[Priority.NORMAL].has(normal) or (
            self._low_allowed() and self._lines[Priority.LOW].has(low)
        )

    def _take(self) -> K:
        normal_ok, low_ok = self._groups.eligible()
        normal, low = self._lines[Priority.NORMAL], self._lines[Priority.LOW]
        has_low = self._low_allowed() and low.has(low_ok)
        if normal.has(normal_ok) and (not has_low or self._streak < NORMAL_STREAK):
            self._streak = self._streak + 1 if has_low else 0
            key = normal.popleft(normal_ok)
            handed_out_low = False
        else:
            self._streak = 0
            key = low.popleft(low_ok)
            self._processing_low.add(key)
            handed_out_low = True
        if self._group_of is not None:
            self._groups.taken(self._group_of(key), low=handed_out_low)
        del self._queued[key]
        del self._dirty[key]
        now = self._clock.monotonic()
        self._processing[key] = now
        added = self._added_at.pop(key, None)
        if added is not None:
            self._waited[key] = now - added
            self._metrics.queue_duration(self.name, now - added)
        self._metrics.depth(self.name, len(self._dirty))
        if self._takeable():
            self._wake_one()  # several keys may have arrived while fewer getters were woken
        return key

    def _fire(self, key: K, deadline: float, priority: Priority) -> None:
        pending = self._timers.get(key)
        if pending is not None and pending[0] == deadline:
            del self._timers[key]
            self.add(key, priority)

    def _wake_one(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _wake_all(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _begin_shutdown(self) -> None:
        self._shutting_down = True
        for _, timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _check_drained(self) -> None:
        if self._shutting_down and not self._queued and not self._processing:
            self._drained.set()
