"""Writing ended flows' records to the archive store (`--archive-s3-*`): the I/O of planner/archiving.py.

A reconcile never waits on the store: `settle` only decides (planner/archiving.py) and, when a record
is due, queues the flow's key. A few writer tasks (`run`, WRITERS of them) take keys from that queue:
they read the flow as stored (a GET: the record holds the object whole, not the cache's subset), build
the record with the Jobs the cache holds, and PUT it, within the store's timeout. Whatever the outcome
the flow's key goes back to the work queue, whose next reconcile writes condition Archived (True, or
False after a failure, which is retried after a backoff that grows to 5 minutes: retries go through the
work queue's delayed adds, never a loop here). So a dead store costs a few idle tasks and one request
per ended flow every 5 minutes; it never holds a reconcile worker, and one tenant's flows cannot hold
another's: the writers take the due records in turns between namespaces (machinery/queue_lines.py), so a
namespace ending 10,000 flows at once delays another namespace's next record by a write or two, not by
10,000; each write is bounded by the timeout.

A Warning event ArchiveFailed is emitted on the flow once per cause (not per retry); the log says when
the store starts failing and when it recovers, not once per flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from zen_flow import __version__
from zen_flow.api import Job, JobFlow
from zen_flow.api.constants import ARCHIVED, FlowPhase
from zen_flow.api.meta import format_time
from zen_flow.archive_keys import ArchiveKeys
from zen_flow.config import Settings
from zen_flow.controller.due_line import DueLine
from zen_flow.controller.flow_memory import cached_as, holds
from zen_flow.controller.flow_queue import priority
from zen_flow.controller.log_archiver import WRITERS as LOG_WRITERS
from zen_flow.controller.log_archiver import LogArchiver, PodReader
from zen_flow.controller.metrics import Metrics
from zen_flow.kube.errors import KubeError
from zen_flow.logging import get_logger
from zen_flow.machinery.clock import Clock
from zen_flow.machinery.workqueue import WorkQueue
from zen_flow.planner.actions import DeleteFlow, DeleteJob, Plan
from zen_flow.planner.archive_records import (
    ChildRun,
    build_record,
    child_runs,
    record_key,
    reruns_in,
    run_tag,
)
from zen_flow.planner.archiving import (
    REASON_ARCHIVE_FAILED,
    ArchiveState,
    ChildRecord,
    archive_plan,
    archived,
    children_hold,
    retry_delay,
)
from zen_flow.planner.child_job import ChildFlowJob
from zen_flow.planner.events import WARNING
from zen_flow.planner.timing import after
from zen_flow.s3 import S3Store, StoreConfig, StoreError

log = get_logger(__name__)

WRITERS = 4


class EventSink(Protocol):
    def emit(self, flow: JobFlow, type_: str, reason: str, message: str) -> None: ...


class RecordStore(Protocol):
    async def put(self, key: str, body: bytes, content_type: str = "application/json") -> None: ...


class StoredFlows(Protocol):
    async def get_flow(self, namespace: str, name: str) -> Any: ...


class Flows(Protocol):
    def get(self, key: str) -> JobFlow | None: ...


class Jobs(Protocol):
    def jobs_for(self, owner_uid: str) -> Sequence[Job]: ...


@dataclass
class _Run:
    """The record of one run of a flow (its completion time and run_tag: a rerun's end is another run)."""

    completion: str
    tag: str
    state: ArchiveState
    told: str = ""  # the cause an ArchiveFailed event last said


class Archiver:
    def __init__(
        self,
        *,
        store: RecordStore,
        bucket: str,
        prefix: str,
        api: StoredFlows,
        flows: Flows,
        jobs: Jobs,
        queue: WorkQueue[str],
        events: EventSink,
        metrics: Metrics,
        clock: Clock,
        max_delay: float,
        logs: LogArchiver | None = None,
    ) -> None:
        self._store = store
        self._logs = logs
        self._bucket = bucket
        self._prefix = prefix
        self._api = api
        self._flows = flows
        self._jobs = jobs
        self._queue = queue
        self._events = events
        self._metrics = metrics
        self._clock = clock
        self.max_delay = max_delay
        self._runs: dict[str, _Run] = {}  # flow uid -> its current run's record
        # flow uid -> {child name: the child flow an attempt of a Flow step ran}: its record lists them
        # (`children`), also those a retry's `jobRetention: LastAttempt` deleted before the flow ended.
        self._children: dict[str, dict[str, ChildRun]] = {}
        self._due = DueLine()  # (key, uid) to write
        self._failing = 0  # failed writes in a row, over every flow (0: the store is healthy)

    @property
    def pending(self) -> int:
        return sum(1 for r in self._runs.values() if r.state.pending)

    def settle(self, flow: JobFlow, plan: Plan, now: datetime, *, effective: JobFlow | None = None) -> Plan:
        """`plan` with the archive's part (planner/archiving.py); queues the record's write when due.
        `flow` is the stored flow (the record's); `effective` its matrix steps expanded into their items
        (what the Jobs are named after: each item's logs are filed under the item's step)."""
        uid = flow.metadata.uid
        plan = self._hold_for_children(flow, plan, now)
        if archived(flow.status):
            self._runs.pop(uid, None)
            self._children.pop(uid, None)
            if self._logs is not None:
                self._logs.forget(uid)  # stored as archived: a restart would not write it again either
            return plan
        self._note_children(effective or flow)
        if self._logs is not None and self._logs.wanted(flow):
            # Each finished attempt's logs as it ends; a delete of its Job waits for them.
            self._logs.notice(effective or flow, self._jobs.jobs_for(uid), now)
            plan = self._logs.hold(effective or flow, plan, now)
        run = self._run(flow)
        verdict = archive_plan(
            flow, plan, run.state if run else ArchiveState(), now, max_delay=self.max_delay
        )
        if verdict.write:
            run = run or self._new_run(flow)
            run.state = replace(run.state, pending=True)
            self._due.put((flow.key, uid))
        if verdict.unarchived_delete:
            self._metrics.archive_writes.labels("skipped").inc()
            log.warning(
                "a flow's run goes without an archive record (deleted or rerun): the store kept failing",
                flow=flow.key,
                cause=run.state.cause if run else "",
            )
        return verdict.plan

    def _hold_for_children(self, flow: JobFlow, plan: Plan, now: datetime) -> Plan:
        """`plan` with its deletes of ended, unarchived child flows held back (planner/archiving.py)."""
        if not any(isinstance(a, DeleteJob | DeleteFlow) for a in plan.actions):
            return plan
        unarchived: dict[str, ChildRecord] = {}
        for job in self._jobs.jobs_for(flow.metadata.uid):
            if not isinstance(job, ChildFlowJob) or not isinstance(job.flow, JobFlow):
                continue
            child = job.flow
            status = child.status
            if status.completion_time is None or status.phase not in (FlowPhase.SUCCEEDED, FlowPhase.FAILED):
                continue  # not ended: no record is due (a running child stopped is not archived)
            if child.metadata.deletion_timestamp is not None:
                continue  # already being deleted: no record will be written (nothing to wait for)
            if archived(status):
                continue
            cond = next((c for c in status.conditions if c.type == ARCHIVED), None)
            failing = cond is not None and cond.status == "False"
            unarchived[child.metadata.name] = ChildRecord(
                failed_since=cond.last_transition_time if failing and cond else None,
                cause=cond.message or "" if failing and cond else "",
            )
        verdict = children_hold(flow, plan, unarchived, now, max_delay=self.max_delay)
        if verdict.unarchived_children:
            self._metrics.archive_writes.labels("skipped").inc(len(verdict.unarchived_children))
            log.warning(
                "deleting child flows without archive records: the store kept failing",
                flow=flow.key,
                children=list(verdict.unarchived_children),
            )
        return verdict.plan

    def _note_children(self, flow: JobFlow) -> None:
        """Remember the child flows the flow's Flow steps ran so far (the cache holds a superseded
        attempt's child only until its parent deletes it). `flow` is the effective flow."""
        if not any(s.is_flow for s in flow.spec.steps):
            return
        if found := child_runs(flow, self._jobs.jobs_for(flow.metadata.uid)):
            known = self._children.setdefault(flow.metadata.uid, {})
            known.update((run.name, run) for run in found)

    def forget(self, uid: str) -> None:
        self._runs.pop(uid, None)
        self._children.pop(uid, None)
        if self._logs is not None:
            self._logs.forget(uid)

    def uids(self) -> set[str]:
        return {*self._runs, *self._children, *(self._logs.uids() if self._logs is not None else ())}

    def _run(self, flow: JobFlow) -> _Run | None:
        run = self._runs.get(flow.metadata.uid)
        completion = flow.status.completion_time
        if run is not None and completion is not None and (run.completion, run.tag) != _end(flow):
            return None  # a rerun ended since: its record is another
        return run

    def _new_run(self, flow: JobFlow) -> _Run:
        run = _Run(*_end(flow), ArchiveState())
        self._runs[flow.metadata.uid] = run
        return run

    async def run(self) -> None:
        """The writers; they end only when cancelled (shutdown). A write cut short is harmless: the
        next leader writes the same key again."""
        async with asyncio.TaskGroup() as group:
            for n in range(WRITERS):
                group.create_task(self._writer(), name=f"archive-writer-{n}")
            if self._logs is not None:
                group.create_task(self._logs.run(), name="log-archive-writers")

    async def _writer(self) -> None:
        while True:
            key, uid = await self._due.get()
            try:
                await self._write(key, uid)
            finally:
                self._queue.add(key, priority(self._flows.get(key)))

    async def _write(self, key: str, uid: str) -> None:
        run = self._runs.get(uid)
        flow = cached_as(self._flows.get, key, uid)
        if run is None or flow is None:
            return  # deleted meanwhile (forgotten), or another flow of that name now
        started = time.perf_counter()
        where = ""
        try:
            raw = await self._api.get_flow(flow.metadata.namespace, flow.metadata.name)
            status = (raw or {}).get("status") or {}
            stored_end = (status.get("completionTime"), run_tag(reruns_in(status)))
            if (
                raw is None
                or (raw.get("metadata") or {}).get("uid") != uid
                or stored_end != (run.completion, run.tag)
                or not holds(self._flows.get, flow)  # its delete event came meanwhile: it is forgotten
            ):
                run.state = replace(run.state, pending=False)
                # Gone (a flow deleted before its record is not archived), or rerun since: a rerun waits
                # for the record (planner/archiving.py) unless overdue, and its end is another record.
                return
            jobs = self._jobs.jobs_for(uid)
            # Its attempts' logs first: what waits for the record (its TTL, ...) waits for them too.
            logs = await self._logs.entries(flow, jobs) if self._logs and self._logs.wanted(flow) else None
            children = self._children.get(uid, {}).values()
            record = build_record(raw, jobs, self._clock.now(), __version__, logs=logs, children=children)
            namespace, name = flow.metadata.namespace, flow.metadata.name
            object_key = record_key(self._prefix, namespace, name, uid, run.completion, run.tag)
            body = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
            await self._store.put(object_key, body)
            where = f"s3://{self._bucket}/{object_key}"
        except StoreError as err:
            self._failed(flow, run, err.cause)
        except KubeError as err:
            self._failed(flow, run, f"reading the flow: {err}")
        except Exception as err:  # a bug must not end the writer: the flow's TTL would wait for ever
            log.exception("archive write failed", flow=key)
            self._failed(flow, run, f"internal error: {type(err).__name__}")
        else:
            run.state = ArchiveState(written=where)
            self._metrics.archive_writes.labels("written").inc()
            log.info("flow archived", flow=key, record=where)
            if self._failing:
                log.info("archive store recovered", failed_writes=self._failing)
                self._failing = 0
        finally:
            self._metrics.archive_write_duration.observe(time.perf_counter() - started)

    def _failed(self, flow: JobFlow, run: _Run, cause: str) -> None:
        failures, now = run.state.failures + 1, self._clock.now()
        retry_at = after(now, retry_delay(failures))
        since = run.state.failed_since or now
        run.state = ArchiveState(failures=failures, cause=cause, retry_at=retry_at, failed_since=since)
        self._metrics.archive_writes.labels("failed").inc()
        if not self._failing:
            log.warning("archive store failing; retrying with backoff", cause=cause)
        self._failing += 1
        if run.told != cause:
            run.told = cause
            self._events.emit(flow, WARNING, REASON_ARCHIVE_FAILED, f"archive record not written: {cause}")


def _end(flow: JobFlow) -> tuple[str, str]:
    """Which end of which run the flow's status is: its completionTime and run_tag."""
    completion = flow.status.completion_time
    audit = flow.status.audit
    reruns = [r.id for r in audit.retries if r.steps] if audit is not None else []
    return (format_time(completion) if completion else "", run_tag(reruns))


def archive_store(settings: Settings) -> StoreConfig:
    """The archive store of the --archive-s3-* settings, its keys from the environment."""
    return StoreConfig(
        endpoint=settings.archive_s3_endpoint.rstrip("/"),
        bucket=settings.archive_s3_bucket,
        region=settings.archive_s3_region,
        credentials=ArchiveKeys(),
        ca_file=settings.archive_s3_ca_file,
        timeout=settings.archive_s3_timeout,
    )


def configured_archiver(
    settings: Settings,
    stack: contextlib.AsyncExitStack,
    *,
    api: StoredFlows,
    flows: Flows,
    jobs: Jobs,
    queue: WorkQueue[str],
    events: EventSink,
    metrics: Metrics,
    clock: Clock,
    pods: PodReader,
) -> Archiver | None:
    """The archive writer of the --archive-s3-* settings (its store closed with `stack`), or None."""
    if not settings.archive_enabled:
        return None
    store = S3Store(archive_store(settings), connections=WRITERS + LOG_WRITERS)
    stack.push_async_callback(store.close)
    logs = None
    if settings.archive_logs != "off":  # off: no pod log is ever read, whatever a flow's annotation says
        logs = LogArchiver(
            store=store,
            prefix=settings.archive_s3_prefix,
            pods=pods,
            flows=flows,
            queue=queue,
            metrics=metrics,
            clock=clock,
            limit=settings.archive_log_limit_bytes,
            mode=settings.archive_logs,
            max_delay=settings.archive_max_delay_seconds,
        )
    writer = Archiver(
        store=store,
        bucket=settings.archive_s3_bucket,
        prefix=settings.archive_s3_prefix,
        api=api,
        flows=flows,
        jobs=jobs,
        queue=queue,
        events=events,
        metrics=metrics,
        clock=clock,
        max_delay=settings.archive_max_delay_seconds,
        logs=logs,
    )
    metrics.archive_pending.set_function(lambda: writer.pending)
    if logs is not None:
        metrics.archive_log_pending.set_function(lambda: logs.pending)
    log.info("archiving ended flows", store=store.config.where, prefix=settings.archive_s3_prefix,
             logs=settings.archive_logs)  # fmt: skip
    return writer
