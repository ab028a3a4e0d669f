"""Go duration strings (`500ms`, `10s`, `1m30s`, `1.5h`, `0`), as the CRD's schema pattern accepts them.

One parser for the validator (which reports what does not parse) and the planner (which computes
backoff delays from what did), so the two can never disagree on what a duration means.
"""

from __future__ import annotations

import re
from decimal import Decimal

# The CRD's pattern for retryPolicy.backoff.duration/maxDuration.
_DURATION = re.compile(r"0|([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+")  # fullmatch: "10s\n" is no duration
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "ms": Decimal("1e-3"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}


def parse_duration(value: str) -> Decimal | None:
    """Seconds of a Go duration string, or None when malformed."""
    if len(value) > 32 or not _DURATION.fullmatch(value):
        return None
    return sum(
        (Decimal(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(value)),
        start=Decimal(0),
    )
