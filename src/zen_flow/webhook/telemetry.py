"""The webhook's metric hooks mapped onto the controller's Prometheus registry (controller.metrics)."""

from __future__ import annotations

from zen_flow.controller.metrics import Metrics


class PrometheusWebhookMetrics:
    """Implements `server.WebhookMetrics` with zen_flow_webhook_* series."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def review_done(self, webhook: str, allowed: bool, seconds: float) -> None:
        self._m.webhook_requests.labels(webhook, "true" if allowed else "false").inc()
        self._m.webhook_duration.labels(webhook).observe(seconds)

    def cert_reloaded(self, ok: bool, not_after: float | None) -> None:
        self._m.cert_reloads.labels("success" if ok else "failure").inc()
        if not_after is not None:
            self._m.cert_expiry.set(not_after)

    def connections_open(self, count: int) -> None:
        self._m.webhook_connections.set(count)

    def connection_refused(self, limit: str) -> None:
        self._m.webhook_refused.labels(limit).inc()

    def connection_evicted(self, limit: str) -> None:
        self._m.webhook_evicted.labels(limit).inc()

    def connection_timed_out(self) -> None:
        self._m.webhook_timed_out.inc()

    def body_bytes(self, held: int) -> None:
        self._m.webhook_body_bytes.set(held)

    def review_shed(self, reason: str) -> None:
        self._m.webhook_shed.labels(reason).inc()

    def review_waited(self, seconds: float) -> None:
        self._m.webhook_thread_wait.observe(seconds)
