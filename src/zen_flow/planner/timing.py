"""Time arithmetic for the planner. Status timestamps have second precision (metav1.Time), so every
instant the planner stores is a whole second; wake-ups are rounded up so nothing fires early."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

# A condition the evaluator deferred (`Deferred`: a `when`, a retryPolicy.expression) is looked at again
# after this; one it could not evaluate at all (`Unavailable`: its worker does not start) after the
# longer delay, so that a broken sandbox is not asked again every second by every waiting flow.
DEFERRED_RETRY_SECONDS = 1.0
UNAVAILABLE_RETRY_SECONDS = 10.0


def normalize(now: datetime) -> datetime:
    """`now` in UTC, truncated to the second (a naive datetime is taken as UTC)."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(UTC).replace(microsecond=0)


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def after(start: datetime, seconds: float) -> datetime:
    """`start + seconds`, rounded up to the next whole second (and clamped to datetime's range)."""
    whole = math.ceil(seconds) if math.isfinite(seconds) else 10**9
    try:
        return utc(start).replace(microsecond=0) + timedelta(seconds=min(max(whole, 0), 10**10))
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC)


def until(now: datetime, when: datetime) -> float:
    return (utc(when) - now).total_seconds()


def after_cut(stamp: datetime, seconds: float) -> datetime:
    """`seconds` after an event whose timestamp `stamp` was cut down to the second (metav1.Time): the
    event happened up to a second later, so count from the next second: never early, at most 1 s late."""
    return after(stamp, seconds + 1)
