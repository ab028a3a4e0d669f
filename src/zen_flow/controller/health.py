"""The plain-HTTP side of every replica: /metrics, /healthz (liveness) and /readyz (readiness).

Liveness means more than "the HTTP server answers": every informer must have made progress (a list, a
watch event or a bookmark) recently, otherwise a silently stuck watch would leave a zombie controller
that looks alive (a known failure of Python operators, kopf #614/#1276). Readiness means the caches have
synced (and the webhook has a certificate); it never depends on leadership, so standby replicas keep
serving the webhooks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from zen_flow.controller.metrics import Metrics


@dataclass(frozen=True)
class Probe:
    name: str
    check: Callable[[], str | None]  # None = fine, else the reason it is not


def create_health_app(
    metrics: Metrics, liveness: Sequence[Probe], readiness: Sequence[Probe]
) -> web.Application:
    async def handle_metrics(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    def probe_handler(probes: Sequence[Probe]) -> Callable[[web.Request], object]:
        async def handle(request: web.Request) -> web.Response:
            failures = [f"{p.name}: {reason}" for p in probes if (reason := p.check()) is not None]
            if failures:
                return web.Response(status=503, text="\n".join(failures) + "\n")
            if "verbose" in request.query:
                return web.Response(text="".join(f"[+]{p.name} ok\n" for p in probes) + "ok\n")
            return web.Response(text="ok\n")

        return handle

    app = web.Application()
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/healthz", probe_handler(liveness))  # type: ignore[arg-type]
    app.router.add_get("/readyz", probe_handler(readiness))  # type: ignore[arg-type]
    return app
