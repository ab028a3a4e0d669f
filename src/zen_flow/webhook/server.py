"""The HTTPS admission server: `/validate-jobflow`, `/mutate-jobflow` (the original's paths),
`/validate-cronjobflow`, `/validate-jobflowtemplate`, `/validate-clusterjobflowtemplate`, `/healthz` and
`/readyz`.

Request handling is thin: read the body (at most `MAX_BODY_BYTES`, else 413), run the pure review
function on its bytes in a worker thread (a new 500-step spec takes tens of milliseconds; the event loop
keeps serving probes and other reviews meanwhile), answer 200 with the decision. A body that is not an
AdmissionReview gets 400 with the reason, never a 500 traceback. A request that decides a Manual step
waits, after the validating review, for `authorize` (webhook/approvers.py: may this user decide it?),
and the create of a flow naming a (Cluster)JobFlowTemplate for `templates` to read it
(webhook/templates.py); a request with Flow steps, for `templates` to read the templates they name
(webhook/child_templates.py), at the same time as `authorize`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from zen_flow.api.constants import CLUSTER_TEMPLATE_KIND, CRON_KIND, TEMPLATE_KIND
from zen_flow.kube.errors import Forbidden, KubeError
from zen_flow.logging import get_logger
from zen_flow.webhook.child_templates import (
    FLOW_MARK,
    check_children,
    definition_children,
    flow_children,
    made_by_controller,
)
from zen_flow.webhook.client_auth import ClientAuth, ClientNames
from zen_flow.webhook.connections import ConnectionGuard, ConnectionLimits
from zen_flow.webhook.cron_review import validate_cron_review
from zen_flow.webhook.envelope import parse_review
from zen_flow.webhook.review import (
    Decisions,
    ReviewError,
    deny,
    deny_invalid,
    mutate_request,
    validate_review_decisions,
)
from zen_flow.webhook.templates import (
    expand_review,
    names_template,
    refused_read,
    template_to_read,
    unreadable,
    validate_cluster_template_review,
    validate_template_review,
)
from zen_flow.webhook.tls import CertMetrics, CertReloader

log = get_logger(__name__)

# An UPDATE review carries the object and the old object, each up to etcd's ~1.5 MiB: 3 MiB plus the
# envelope. (aiohttp's default of 1 MiB would reject large flows' updates with 413.)
MAX_BODY_BYTES = 3 * 1024 * 1024 + 64 * 1024
VALIDATE_PATH = "/validate-jobflow"
MUTATE_PATH = "/mutate-jobflow"
VALIDATE_CRON_PATH = "/validate-cronjobflow"
VALIDATE_TEMPLATE_PATH = "/validate-jobflowtemplate"
VALIDATE_CLUSTER_TEMPLATE_PATH = "/validate-clusterjobflowtemplate"
DEFAULT_RELOAD_INTERVAL = 30.0
DEFAULT_LIMITS = ConnectionLimits()


class WebhookMetrics(CertMetrics, Protocol):
    def review_done(self, webhook: str, allowed: bool, seconds: float) -> None:
        """One admission review answered by `webhook` ("validate", "mutate", "validate-cron",
        "validate-template" or "validate-cluster-template")."""


BodyReader = Callable[[web.Request], Awaitable[bytes]]
Review = Callable[[bytes], Awaitable[dict[str, Any]]]
# None when the request's user may take its decisions on Manual steps, else why not.
Authorize = Callable[[Decisions], Awaitable[str | None]]


class Templates(Protocol):
    async def get(self, namespace: str, name: str, *, cluster: bool = False) -> dict[str, Any] | None:
        """The raw JobFlowTemplate (`cluster`: ClusterJobFlowTemplate), None when there is none;
        `KubeError` when it cannot be read."""
        ...


async def _read_whole(request: web.Request) -> bytes:
    return await request.read()


def _validation(authorize: Authorize | None, templates: Templates | None) -> Review:
    async def run(body: bytes) -> dict[str, Any]:
        answer, decisions = await asyncio.to_thread(validate_review_decisions, body)
        if not answer["response"]["allowed"]:
            return answer
        # The template reads and the approver's check (each bounded by 3 s) run at once: one after the
        # other they could outlast the apiserver's 5 s timeout, and failurePolicy would refuse the flow.
        asked = authorize(decisions) if decisions is not None and authorize is not None else _nothing()
        refusal: dict[str, Any] | None
        why: str | None
        refusal, why = await asyncio.gather(_flow_steps(body, templates, answer), asked)
        if refusal is not None:
            return refusal
        return answer if why is None or decisions is None else deny(decisions.uid, 403, "Forbidden", why)

    return run


async def _flow_steps(
    body: bytes, templates: Templates | None, answer: dict[str, Any]
) -> dict[str, Any] | None:
    """The refusal of a JobFlow whose Flow steps do not fit their templates (webhook/child_templates.py),
    else None, with what to say added to `answer`'s warnings."""
    if templates is None or FLOW_MARK not in body:
        return None
    request = await asyncio.to_thread(parse_review, body)
    children = await asyncio.to_thread(flow_children, request)
    if not children:
        return None
    found = await check_children(children, request.namespace, templates)
    made = made_by_controller(request)
    if made is None and found.errors:
        return deny_invalid(request, found.errors)
    # A flow the controller creates is admitted: refusing it would skip a whole run, or fail a parent's
    # step, for what fails one step of it when that step is reached.
    after = f"admitted as {made}: the step fails when it is reached if this still holds"
    _warn(answer, found.notes if made is None else found.as_warnings(after))
    return None


async def _nothing() -> str | None:
    return None


def _definition(review: Callable[[bytes], dict[str, Any]], kind: str, templates: Templates | None) -> Review:
    """A JobFlowTemplate's, ClusterJobFlowTemplate's or CronJobFlow's review, and what its Flow steps'
    templates say as warnings (webhook/child_templates.py: a definition runs later)."""

    async def run(body: bytes) -> dict[str, Any]:
        answer = await asyncio.to_thread(review, body)
        if templates is None or FLOW_MARK not in body or not answer["response"]["allowed"]:
            return answer
        request = await asyncio.to_thread(parse_review, body)
        children = await asyncio.to_thread(definition_children, request, kind)
        if children:
            found = await check_children(children, request.namespace, templates)
            _warn(answer, found.as_warnings("checked again when a flow made from it runs the step"))
        return answer

    return run


def _warn(answer: dict[str, Any], warnings: list[str]) -> None:
    if warnings:
        response = answer["response"]
        response["warnings"] = [*response.get("warnings", ()), *warnings]


def _mutation(templates: Templates | None) -> Review:
    async def run(body: bytes) -> dict[str, Any]:
        request = await asyncio.to_thread(parse_review, body)
        if not names_template(request):
            return await asyncio.to_thread(mutate_request, request)
        ref = template_to_read(request) if templates is not None else None
        template = None
        if templates is not None and ref is not None:
            try:
                template = await templates.get(request.namespace, ref.name, cluster=ref.cluster)
            except Forbidden as err:
                log.warning("may not read a flow's template; denying", template=ref.subject, error=str(err))
                return refused_read(request, ref, err.message)
            except KubeError as err:
                log.warning("could not read a flow's template; denying", template=ref.subject, error=str(err))
                return unreadable(request, ref, str(err))
        return await asyncio.to_thread(expand_review, request, template, read=ref is not None)

    return run


def _review_handler(
    name: str,
    review: Review,
    metrics: WebhookMetrics | None,
    read_body: BodyReader,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        started = time.perf_counter()
        try:
            body = await read_body(request)  # raises 413 above client_max_size
        except TimeoutError:
            log.warning("admission request body too slow; connection dropped", webhook=name)
            raise web.HTTPRequestTimeout() from None
        try:
            answer = await review(body)
        except ReviewError as exc:
            log.warning("bad admission request", webhook=name, error=str(exc))
            return web.json_response({"error": str(exc)}, status=400)
        allowed = bool(answer["response"]["allowed"])
        if metrics is not None:
            metrics.review_done(name, allowed, time.perf_counter() - started)
        if not allowed:
            log.info("admission denied", webhook=name, uid=answer["response"]["uid"])
        return web.json_response(answer)

    return handle


def create_webhook_app(
    *,
    ready: Callable[[], str | None] = lambda: None,
    metrics: WebhookMetrics | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    guard: ConnectionGuard | None = None,
    authorize: Authorize | None = None,
    templates: Templates | None = None,
) -> web.Application:
    """The aiohttp app (no TLS: the site adds it). `ready` returns None when ready, else the reason;
    `authorize`: who may decide Manual steps (None: whoever may write the annotation); `templates`: where
    the webhooks read JobFlowTemplates (None: flows naming one are left to the controller, and Flow steps'
    templates are checked when the steps run)."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        reason = ready()
        if reason is not None:
            return web.Response(status=503, text=reason + "\n")
        return web.Response(text="ok\n")

    middlewares = [guard.middleware] if guard is not None else []
    read_body = guard.read_body if guard is not None else _read_whole
    app = web.Application(client_max_size=max_body_bytes, middlewares=middlewares)
    app.router.add_post(
        VALIDATE_PATH, _review_handler("validate", _validation(authorize, templates), metrics, read_body)
    )
    app.router.add_post(MUTATE_PATH, _review_handler("mutate", _mutation(templates), metrics, read_body))
    app.router.add_post(
        VALIDATE_CRON_PATH,
        _review_handler(
            "validate-cron", _definition(validate_cron_review, CRON_KIND, templates), metrics, read_body
        ),
    )
    app.router.add_post(
        VALIDATE_TEMPLATE_PATH,
        _review_handler(
            "validate-template",
            _definition(validate_template_review, TEMPLATE_KIND, templates),
            metrics,
            read_body,
        ),
    )
    app.router.add_post(
        VALIDATE_CLUSTER_TEMPLATE_PATH,
        _review_handler(
            "validate-cluster-template",
            _definition(validate_cluster_template_review, CLUSTER_TEMPLATE_KIND, templates),
            metrics,
            read_body,
        ),
    )
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
    ) -> None:
        ca = client_auth.ca_file if client_auth is not None else None
        self.certs = CertReloader(cert_dir, metrics=metrics, client_ca=ca)
        self.client_names = ClientNames(client_auth.names) if client_auth and client_auth.names else None
        self._interval = reload_interval
        self.guard = ConnectionGuard(limits)
        self._app = create_webhook_app(
            ready=self.not_ready_reason,
            metrics=metrics,
            max_body_bytes=max_body_bytes,
            guard=self.guard,
            authorize=authorize,
            templates=templates,
        )
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
        self._runner = web.AppRunner(
            self._app, handle_signals=False, access_log=None, keepalive_timeout=limits.keepalive_timeout
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
