"""A namespace's flow and step series go once it has had no flow for two sweeps in a row, and no sooner:
Prometheus must have scraped its last flow's completion first."""

from __future__ import annotations

import asyncio
import contextlib

from zen_flow.controller.metrics import Metrics
from zen_flow.controller.namespace_series import SWEEP_SECONDS, NamespaceSeries
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow


def finished_a_flow(metrics: Metrics, ns: str) -> None:
    """What a flow of three steps (one retried, one timed out, one failed) leaves in `ns`'s series."""
    for phase in ("Running", "Retrying", "Succeeded", "Failed", "Skipped"):
        metrics.step_transitions.labels(ns, phase).inc()
    for result in ("Succeeded", "Failed"):
        metrics.step_duration.labels(ns, result).observe(30)
    metrics.flow_completions.labels(ns, "Failed").inc()
    metrics.step_retries.labels(ns).inc()
    metrics.step_timeouts.labels(ns).inc()
    metrics.step_failures_allowed.labels(ns).inc()


def series_of(metrics: Metrics, ns: str) -> list[str]:
    return [line for line in metrics.render().decode().splitlines() if f'namespace="{ns}"' in line]


def test_a_namespace_without_flows_loses_its_series_at_the_second_sweep() -> None:
    metrics = Metrics()
    finished_a_flow(metrics, "ci-run-1")
    finished_a_flow(metrics, "team")
    kept = series_of(metrics, "team")
    sweeps = NamespaceSeries(metrics)
    assert sweeps.sweep({"team"}) == []  # its last flow may have gone just now, unscraped
    assert len(series_of(metrics, "ci-run-1")) == len(kept) > 30
    assert sweeps.sweep({"team"}) == ["ci-run-1"]
    assert series_of(metrics, "ci-run-1") == []
    assert 'zen_flow_step_failures_allowed_total{namespace="team"} 1.0' in kept
    assert series_of(metrics, "team") == kept


def test_a_namespace_whose_flows_came_back_between_sweeps_keeps_its_series() -> None:
    metrics = Metrics()
    finished_a_flow(metrics, "nightly")
    sweeps = NamespaceSeries(metrics)
    assert sweeps.sweep(set()) == []
    assert sweeps.sweep({"nightly"}) == []  # tonight's flow was created
    assert sweeps.sweep(set()) == []  # and deleted: one sweep without flows again
    assert series_of(metrics, "nightly") != []
    assert sweeps.sweep(set()) == ["nightly"]


def test_a_flow_created_and_deleted_between_two_sweeps_keeps_its_namespaces_series() -> None:
    # Never in the cache at a sweep (ttlSecondsAfterFinished: 0), yet its completion must be scraped.
    metrics = Metrics()
    finished_a_flow(metrics, "ci")
    sweeps = NamespaceSeries(metrics)
    assert sweeps.sweep(set()) == []
    metrics.flow_completions.labels("ci", "Failed").inc()  # a flow came, failed and went
    assert sweeps.sweep(set()) == []
    assert 'zen_flow_jobflow_completions_total{namespace="ci",phase="Failed"} 2.0' in series_of(metrics, "ci")
    assert sweeps.sweep(set()) == ["ci"]  # quiet since: now it goes


def test_a_tolerated_failure_between_two_sweeps_is_activity_too() -> None:
    metrics = Metrics()
    finished_a_flow(metrics, "ci")
    sweeps = NamespaceSeries(metrics)
    assert sweeps.sweep(set()) == []
    metrics.step_failures_allowed.labels("ci").inc()  # only that moved (a test touching one series)
    assert sweeps.sweep(set()) == []
    assert sweeps.sweep(set()) == ["ci"]
    assert series_of(metrics, "ci") == []


async def test_the_sweeps_run_on_the_cached_flows_every_ten_minutes() -> None:
    metrics, clock = Metrics(), FakeClock()
    finished_a_flow(metrics, "ci-run-1")
    finished_a_flow(metrics, "team")
    cached = [make_flow([job_step("a")], namespace="team")]
    sweeping = asyncio.create_task(NamespaceSeries(metrics).run(lambda: cached, clock))
    try:
        await clock.advance(2 * SWEEP_SECONDS - 1)
        assert series_of(metrics, "ci-run-1") != []
        await clock.advance(1)
        assert series_of(metrics, "ci-run-1") == []
        assert series_of(metrics, "team") != []
    finally:
        sweeping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeping
