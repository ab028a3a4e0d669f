"""Retry rules: how many retries a step gets, the flow-wide budget, and the delay before each retry.

Defaults (JOBFLOW_API.md decisions 4 and 15): a step retries only with a `retryPolicy`; `limit` absent
means 3 and `limit: 0` means no retry (the original turned 0 into 3). The flow-wide budget is
`executionPolicy.backoffLimit` (default 6) retries in total. The delay for retry n (n = retries done so
far) is Exponential `duration * factor**n` (factor 2), Linear `duration * (n + 1)`, or Fixed `duration`,
with `duration` 10s and a cap of `maxDuration` (1h). A missing backoff means Exponential.
"""

from __future__ import annotations

import math

from zen_flow.api.constants import DEFAULT_BACKOFF_LIMIT, BackoffType, retries_allowed
from zen_flow.api.jobflow import JobFlow, RetryPolicy, Step
from zen_flow.core.durations import parse_duration as go_duration

DEFAULT_BACKOFF_DURATION = 10.0
DEFAULT_BACKOFF_FACTOR = 2.0
DEFAULT_BACKOFF_CAP = 3600.0


def parse_duration(text: str) -> float:
    """A Go duration ("500ms", "10s", "1m30s", "2h", "1.5h") in seconds; raises ValueError otherwise."""
    seconds = go_duration(text.strip())
    if seconds is None:
        raise ValueError(f"invalid duration {text!r}: use e.g. 500ms, 10s, 1m30s, 2h")
    return float(seconds)


def _duration_or(text: str | None, default: float) -> float:
    if text is None:
        return default
    try:
        seconds = parse_duration(text)
    except ValueError:
        return default  # the validator reports it; the planner must not crash
    return seconds if seconds > 0 and math.isfinite(seconds) else default


def retry_limit(step: Step) -> int:
    policy = step.retry_policy
    if policy is None or step.is_manual:
        return 0
    return retries_allowed(policy.limit)


def retry_budget(flow: JobFlow) -> int:
    """Retries allowed in the whole flow (`executionPolicy.backoffLimit`)."""
    policy = flow.spec.execution_policy
    limit = policy.backoff_limit if policy is not None else None
    return DEFAULT_BACKOFF_LIMIT if limit is None else max(0, limit)


def retry_delay(policy: RetryPolicy | None, retries_done: int) -> float:
    """Seconds to wait before the next attempt, capped."""
    backoff = policy.backoff if policy is not None else None
    kind = (backoff.type if backoff is not None else None) or BackoffType.EXPONENTIAL
    base = _duration_or(backoff.duration if backoff is not None else None, DEFAULT_BACKOFF_DURATION)
    cap = _duration_or(backoff.max_duration if backoff is not None else None, DEFAULT_BACKOFF_CAP)
    n = max(0, retries_done)
    if kind == BackoffType.FIXED:
        delay = base
    elif kind == BackoffType.LINEAR:
        delay = base * (n + 1)
    else:
        factor = backoff.factor if backoff is not None and backoff.factor is not None else None
        if factor is None or not math.isfinite(factor) or factor < 1.0:
            factor = DEFAULT_BACKOFF_FACTOR
        # Compare exponents instead of computing a power that could overflow a float.
        if cap <= base or (factor > 1.0 and n * math.log(factor) > math.log(cap / base)):
            delay = cap
        else:
            delay = base * factor**n
    return min(delay, cap)
