"""The process: every long-running task in one TaskGroup, and an orderly shutdown.

Informers, the event recorder, the health/metrics server and the webhooks run on every replica; only the
reconcile workers wait for leadership, so a standby is warm (its caches are synced) and takes over within
a lease period. With `--shards N > 1` every replica's workers run, each reconciling the flows of the
shard Leases it holds (shard_keeper.py, shard_gate.py). Any long-running task that ends unexpectedly
ends the process (crash, don't limp).
On SIGTERM the queue is shut down first (workers finish the key in hand), the lease is released so a
successor starts at once, then everything else is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import time
from collections.abc import Coroutine
from typing import Any

from zen_flow import __version__
from zen_flow import logging as zf_logging
from zen_flow.config import Settings
from zen_flow.controller.archiver import configured_archiver
from zen_flow.controller.child_flows import ChildFlows
from zen_flow.controller.cloud_event_sink import configured_sink
from zen_flow.controller.cron_reconciler import cron_controller, run_cron_workers
from zen_flow.controller.expression_sandbox import ExpressionSandbox
from zen_flow.controller.flow_queue import flow_queue, worker_count
from zen_flow.controller.health import create_health_app
from zen_flow.controller.lease_keeper import LeaseKeeper
from zen_flow.controller.memory import freeze_long_lived, release_memory
from zen_flow.controller.metric_collectors import InformerStats
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.namespace_series import NamespaceSeries
from zen_flow.controller.reconciler import Controller
from zen_flow.controller.replica_servers import replica_probes, serve_site, webhook_server
from zen_flow.controller.runtime_metrics import PrometheusQueueMetrics
from zen_flow.controller.shard_gate import ShardGate, queue_shard
from zen_flow.controller.shard_keeper import ShardKeeper, shard_keeper
from zen_flow.core.instances import instance_selector
from zen_flow.core.shards import LABEL_SHARDED_LEASE
from zen_flow.informer import JobFlowInformer, JobInformer
from zen_flow.kube.client import KubeClient
from zen_flow.kube.cluster import Cluster
from zen_flow.kube.config import load_config
from zen_flow.kube.errors import Forbidden, KubeError
from zen_flow.kube.events import EventRecorder
from zen_flow.kube.jobflows import JobFlowClient
from zen_flow.kube.jobs import JobClient
from zen_flow.kube.leases import LeaseClient
from zen_flow.kube.memo_caches import MemoCacheClient
from zen_flow.kube.objects import ObjectClient
from zen_flow.kube.pods import PodClient, PodLogs
from zen_flow.kube.transport import ClientOptions, RequestRecord
from zen_flow.logging import get_logger
from zen_flow.machinery.clock import Clock, SystemClock
from zen_flow.machinery.expectations import Expectations
from zen_flow.machinery.leader import LeadershipLost
from zen_flow.machinery.shard_elector import wait_for_unsharded
from zen_flow.machinery.workqueue import Priority, WorkQueue
from zen_flow.planner import ArtifactOptions, SlotLimits
from zen_flow.planner.events import ROUTINE_STEP_EVENTS
from zen_flow.validation import BUILD as VALIDATOR_BUILD

log = get_logger(__name__)

# On shutdown, how long the CloudEvents still queued may take to go out (after the reconciles in hand
# finished, before the lease is released): the pod's terminationGracePeriodSeconds (30 s) must exceed
# --renew-deadline (10 s), the most the reconciles in hand are given, plus this.
CLOUDEVENTS_FLUSH_SECONDS = 5.0


def client_options(settings: Settings) -> ClientOptions:
    """`--qps 0` (the default) sends without a client-side limit, as controller-runtime does since its
    PR #3119 on SIG API Machinery's advice: the apiserver's priority and fairness (on since Kubernetes 1.20,
    GA in 1.29) queues or answers 429 when it is busy, which the client honours. A token bucket cannot see
    the apiserver's load; at 100 QPS it held 1,000 new flows' first creates over 22 s, during which the
    running flows' next creates waited for tokens behind them (docs/BENCHMARKS.md). The request slots
    still bound what is in flight."""
    return ClientOptions(qps=settings.qps or math.inf, burst=settings.burst)


class _Stop(Exception):
    """Raised inside the TaskGroup to cancel the remaining tasks on an orderly shutdown."""


async def _critical(name: str, coro: Coroutine[Any, Any, object], stop: asyncio.Event | None = None) -> None:
    """Run a task that must not end: returning is a crash, unless `stop` says we are shutting down."""
    await coro
    if stop is None or not stop.is_set():
        raise RuntimeError(f"{name} ended unexpectedly")


async def serve(settings: Settings, *, stop: asyncio.Event | None = None, clock: Clock | None = None) -> None:
    """Run the controller until `stop` is set (or SIGTERM/SIGINT when `stop` is None)."""
    clock = clock or SystemClock()
    stop = stop or _signal_event()
    metrics = Metrics()
    config = await load_config(settings.kubeconfig)
    # The flows it runs: those labelled with its instance id, or (none) those without the label.
    selector = instance_selector(settings.instance_id)
    log.info(
        "starting zen-flow",
        version=__version__,
        validator=VALIDATOR_BUILD,
        cluster=config.host,
        config=config.source,
        namespaces=list(settings.namespaces) or "all",
        instance_id=settings.instance_id or None,
        selector=selector,
        workers=settings.workers,
        start_workers=settings.start_limit,
        qps=settings.qps,  # 0: no client-side limit
        leader_elect=settings.leader_elect,
        lease=settings.lease_name if settings.leader_elect else None,
        shards=settings.shards,
    )
    metrics.controller_info.labels(settings.instance_id).set(1)
    options = client_options(settings)

    def count_request(r: RequestRecord) -> None:
        metrics.api_requests.labels(r.verb, r.resource, str(r.code)).inc()
        metrics.api_request_duration.labels(r.verb, r.resource).observe(r.seconds)
        metrics.api_request_wait.labels(r.verb, r.resource).observe(r.waited)
        if r.sent:
            metrics.api_request_bytes.labels(r.verb, r.resource).inc(r.sent)

    async with (
        KubeClient(config, options, clock=clock, on_response=count_request) as kube,
        contextlib.AsyncExitStack() as stack,
    ):
        # Jobs are not selected by instance: a relabelled flow's Jobs keep the label they were made with,
        # and its new controller must see them to take the flow over (docs/OPERATOR_GUIDE.md).
        job_api, flow_api = JobClient(kube), JobFlowClient(kube, label_selector=selector)
        flows = JobFlowInformer(flow_api, clock=clock, namespaces=settings.namespaces)
        jobs = JobInformer(job_api, clock=clock, namespaces=settings.namespaces, owner_alive=flows.owns)
        queue = flow_queue(clock, settings.start_limit, settings.workers, PrometheusQueueMetrics(metrics))
        metrics.watch_queue(queue)
        recorder = EventRecorder(
            kube,
            clock=clock,
            qps=settings.event_qps,
            burst=settings.event_burst,
            skip=frozenset() if settings.step_events == "all" else ROUTINE_STEP_EVENTS,
        )
        metrics.watch_events(recorder.lost)
        sandbox = ExpressionSandbox(budget=settings.expression_budget, workers=settings.expression_workers)
        stack.callback(sandbox.close)
        # --shards N > 1: every replica reconciles the flows of the shards it holds (shard_gate.py).
        gate = ShardGate(settings.shards, settings.lease_name, metrics) if settings.shards > 1 else None
        sink = configured_sink(settings, clock, metrics)
        cluster = Cluster(job_api, flow_api, ObjectClient(kube), PodClient(kube), MemoCacheClient(kube))
        if sink is not None:
            stack.push_async_callback(sink.close)
        expectations = Expectations(clock)
        # Flow steps' child flows shown to the planner as their steps' Jobs (controller/child_flows.py).
        children = ChildFlows(jobs, flows.children_of, expectations, queue.add, flows.get)
        archive = configured_archiver(
            settings,
            stack,
            api=cluster,
            flows=flows,
            jobs=children,
            queue=queue,
            events=recorder,
            metrics=metrics,
            clock=clock,
            pods=PodLogs(kube),
        )
        controller = Controller(
            flows=flows,
            jobs=children,
            api=cluster,
            queue=queue,
            expectations=expectations,
            events=recorder,
            clock=clock,
            metrics=metrics,
            evaluate=sandbox.evaluate,
            transfers=ArtifactOptions(image=settings.artifact_image),
            progress_deadline=settings.progress_deadline_seconds,
            sandboxed_plans=settings.expression_workers,
            cloud_events=sink,
            slots=SlotLimits(settings.max_running_flows, settings.namespace_max_running_flows),
            shards=gate,
            archive=archive,
        )
        stack.callback(controller.close)
        # CronJobFlows: their own informer, queue and workers (controller/cron_reconciler.py).
        scheduler = cron_controller(
            kube=kube,
            flows=flows,
            flow_api=flow_api,
            events=recorder,
            clock=clock,
            metrics=metrics,
            namespaces=settings.namespaces,
            label_selector=selector,
            shards=gate,
            # With an archive, a run beyond the history limits waits for its record as a TTL does.
            archive_max_delay=settings.archive_max_delay_seconds if archive is not None else None,
        )
        crons = scheduler.informer
        metrics.watch_queue(scheduler.queue)
        if gate is not None:
            gate.on_grant(queue_shard(gate, flows.list, queue, crons.list, scheduler.queue))
        cron_stop = asyncio.Event()
        flows.add_handler(
            on_add=controller.on_flow_event,
            on_update=lambda old, new: controller.on_flow_event(new, old),
            on_delete=controller.on_flow_deleted,
        )
        flows.add_handler(
            on_add=children.on_flow_event,
            on_update=lambda _old, new: children.on_flow_event(new),
            on_delete=lambda flow: children.on_flow_event(flow, deleted=True),
        )
        jobs.add_handler(
            on_add=controller.on_job_event,
            on_update=lambda old, new: controller.on_job_event(new, old),
            on_delete=lambda job: controller.on_job_event(job, deleted=True),
        )
        metrics.watch_flows(flows.list)
        metrics.watch_job_creates(controller.creates_failing)
        metrics.watch_status_held(lambda: [*controller.status_held(), *scheduler.status_held()])
        metrics.watch_informers(
            lambda: [
                InformerStats(i.name, i.events, i.lists, i.closed_early, i.recognised)
                for i in (flows, jobs, crons)
            ]
        )
        metrics.informer_cached.labels("jobflows").set_function(lambda: len(flows.store))
        metrics.informer_cached.labels("jobs").set_function(lambda: len(jobs.store))
        metrics.informer_cached.labels("cronjobflows").set_function(lambda: len(crons.store))

        working = asyncio.Event()  # workers are running: a shutdown lets them finish the key in hand

        async def work() -> None:
            await flows.wait_synced()
            await jobs.wait_synced()
            log.info("caches synced; reconciling", flows=len(flows.store), jobs=len(jobs.store))
            freeze_long_lived()
            working.set()
            async with asyncio.TaskGroup() as group:
                workers = [
                    group.create_task(controller.run_worker(), name=f"worker-{n}")
                    for n in range(worker_count(settings.workers))
                ]
                group.create_task(run_cron_workers(crons, scheduler, cron_stop), name="cron-workers")
                if settings.resync_seconds > 0:
                    resync = group.create_task(_resync(flows, queue, clock, settings.resync_seconds))
                    # Workers end when the queue shuts down; the resync loop never would by itself.
                    group.create_task(_cancel_when_done(workers, resync))
            if sink is not None:
                # Still leading: the lease is released only once this returns, so a new leader never
                # sends while this one still does (the sink sends nothing after its flush).
                await sink.flush(CLOUDEVENTS_FLUSH_SECONDS)

        keeper: LeaseKeeper | ShardKeeper | None = None
        if gate is not None:
            keeper = shard_keeper(settings, gate, count_request)
            sharded = keeper

            async def reconcile() -> None:
                # Join once warm: the others hand shards over to a new member at once, and one whose
                # caches still sync would hold them idle (a leader's standby is warm the same way).
                await flows.wait_synced()
                await jobs.wait_synced()
                await sharded.run(work)
        elif settings.leader_elect:
            # A standby exports 0 (not nothing), so "no leader" alerts can sum over replicas.
            metrics.leader.labels(settings.lease_name).set(0)
            keeper = LeaseKeeper(
                kubeconfig=settings.kubeconfig,
                name=settings.lease_name,
                namespace=settings.lease_namespace,
                identity=settings.elector_identity,
                lease_duration=settings.lease_duration,
                renew_deadline=settings.renew_deadline,
                retry_period=settings.retry_period,
                on_response=count_request,
            )

            async def lead() -> None:
                metrics.leader.labels(settings.lease_name).set(1)
                metrics.leader_transitions.inc()
                try:
                    # A rollout from --shards N back to one: the sharded replicas still running hand
                    # their shards back once they see this Lease held (and take none). Listed after our
                    # Lease is written, as they re-read it after writing theirs: one side sees the other.
                    await wait_for_unsharded(
                        LeaseClient(kube, selector=f"{LABEL_SHARDED_LEASE}={settings.lease_name}"),
                        settings.lease_name,
                        settings.lease_namespace,
                        clock,
                        settings.retry_period,
                        forbidden=Forbidden,
                    )
                    await work()
                finally:
                    metrics.leader.labels(settings.lease_name).set(0)

            campaign = keeper

            async def reconcile() -> None:
                await campaign.run(lead)
        else:
            reconcile = work

        webhook = webhook_server(settings, metrics, kube)
        probes = replica_probes(flows, jobs, crons, webhook, clock)

        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(_critical("jobflow informer", flows.run()))
                tg.create_task(_critical("job informer", jobs.run()))
                tg.create_task(_critical("cronjobflow informer", crons.run()))
                tg.create_task(_critical("event recorder", recorder.run()))
                tg.create_task(_critical("memory release", release_memory(clock)))
                tg.create_task(_critical("namespace series", NamespaceSeries(metrics).run(flows.list, clock)))
                tg.create_task(_critical("flow memory sweep", controller.memory.run(flows.list, clock)))
                if sink is not None:
                    tg.create_task(_critical("cloudevents sink", sink.run(), stop))
                if archive is not None:
                    tg.create_task(_critical("archive writers", archive.run(), stop))
                if settings.metrics_addr:
                    health = create_health_app(metrics, probes.liveness, probes.readiness)
                    tg.create_task(_critical("health server", serve_site(health, settings.metrics_addr)))
                if webhook is not None:
                    tg.create_task(_critical("webhook server", webhook.serve(settings.webhook_addr)))
                reconciler = tg.create_task(_critical("reconcile", reconcile(), stop))
                await stop.wait()
                log.info("shutting down: finishing in-flight reconciles, releasing the lease")
                queue.shutdown()
                scheduler.queue.shutdown()
                cron_stop.set()
                # Workers return once the queue is shut down; lead() then returns and the lease is
                # released. A standby, or a controller still syncing its caches, has nothing to finish:
                # cancelling it stops at once.
                if working.is_set() and (keeper is None or keeper.is_leader):
                    flushing = CLOUDEVENTS_FLUSH_SECONDS if sink is not None else 0.0
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(settings.renew_deadline + flushing):
                            await asyncio.shield(reconciler)
                if sink is not None:
                    # Done already unless the reconciles in hand overran (the lease is still held
                    # then: it goes when the reconcile task is cancelled below). Their time and the
                    # flush's are spent by then: stop sending now (a flush of the reconcile task's in
                    # progress ends with it), so the shutdown stays within --renew-deadline plus
                    # CLOUDEVENTS_FLUSH_SECONDS, which the pod's grace period must exceed.
                    await sink.flush(0.0)
                raise _Stop
        except* _Stop:
            log.info("stopped")
        except* LeadershipLost:
            log.error("lost leadership; exiting so a fresh process rejoins as a follower")
            raise


async def _cancel_when_done(tasks: list[asyncio.Task[None]], other: asyncio.Task[None]) -> None:
    await asyncio.wait(tasks)
    other.cancel()


async def _resync(flows: JobFlowInformer, queue: WorkQueue[str], clock: Clock, period: float) -> None:
    """Safety net for lost edges: re-enqueue every cached flow now and then (no API calls)."""
    while True:
        await clock.sleep(period)
        for flow in flows.list():
            queue.add(flow.key, Priority.LOW)  # never ahead of a change someone is waiting for


def _signal_event() -> asyncio.Event:
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, event.set)
    return event


def run_controller(settings: Settings) -> int:
    zf_logging.configure(settings.log_format, settings.log_level)
    started = time.monotonic()
    code = 0
    try:
        asyncio.run(serve(settings))
    except* KubeError as group:
        log.error("cannot reach the cluster", error=str(group.exceptions[0]))
        code = 1
    except* LeadershipLost:
        code = 1
    except* Exception as group:
        log.error("controller crashed", error=repr(group.exceptions[0]), exc_info=group.exceptions[0])
        code = 1
    log.info("exited", code=code, uptime_seconds=round(time.monotonic() - started, 1))
    return code
