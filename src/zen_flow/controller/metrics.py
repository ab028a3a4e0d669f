"""Prometheus metrics, on a registry of our own (no global state; tests build their own).

Gauges that describe the world (flows and steps by phase, pending approvals) are computed from the
informer cache at scrape time by a collector (controller/metric_collectors.py), so they can never drift
the way inc/dec gauges do.
Labels are bounded: namespace and phase, never flow or step names (cardinality).
The families every controller has (informers, leader election, shards, webhooks, work queue) are
defined in controller/runtime_metrics.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from zen_flow import __version__
from zen_flow.api import JobFlow
from zen_flow.controller.metric_collectors import (
    EventsCollector,
    FlowCollector,
    FlowKeysCollector,
    InformerCollector,
    InformerStats,
)
from zen_flow.controller.runtime_metrics import RuntimeMetrics
from zen_flow.validation import BUILD as VALIDATOR_BUILD

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A queue wait has no 10 s ceiling: histogram_quantile never answers above the largest finite bucket, so
# ZenFlowWorkqueueLatency (p99 > 60 s) needs buckets past 60 s to fire at all.
_QUEUE_BUCKETS = (*_LATENCY_BUCKETS, 30.0, 60.0, 120.0, 300.0)
# From "no wait" (a token was free) up: most requests wait nothing, and a throttled one waits 1/qps or more.
_WAIT_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_STEP_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
# A flow runs from seconds to days (approval gates, long chains): up to its longest deadline, 30 days.
_FLOW_BUCKETS = (5, 30, 60, 300, 600, 1800, 3600, 7200, 21600, 86400, 259200, 604800, 2592000)


# `zen_flow_job_deletes_total{reason}` (job_deletes.delete_cause maps the DeleteJob reasons to these).
JOB_DELETE_CAUSES = (
    "timeout", "pod_pending", "deadline", "replaced", "stopped", "edited", "superseded", "succeeded", "ended",
    "other",
)  # fmt: skip


# No `*_created` series: prometheus-client adds one per counter and histogram (the time it was made),
# doubling the series count for nothing a dashboard or an alert of ours reads.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus-client


CRON_RUN_RESULTS = (
    "created",
    "skipped_forbid",
    "skipped_replace",
    "skipped_deadline",
    "skipped_active_limit",
    "error",
)

# `zen_flow_cloudevents_failed_total{reason}` and `zen_flow_cloudevents_dropped_total{reason}`.
CLOUDEVENT_FAILURES = ("connection", "timeout", "server_error", "throttled", "refused")
CLOUDEVENT_DROPS = ("queue_full", "gave_up", "refused", "shutdown", "error")
# `zen_flow_archive_writes_total{result}` (controller/archiver.py).
ARCHIVE_RESULTS = ("written", "failed", "skipped")
# `zen_flow_archive_log_writes_total{result}` (controller/log_archiver.py).
ARCHIVE_LOG_RESULTS = ("written", "truncated", "unavailable", "failed", "skipped")


class Metrics(RuntimeMetrics):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.build_info = Gauge(
            "zen_flow_build_info",
            "zen-flow version; validator: compiled or python",
            ["version", "validator"],
            registry=r,
        )
        self.build_info.labels(__version__, VALIDATOR_BUILD).set(1)
        # Set by the controller at start-up (a webhook-only process has no instance): join on it to tell
        # apart the series of several controllers in one cluster.
        self.controller_info = Gauge(
            "zen_flow_controller_info",
            '1: this controller\'s --instance-id ("": it runs the flows without the instance label)',
            ["instance_id"],
            registry=r,
        )
        # reconcile
        self.reconciles = Counter(
            "zen_flow_reconcile_total",
            "Reconciles by result (ok, requeue, error, invalid)",
            ["result"],
            registry=r,
        )
        self.reconcile_duration = Histogram(
            "zen_flow_reconcile_duration_seconds",
            "Time spent in one reconcile",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.plan_duration = Histogram(
            "zen_flow_plan_duration_seconds",
            "Time from a validated flow to its plan: the planner, the pod reads it needs, a plan thread",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.plan_thread_wait = Histogram(
            "zen_flow_plan_thread_wait_seconds",
            "Time a large flow's validation, matrix expansion or plan waited for a plan thread",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.status_patches = Counter(
            "zen_flow_status_patches_total",
            "Status writes (written) and skipped unchanged ones",
            ["result"],
            registry=r,
        )
        self.flow_completions = Counter(
            "zen_flow_jobflow_completions_total",
            "Flows that reached a terminal phase",
            ["namespace", "phase"],
            registry=r,
        )
        self.step_transitions = Counter(
            "zen_flow_step_transitions_total", "Step phase transitions", ["namespace", "phase"], registry=r
        )
        self.step_duration = Histogram(
            "zen_flow_step_duration_seconds",
            "Run time of a finished step's Jobs by result (Manual gates, which run no Job, are not observed)",
            ["namespace", "result"],
            buckets=_STEP_BUCKETS,
            registry=r,
        )
        self.flow_duration = Histogram(
            "zen_flow_jobflow_duration_seconds",
            "Time from a flow's first step start to its end, by phase (Succeeded, Failed); approval waits "
            "included. A flow that ends before a step starts is not observed",
            ["namespace", "phase"],
            buckets=_FLOW_BUCKETS,
            registry=r,
        )
        self.step_retries = Counter(
            "zen_flow_step_retries_total", "Step retries started", ["namespace"], registry=r
        )
        self.step_timeouts = Counter(
            "zen_flow_step_timeouts_total", "Steps stopped by their timeout", ["namespace"], registry=r
        )
        # The step failures allowFailure tolerated, also counted in step_transitions{phase="Failed"}
        # (a sum by phase stays what it was): ZenFlowStepsFailing subtracts them. One series per namespace,
        # made at 0 with the namespace's first step transition (status_writer), so that the first one
        # is an increase.
        self.step_failures_allowed = Counter(
            "zen_flow_step_failures_allowed",
            "Steps that entered Failed with a failure their allowFailure tolerated (counted in "
            'zen_flow_step_transitions_total{phase="Failed"} too)',
            ["namespace"],
            registry=r,
        )
        self.job_creates = Counter(
            "zen_flow_job_creates_total",
            "Job creates by result (created, adopted, taken, error, rejected)",
            ["result"],
            registry=r,
        )
        self.job_deletes = Counter(
            "zen_flow_job_deletes_total", "Jobs deleted by reason", ["reason"], registry=r
        )
        # Exported from the start, at 0: a delete is rare (the Job's own deadline usually stops a timed
        # out Job first), and a series that does not exist yet shows "No data" and breaks rate().
        for cause in JOB_DELETE_CAUSES:
            self.job_deletes.labels(cause)
        # Deletes the apiserver refused (a policy's 403, RBAC), a 5xx or no answer: their Jobs run on and
        # the next reconciles send them again. By the same causes, every one at 0 from the start.
        self.job_delete_failures = Counter(
            "zen_flow_job_delete_failures_total",
            "Job deletes that failed (403, 5xx, no answer) and are sent again, by reason",
            ["reason"],
            registry=r,
        )
        for cause in JOB_DELETE_CAUSES:
            self.job_delete_failures.labels(cause)
        # CronJobFlows: what became of each run time that came due (an operator's "did my schedule run?").
        self.cron_runs = Counter(
            "zen_flow_cronjobflow_runs_total",
            "Run times of CronJobFlows by result "
            "(created, skipped_forbid, skipped_replace, skipped_deadline, skipped_active_limit, error)",
            ["result"],
            registry=r,
        )
        for result in CRON_RUN_RESULTS:
            self.cron_runs.labels(result)
        # Memoized steps' caches (controller/memo_cache.py), at 0 from the start as job_deletes: a cache
        # that starts failing must be an increase, and a hit ratio needs both series.
        self.memo_lookups = Counter(
            "zen_flow_memoize_lookups_total",
            "Memoized steps ready to start whose cache entry was read, by result (hit, miss, error)",
            ["result"],
            registry=r,
        )
        for result in ("hit", "miss", "error"):
            self.memo_lookups.labels(result)
        self.memo_saves = Counter(
            "zen_flow_memoize_saves_total",
            "Memoized steps' results stored in their cache, by result (ok, error)",
            ["result"],
            registry=r,
        )
        for result in ("ok", "error"):
            self.memo_saves.labels(result)
        self.api_requests = Counter(
            "zen_flow_api_requests_total",
            "Requests sent to the apiserver",
            ["verb", "resource", "code"],
            registry=r,
        )
        # client-go's rest_client_request_duration_seconds and rest_client_rate_limiter_duration_seconds,
        # by resource instead of host: a slow reconcile waits either on the apiserver or on --qps/--burst.
        self.api_request_duration = Histogram(
            "zen_flow_api_request_duration_seconds",
            "Time from sending a request to the apiserver to having read its answer (a watch: its headers)",
            ["verb", "resource"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.api_request_wait = Histogram(
            "zen_flow_api_request_wait_seconds",
            "Time a request waited in the client before it was sent: a --qps/--burst token, a free slot",
            ["verb", "resource"],
            buckets=_WAIT_BUCKETS,
            registry=r,
        )
        self.job_updates_ignored = Counter(
            "zen_flow_job_updates_ignored_total",
            "Job updates that woke no reconcile: only counters the planner does not read changed",
            registry=r,
        )
        self.api_request_bytes = Counter(
            "zen_flow_api_request_bytes_total",
            "Bytes of request bodies sent to the apiserver",
            ["verb", "resource"],
            registry=r,
        )
        # CloudEvents (--cloudevents-sink; controller/cloud_event_sink.py). Every reason at 0 from the
        # start, as job_deletes: a sink that starts failing must be an increase.
        self.cloudevents_sent = Counter(
            "zen_flow_cloudevents_sent_total", "CloudEvents the sink accepted (a 2xx answer)", registry=r
        )
        self.cloudevents_failed = Counter(
            "zen_flow_cloudevents_failed_total",
            "Attempts to send a CloudEvent that failed, by reason "
            "(connection, timeout, server_error, throttled, refused)",
            ["reason"],
            registry=r,
        )
        for reason in CLOUDEVENT_FAILURES:
            self.cloudevents_failed.labels(reason)
        self.cloudevents_dropped = Counter(
            "zen_flow_cloudevents_dropped_total",
            "CloudEvents never delivered, by reason (queue_full, gave_up, refused, shutdown, error)",
            ["reason"],
            registry=r,
        )
        for reason in CLOUDEVENT_DROPS:
            self.cloudevents_dropped.labels(reason)
        self.cloudevents_queue = Gauge(
            "zen_flow_cloudevents_queue_depth",
            "CloudEvents waiting to be sent, the one being sent included",
            registry=r,
        )
        # The flow archive (--archive-s3-*; controller/archiver.py). Every result at 0 from the start.
        self.archive_writes = Counter(
            "zen_flow_archive_writes_total",
            "Ended flows' archive records: written, failed (a write that failed; retried), skipped (a flow "
            "deleted by its TTL or a CronJobFlow history limit without a record, after "
            "--archive-max-delay-seconds and a failed write)",
            ["result"],
            registry=r,
        )
        for result in ARCHIVE_RESULTS:
            self.archive_writes.labels(result)
        self.archive_log_writes = Counter(
            "zen_flow_archive_log_writes_total",
            "Step logs written to the archive (--archive-logs): written and truncated (cut at "
            "--archive-log-limit-bytes) count container logs; unavailable counts a container whose log "
            "could not be read, or an attempt (Job) with no pod left; failed counts failed tries at "
            "writing an attempt's logs (retried); skipped counts Jobs deleted without their logs after "
            "--archive-max-delay-seconds",
            ["result"],
            registry=r,
        )
        for result in ARCHIVE_LOG_RESULTS:
            self.archive_log_writes.labels(result)
        self.archive_write_duration = Histogram(
            "zen_flow_archive_write_duration_seconds",
            "Time to write one archive record (the flow's GET and the PUT), failed ones included",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.archive_pending = Gauge(
            "zen_flow_archive_pending_writes", "Archive records queued or being written", registry=r
        )
        self.archive_log_pending = Gauge(
            "zen_flow_archive_pending_log_writes",
            "Finished step attempts whose logs are not in the archive yet (--archive-logs): queued, being "
            "written, or waiting to retry",
            registry=r,
        )
        # informers, leader election, shards, webhooks, work queue (controller/runtime_metrics.py),
        # registered here so /metrics lists the families in the same order as ever.
        super().__init__(r, latency_buckets=_LATENCY_BUCKETS, queue_buckets=_QUEUE_BUCKETS)

    def watch_flows(self, flows: Callable[[], Iterable[JobFlow]]) -> None:
        self.registry.register(FlowCollector(flows))

    def watch_job_creates(self, failing: Callable[[], Iterable[str]]) -> None:
        """`failing`: the keys (namespace/name) of the flows whose Job creates are being retried."""
        self.registry.register(
            FlowKeysCollector(
                "zen_flow_jobflows_job_creates_failing",
                "JobFlows whose last Job creates failed and are retried with backoff",
                failing,
            )
        )

    def watch_status_held(self, held: Callable[[], Iterable[str]]) -> None:
        """`held`: the keys of the flows and CronJobFlows held as the apiserver refuses every status write."""
        self.registry.register(
            FlowKeysCollector(
                "zen_flow_jobflows_status_held",
                "JobFlows and CronJobFlows left as they are (no Job or run created or deleted) because every "
                "status write is refused",
                held,
            )
        )

    def watch_events(self, lost: Callable[[], Mapping[str, int]]) -> None:
        """`lost`: the Kubernetes Events never recorded, by reason (kube/events.py, `EventRecorder.lost`)."""
        self.registry.register(EventsCollector(lost))

    def watch_informers(self, stats: Callable[[], Iterable[InformerStats]]) -> None:
        self.registry.register(InformerCollector(stats))

    def render(self) -> bytes:
        return generate_latest(self.registry)
