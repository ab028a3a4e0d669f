"""The collectors of the metrics read at scrape time (controller/metrics.py registers them): the flows and
steps in the informer cache by phase, the flows whose Job creates are failing, the informers' tallies, the
Kubernetes Events never recorded.
Computed from what is there when Prometheus asks, they can never drift the way inc/dec gauges do.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from zen_flow.api import JobFlow
from zen_flow.api.constants import StepPhase
from zen_flow.planner.locks import flow_queued, lock_waiting
from zen_flow.planner.progress import stalled
from zen_flow.planner.status import REASON_WAITING_FOR_SLOT


class FlowCollector(Collector):
    """zen_flow_jobflows{namespace,phase}, zen_flow_steps{namespace,phase},
    zen_flow_approvals_pending{namespace}, zen_flow_jobflows_not_progressing{namespace},
    zen_flow_jobflows_waiting_for_slot{namespace}, zen_flow_lock_waiting_steps{namespace},
    zen_flow_jobflows_waiting_for_lock{namespace}."""

    def __init__(self, flows: Callable[[], Iterable[JobFlow]]) -> None:
        self._flows = flows

    def collect(self) -> Iterator[Metric]:
        by_flow: Tally[tuple[str, str]] = Tally()
        by_step: Tally[tuple[str, str]] = Tally()
        approvals: Tally[str] = Tally()
        not_moving: Tally[str] = Tally()
        waiting: Tally[str] = Tally()
        lockless: Tally[str] = Tally()
        flows_locked: Tally[str] = Tally()
        for flow in self._flows():
            ns = flow.metadata.namespace
            by_flow[(ns, flow.status.phase or "Pending")] += 1
            if stalled(flow.status) is not None:
                not_moving[ns] += 1
            if _waiting_for_slot(flow):
                waiting[ns] += 1
            elif flow_queued(flow) and flow.status.phase in (None, "Pending"):
                flows_locked[ns] += 1
            for step in flow.status.steps:
                by_step[(ns, step.phase)] += 1
                if step.phase == StepPhase.PENDING_APPROVAL:
                    approvals[ns] += 1
                elif step.phase == StepPhase.PENDING and lock_waiting(step.message):
                    lockless[ns] += 1
        flows = GaugeMetricFamily(
            "zen_flow_jobflows", "JobFlows in the cache by phase", labels=["namespace", "phase"]
        )
        for (ns, phase), n in sorted(by_flow.items()):
            flows.add_metric([ns, phase], n)
        steps = GaugeMetricFamily(
            "zen_flow_steps", "Steps of cached JobFlows by phase", labels=["namespace", "phase"]
        )
        for (ns, phase), n in sorted(by_step.items()):
            steps.add_metric([ns, phase], n)
        pending = GaugeMetricFamily(
            "zen_flow_approvals_pending", "Manual steps waiting for approval", labels=["namespace"]
        )
        for ns, n in sorted(approvals.items()):
            pending.add_metric([ns], n)
        # Every namespace with flows gets a sample (0 too), so "no stuck flow" is a value, not a gap.
        not_progressing = GaugeMetricFamily(
            "zen_flow_jobflows_not_progressing",
            "Running JobFlows with no step transition within the progress deadline (Progressing=False)",
            labels=["namespace"],
        )
        slotless = GaugeMetricFamily(
            "zen_flow_jobflows_waiting_for_slot",
            "Pending JobFlows waiting for a slot under --max-running-flows or --namespace-max-running-flows",
            labels=["namespace"],
        )
        locked = GaugeMetricFamily(
            "zen_flow_lock_waiting_steps",
            "Pending steps waiting for a lock (step synchronization: mutexes and semaphores)",
            labels=["namespace"],
        )
        flow_locked = GaugeMetricFamily(
            "zen_flow_jobflows_waiting_for_lock",
            "Pending JobFlows waiting for their own locks (spec.synchronization)",
            labels=["namespace"],
        )
        for ns in sorted({ns for ns, _ in by_flow}):
            not_progressing.add_metric([ns], not_moving[ns])
            slotless.add_metric([ns], waiting[ns])
            locked.add_metric([ns], lockless[ns])
            flow_locked.add_metric([ns], flows_locked[ns])
        yield from (flows, steps, pending, not_progressing, slotless, locked, flow_locked)


def _waiting_for_slot(flow: JobFlow) -> bool:
    if flow.status.phase not in (None, "Pending"):
        return False
    return any(
        c.type == "Queued" and c.status == "True" and c.reason == REASON_WAITING_FOR_SLOT
        for c in flow.status.conditions
    )


class FlowKeysCollector(Collector):
    """A gauge of flows by namespace, from the keys the reconciler keeps of them, read at scrape time (a
    standby has none): zen_flow_jobflows_job_creates_failing (the flows whose Job creates the leader
    retries after a failure), zen_flow_jobflows_status_held (those whose every status write is refused)."""

    def __init__(self, name: str, documentation: str, keys: Callable[[], Iterable[str]]) -> None:
        self._name, self._documentation, self._keys = name, documentation, keys

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(self._name, self._documentation, labels=["namespace"])
        for ns, n in sorted(Tally(key.partition("/")[0] for key in self._keys()).items()):
            gauge.add_metric([ns], n)
        yield gauge


@dataclass(frozen=True)
class InformerStats:
    resource: str
    events: Mapping[str, int]  # watch event type -> count
    lists: int  # the first list plus every relist
    closed_early: int = 0  # watches the server ended before their timeout (a slow reader's, usually)
    recognised: int = 0  # events that were the result of our own write, known already (not decoded)


class InformerCollector(Collector):
    """zen_flow_informer_events_total{resource,type}, zen_flow_informer_lists_total{resource},
    zen_flow_informer_watch_closed_early_total{resource} and zen_flow_informer_events_recognised_total
    {resource}, read from the informers' tallies at scrape time."""

    def __init__(self, stats: Callable[[], Iterable[InformerStats]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "zen_flow_informer_events", "Watch events applied to the cache", labels=["resource", "type"]
        )
        lists = CounterMetricFamily(
            "zen_flow_informer_lists",
            "Full lists: the first one plus relists after 410 Gone",
            labels=["resource"],
        )
        closed = CounterMetricFamily(
            "zen_flow_informer_watch_closed_early",
            "Watches the apiserver ended before their timeout (it closes the watch of a client that reads "
            "too slowly)",
            labels=["resource"],
        )
        recognised = CounterMetricFamily(
            "zen_flow_informer_events_recognised",
            "Watch events (also counted in zen_flow_informer_events_total) that were the result of the "
            "controller's own status write, known from its answer and not decoded again",
            labels=["resource"],
        )
        for stat in self._stats():
            for type_, n in sorted(stat.events.items()):
                events.add_metric([stat.resource, type_], n)
            lists.add_metric([stat.resource], stat.lists)
            closed.add_metric([stat.resource], stat.closed_early)
            recognised.add_metric([stat.resource], stat.recognised)
        yield from (events, lists, closed, recognised)


class EventsCollector(Collector):
    """zen_flow_events_dropped_total{reason}: the Kubernetes Events the recorder never recorded
    (kube/events.py, `EventRecorder.lost`), read from its tallies at scrape time; every reason from the
    start, at 0, so a first drop is an increase."""

    def __init__(self, lost: Callable[[], Mapping[str, int]]) -> None:
        self._lost = lost

    def collect(self) -> Iterator[Metric]:
        dropped = CounterMetricFamily(
            "zen_flow_events_dropped",
            "Kubernetes Events never recorded, by reason: queue_full (dropped from a full backlog: the "
            "events budget, --event-qps, cannot keep up), failed (the apiserver refused or failed the write, "
            "or did not answer; not retried)",
            labels=["reason"],
        )
        for reason, n in sorted(self._lost().items()):
            dropped.add_metric([reason], n)
        yield dropped
