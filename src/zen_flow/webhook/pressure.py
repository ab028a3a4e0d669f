"""What the webhook's limits on load report: the metric hooks (`LoadMetrics`, exported as
zen_flow_webhook_* by webhook/telemetry.py) and the warnings logged when they turn a client away
(`Refusals`), at a bounded rate.

The limits are the connections (webhook/connections.py), the request bodies held (webhook/bodies.py) and
the review threads (webhook/review_threads.py). A client that trips one does so again at once, thousands
of times a second when it means to: each refusal is counted, but a warning is logged at most every
`REFUSAL_LOG_SECONDS` per kind, saying how many there were since the last one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from zen_flow.logging import get_logger

log = get_logger(__name__)

REFUSAL_LOG_SECONDS = 10.0


class LoadMetrics(Protocol):
    def connections_open(self, count: int) -> None:
        """The connections open now (after each change)."""

    def connection_refused(self, limit: str) -> None:
        """A new connection closed at once: `limit` ("total" or "per_ip") was reached and every
        connection under it had a request under review."""

    def connection_evicted(self, limit: str) -> None:
        """A connection the server was waiting on (idle, or still sending its request) closed for a new
        one, at `limit`."""

    def connection_timed_out(self) -> None:
        """A connection closed for not sending a request (or its body) in time."""

    def body_bytes(self, held: int) -> None:
        """The bytes of request bodies held now (after each change)."""

    def review_shed(self, reason: str) -> None:
        """A request answered without a review: "body_budget" (503, unread) or "queue_wait" (no review
        thread in time: denied with code 429)."""

    def review_waited(self, seconds: float) -> None:
        """How long a review's work waited for a review thread (each time it asked for one)."""


class Refusals:
    """Warnings of one kind of refusal, at most one every `interval` seconds: the first at once, then
    one with the count since the last one logged."""

    def __init__(
        self,
        event: str,
        interval: float = REFUSAL_LOG_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._event = event
        self._interval = interval
        self._monotonic = monotonic
        self._last: float | None = None
        self._unsaid = 0

    def note(self, **fields: Any) -> None:
        """One more refusal; `fields` describe it (the one logged stands for those left unsaid)."""
        self._unsaid += 1
        now = self._monotonic()
        if self._last is not None and now - self._last < self._interval:
            return
        log.warning(self._event, refused=self._unsaid, **fields)
        self._last = now
        self._unsaid = 0
