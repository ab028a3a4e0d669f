"""The flows' and steps' series of a namespace, removed once the namespace has had no flow for a while.

zen_flow_jobflow_completions_total, zen_flow_step_transitions_total, zen_flow_step_duration_seconds,
zen_flow_step_retries_total, zen_flow_step_timeouts_total and zen_flow_step_failures_allowed_total carry the
flows' namespace. Without this, a namespace that a CI system creates for each run and deletes afterwards would
leave some 40 series behind in the leader, for as long as it runs. They go at the second sweep that finds no
cached flow in their namespace and no activity since the first (a flow created and deleted in between counts),
so one to two sweeps (10 to 20 minutes) after its last flow went: by then Prometheus has scraped that flow's
completion (a flow with `ttlSecondsAfterFinished: 0` is deleted seconds after it ends), and an `increase()`
over the past hour still counts what it scraped. A namespace whose flows come back later starts its series
again from 0.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

from prometheus_client.metrics import MetricWrapperBase

from zen_flow.api import JobFlow
from zen_flow.controller.metrics import Metrics
from zen_flow.logging import get_logger
from zen_flow.machinery.clock import Clock

log = get_logger(__name__)

SWEEP_SECONDS = 600.0


class NamespaceSeries:
    def __init__(self, metrics: Metrics) -> None:
        m = metrics
        # Each metric labelled by namespace, with its other label (the namespace is the first of them).
        self._labelled: tuple[tuple[MetricWrapperBase, str | None], ...] = (
            (m.flow_completions, "phase"),
            (m.step_transitions, "phase"),
            (m.step_duration, "result"),
            (m.flow_duration, "phase"),
            (m.step_retries, None),
            (m.step_timeouts, None),
            (m.step_failures_allowed, None),
        )
        # Namespaces with series but no flow at the last sweep, with the sum of their samples then: a flow
        # created and deleted between two sweeps is never in the cache at a sweep, but moves the sum.
        self._absent: dict[str, float] = {}

    def sweep(self, present: Collection[str]) -> list[str]:
        """`present`: the namespaces that have flows now. Removes the series of the namespaces that had
        none at the previous sweep either, nor any activity since; returns those namespaces."""
        series, totals = self._series()
        gone = sorted(ns for ns in series if ns not in present and self._absent.get(ns) == totals[ns])
        for ns in gone:
            for metric, labels in series[ns]:
                metric.remove(*labels)
        self._absent = {ns: totals[ns] for ns in series if ns not in present and ns not in gone}
        return gone

    async def run(
        self, flows: Callable[[], Iterable[JobFlow]], clock: Clock, period: float = SWEEP_SECONDS
    ) -> None:
        """Sweep every `period` seconds, with the namespaces of `flows()` (the cache); cancel to stop."""
        while True:
            await clock.sleep(period)
            if gone := self.sweep({flow.metadata.namespace for flow in flows()}):
                log.debug("removed the metric series of namespaces without flows", namespaces=len(gone))

    def _series(self) -> tuple[dict[str, set[tuple[MetricWrapperBase, tuple[str, ...]]]], dict[str, float]]:
        """Namespace -> (metric, label values) of every series it has; namespace -> the sum of its samples
        (counters and histograms only grow, so any activity raises it)."""
        found: dict[str, set[tuple[MetricWrapperBase, tuple[str, ...]]]] = {}
        totals: dict[str, float] = {}
        for metric, other in self._labelled:
            for family in metric.collect():
                for sample in family.samples:
                    ns = sample.labels["namespace"]
                    labels = (ns,) if other is None else (ns, sample.labels[other])
                    found.setdefault(ns, set()).add((metric, labels))
                    if not sample.name.endswith("_created"):
                        totals[ns] = totals.get(ns, 0.0) + sample.value
        return found, totals
