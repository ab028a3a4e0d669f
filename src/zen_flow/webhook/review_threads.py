"""Where the admission reviews' pure work runs: a few threads of the webhook's own, which namespaces share
in turns, and a bound on how long a review waits for one.

Decoding and validating a new 500-step flow takes tens of milliseconds, and more when its `when`s must be
compiled: off the event loop, in a thread. They ran in the loop's default executor, first come first
served, shared with whatever else uses it: 64 connections sending distinct 500-step flows from one
namespace made another namespace's one-step review wait 3.9 s (median) and up to 5.7 s, past the
apiserver's `timeoutSeconds` of 5, and `kubectl create --dry-run=server` lets any tenant send such a flood
through the apiserver. Now each piece of a review's work (webhook/handlers.py) asks for a thread for its
namespace (machinery/fair_slots.py, as plan threads do: controller/plan_cpu.py): a namespace holds at
most `per_namespace` of the `threads` at once, and a free thread goes to the waiting namespace that holds
the fewest, in turns, so another namespace's review waits for at most one piece of work per namespace
ahead of it, never for a tenant's whole queue: in the same flood, 34 ms (median) and at most 0.45 s.
With one interpreter lock more threads would not review faster: they bound how long the others wait.

A review that has not got its thread `max_wait` seconds after it arrived is not kept waiting past the
apiserver's deadline, to fail there as an unanswered call: it is denied at once with code 429
(TooManyRequests, `retryAfterSeconds: 1`), which the apiserver hands to the client as the write's
answer, with `Retry-After: 1` (tests/integration/test_admission.py), and client-go retries it. Work
already under way is not cut. A namespace's line is not cut short by its length: denying a flood's
excess at once only made its client send the next at once, and the event loop's work on those bodies
(TLS, parsing) slowed every other review (1.3 s median in the flood above). Which namespace a
review is from is read from its body before any thread (the request's `uid` and `namespace` only: a
~1 ms scan of a 375 KB review on the event loop); a body that does not say is in the lane of the
namespace "" (cluster-scoped objects, and bodies the review will answer 400).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from zen_flow.machinery.fair_slots import FairSlots
from zen_flow.webhook.pressure import LoadMetrics, Refusals
from zen_flow.webhook.review import deny

T = TypeVar("T")


@dataclass(frozen=True)
class ReviewLimits:
    threads: int = 2
    per_namespace: int = 1
    max_wait: float = 3.0  # seconds from a review's arrival; below the webhooks' timeoutSeconds (5)


DEFAULT_REVIEW_LIMITS = ReviewLimits()


class Busy(Exception):
    """The review's work found no thread in time (`why`)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class _Request(msgspec.Struct):
    uid: str = ""
    namespace: str = ""


class _Head(msgspec.Struct):
    request: _Request | None = None


_HEAD = msgspec.json.Decoder(_Head)


class ReviewThreads:
    def __init__(
        self,
        limits: ReviewLimits = DEFAULT_REVIEW_LIMITS,
        *,
        metrics: LoadMetrics | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self._slots = FairSlots(limits.threads, limits.per_namespace)
        self._metrics = metrics
        self._monotonic = monotonic
        self._pool: ThreadPoolExecutor | None = None  # started on first use
        self._refusals = Refusals("admission review denied unreviewed: no review thread for it")

    def now(self) -> float:
        """The clock a review's arrival is told by (`lane`)."""
        return self._monotonic()

    def lane(self, body: bytes, arrived: float | None = None) -> Lane:
        """The lane of a review (`arrived`: when its request came, by `monotonic`; default now)."""
        uid, namespace = _head(body)
        since = self._monotonic() if arrived is None else arrived
        return Lane(self, namespace, uid, since + self.limits.max_wait)

    def waiting(self, namespace: str) -> int:
        """Pieces of work of `namespace` waiting for a thread now."""
        return self._slots.waiting(namespace)

    async def run(self, lane: Lane, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        namespace, limits = lane.namespace, self.limits
        asked = self._monotonic()
        try:
            async with asyncio.timeout(lane.deadline - asked):
                await self._slots.take(namespace)
        except TimeoutError:
            raise self._busy(lane, f"none within {limits.max_wait:g}s") from None
        finally:
            if self._metrics is not None:
                self._metrics.review_waited(self._monotonic() - asked)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.limits.threads, thread_name_prefix="zen-flow-admission")
        # In the request's context, as `asyncio.to_thread` would: its log lines keep their fields.
        call = functools.partial(contextvars.copy_context().run, work, *args, **kwargs)
        try:
            done = self._pool.submit(call)
        except BaseException:
            self._slots.give_back(lane.namespace)
            raise
        loop = asyncio.get_running_loop()
        # Given back when the work ends, not when this await does: a cancelled await (the server
        # stopping) does not stop the thread, which must count as taken until it is free.
        done.add_done_callback(lambda _: _call_soon(loop, self._slots.give_back, lane.namespace))
        return await asyncio.wrap_future(done)

    def _busy(self, lane: Lane, why: str) -> Busy:
        self._refusals.note(namespace=lane.namespace, waiting=self.waiting(lane.namespace))
        if self._metrics is not None:
            self._metrics.review_shed("queue_wait")
        return Busy(why)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


@dataclass(frozen=True)
class Lane:
    """One review's way to the threads: its namespace's turns, and the time past which it waits no more."""

    threads: ReviewThreads
    namespace: str
    uid: str | None
    deadline: float

    async def run(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`work(*args, **kwargs)` in a review thread, in the namespace's turn; `Busy` past the deadline."""
        return await self.threads.run(self, work, *args, **kwargs)

    def refusal(self, busy: Busy) -> dict[str, Any] | None:
        """The denial of a review that found no thread (None: its body names no uid to answer)."""
        if not self.uid:
            return None
        message = (
            f"the zen-flow admission webhook is busy: no review thread for this review of "
            f"{_where(self.namespace)} ({busy.why}); retry in a moment"
        )
        return deny(self.uid, 429, "TooManyRequests", message, {"retryAfterSeconds": 1})


def _where(namespace: str) -> str:
    return f"namespace {namespace!r}" if namespace else "cluster-scoped objects"


def _head(body: bytes) -> tuple[str | None, str]:
    """The request's uid and namespace, when the body says them."""
    try:
        request = _HEAD.decode(body).request
    except (msgspec.DecodeError, RecursionError):
        return None, ""
    return (request.uid or None, request.namespace) if request is not None else (None, "")


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[str], None], namespace: str) -> None:
    # From the pool's thread (or from `close`, cancelling work not started): on the loop.
    with contextlib.suppress(RuntimeError):  # the loop is closed: no one waits for a thread any more
        loop.call_soon_threadsafe(callback, namespace)
