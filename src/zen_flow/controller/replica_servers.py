"""The servers every replica runs, leader or not: the health/metrics site with its probes, and the
admission webhooks.

A standby serves them as the leader does (readiness never depends on leadership), so the webhooks stay up
through a failover. This module builds them and says what the probes check; controller/health.py is the
aiohttp app that answers /metrics, /healthz and /readyz, and zen_flow.webhook the admission side.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from zen_flow.addresses import split_addr
from zen_flow.config import Settings
from zen_flow.controller.health import Probe
from zen_flow.controller.metrics import Metrics
from zen_flow.informer import Informer, JobFlowInformer, JobInformer
from zen_flow.kube.client import KubeClient
from zen_flow.logging import get_logger
from zen_flow.machinery.clock import Clock

if TYPE_CHECKING:
    from zen_flow.webhook.runtime import WebhookRuntime

log = get_logger(__name__)

# An informer that made no progress (list, event or bookmark) for this long is stuck. Watches end every
# 5-10 minutes and the inactivity watchdog restarts a silent one after 150 s, so a healthy informer
# reports progress far more often than this.
STALE_INFORMER_SECONDS = 15 * 60


@dataclass(frozen=True)
class ReplicaProbes:
    """What /healthz (liveness) and /readyz (readiness) check."""

    liveness: tuple[Probe, ...]
    readiness: tuple[Probe, ...]


async def serve_site(app: web.Application, addr: str, ssl_context: ssl.SSLContext | None = None) -> None:
    """Serve `app` on `addr` until cancelled; then close the listener."""
    host, port = split_addr(addr)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
        log.info("serving", addr=addr, tls=ssl_context is not None)
        await asyncio.Event().wait()  # until cancelled
    finally:
        await runner.cleanup()


def informer_probe(name: str, informer: Informer[Any], clock: Clock) -> Probe:
    def check() -> str | None:
        idle = clock.monotonic() - informer.last_progress
        if informer.has_synced and idle > STALE_INFORMER_SECONDS:
            return f"no list, event or bookmark for {idle:.0f}s"
        return None

    return Probe(f"informer-{name}", check)


def synced_probe(name: str, informer: JobFlowInformer | JobInformer) -> Probe:
    def check() -> str | None:
        if informer.has_synced:
            return None
        error = informer.last_error
        # The reason matters most here: a wrong token file or an unreachable apiserver would otherwise
        # look like a slow start forever.
        return f"cache not synced yet: {error}" if error else "cache not synced yet"

    return Probe(f"informer-{name}-synced", check)


def replica_probes(
    flows: JobFlowInformer,
    jobs: JobInformer,
    crons: Informer[Any],
    webhook: WebhookRuntime | None,
    clock: Clock,
) -> ReplicaProbes:
    liveness = [
        informer_probe("jobflows", flows, clock),
        informer_probe("jobs", jobs, clock),
        informer_probe("cronjobflows", crons, clock),
    ]
    # Not a readiness condition: without the CronJobFlow CRD (an upgrade that has not applied it yet)
    # the controller must still serve JobFlows and their webhooks; its informer keeps retrying.
    readiness = [synced_probe("jobflows", flows), synced_probe("jobs", jobs)]
    if webhook is not None:
        readiness.append(Probe("webhook-tls", webhook.tls_problem))
    return ReplicaProbes(tuple(liveness), tuple(readiness))


def webhook_server(
    settings: Settings, metrics: Metrics, kube: KubeClient, *, reload_interval: float | None = None
) -> WebhookRuntime | None:
    """The admission webhook server, or None when disabled (`--webhook-addr ''`).

    Built whether or not the certificate is there yet: until `tls.crt` and `tls.key` load (a Secret not
    issued yet, mounted as an empty optional volume), the server refuses handshakes and the readiness
    probe answers 503, so the Service sends this replica no admission calls; it picks the files up when
    they appear (webhook/tls.py). Disabling it instead left a Ready pod with 9443 closed until a restart.
    """
    if not settings.webhook_addr:
        return None
    # Imported here: a controller without webhooks never loads them.
    from zen_flow.kube.access_reviews import AccessReviews
    from zen_flow.kube.flow_templates import WEBHOOK_TIMEOUT_SECONDS, FlowTemplateClient
    from zen_flow.webhook.approvers import ApprovalAuthorizer
    from zen_flow.webhook.client_auth import client_auth
    from zen_flow.webhook.connections import ConnectionLimits
    from zen_flow.webhook.review_threads import ReviewLimits
    from zen_flow.webhook.runtime import WebhookRuntime

    options = {} if reload_interval is None else {"reload_interval": reload_interval}
    return WebhookRuntime(
        Path(settings.webhook_cert_dir),
        metrics,
        **options,
        authorize=ApprovalAuthorizer(AccessReviews(kube)) if settings.authorize_approvals else None,
        templates=FlowTemplateClient(kube, timeout=WEBHOOK_TIMEOUT_SECONDS),
        client_auth=client_auth(settings.webhook_client_ca, settings.webhook_client_names),
        limits=ConnectionLimits(
            max_connections=settings.webhook_max_connections,
            max_connections_per_ip=settings.webhook_max_connections_per_ip,
        ),
        body_budget=settings.webhook_body_budget_bytes,
        reviews=ReviewLimits(
            threads=settings.webhook_review_threads,
            per_namespace=settings.webhook_namespace_review_threads,
            max_wait=settings.webhook_queue_wait_seconds,
        ),
    )
