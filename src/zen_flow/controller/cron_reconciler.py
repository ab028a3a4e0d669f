"""The CronJobFlow reconciler: the thin I/O shell around `planner.cron.plan_cron`.

One reconcile: the CronJobFlow and its runs from the caches (runs through the JobFlow informer's index of
flows by their CronJobFlow owner), the validator's verdict (once per generation), `plan_cron(..., now)`,
then the plan's run creates, stop requests and history deletes, its Events, and one conditional merge
patch of /status when it changed (cron_status.py: held when refused for good). The key comes back at the
next run time (`requeue_after`, the work queue's delayed add): a quiet schedule costs nothing between.

Its own work queue and workers, beside the JobFlow ones: a CronJobFlow's run must not wait behind a burst
of flow reconciles, nor one CronJobFlow's failing creates behind another's (each key is retried on its
own backoff; a failure is reported on that CronJobFlow, never raised out of the worker).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Any

import structlog

from zen_flow.api.constants import ANNOTATION_STOP, CronConditionType
from zen_flow.api.cronjobflow import CronJobFlow
from zen_flow.api.jobflow import JobFlow
from zen_flow.controller.cron_status import CronStatus
from zen_flow.controller.flow_memory import holds
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.newer_schema_marks import NewerSchemaMarks
from zen_flow.controller.runtime_metrics import PrometheusQueueMetrics
from zen_flow.controller.shard_gate import ShardGate, shard_turn
from zen_flow.controller.validity import KnownSpecs
from zen_flow.informer import JobFlowInformer
from zen_flow.informer.cronjobflows import CronJobFlowInformer
from zen_flow.informer.resources import owner_cron_key
from zen_flow.kube.client import KubeClient
from zen_flow.kube.cronjobflows import CronJobFlowClient
from zen_flow.kube.errors import AlreadyExists, ApiError, Conflict, Invalid, KubeError, NotFound, describe
from zen_flow.kube.events import EventRecorder
from zen_flow.kube.jobflows import JobFlowClient
from zen_flow.logging import get_logger
from zen_flow.machinery.clock import Clock
from zen_flow.machinery.queue_metrics import QueueMetrics
from zen_flow.machinery.ratelimit import default_controller_rate_limiter, namespace_of
from zen_flow.machinery.workqueue import QueueShutDown, WorkQueue
from zen_flow.planner.actions import EventSpec
from zen_flow.planner.archiving import REASON_NOT_ARCHIVED
from zen_flow.planner.cron import RUN_CREATED, CreateRun, CronPlan, DeleteRun, StopRun, counted, plan_cron
from zen_flow.planner.newer_schema import NEWER_SCHEMA_RETRY_SECONDS, REASON_NEWER_SCHEMA
from zen_flow.planner.status import next_condition
from zen_flow.validation import render, validate_cronjobflow

log = get_logger(__name__)

# Three, of which one namespace holds at most two (CRON_NAMESPACE_LIMIT): run creates held by a slow
# admission webhook of one namespace leave a worker to the others, and a cluster of one namespace still
# creates two runs at once (with one, a run with a short startingDeadlineSeconds due behind a slow create
# was skipped twice as easily).
CRON_WORKERS = 3
CRON_NAMESPACE_LIMIT = CRON_WORKERS - 1
MAX_VERDICT = 4096


def cron_queue(clock: Clock, metrics: QueueMetrics | None = None) -> WorkQueue[str]:
    return WorkQueue(
        name="cronjobflows",
        clock=clock,
        rate_limiter=default_controller_rate_limiter(clock, group_of=namespace_of),
        metrics=metrics,
        group_of=namespace_of,
        group_limit=CRON_NAMESPACE_LIMIT,  # per namespace (group_limits.py): workers for the others
    )


def cron_controller(
    *,
    kube: KubeClient,
    flows: JobFlowInformer,
    flow_api: JobFlowClient,
    events: EventRecorder,
    clock: Clock,
    metrics: Metrics,
    namespaces: Sequence[str],
    label_selector: str = "",
    shards: ShardGate | None = None,
    archive_max_delay: float | None = None,
) -> CronController:
    """The CronJobFlow informer, queue and controller, handlers on both informers (the JobFlow one's
    first). `label_selector`: this instance's (core/instances.py); `shards`: which CronJobFlows this replica
    may reconcile (shard_gate.py); `archive_max_delay`: the runs' records the history waits for."""
    crons = CronJobFlowInformer(CronJobFlowClient(kube, label_selector), clock=clock, namespaces=namespaces)
    scheduler = CronController(
        crons=crons,
        flows=flows,
        cron_api=CronJobFlowClient(kube),
        flow_api=flow_api,
        queue=cron_queue(clock, PrometheusQueueMetrics(metrics)),
        events=events,
        clock=clock,
        metrics=metrics,
        shards=shards,
        archive_max_delay=archive_max_delay,
    )
    crons.add_handler(
        on_add=scheduler.on_cron_event,
        on_update=lambda _old, new: scheduler.on_cron_event(new),
        on_delete=scheduler.on_cron_deleted,
    )
    flows.add_handler(
        on_add=scheduler.on_flow_event,
        on_update=lambda _old, new: scheduler.on_flow_event(new),
        on_delete=scheduler.on_flow_event,
    )
    return scheduler


async def run_cron_workers(
    crons: CronJobFlowInformer, scheduler: CronController, stop: asyncio.Event
) -> None:
    """The CronJobFlow workers, once their cache has synced; until then (the CRD not installed yet, say)
    JobFlows are served without them. Ends when the controller stops."""
    synced, stopping = asyncio.ensure_future(crons.wait_synced()), asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([synced, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        synced.cancel()
        stopping.cancel()
    if stop.is_set():
        return
    log.info("cronjobflow cache synced; scheduling", cronjobflows=len(crons.store))
    async with asyncio.TaskGroup() as group:
        for n in range(CRON_WORKERS):
            group.create_task(scheduler.run_worker(), name=f"cron-worker-{n}")


class CronController:
    def __init__(
        self,
        *,
        crons: CronJobFlowInformer,
        flows: JobFlowInformer,
        cron_api: CronJobFlowClient,
        flow_api: JobFlowClient,
        queue: WorkQueue[str],
        events: EventRecorder,
        clock: Clock,
        metrics: Metrics,
        shards: ShardGate | None = None,
        archive_max_delay: float | None = None,
    ) -> None:
        self._crons = crons
        self._archive_max_delay = archive_max_delay
        self._shards = shards
        self._flows = flows
        self._flow_api = flow_api
        self._queue = queue
        self._events = events
        self._clock = clock
        self._metrics = metrics
        # (uid, generation) -> the validator's verdict (None: valid); the spec only changes with a generation.
        self._verdicts: dict[tuple[str, int], str | None] = {}
        self._known = KnownSpecs()  # written for a newer zen-flow? per generation
        self._newer = NewerSchemaMarks(clock.now, crons.get)
        self._status = CronStatus(cron_api, events, clock, queue.add_after, crons.get)  # and its holds
        self._ids = itertools.count(1)
        # uid -> the run this process last reported created (Event and metric): a create answered
        # AlreadyExists is reported only when it was not (its first answer was lost), never twice.
        self._reported: dict[str, str] = {}

    @property
    def informer(self) -> CronJobFlowInformer:
        return self._crons

    @property
    def queue(self) -> WorkQueue[str]:
        return self._queue

    # --- informer handlers: only enqueue -----------------------------------------------------------

    def on_cron_event(self, cron: CronJobFlow) -> None:
        self._queue.add(cron.key)

    def on_cron_deleted(self, cron: CronJobFlow) -> None:
        # Its runs go with it (ownerReferences); only the memory of its verdicts is ours to drop, and the
        # timer of its next run time (weeks away for a monthly schedule), which would wake nothing.
        for key in [k for k in self._verdicts if k[0] == cron.metadata.uid]:
            del self._verdicts[key]
        self._known.forget(cron.metadata.uid)
        self._newer.forget(cron.metadata.uid)
        self._status.forget(cron.metadata.uid)
        self._reported.pop(cron.metadata.uid, None)
        self._queue.cancel_after(cron.key)

    def on_flow_event(self, flow: JobFlow) -> None:
        """A run changed (started, finished, was deleted): its CronJobFlow's active list and history too."""
        key = owner_cron_key(flow)
        if key is not None:
            self._queue.add(key)

    # --- workers -----------------------------------------------------------------------------------

    async def run_worker(self) -> None:
        while True:
            try:
                key = await self._queue.get()
            except QueueShutDown:
                return
            # Another replica's shard (or one being handed over) is dropped: its holder queues it.
            async with shard_turn(self._shards, ShardGate.key_shard, key, self._queue) as mine:
                if mine:
                    with structlog.contextvars.bound_contextvars(
                        cronjobflow=key, reconcile_id=f"c{next(self._ids):x}"
                    ):
                        await self._work(key)
            # A reconcile may not wait on anything (no write to make) and the queue's get does not wait
            # when a key is ready: without this a key that came back at once would hold the event loop,
            # and every JobFlow worker, lease renewal and probe with it.
            await asyncio.sleep(0)

    async def _work(self, key: str) -> None:
        try:
            requeue_after = await self.reconcile(key)
        except Conflict as exc:
            log.debug("cronjobflow status conflict; retrying", error=str(exc))
            self._queue.add_rate_limited(key)
        except Exception as exc:
            # Never out of the worker: one broken CronJobFlow must not stop another's runs.
            log.warning("cronjobflow reconcile failed; retrying", error=describe(exc))
            self._queue.add_rate_limited(key)
        else:
            self._queue.forget(key)
            log.debug("cronjobflow reconciled", next_in=requeue_after)
        finally:
            self._queue.done(key)

    async def reconcile(self, key: str) -> float | None:
        """One reconcile. The key is booked again for the next run time as soon as the plan is made, so a
        failure after that (retried with a backoff that may grow past it) never makes that run late;
        returns the seconds until then (None: nothing scheduled)."""
        cron = self._crons.get(key)
        if cron is None or cron.metadata.deletion_timestamp is not None:
            return None
        if (newer := self._known.newer(cron.metadata, cron.spec)) is not None:  # for a newer zen-flow
            await self._newer_schema(cron, newer)
            return None
        if await self._status.held(cron):  # its status writes refused (cron_status.py): not planned
            return None
        invalid = self._crons.parse_error(key) or self._verdict(cron)
        runs = self._flows.runs_of(cron.metadata.uid)
        plan = plan_cron(cron, runs, self._clock.now(), invalid, archive_max_delay=self._archive_max_delay)
        if plan.requeue_after is not None:
            self._queue.add_after(key, plan.requeue_after)
        plan, cleanup_failed = await self._apply(cron, plan)
        for event in plan.events:
            self._events.emit(cron, event.type, event.reason, event.message)
        if plan.outcome is not None:
            self._metrics.cron_runs.labels(plan.outcome).inc()
        if not await self._status.record(cron, plan.status):  # refused: held, its deletes not retried
            return None
        if cleanup_failed is not None:
            raise cleanup_failed  # retried with backoff; the run and the status are written already
        return plan.requeue_after

    async def _newer_schema(self, cron: CronJobFlow, found: str) -> None:
        """Written for a newer zen-flow (api/known_fields.py): no run, told (newer_schema_marks.py)."""
        self._queue.add_after(cron.key, NEWER_SCHEMA_RETRY_SECONDS)
        tell = partial(self._events.emit, cron, "Warning", REASON_NEWER_SCHEMA)
        await self._newer.mark(cron.metadata, cron.status, found, partial(self._status.write, cron), tell)

    def _verdict(self, cron: CronJobFlow) -> str | None:
        """Why the CronJobFlow cannot make valid runs (the webhook's rules: it may not have run), or None."""
        key = (cron.metadata.uid, cron.metadata.generation)
        if key not in self._verdicts:
            for stale in [k for k in self._verdicts if k[0] == key[0]]:
                del self._verdicts[stale]  # an older generation's
            errors = validate_cronjobflow(cron.to_wire())
            # Bounded: it becomes a condition message and an Event (a 500-step template's every error).
            self._verdicts[key] = render(errors)[:MAX_VERDICT] if errors else None
        return self._verdicts[key]

    async def _apply(self, cron: CronJobFlow, plan: CronPlan) -> tuple[CronPlan, KubeError | None]:
        """Carry out the plan's actions; a run the apiserver refuses for good becomes a skipped run time.
        A stop or a history delete that fails does not hold the run back: its error is returned, to be
        raised once the run is created and the status written."""
        namespace = cron.metadata.namespace
        failed: KubeError | None = None
        for action in plan.actions:
            try:
                if isinstance(action, StopRun):
                    await self._flow_api.annotate(
                        namespace, action.name, {ANNOTATION_STOP: "true"}, action.uid
                    )
                elif isinstance(action, DeleteRun):
                    await self._flow_api.delete(namespace, action.name, action.uid)
                    if action.unarchived:  # its record could not be written in time (cron_history.py)
                        self._events.emit(cron, "Warning", REASON_NOT_ARCHIVED, action.unarchived)
                        self._metrics.archive_writes.labels("skipped").inc()
                        log.warning("deleted a run without an archive record", run=action.name)
                elif isinstance(action, CreateRun):
                    plan = await self._create(cron, plan, action)
            except (NotFound, Conflict, Invalid) as err:
                if isinstance(action, CreateRun):
                    raise
                # Gone, or another flow by that name now (its uid differs): nothing of ours to change.
                log.debug("run already gone or replaced", run=action.name, error=str(err))
            except KubeError as err:
                if isinstance(action, CreateRun):
                    raise
                log.warning("run not stopped or deleted; retrying", run=action.name, error=describe(err))
                failed = failed or err
        return plan, failed

    async def _create(self, cron: CronJobFlow, plan: CronPlan, action: CreateRun) -> CronPlan:
        namespace = cron.metadata.namespace
        try:
            await self._flow_api.create(namespace, action.body)
        except AlreadyExists:
            # Names are deterministic: most likely our own create, answered late or before a restart.
            raw = await self._flow_api.get(namespace, action.name)
            if _controller_uid(raw) == cron.metadata.uid:
                log.info("run already created", run=action.name)
                if self._reported.get(cron.metadata.uid) == action.name:
                    return _unreported(plan)
                self._report(cron, action.name)
                return plan
            taken = f"the name {action.name} is taken by a flow this did not create"
            return _refused(cron, plan, action, taken, self._clock.now())
        except ApiError as err:
            if err.transient:
                raise
            # The apiserver or the JobFlow webhook refused the run (a template that a newer rule rejects,
            # a quota): retrying would not help; the run time is skipped and the reason shown.
            return _refused(cron, plan, action, describe(err), self._clock.now())
        log.info("run created", run=action.name, scheduled_time=str(action.scheduled_time))
        self._report(cron, action.name)
        return plan

    def _report(self, cron: CronJobFlow, run: str) -> None:
        """Remember the run reported created; not if the CronJobFlow was deleted since (none would forget)."""
        if holds(self._crons.get, cron):
            self._reported[cron.metadata.uid] = run

    def status_held(self) -> list[str]:
        """Keys of the CronJobFlows held (cron_status.py), of the shards held (read at scrape time)."""
        return self._status.held_keys(self._shards)


def _refused(cron: CronJobFlow, plan: CronPlan, action: CreateRun, why: str, now: datetime) -> CronPlan:
    """The plan as if its run time had been skipped: the apiserver refused the run for good. Scheduled
    goes by the stored condition (not the plan's, which says the run was created at `now`), so its
    lastTransitionTime moves when it flips to False, and only then."""
    message = f"run time of {action.name} skipped: the run could not be created: {why}"
    old = plan.status
    active = tuple(r for r in old.active if r.name != action.name)
    stored = next((c for c in cron.status.conditions if c.type == CronConditionType.SCHEDULED), None)
    generation = cron.metadata.generation or None
    refusal = next_condition(
        CronConditionType.SCHEDULED.value, False, "CreateFailed", message, generation, now, stored
    )
    status = counted(
        old,
        {
            "last_skipped_time": action.scheduled_time,
            "last_schedule_time": action.previous_schedule_time,
            "active": active,
            "conditions": tuple(
                refusal if c.type == CronConditionType.SCHEDULED else c for c in old.conditions
            ),
        },
    )
    return CronPlan(
        plan.actions,
        status,
        (*_not_created(plan), EventSpec("Warning", "RunFailed", message)),
        plan.requeue_after,
        "error",
    )


def _unreported(plan: CronPlan) -> CronPlan:
    """The plan of a run created and reported before: no second RunCreated, no second count."""
    return CronPlan(plan.actions, plan.status, _not_created(plan), plan.requeue_after, None)


def _not_created(plan: CronPlan) -> tuple[EventSpec, ...]:
    """The plan's Events but its RunCreated (a create refused for good, or one reported before)."""
    return tuple(e for e in plan.events if e.reason != RUN_CREATED)


def _controller_uid(raw: dict[str, Any]) -> str | None:
    meta = raw.get("metadata")
    refs = meta.get("ownerReferences") if isinstance(meta, dict) else None
    for ref in refs if isinstance(refs, list) else []:
        if isinstance(ref, dict) and ref.get("controller") is True:
            uid = ref.get("uid")
            return uid if isinstance(uid, str) else None
    return None
