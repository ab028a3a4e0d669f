"""The work queue's event hooks, named after client-go's workqueue metrics."""

from __future__ import annotations

from typing import Protocol


class QueueMetrics(Protocol):
    """Event hooks, named after client-go's workqueue metrics (all labelled with the queue's `name`).

    The two gauges about work in progress (`workqueue_unfinished_work_seconds`,
    `workqueue_longest_running_processor_seconds`) and the keys waiting on a timer
    (`zen_flow_workqueue_delayed_keys`) are not pushed: read them at scrape time from
    `WorkQueue.unfinished_work_seconds()` / `longest_running_processor_seconds()` / `delayed` (e.g. with
    prometheus_client's `Gauge.set_function`: `RuntimeMetrics.watch_queue`), so they are exact instead of
    sampled on a ticker.
    """

    def add(self, name: str) -> None:
        """workqueue_adds_total: a key became dirty (duplicate adds of a queued key do not count)."""
        ...

    def depth(self, name: str, depth: int) -> None:
        """workqueue_depth: keys waiting to be processed (queued, or dirty while being processed)."""
        ...

    def queue_duration(self, name: str, seconds: float) -> None:
        """workqueue_queue_duration_seconds: from the add that made the key dirty to its `get()`."""
        ...

    def work_duration(self, name: str, seconds: float) -> None:
        """workqueue_work_duration_seconds: from `get()` to `done()`."""
        ...

    def retry(self, name: str) -> None:
        """workqueue_retries_total: one `add_after` / `add_rate_limited` call (as in client-go)."""
        ...


class NoQueueMetrics:
    """The default `QueueMetrics`: records nothing."""

    def add(self, name: str) -> None:
        return None

    def depth(self, name: str, depth: int) -> None:
        return None

    def queue_duration(self, name: str, seconds: float) -> None:
        return None

    def work_duration(self, name: str, seconds: float) -> None:
        return None

    def retry(self, name: str) -> None:
        return None
