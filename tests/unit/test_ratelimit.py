"""Rate limiters: per-item exponential backoff, token buckets (reserve semantics), max-of, defaults."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zen_flow.machinery.ratelimit import (
    GroupTokenBucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    SharedTokens,
    TokenBucket,
    TokenBucketRateLimiter,
    default_controller_rate_limiter,
)
from zen_flow_dev.testing.clock import FakeClock, settle


def test_exponential_backoff_doubles_from_5ms_and_caps_at_1000s() -> None:
    limiter = ItemExponentialFailureRateLimiter()
    delays = [limiter.when("ns/a") for _ in range(22)]
    assert delays[:5] == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.08])
    assert delays[17] == pytest.approx(0.005 * 2**17)  # 655.36 s, still under the cap
    assert delays[18:] == [1000.0] * 4
    assert limiter.num_requeues("ns/a") == 22


def test_backoff_is_per_item_and_forget_starts_over() -> None:
    limiter = ItemExponentialFailureRateLimiter(base_delay=1.0, max_delay=60.0)
    for _ in range(3):
        limiter.when("a")
    assert limiter.when("b") == 1.0
    assert limiter.num_requeues("a") == 3
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert limiter.when("a") == 1.0
    assert limiter.num_requeues("b") == 1


@given(failures=st.integers(min_value=0, max_value=5000))
def test_backoff_never_exceeds_the_cap_nor_overflows(failures: int) -> None:
    limiter = ItemExponentialFailureRateLimiter(base_delay=0.005, max_delay=1000.0)
    limiter._failures["k"] = failures  # jump straight to the n-th failure
    delay = limiter.when("k")
    assert 0.005 <= delay <= 1000.0
    if failures < 18:
        assert delay == pytest.approx(0.005 * 2**failures)
    else:
        assert delay == 1000.0


def test_invalid_backoff_parameters_are_rejected() -> None:
    with pytest.raises(ValueError, match="base_delay"):
        ItemExponentialFailureRateLimiter(base_delay=0)
    with pytest.raises(ValueError, match="base_delay"):
        ItemExponentialFailureRateLimiter(base_delay=2, max_delay=1)


def test_token_bucket_allows_the_burst_then_spaces_by_rate() -> None:
    clock = FakeClock()
    limiter = TokenBucketRateLimiter(qps=10, burst=100, clock=clock)
    assert [limiter.when(i) for i in range(100)] == [0.0] * 100
    # Reserve semantics: never refuses, each further caller waits one more 1/qps.
    assert [limiter.when(i) for i in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert limiter.num_requeues(0) == 0


def test_token_bucket_refills_over_time_up_to_the_burst() -> None:
    clock = FakeClock()
    limiter = TokenBucketRateLimiter(qps=2, burst=3, clock=clock)
    assert [limiter.when("x") for _ in range(3)] == [0.0, 0.0, 0.0]
    clock.jump(1.0)  # two tokens earned
    assert [limiter.when("x") for _ in range(3)] == pytest.approx([0.0, 0.0, 0.5])
    clock.jump(3600.0)  # a long idle period refills to the burst, not beyond
    assert [limiter.when("x") for _ in range(4)] == pytest.approx([0.0, 0.0, 0.0, 0.5])


def test_token_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="qps"):
        TokenBucketRateLimiter(qps=0, burst=1, clock=FakeClock())
    with pytest.raises(ValueError, match="burst"):
        TokenBucketRateLimiter(qps=1, burst=0, clock=FakeClock())


def test_infinite_qps_never_waits() -> None:
    limiter = TokenBucketRateLimiter(qps=float("inf"), burst=1, clock=FakeClock())
    assert {limiter.when(i) for i in range(1000)} == {0.0}


def test_max_of_takes_the_longest_delay_and_forgets_everywhere() -> None:
    slow = ItemExponentialFailureRateLimiter(base_delay=1.0, max_delay=100.0)
    fast = ItemExponentialFailureRateLimiter(base_delay=0.1, max_delay=100.0)
    limiter = MaxOfRateLimiter(fast, slow)
    assert [limiter.when("k") for _ in range(3)] == [1.0, 2.0, 4.0]
    assert fast.num_requeues("k") == 3  # every limiter counted every failure
    assert limiter.num_requeues("k") == 3
    limiter.forget("k")
    assert (slow.num_requeues("k"), fast.num_requeues("k")) == (0, 0)
    with pytest.raises(ValueError, match="at least one"):
        MaxOfRateLimiter()


def test_default_controller_limiter_is_backoff_bounded_by_10_qps_burst_100() -> None:
    clock = FakeClock()
    limiter = default_controller_rate_limiter(clock)
    # 100 different keys failing at once: the burst absorbs them, each gets its own 5 ms.
    assert {limiter.when(f"ns/{i}") for i in range(100)} == {0.005}
    # The 101st failure anywhere waits for the global bucket (0.1 s at 10 qps).
    assert limiter.when("ns/other") == pytest.approx(0.1)
    # A single key failing repeatedly is governed by its own backoff once that exceeds the bucket.
    clock.jump(100.0)
    delays = [limiter.when("ns/0") for _ in range(4)]
    assert delays == pytest.approx([0.01, 0.02, 0.04, 0.08])
    limiter.forget("ns/0")
    assert limiter.num_requeues("ns/0") == 0


def test_per_namespace_limiter_keeps_one_tenants_failures_from_delaying_anothers_retry() -> None:
    clock = FakeClock()
    limiter = default_controller_rate_limiter(clock, group_of=lambda key: str(key).partition("/")[0])
    # Tenant a: 1,000 flows failing at once put a's bucket ~90 s into debt ...
    delays = [limiter.when(f"a/{i}") for i in range(1000)]
    assert max(delays) == pytest.approx(90.0)
    # ... while b's first failure is retried after its own 5 ms, not behind a's 1,000.
    assert limiter.when("b/only") == 0.005
    assert limiter.when("a/new") == pytest.approx(90.1)


def test_group_buckets_that_refilled_are_forgotten() -> None:
    clock = FakeClock()
    limiter = GroupTokenBucketRateLimiter(
        lambda key: str(key).partition("/")[0], qps=10.0, burst=100, clock=clock
    )
    for i in range(200):
        limiter.when(f"ns-{i}/f")  # one token each: full again a tenth of a second later
    for _ in range(1000):
        limiter.when("busy/f")  # 90 s in debt
    assert len(limiter) == 201
    clock.jump(61.0)
    assert limiter.when("new/f") == 0.0  # a new group sweeps the buckets that are full again ...
    assert len(limiter) == 2  # ... and keeps the one still in debt, which still paces its group
    assert limiter.when("busy/g") == pytest.approx(90.1 - 61.0)


def test_shared_tokens_say_no_rather_than_owe_and_keep_a_share_for_every_group() -> None:
    clock = FakeClock()
    tokens = SharedTokens(10.0, 6, 2.0, 4, monotonic=clock.monotonic)
    taken = [tokens.take("busy") for _ in range(10)]
    assert taken == [True] * 4 + [False] * 6  # its share's burst, then no (no debt: later is as before)
    assert [tokens.take("other") for _ in range(3)] == [True, True, False]  # what the whole has left
    clock.jump(0.5)  # a second token of `busy`'s share, five of the whole
    assert tokens.take("busy")
    assert not tokens.take("busy")
    assert tokens.take("other")
    clock.jump(61.0)
    assert tokens.take("new")  # a new group forgets the shares that are full again
    assert len(tokens) == 1


async def test_async_bucket_lets_the_burst_through_then_paces_callers() -> None:
    clock = FakeClock()
    bucket = TokenBucket(qps=5, burst=2, clock=clock)
    finished: list[float] = []

    async def call() -> None:
        await bucket.acquire()
        finished.append(round(clock.monotonic() - 1000.0, 6))

    tasks = [asyncio.create_task(call()) for _ in range(5)]
    await settle()
    assert finished == [0.0, 0.0]
    await clock.advance(0.2)
    assert finished == [0.0, 0.0, 0.2]
    await clock.advance(1.0)
    assert finished == [0.0, 0.0, 0.2, 0.4, 0.6]
    await asyncio.gather(*tasks)


async def test_async_bucket_gives_the_token_back_when_a_waiter_is_cancelled() -> None:
    clock = FakeClock()
    bucket = TokenBucket(qps=1, burst=1, clock=clock)
    await bucket.acquire()
    waiter = asyncio.create_task(bucket.acquire())
    await settle()
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    await clock.advance(1.0)
    # Without the refund the bucket would be a token in debt and this would have to wait.
    assert bucket.try_acquire()
    assert not bucket.try_acquire()
