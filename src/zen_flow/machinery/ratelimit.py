"""Rate limiters: client-go's controller retry limiters, and a token bucket for API-call QPS.

Two uses, one token-bucket core:

* Work-queue retries (`RateLimiter`): `when(item)` answers "how long before this item may be retried".
  `default_controller_rate_limiter()` is client-go's `DefaultTypedControllerRateLimiter`:
  the max of a per-item exponential backoff (5 ms · 2^failures, capped at 1000 s) and a token bucket
  (10 qps, burst 100), so one broken flow backs off on its own and a storm of failures cannot retry
  faster than ~10/s. With `group_of` the bucket is one per group (a tenant's namespace): client-go's
  single bucket went into debt under one tenant's 1,000 failing flows (403s from its own exhausted quota)
  and made every other tenant's first retry wait ~100 s behind them.
* Client-side API throttling (`TokenBucket`): `await bucket.acquire()` before each API request, like
  client-go's `--kube-api-qps` / `--kube-api-burst` flowcontrol limiter.
* Optional work that may be skipped and tried later (`SharedTokens`): a token of the whole and one of
  the tenant's own share, or none (no debt).

Both buckets use *reserve* semantics (golang.org/x/time/rate `Reserve`): taking a token never fails; if
none is free the bucket goes into debt and the caller is told how long to wait. Time comes from an
injected `Clock`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Hashable
from typing import Protocol

from zen_flow.machinery.clock import Clock


class RateLimiter(Protocol):
    def when(self, item: Hashable) -> float:
        """Record one more failure of `item`; return the seconds to wait before retrying it."""
        ...

    def forget(self, item: Hashable) -> None:
        """`item` succeeded (or was dropped): clear its failure history."""
        ...

    def num_requeues(self, item: Hashable) -> int:
        """How many failures of `item` are on record."""
        ...


class ItemExponentialFailureRateLimiter:
    """Per item `base_delay · 2^failures`, capped at `max_delay`; `forget` starts the item over."""

    def __init__(self, base_delay: float = 0.005, max_delay: float = 1000.0) -> None:
        if base_delay <= 0 or max_delay < base_delay:
            raise ValueError("need 0 < base_delay <= max_delay")
        self._base = base_delay
        self._max = max_delay
        self._failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        exp = self._failures.get(item, 0)
        self._failures[item] = exp + 1
        # Beyond ~2^1023 the float overflows; far earlier than that the cap applies anyway.
        if exp >= 1000:
            return self._max
        return min(self._base * 2.0**exp, self._max)

    def forget(self, item: Hashable) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self._failures.get(item, 0)


class Ticker(Protocol):
    def monotonic(self) -> float: ...


class _Bucket:
    """The token bucket arithmetic of golang.org/x/time/rate, on an injected monotonic clock.

    Starts full (`burst` tokens); refills at `qps` tokens per second up to `burst`. `reserve()` takes
    one token, possibly going negative, and returns how long until that token will have been earned.
    """

    def __init__(self, qps: float, burst: int, clock: Ticker) -> None:
        if qps <= 0:
            raise ValueError("qps must be positive (math.inf disables the limit)")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self._qps = qps
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock.monotonic()

    def reserve(self) -> float:
        if math.isinf(self._qps):
            return 0.0
        self._refill()
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self._qps

    def give_back(self) -> None:
        """Return a reserved token that will not be used (the waiter was cancelled)."""
        if not math.isinf(self._qps):
            self._refill()
            self._tokens = min(self._burst, self._tokens + 1.0)

    def full(self) -> bool:
        """Refilled to the burst: indistinguishable from a new bucket."""
        self._refill()
        return self._tokens >= self._burst

    def _refill(self) -> None:
        now = self._clock.monotonic()
        elapsed = max(0.0, now - self._last)
        self._last = max(self._last, now)
        self._tokens = min(self._burst, self._tokens + elapsed * self._qps)


class TokenBucketRateLimiter:
    """A global limit over all items: `when()` is the delay until the next token, never a refusal.

    It keeps no per-item state, so `forget` does nothing and `num_requeues` is always 0 (as in client-go).
    """

    def __init__(self, qps: float = 10.0, burst: int = 100, *, clock: Clock) -> None:
        self._bucket = _Bucket(qps, burst, clock)

    def when(self, item: Hashable) -> float:
        return self._bucket.reserve()

    def forget(self, item: Hashable) -> None:
        return None

    def num_requeues(self, item: Hashable) -> int:
        return 0


class GroupTokenBucketRateLimiter:
    """`TokenBucketRateLimiter` with one bucket per group of items (`group_of(item)`): one group's
    failures never delay another group's retries. A bucket that has refilled is forgotten (a new one
    starts full), so groups that stopped failing cost nothing."""

    _SWEEP_SECONDS = 60.0

    def __init__(
        self, group_of: Callable[[Hashable], Hashable], qps: float = 10.0, burst: int = 100, *, clock: Clock
    ) -> None:
        _Bucket(qps, burst, clock)  # the same checks as a single bucket's, at once
        self._group_of = group_of
        self._qps, self._burst, self._clock = qps, burst, clock
        self._buckets: dict[Hashable, _Bucket] = {}
        self._swept = clock.monotonic()

    def when(self, item: Hashable) -> float:
        group = self._group_of(item)
        bucket = self._buckets.get(group)
        if bucket is None:
            self._sweep()
            bucket = self._buckets[group] = _Bucket(self._qps, self._burst, self._clock)
        return bucket.reserve()

    def forget(self, item: Hashable) -> None:
        return None

    def num_requeues(self, item: Hashable) -> int:
        return 0

    def __len__(self) -> int:
        return len(self._buckets)

    def _sweep(self) -> None:
        now = self._clock.monotonic()
        if now - self._swept >= self._SWEEP_SECONDS:
            self._swept = now
            self._buckets = {group: b for group, b in self._buckets.items() if not b.full()}


class MaxOfRateLimiter:
    """The longest delay any of `limiters` asks for. Every limiter sees every call, so all keep count."""

    def __init__(self, *limiters: RateLimiter) -> None:
        if not limiters:
            raise ValueError("need at least one limiter")
        self._limiters = limiters

    def when(self, item: Hashable) -> float:
        return max([limiter.when(item) for limiter in self._limiters])

    def forget(self, item: Hashable) -> None:
        for limiter in self._limiters:
            limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return max(limiter.num_requeues(item) for limiter in self._limiters)


def namespace_of(key: Hashable) -> str:
    """The tenant of a work-queue key (`namespace/name`): the group of its bucket and of its queue line."""
    return str(key).partition("/")[0]


def default_controller_rate_limiter(
    clock: Clock, group_of: Callable[[Hashable], Hashable] | None = None
) -> MaxOfRateLimiter:
    """client-go's default: max(per-item 5 ms · 2^n capped at 1000 s, 10 qps with burst 100); the bucket
    is global, or one per group with `group_of`."""
    bucket: RateLimiter = (
        TokenBucketRateLimiter(qps=10.0, burst=100, clock=clock)
        if group_of is None
        else GroupTokenBucketRateLimiter(group_of, qps=10.0, burst=100, clock=clock)
    )
    return MaxOfRateLimiter(ItemExponentialFailureRateLimiter(base_delay=0.005, max_delay=1000.0), bucket)


class TokenBucket:
    """Client-side QPS/burst limit for API calls: `await acquire()` before each request.

    Up to `burst` calls pass at once; after that calls are spaced `1/qps` seconds apart, in the order
    they called `acquire()`. `math.inf` qps disables the limit.
    """

    def __init__(self, qps: float, burst: int, *, clock: Clock) -> None:
        self._bucket = _Bucket(qps, burst, clock)
        self._clock = clock

    async def acquire(self) -> None:
        delay = self._bucket.reserve()
        if delay <= 0:
            return
        try:
            await self._clock.sleep(delay)
        except asyncio.CancelledError:
            # The request will not be sent: do not charge it against later callers.
            self._bucket.give_back()
            raise

    def try_acquire(self) -> bool:
        """Take a token only if one is free right now (no debt); for callers that would rather skip."""
        delay = self._bucket.reserve()
        if delay > 0:
            self._bucket.give_back()
            return False
        return True


class _Ticks:
    def __init__(self, monotonic: Callable[[], float]) -> None:
        self.monotonic = monotonic


class SharedTokens:
    """Tokens for work that may wait (a read that is a hint): `take(group)` takes a token of the whole
    (`qps`, `burst`) and one of the group's own share (`group_qps`, `group_burst`: a tenant's namespace),
    or, when either has none, takes nothing and says no: the caller skips the work and tries later. One
    group alone cannot spend the whole for the others. A group's share that has refilled is forgotten
    (a new one starts full), so groups that stopped taking cost nothing."""

    _SWEEP_SECONDS = 60.0

    def __init__(
        self, qps: float, burst: int, group_qps: float, group_burst: int, *, monotonic: Callable[[], float]
    ) -> None:
        self._ticks = _Ticks(monotonic)
        self._all = _Bucket(qps, burst, self._ticks)
        _Bucket(group_qps, group_burst, self._ticks)  # the same checks, at once
        self._group_qps, self._group_burst = group_qps, group_burst
        self._groups: dict[Hashable, _Bucket] = {}
        self._swept = monotonic()

    def take(self, group: Hashable) -> bool:
        share = self._groups.get(group)
        if share is None:
            self._sweep()
            share = self._groups[group] = _Bucket(self._group_qps, self._group_burst, self._ticks)
        if share.reserve() > 0:
            share.give_back()
            return False
        if self._all.reserve() > 0:
            self._all.give_back()
            share.give_back()
            return False
        return True

    def __len__(self) -> int:
        return len(self._groups)

    def _sweep(self) -> None:
        now = self._ticks.monotonic()
        if now - self._swept >= self._SWEEP_SECONDS:
            self._swept = now
            self._groups = {group: b for group, b in self._groups.items() if not b.full()}
