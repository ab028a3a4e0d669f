"""The HTTPS admission server: `/validate-jobflow`, `/mutate-jobflow` (the original's paths),
`/validate-cronjobflow`, `/validate-jobflowtemplate`, `/validate-clusterjobflowtemplate`, `/healthz` and
`/readyz`.

Request handling is thin: read the body within the budget of bodies held (webhook/bodies.py: at most
`MAX_BODY_BYTES`, else 413; past the budget, 503 unread), run the route's review on it
(webhook/handlers.py), its pure work in the review threads in its namespace's turn
(webhook/review_threads.py: a review that finds none in time is denied 429), and answer 200 with the
decision. A body that is not an AdmissionReview gets 400 with the reason, never a 500 traceback. The
connections themselves are bounded by webhook/connections.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from aiohttp import hdrs, web

from zen_flow.api.constants import CLUSTER_TEMPLATE_KIND, CRON_KIND, TEMPLATE_KIND
from zen_flow.logging import get_logger
from zen_flow.webhook.bodies import (
    BODY_BUDGET_BYTES,
    MAX_BODY_BYTES,
    RETRY_AFTER_SECONDS,
    BodyBudget,
    BrokenBody,
    Shed,
    SlowBody,
    shed_response,
)
from zen_flow.webhook.client_auth import ClientAuth, ClientNames
from zen_flow.webhook.connections import ConnectionGuard, ConnectionLimits
from zen_flow.webhook.cron_review import validate_cron_review
from zen_flow.webhook.handlers import Authorize, Review, Templates, definition, mutation, validation
from zen_flow.webhook.pressure import LoadMetrics
from zen_flow.webhook.review import ReviewError
from zen_flow.webhook.review_threads import DEFAULT_REVIEW_LIMITS, Busy, ReviewLimits, ReviewThreads
from zen_flow.webhook.templates import validate_cluster_template_review, validate_template_review
from zen_flow.webhook.tls import CertMetrics, CertReloader

__all__ = [
    "MAX_BODY_BYTES",
    "Authorize",
    "Templates",
    "WebhookMetrics",
    "WebhookServer",
    "create_webhook_app",
]

log = get_logger(__name__)

VALIDATE_PATH = "/validate-jobflow"
MUTATE_PATH = "/mutate-jobflow"
VALIDATE_CRON_PATH = "/validate-cronjobflow"
VALIDATE_TEMPLATE_PATH = "/validate-jobflowtemplate"
VALIDATE_CLUSTER_TEMPLATE_PATH = "/validate-clusterjobflowtemplate"
DEFAULT_RELOAD_INTERVAL = 30.0
DEFAULT_LIMITS = ConnectionLimits()
# The app's body budget and review threads (tests and the server read them).
BODIES = web.AppKey("bodies", BodyBudget)
REVIEW_THREADS = web.AppKey("review_threads", ReviewThreads)


class WebhookMetrics(CertMetrics, LoadMetrics, Protocol):
    def review_done(self, webhook: str, allowed: bool, seconds: float) -> None:
        """One admission review answered by `webhook` ("validate", "mutate", "validate-cron",
        "validate-template" or "validate-cluster-template")."""


def _review_handler(
    name: str,
    review: Review,
    metrics: WebhookMetrics | None,
    bodies: BodyBudget,
    threads: ReviewThreads,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        started = time.perf_counter()
        arrived = threads.now()
        shed = False
        try:
            async with bodies.body(request) as body:  # 413 past the size limit
                lane = threads.lane(body, arrived)
                try:
                    answer = await review(body, lane)
                except Busy as busy:
                    refusal = lane.refusal(busy)
                    if refusal is None:  # no uid to answer: the review would have said 400
                        return _busy()
                    answer, shed = refusal, True  # logged by the review threads, at a bounded rate
        except Shed as unread:
            return shed_response(str(unread))
        except SlowBody as slow:
            log.warning("admission request body too slow; connection dropped", webhook=name, read=str(slow))
            raise web.HTTPRequestTimeout() from None
        except BrokenBody as broken:
            log.debug("admission request body cut off", webhook=name, error=str(broken))
            raise web.HTTPBadRequest() from None  # the client is most often gone: seldom sent
        except ReviewError as exc:
            log.warning("bad admission request", webhook=name, error=str(exc))
            return web.json_response({"error": str(exc)}, status=400)
        allowed = bool(answer["response"]["allowed"])
        if metrics is not None:
            metrics.review_done(name, allowed, time.perf_counter() - started)
        if not allowed and not shed:
            log.info("admission denied", webhook=name, uid=answer["response"]["uid"])
        return web.json_response(answer)

    return handle


def _busy() -> web.Response:
    return web.json_response(
        {"error": "the webhook is busy: no review thread in time; retry"},
        status=429,
        headers={hdrs.RETRY_AFTER: str(RETRY_AFTER_SECONDS)},
    )


def create_webhook_app(
    *,
    ready: Callable[[], str | None] = lambda: None,
    metrics: WebhookMetrics | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    guard: ConnectionGuard | None = None,
    authorize: Authorize | None = None,
    templates: Templates | None = None,
    body_budget: int = BODY_BUDGET_BYTES,
    reviews: ReviewLimits = DEFAULT_REVIEW_LIMITS,
) -> web.Application:
    """The aiohttp app (no TLS: the site adds it). `ready` returns None when ready, else the reason;
    `authorize`: who may decide Manual steps (None: whoever may write the annotation); `templates`: where
    the webhooks read JobFlowTemplates (None: flows naming one are left to the controller, and Flow steps'
    templates are checked when the steps run); `body_budget`: the bytes of request bodies held at once;
    `reviews`: the review threads and how long a review waits for one."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        reason = ready()
        if reason is not None:
            return web.Response(status=503, text=reason + "\n")
        return web.Response(text="ok\n")

    middlewares = [guard.middleware] if guard is not None else []
    bodies = BodyBudget(
        body_budget,
        max_body=max_body_bytes,
        timeout=guard.limits.request_timeout if guard is not None else None,
        metrics=metrics,
        read=guard.body_read if guard is not None else lambda request: None,
    )
    threads = ReviewThreads(reviews, metrics=metrics)
    app = web.Application(client_max_size=max_body_bytes, middlewares=middlewares)
    app[BODIES] = bodies
    app[REVIEW_THREADS] = threads

    async def close_threads(_: web.Application) -> None:
        threads.close()

    app.on_cleanup.append(close_threads)
    routes: list[tuple[str, str, Review]] = [
        (VALIDATE_PATH, "validate", validation(authorize, templates)),
        (MUTATE_PATH, "mutate", mutation(templates)),
        (VALIDATE_CRON_PATH, "validate-cron", definition(validate_cron_review, CRON_KIND, templates)),
        (
            VALIDATE_TEMPLATE_PATH,
            "validate-template",
            definition(validate_template_review, TEMPLATE_KIND, templates),
        ),
        (
            VALIDATE_CLUSTER_TEMPLATE_PATH,
            "validate-cluster-template",
            definition(validate_cluster_template_review, CLUSTER_TEMPLATE_KIND, templates),
        ),
    ]
    for path, name, review in routes:
        app.router.add_post(path, _review_handler(name, review, metrics, bodies, threads))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


class WebhookServer:
    """HTTPS server with hot certificate reload; `start`/`stop` from a TaskGroup or a test.

    `cert_dir` holds `tls.crt` and `tls.key`. The server starts even before the files exist (it answers
    handshakes with an alert and /readyz with 503 until they do), so a pod can come up while
    cert-manager is still issuing its certificate. `client_auth`: mutual TLS (webhook/client_auth.py).
    """

    def __init__(
        self,
        cert_dir: str | Path,
        *,
        reload_interval: float = DEFAULT_RELOAD_INTERVAL,
        metrics: WebhookMetrics | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        limits: ConnectionLimits = DEFAULT_LIMITS,
        authorize: Authorize | None = None,
        templates: Templates | None = None,
        client_auth: ClientAuth | None = None,
        body_budget: int = BODY_BUDGET_BYTES,
        reviews: ReviewLimits = DEFAULT_REVIEW_LIMITS,
    ) -> None:
        ca = client_auth.ca_file if client_auth is not None else None
        self.certs = CertReloader(cert_dir, metrics=metrics, client_ca=ca)
        self.client_names = ClientNames(client_auth.names) if client_auth and client_auth.names else None
        self._interval = reload_interval
        self.guard = ConnectionGuard(limits, metrics)
        self._app = create_webhook_app(
            ready=self.not_ready_reason,
            metrics=metrics,
            max_body_bytes=max_body_bytes,
            guard=self.guard,
            authorize=authorize,
            templates=templates,
            body_budget=body_budget,
            reviews=reviews,
        )
        self.bodies = self._app[BODIES]
        self.review_threads = self._app[REVIEW_THREADS]
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self._watcher: asyncio.Task[None] | None = None

    def not_ready_reason(self) -> str | None:
        """None when a certificate is loaded (a readiness probe for the controller's /readyz too)."""
        if self.certs.ready:
            return None
        return "webhook certificate not loaded" + (
            f": {self.certs.last_error}" if self.certs.last_error else ""
        )

    @property
    def listening(self) -> bool:
        # The listener is created after the runner's setup (an await): listening only once both exist, so
        # a caller that saw it true can read `port` (a loaded machine showed the gap).
        return self._runner is not None and self._server is not None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        if self._server is None:
            raise RuntimeError("the webhook server is not started")
        for sock in self._server.sockets:
            return int(sock.getsockname()[1])
        raise RuntimeError("the webhook server has no address")

    async def start(self, host: str, port: int) -> None:
        self.certs.check()
        limits = self.guard.limits
        # lingering_time=0: a request answered without reading its body (413, 503 past the body budget)
        # closes its connection at once instead of reading and dropping the rest for up to 10 s.
        self._runner = web.AppRunner(
            self._app,
            handle_signals=False,
            access_log=None,
            keepalive_timeout=limits.keepalive_timeout,
            lingering_time=0,
        )
        await self._runner.setup()
        factory = self._runner.server
        assert factory is not None  # set by setup()
        # Our own listener instead of web.TCPSite: each connection goes through the guard (a cap, and
        # deadlines for clients that connect and never finish a request), and the TLS handshake is bounded.
        protocols = self.guard.wrap(factory)
        if self.client_names is not None:  # outermost: a refused client takes no connection slot
            protocols = self.client_names.wrap(protocols)
        self._server = await asyncio.get_running_loop().create_server(
            protocols,
            host,
            port,
            ssl=self.certs.listening_context(),
            ssl_handshake_timeout=limits.handshake_timeout,
            reuse_address=True,
        )
        self._watcher = asyncio.create_task(self.certs.watch(self._interval), name="webhook-cert-reload")
        log.info("webhook server listening", host=host, port=self.port, ready=self.certs.ready)

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            # wait() does not re-raise the watcher's CancelledError, and lets our own cancellation through
            await asyncio.wait([self._watcher])
            self._watcher = None
        if self._server is not None:
            self._server.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
