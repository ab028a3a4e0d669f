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
