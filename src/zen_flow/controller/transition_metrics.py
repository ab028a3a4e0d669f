"""The metrics of the transitions a status write recorded: step transitions, retries, durations, flow
completions. Counted once per write that landed: when its answer says so (status_writer.py), or, for one
whose answer was lost, when the cache shows it (announcements.py, `settle`)."""

from __future__ import annotations

from zen_flow.api import JobFlow, JobFlowStatus
from zen_flow.api.constants import FlowPhase, StepPhase
from zen_flow.controller.metrics import Metrics
from zen_flow.planner.shape import shape_of
from zen_flow.planner.tolerance import tolerated


def namespace_seen(metrics: Metrics, ns: str) -> None:
    """Make the series the failure alerts read at 0 for namespace `ns`, whose flow the cache shows.

    increase() misses a series' first sample: a Failed series born at 1 would hide the first failure
    ZenFlowJobFlowsFailing and ZenFlowStepsFailing count (and the step one would lose a failure the
    allowed one, already at 0, counts). Made at 0 with the status write that counts the event is not
    enough: Prometheus never scrapes that 0 (a flow failed at its first write, e.g. invalid). So they are
    made when the informer shows a flow of the namespace, on every replica, a standby included: after a
    failover the new leader's series have been scraped at 0 since its caches synced, long before its
    first write. Idempotent; each status write calls it again, for a namespace whose series a sweep
    removed meanwhile (namespace_series.py)."""
    for ended in (FlowPhase.SUCCEEDED, FlowPhase.FAILED):
        metrics.flow_completions.labels(ns, ended)
    for finished in (StepPhase.FAILED, StepPhase.SUCCEEDED):
        metrics.step_transitions.labels(ns, finished)
    metrics.step_failures_allowed.labels(ns)


def record_transitions(metrics: Metrics, flow: JobFlow, status: JobFlowStatus) -> None:
    """Count the transitions from `flow`'s status to `status`, a write of it that landed."""
    ns = flow.metadata.namespace
    namespace_seen(metrics, ns)  # made at the flow's sight already; again after a sweep removed them
    before = {s.name: s for s in flow.status.steps}
    specs = shape_of(flow).specs  # the effective flow's: a matrix step's items by name
    for step in status.steps:
        old = before.get(step.name)
        # Counted when the attempt starts (its retryCount goes up), not when the step shows Retrying:
        # a retry the flow's end cancels never started.
        if (retries := step.retry_count - (old.retry_count if old is not None else 0)) > 0:
            metrics.step_retries.labels(ns).inc(retries)
        if old is None or old.phase != step.phase:
            metrics.step_transitions.labels(ns, step.phase).inc()
            # Counted by the rule of the StepFailureAllowed event (planner.tolerance), on the status
            # written: not a step a stop, the deadline or a flow-wide failure ended.
            if step.phase == StepPhase.FAILED and tolerated(specs.get(step.name), step, status):
                metrics.step_failures_allowed.labels(ns).inc()
            # The run time of the step's Jobs (retries and their backoff included). A Manual gate has
            # no Job: its "run" is the wait for a human, hours that would swamp every percentile.
            if (
                step.phase in (StepPhase.SUCCEEDED, StepPhase.FAILED)
                and step.job_ref is not None
                and step.start_time
                and step.completion_time
            ):
                seconds = (step.completion_time - step.start_time).total_seconds()
                metrics.step_duration.labels(ns, step.phase).observe(seconds)
    if status.phase != flow.status.phase and status.phase in (FlowPhase.SUCCEEDED, FlowPhase.FAILED):
        metrics.flow_completions.labels(ns, status.phase).inc()
        # How long flows take end to end, what a team's SLO is about (the steps' own run times are
        # zen_flow_step_duration_seconds). An invalid flow, or one stopped before it started, ran nothing.
        if status.start_time is not None and status.completion_time is not None:
            seconds = (status.completion_time - status.start_time).total_seconds()
            metrics.flow_duration.labels(ns, status.phase).observe(seconds)
