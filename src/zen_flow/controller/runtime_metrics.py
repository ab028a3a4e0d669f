"""The metrics every controller has, whatever it controls: its informers, leader election, shards,
webhooks and work queue, named as client-go and controller-runtime name theirs where they have one
(`leader_election_master_status`, `workqueue_*`). `controller.metrics.Metrics` holds them beside zen-flow's
own (flows, steps, Jobs, CronJobFlows, the archive...), on the same registry; kept here so each reads on its
own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class WatchedQueue(Protocol):
    """What the gauges read of a work queue (machinery/workqueue.py) at scrape time."""

    name: str

    @property
    def delayed(self) -> int: ...
    def unfinished_work_seconds(self) -> float: ...
    def longest_running_processor_seconds(self) -> float: ...


class RuntimeMetrics:
    def __init__(
        self, registry: CollectorRegistry, *, latency_buckets: Sequence[float], queue_buckets: Sequence[float]
    ) -> None:
        r = registry
        # informers
        self.informer_cached = Gauge(
            "zen_flow_informer_cached_objects", "Objects in the cache", ["resource"], registry=r
        )
        # leader election
        self.leader = Gauge(
            "leader_election_master_status",
            "1 while this replica leads, 0 while it stands by",
            ["name"],
            registry=r,
        )
        self.leader_transitions = Counter(
            "zen_flow_leader_transitions_total", "Times this replica became leader", registry=r
        )
        # shards (--shards N > 1; controller/shard_gate.py)
        self.shards_owned = Gauge(
            "zen_flow_shards_owned",
            "Shards whose flows this replica reconciles (0 unless --shards > 1)",
            registry=r,
        )
        self.shard_changes = Counter(
            "zen_flow_shard_changes_total",
            "Shards this replica acquired, and handed over (drained, then released)",
            ["change"],
            registry=r,
        )
        for change in ("acquired", "handed_over"):
            self.shard_changes.labels(change)
        self.shard_reconciles = Counter(
            "zen_flow_shard_reconciles_total",
            "Reconciles of flows and CronJobFlows this replica ran, by shard (--shards > 1)",
            ["shard"],
            registry=r,
        )
        # webhooks
        self.webhook_requests = Counter(
            "zen_flow_webhook_requests_total",
            "Admission reviews by webhook and outcome",
            ["webhook", "allowed"],
            registry=r,
        )
        self.webhook_duration = Histogram(
            "zen_flow_webhook_duration_seconds",
            "Admission review handling time",
            ["webhook"],
            buckets=latency_buckets,
            registry=r,
        )
        self.cert_reloads = Counter(
            "zen_flow_webhook_cert_reloads_total",
            "Serving certificate reloads by result",
            ["result"],
            registry=r,
        )
        # At 0 from the start, as job_deletes: a broken pair is counted once, and a series born at 1 is no
        # increase, so ZenFlowWebhookCertificateReloadFailing would miss a single failed renewal.
        for result in ("success", "failure"):
            self.cert_reloads.labels(result)
        self.cert_expiry = Gauge(
            "zen_flow_webhook_cert_expiry_timestamp_seconds",
            "notAfter of the serving certificate",
            registry=r,
        )
        # the webhook's limits on load (webhook/connections.py, bodies.py, review_threads.py); the
        # counters at 0 from the start, so a first refusal is an increase
        self.webhook_connections = Gauge(
            "zen_flow_webhook_connections", "Connections open to the webhook server", registry=r
        )
        self.webhook_refused = Counter(
            "zen_flow_webhook_connections_refused_total",
            "New connections closed at once: a limit (total, per_ip) reached with every connection under it "
            "busy with a request",
            ["limit"],
            registry=r,
        )
        self.webhook_evicted = Counter(
            "zen_flow_webhook_connections_evicted_total",
            "Connections the server was waiting on (idle, or still sending) closed for a new one at a limit",
            ["limit"],
            registry=r,
        )
        for limit in ("total", "per_ip"):
            self.webhook_refused.labels(limit)
            self.webhook_evicted.labels(limit)
        self.webhook_timed_out = Counter(
            "zen_flow_webhook_connections_timed_out_total",
            "Connections closed for not sending a request, or its body, in time",
            registry=r,
        )
        self.webhook_body_bytes = Gauge(
            "zen_flow_webhook_body_bytes", "Bytes of request bodies the webhook holds", registry=r
        )
        self.webhook_shed = Counter(
            "zen_flow_webhook_shed_total",
            "Requests answered without a review: body_budget (503) or queue_wait (denied, 429)",
            ["reason"],
            registry=r,
        )
        for reason in ("body_budget", "queue_wait"):
            self.webhook_shed.labels(reason)
        self.webhook_thread_wait = Histogram(
            "zen_flow_webhook_review_thread_wait_seconds",
            "Time a piece of a review's work waited for a review thread",
            buckets=latency_buckets,
            registry=r,
        )
        # work queue (client-go names)
        self.wq_depth = Gauge("workqueue_depth", "Current depth of the work queue", ["name"], registry=r)
        self.wq_adds = Counter("workqueue_adds_total", "Adds handled by the work queue", ["name"], registry=r)
        self.wq_latency = Histogram(
            "workqueue_queue_duration_seconds",
            "Time an item waits before being processed",
            ["name"],
            buckets=queue_buckets,
            registry=r,
        )
        self.wq_work = Histogram(
            "workqueue_work_duration_seconds",
            "Time processing an item takes",
            ["name"],
            buckets=latency_buckets,
            registry=r,
        )
        self.wq_retries = Counter(
            "workqueue_retries_total",
            "Delayed re-adds: retries after an error or conflict, and requeues a reconcile scheduled",
            ["name"],
            registry=r,
        )
        self.wq_unfinished = Gauge(
            "workqueue_unfinished_work_seconds",
            "Seconds of work in progress not yet done",
            ["name"],
            registry=r,
        )
        self.wq_longest = Gauge(
            "workqueue_longest_running_processor_seconds", "Longest running processor", ["name"], registry=r
        )
        self.wq_delayed = Gauge(
            "zen_flow_workqueue_delayed_keys",
            "Keys waiting on a timer: requeues a reconcile scheduled (a TTL, a timeout, a CronJobFlow's next "
            "run time) and retries",
            ["name"],
            registry=r,
        )

    def watch_queue(self, queue: WatchedQueue) -> None:
        """The queue's gauges, read at scrape time (machinery/queue_metrics.py)."""
        self.wq_unfinished.labels(queue.name).set_function(queue.unfinished_work_seconds)
        self.wq_longest.labels(queue.name).set_function(queue.longest_running_processor_seconds)
        self.wq_delayed.labels(queue.name).set_function(lambda: queue.delayed)


class PrometheusQueueMetrics:
    """`WorkQueue` hooks (machinery.workqueue.QueueMetrics) onto the client-go-named workqueue metrics."""

    def __init__(self, metrics: RuntimeMetrics) -> None:
        self._m = metrics

    def add(self, name: str) -> None:
        self._m.wq_adds.labels(name).inc()

    def depth(self, name: str, depth: int) -> None:
        self._m.wq_depth.labels(name).set(depth)

    def queue_duration(self, name: str, seconds: float) -> None:
        self._m.wq_latency.labels(name).observe(seconds)

    def work_duration(self, name: str, seconds: float) -> None:
        self._m.wq_work.labels(name).observe(seconds)

    def retry(self, name: str) -> None:
        self._m.wq_retries.labels(name).inc()
