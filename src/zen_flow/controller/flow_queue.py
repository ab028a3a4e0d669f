"""The controller's work queue of flow keys and the retries of failing flows.

The queue is shared fairly between tenants (namespaces), and a flow that has not started waits behind
the work of those that have. A failing flow is retried with a backoff paced per namespace, and the cause
of its failures is logged once (`FailureReports`), until it changes or a reconcile succeeds: repeats are
only counted (zen_flow_reconcile_total{result="error"}, and `failures` when the flow recovers), so an
apiserver outage does not bury the log under one line per retry.
"""

from __future__ import annotations

from structlog.typing import FilteringBoundLogger

from zen_flow.api import JobFlow
from zen_flow.api.constants import FlowPhase
from zen_flow.machinery.clock import Clock
from zen_flow.machinery.queue_metrics import QueueMetrics
from zen_flow.machinery.ratelimit import default_controller_rate_limiter, namespace_of
from zen_flow.machinery.workqueue import Priority, WorkQueue


def worker_count(workers: int) -> int:
    """How many workers the controller runs for `--workers` (what one namespace may use): twice as many,
    so that one namespace's slow reconciles (its Job creates held 10-30 s each by a slow admission webhook
    of that namespace) leave as many workers to the others. One namespace alone gets what it got before."""
    return 2 * workers


def worker_reserve(workers: int) -> int:
    """The workers a namespace that already holds one may not take (`WorkQueue(reserve=)`): a quarter of
    `worker_count(workers)`, at least one. Namespaces holding workers take the last ones only for a first
    one each, so two slow namespaces (a webhook slow for both) leave a quarter free, and each further one
    takes one of them: up to `reserve + 1` slow namespaces at once, a namespace holding none is served at
    once. A quarter, because it costs nothing alone: one namespace stops at `workers` (half the workers),
    before the reserve. Two busy namespaces together still get three quarters (half would leave the
    second one worker beside a busy first one), and the request slots keep the same quarter."""
    return max(1, worker_count(workers) // 4)


def flow_queue(
    clock: Clock, start_limit: int, workers: int, metrics: QueueMetrics | None = None
) -> WorkQueue[str]:
    """The controller's work queue of flow keys, shared fairly between tenants (namespaces), for
    `worker_count(workers)` workers."""
    return WorkQueue(
        name="jobflows",
        clock=clock,
        # Retries are paced per namespace: one tenant's failing flows must not delay another's retry.
        rate_limiter=default_controller_rate_limiter(clock, group_of=namespace_of),
        metrics=metrics,
        # A burst of new flows must not take every worker: the next step of a running flow would wait
        # for one (measured: 12-25 ms at p50 while 1,000 flows started; docs/BENCHMARKS.md). Per
        # namespace as before; in all, as many workers as one namespace keeps free stay free.
        group_low_limit=start_limit,
        low_limit=worker_count(workers) - (workers - start_limit),
        # One namespace never holds more than `workers`: another tenant's flows always find a worker.
        group_limit=workers,
        # And namespaces holding workers never take the last quarter but for a first one each: two slow
        # namespaces do not hold every worker between them (worker_reserve).
        workers=worker_count(workers),
        reserve=worker_reserve(workers),
        # And namespaces take turns: one tenant's 1,000 new flows, or 1,000 running flows whose Jobs
        # finished together, do not queue another tenant's next step behind them all
        # (machinery/queue_lines.py).
        group_of=namespace_of,
    )


def priority(flow: JobFlow | None) -> Priority:
    """A flow that has not started waits behind the steps of running flows (a burst of new flows must not
    hold every running flow's next step); once started, or when it finishes, it is work in progress (and
    so is one no longer cached: None)."""
    if flow is None:
        return Priority.NORMAL
    fresh = flow.status.start_time is None and flow.status.phase in (None, FlowPhase.PENDING)
    return Priority.LOW if fresh else Priority.NORMAL


# Flows whose failure cause is remembered (to log it once); past this, causes are logged every time.
MAX_TRACKED_FAILURES = 10_000


class FailureReports:
    def __init__(self, log: FilteringBoundLogger) -> None:
        """`log`: the reconciler's logger, whose lines these are (`logger` says which module reconciles)."""
        self._log = log
        # flow key -> (the cause last logged, failures in a row)
        self._failing: dict[str, tuple[str, int]] = {}

    def failed(self, key: str, exc: Exception) -> None:
        """The cause once per flow (with the traceback at debug level); its repeats only counted."""
        cause = f"{type(exc).__name__}: {exc}"
        known = self._failing.get(key)
        if known is not None and known[0] == cause:
            self._failing[key] = (cause, known[1] + 1)
            self._log.debug("reconcile failed again", error=cause, failures=known[1] + 1)
            return
        if len(self._failing) < MAX_TRACKED_FAILURES or known is not None:
            self._failing[key] = (cause, 1 if known is None else known[1] + 1)
        self._log.warning("reconcile failed; retrying with backoff", error=cause)
        self._log.debug("reconcile failure detail", exc_info=exc)

    def succeeded(self, key: str) -> None:
        """A reconcile of the flow succeeded: said once if it had been failing."""
        if (failed := self._failing.pop(key, None)) is not None:
            self._log.info("reconcile succeeded again", failures=failed[1], last_error=failed[0])

    def forget(self, key: str) -> None:
        self._failing.pop(key, None)
