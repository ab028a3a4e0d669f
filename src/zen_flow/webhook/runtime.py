"""The webhook server as the controller process runs it: Prometheus hooks, an address string, and a
coroutine that serves until cancelled (one task of the application's TaskGroup)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from zen_flow.addresses import split_addr
from zen_flow.controller.metrics import Metrics
from zen_flow.webhook.bodies import BODY_BUDGET_BYTES
from zen_flow.webhook.client_auth import ClientAuth
from zen_flow.webhook.connections import ConnectionLimits
from zen_flow.webhook.review_threads import DEFAULT_REVIEW_LIMITS, ReviewLimits
from zen_flow.webhook.server import (
    DEFAULT_LIMITS,
    DEFAULT_RELOAD_INTERVAL,
    Authorize,
    Templates,
    WebhookServer,
)
from zen_flow.webhook.telemetry import PrometheusWebhookMetrics


class WebhookRuntime:
    def __init__(
        self,
        cert_dir: str | Path,
        metrics: Metrics,
        *,
        reload_interval: float = DEFAULT_RELOAD_INTERVAL,
        authorize: Authorize | None = None,
        templates: Templates | None = None,
        client_auth: ClientAuth | None = None,
        limits: ConnectionLimits = DEFAULT_LIMITS,
        body_budget: int = BODY_BUDGET_BYTES,
        reviews: ReviewLimits = DEFAULT_REVIEW_LIMITS,
    ):
        self.server = WebhookServer(
            cert_dir,
            reload_interval=reload_interval,
            metrics=PrometheusWebhookMetrics(metrics),
            authorize=authorize,
            templates=templates,
            client_auth=client_auth,
            limits=limits,
            body_budget=body_budget,
            reviews=reviews,
        )

    def tls_problem(self) -> str | None:
        """Readiness: None once a serving certificate is loaded."""
        return self.server.not_ready_reason()

    async def serve(self, addr: str) -> None:
        """Listen on `addr` and serve until cancelled; then close the listener."""
        host, port = split_addr(addr)
        await self.server.start(host, port)
        try:
            await asyncio.Event().wait()
        finally:
            await self.server.stop()
