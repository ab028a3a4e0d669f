"""Writing finished attempts' pod logs to the archive store (`--archive-logs`): the I/O of
planner/archive_logs.py.

A reconcile never waits on a log: `notice` queues each finished Job of the flow not written yet, and a
few writer tasks (WRITERS) take them in turns between namespaces (controller/due_line.py). A write lists
the Job's pods (by the job-name label, only the pods the Job controls: the controller caches no pod),
reads each container's log through the apiserver (pods/log, `limitBytes`: at most the limit plus one
byte of it) and PUTs it, one log after the other. At most WRITERS attempts are read at once, by the log
writers or by a record's writer (`entries`) alike (`_reading`): at most WRITERS logs in memory, each
with the copy its PUT sends. A pod gone (NotFound), a container that
never started (BadRequest) or a read RBAC refuses (Forbidden) is recorded as unavailable, never retried;
a failed PUT, pod list or log read (a timeout, a 429, a 5xx: a node down, a lost connection) is retried
after a backoff (5 s doubling to 5 min) through the work queue's delayed adds, and once the reads have
failed for --archive-max-delay-seconds the log is recorded as unavailable, saying why.

The flow's record (controller/archiver.py) is written after its attempts' logs (`entries`: it writes
those not written yet itself), so what waits for the record waits for them. What this process wrote is
kept in memory until the flow is archived or deleted: after a restart the logs of a flow not archived
yet are written again (the same keys), which costs the reads and PUTs, never a duplicate; an attempt
whose pods are gone by then is recorded with the logs the store has under its prefix (a LIST: the keys
need s3:ListBucket for it; a container the step's template names that a stored pod lacks is recorded as
unavailable; a 403 records it as having no pod left, saying why, and warns once; any other
listing failure is a failed write, retried).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from zen_flow.api import Job, JobFlow
from zen_flow.controller.due_line import DueLine
from zen_flow.controller.flow_queue import priority
from zen_flow.controller.metrics import Metrics
from zen_flow.kube.errors import BadRequest, Forbidden, KubeError, NotFound
from zen_flow.kube.pods import RETRIED_LOG_READ_TIMEOUT_SECONDS, JobPod
from zen_flow.logging import get_logger
from zen_flow.machinery.clock import Clock
from zen_flow.machinery.workqueue import WorkQueue
from zen_flow.planner.actions import DeleteJob, Plan
from zen_flow.planner.archive_logs import (
    LogEntry,
    UnloggedJob,
    capped,
    job_step,
    log_key,
    logs_hold,
    logs_prefix,
    logs_wanted,
    parse_log_key,
    step_containers,
)
from zen_flow.planner.archiving import retry_delay
from zen_flow.planner.child_job import ChildFlowJob
from zen_flow.planner.timing import after
from zen_flow.s3 import Listed, StoreError

log = get_logger(__name__)

WRITERS = 2
PARTLY_WRITTEN = "not archived before the controller restarted, and no pod of the Job is left to read"
LOG_CONTENT_TYPE = "text/plain; charset=utf-8"


class LogStore(Protocol):
    async def put(self, key: str, body: bytes, content_type: str = "application/json") -> None: ...

    def pages(self, prefix: str) -> AsyncIterator[list[Listed]]: ...


class PodReader(Protocol):
    async def job_pods(self, namespace: str, job: str, job_uid: str) -> list[JobPod]: ...

    async def log(
        self, namespace: str, pod: str, container: str, limit: int, timeout: float | None = None
    ) -> bytes: ...


class Flows(Protocol):
    def get(self, key: str) -> JobFlow | None: ...


@dataclass
class _Attempt:
    """One finished Job of a flow, and what became of its logs."""

    namespace: str
    flow: str  # the flow's name
    flow_uid: str
    job: str
    job_uid: str
    step: str
    attempt: int
    containers: tuple[str, ...] = ()  # its pods' containers as the step's template names them
    entries: tuple[LogEntry, ...] | None = None  # written (None: not yet)
    busy: asyncio.Event | None = None  # a write in flight; set when it ends
    queued: bool = False
    failures: int = 0
    cause: str = ""
    retry_at: datetime | None = None
    failed_since: datetime | None = None

    @property
    def flow_key(self) -> str:
        return f"{self.namespace}/{self.flow}"


class LogArchiver:
    def __init__(
        self,
        *,
        store: LogStore,
        prefix: str,
        pods: PodReader,
        flows: Flows,
        queue: WorkQueue[str],
        metrics: Metrics,
        clock: Clock,
        limit: int,
        mode: str,
        max_delay: float,
    ) -> None:
        self._store = store
        self._prefix = prefix
        self._pods = pods
        self._flows = flows
        self._queue = queue
        self._metrics = metrics
        self._clock = clock
        self._limit = limit
        self._mode = mode
        self.max_delay = max_delay
        self._attempts: dict[str, dict[str, _Attempt]] = {}  # flow uid -> Job uid -> its logs
        # flow uid -> its effective flow as last noticed (matrix steps expanded: the Jobs' steps), for the
        # record's write, which reads the stored flow
        self._effective: dict[str, JobFlow] = {}
        self._due = DueLine()  # (flow key, "flow uid/job uid") to write
        # One attempt's logs read (and put) at a time a writer's worth, whoever asks (the log writers or a
        # record's writer, `entries`): at most WRITERS logs of up to the limit held at once.
        self._reading = asyncio.Semaphore(WRITERS)
        self._list_refused_said = False  # the warning that the store refuses listing: said once
        self._log_refused_said = False  # the warning that RBAC refuses pods/log: said once

    @property
    def pending(self) -> int:
        """Finished attempts whose logs are not written yet (queued, being written, or waiting to retry)."""
        return sum(1 for known in self._attempts.values() for a in known.values() if a.entries is None)

    def wanted(self, flow: JobFlow) -> bool:
        return logs_wanted(flow, self._mode)

    def forget(self, flow_uid: str) -> None:
        self._attempts.pop(flow_uid, None)
        self._effective.pop(flow_uid, None)

    def uids(self) -> set[str]:
        return {*self._attempts, *self._effective}

    def notice(self, flow: JobFlow, jobs: Sequence[Job], now: datetime) -> None:
        """Queue the logs of the flow's finished Jobs not written yet (a failed write's after its retry).
        `flow` is the effective flow (its matrix steps expanded into their items)."""
        self._effective[flow.metadata.uid] = flow
        for job in jobs:
            if not job.finished or isinstance(job, ChildFlowJob):
                continue  # a child flow's logs are its own steps' (archived as its own flow's)
            known = self._attempts.get(flow.metadata.uid, {}).get(job.metadata.uid)
            attempt = known or self._attempt(flow, job)
            if attempt.entries is not None or attempt.queued or attempt.busy is not None:
                continue
            if attempt.retry_at is not None and now < attempt.retry_at:
                continue
            attempt.queued = True
            self._due.put((flow.key, f"{flow.metadata.uid}/{job.metadata.uid}"))

    def hold(self, flow: JobFlow, plan: Plan, now: datetime) -> Plan:
        """`plan` with its deletes of finished Jobs whose logs are not written held back (bounded)."""
        known = self._attempts.get(flow.metadata.uid, {})
        by_name = {a.job: a for a in known.values()}
        unlogged = {
            a.job: UnloggedJob(failed_since=a.failed_since if a.busy is None else None, cause=a.cause)
            for action in plan.actions
            if isinstance(action, DeleteJob)
            and (a := by_name.get(action.name)) is not None
            and a.entries is None
        }
        verdict = logs_hold(plan, unlogged, now, max_delay=self.max_delay)
        if verdict.unlogged_deletes:
            self._metrics.archive_log_writes.labels("skipped").inc(len(verdict.unlogged_deletes))
            log.warning("deleting Jobs without their logs archived: the store kept failing", flow=flow.key,
                        jobs=list(verdict.unlogged_deletes))  # fmt: skip
        return verdict.plan

    async def entries(self, flow: JobFlow, jobs: Sequence[Job]) -> list[LogEntry]:
        """The logs of every attempt of the flow (its Jobs), written first when they are not yet: what
        its record lists. StoreError when one could not be written (the record waits: it is retried)."""
        flow = self._effective.get(flow.metadata.uid, flow)
        attempts: list[_Attempt] = []
        for job in jobs:
            if isinstance(job, ChildFlowJob):
                continue
            known = self._attempts.get(flow.metadata.uid, {}).get(job.metadata.uid)
            attempts.append(known or self._attempt(flow, job))
        # The attempts whose Job is gone since their logs were written (jobRetention deletes a finished
        # Job once they are: under FailedOnly, most of a flow's by the time it ends): listed too, as long
        # as this process remembers them (after a restart the store has them, the record does not).
        listed = {a.job_uid for a in attempts}
        remembered = self._attempts.get(flow.metadata.uid, {}).values()
        attempts += [a for a in remembered if a.job_uid not in listed and a.entries is not None]
        out: list[LogEntry] = []
        for attempt in sorted(attempts, key=lambda a: a.job):
            out.extend(await self._write(attempt))
        return out

    def _attempt(self, flow: JobFlow, job: Job) -> _Attempt:
        step, number = job_step(flow, job.metadata.name)
        attempt = _Attempt(
            flow.metadata.namespace,
            flow.metadata.name,
            flow.metadata.uid,
            job.metadata.name,
            job.metadata.uid,
            step,
            number,
            step_containers(flow, step),
        )
        self._attempts.setdefault(flow.metadata.uid, {})[job.metadata.uid] = attempt
        return attempt

    async def run(self) -> None:
        """The writers; they end only when cancelled (shutdown)."""
        async with asyncio.TaskGroup() as group:
            for n in range(WRITERS):
                group.create_task(self._writer(), name=f"log-archive-writer-{n}")

    async def _writer(self) -> None:
        while True:
            key, ids = await self._due.get()
            flow_uid, _, job_uid = ids.partition("/")
            attempt = self._attempts.get(flow_uid, {}).get(job_uid)
            if attempt is None:
                continue  # the flow was deleted or archived meanwhile
            attempt.queued = False
            try:
                await self._write(attempt)
            except StoreError:
                pass  # recorded (`_failed`); its retry goes through the work queue
            finally:
                self._queue.add(key, priority(self._flows.get(key)))

    async def _write(self, attempt: _Attempt) -> tuple[LogEntry, ...]:
        """The attempt's logs, written now unless they are (or being so: that write is awaited)."""
        while attempt.busy is not None:
            await attempt.busy.wait()
            if attempt.entries is not None:
                return attempt.entries
        if attempt.entries is not None:
            return attempt.entries
        attempt.busy = asyncio.Event()
        try:
            async with self._reading:
                entries = await self._read_and_put(attempt)
        except StoreError as err:
            raise StoreError(self._failed(attempt, err.cause)) from err
        except KubeError as err:
            raise StoreError(self._failed(attempt, f"reading the Job's pods or logs: {err}")) from err
        except Exception as err:  # a bug must not end the writers: the deletes waiting would wait for ever
            log.exception("archiving a Job's logs failed", job=attempt.job, flow=attempt.flow_key)
            raise StoreError(self._failed(attempt, f"internal error: {type(err).__name__}")) from err
        else:
            attempt.entries = entries
            attempt.failures, attempt.cause, attempt.retry_at, attempt.failed_since = 0, "", None, None
            return entries
        finally:
            attempt.busy.set()
            attempt.busy = None

    async def _read_and_put(self, a: _Attempt) -> tuple[LogEntry, ...]:
        try:
            pods = await self._pods.job_pods(a.namespace, a.job, a.job_uid)
        except KubeError as err:
            if not self._given_up(a, err):
                raise
            self._metrics.archive_log_writes.labels("unavailable").inc()
            return (_unavailable(LogEntry(a.job, a.step, a.attempt), f"listing its pods failed: {err}"),)
        if not pods:
            # Written before a restart (or a rerun) by this controller, whose memory of them is gone?
            why = "no pod of the Job is left to read"
            try:
                if stored := await self._stored(a):
                    return stored
            except StoreError as err:
                # Only a 403 says the keys cannot list (no s3:ListBucket): anything else (a timeout, a
                # 5xx) is a failed write, retried, lest a passing outage record the logs as lost for good.
                if err.status != 403 and not self._gave_up_since(a):
                    raise
                why += f", and the logs archived before could not be listed: {err.cause}"
                if err.status == 403 and not self._list_refused_said:
                    self._list_refused_said = True
                    log.warning("cannot list the archived logs (the keys need s3:ListBucket on the prefix): "
                                "an attempt with no pod left after a restart is recorded without its logs",
                                job=a.job, flow=a.flow_key, cause=err.cause)  # fmt: skip
            self._metrics.archive_log_writes.labels("unavailable").inc()
            return (LogEntry(a.job, a.step, a.attempt, unavailable=why),)
        out: list[LogEntry] = []
        for pod in pods:
            for container in pod.containers:
                entry = LogEntry(a.job, a.step, a.attempt, pod.name, container)
                try:
                    # A retry's read is short (its node already failed to answer): a node that stays
                    # NotReady must not hold a read slot 60 s every retry, stalling healthy flows' logs.
                    timeout = RETRIED_LOG_READ_TIMEOUT_SECONDS if a.failures else None
                    body = await self._pods.log(a.namespace, pod.name, container, self._limit + 1, timeout)
                except KubeError as err:
                    if not self._given_up(a, err):
                        raise  # a failed write: retried with backoff
                    if isinstance(err, Forbidden) and not self._log_refused_said:
                        self._log_refused_said = True
                        log.warning(
                            "RBAC refuses reading pods' logs: the controller's ClusterRole needs get on "
                            'pods/log (apiGroups [""], resources ["pods/log"]); the logs are recorded as '
                            "unavailable",
                            pod=pod.name,
                            namespace=a.namespace,
                        )
                    out.append(_unavailable(entry, f"the apiserver could not read it: {err}"))
                    self._metrics.archive_log_writes.labels("unavailable").inc()
                    continue
                kept, cut = capped(body, self._limit)
                key = log_key(self._prefix, a.namespace, a.flow, a.flow_uid, a.step, a.attempt, pod.name,
                              container)  # fmt: skip
                await self._store.put(key, kept, LOG_CONTENT_TYPE)
                self._metrics.archive_log_writes.labels("truncated" if cut else "written").inc()
                out.append(
                    LogEntry(
                        a.job, a.step, a.attempt, pod.name, container, key, min(len(body), self._limit), cut
                    )
                )
        return tuple(out)

    async def _stored(self, a: _Attempt) -> tuple[LogEntry, ...]:
        """The attempt's logs already in the store (written before a restart). StoreError when the
        listing fails (a 403: keys without s3:ListBucket)."""
        base = logs_prefix(self._prefix, a.namespace, a.flow, a.flow_uid, a.step, a.attempt)
        out: list[LogEntry] = []
        async for page in self._store.pages(base):
            for item in page:
                key = parse_log_key(self._prefix, a.namespace, a.flow, a.flow_uid, item.key)
                if key is None or (key.step, key.attempt) != (a.step, a.attempt):
                    continue
                cut = item.size > self._limit  # a cut log is the limit and the line saying so
                size = min(item.size, self._limit)
                out.append(LogEntry(a.job, a.step, a.attempt, key.pod, key.container, item.key, size, cut))
        # A write cut short by the restart (main.log stored, sidecar.log not): the containers the step's
        # template names that a stored pod lacks are recorded as unavailable, not left out unsaid.
        for pod in sorted({e.pod for e in out}):
            stored = {e.container for e in out if e.pod == pod}
            for container in a.containers:
                if container not in stored:
                    self._metrics.archive_log_writes.labels("unavailable").inc()
                    out.append(LogEntry(a.job, a.step, a.attempt, pod, container, unavailable=PARTLY_WRITTEN))
        return tuple(out)

    def _given_up(self, a: _Attempt, err: KubeError) -> bool:
        """Is a read that failed with `err` recorded as unavailable (not retried): the pod is gone
        (NotFound), its container never started (BadRequest), RBAC refuses it (Forbidden), or the reads
        have failed for --archive-max-delay-seconds. A timeout, a 429, a 5xx or a lost connection is
        otherwise a failed write, retried with backoff."""
        if isinstance(err, NotFound | BadRequest | Forbidden):
            return True
        return self._gave_up_since(a)

    def _gave_up_since(self, a: _Attempt) -> bool:
        """Have the attempt's writes failed for --archive-max-delay-seconds (its failures now recorded)?"""
        return a.failed_since is not None and self._clock.now() >= after(a.failed_since, self.max_delay)

    def _failed(self, attempt: _Attempt, cause: str) -> str:
        now = self._clock.now()
        attempt.failures += 1
        attempt.cause = cause
        delay = retry_delay(attempt.failures)
        attempt.retry_at = after(now, delay)
        attempt.failed_since = attempt.failed_since or now
        self._metrics.archive_log_writes.labels("failed").inc()
        self._queue.add_after(attempt.flow_key, delay)
        return f"writing the logs of Job {attempt.job}: {cause}"


def _unavailable(entry: LogEntry, why: str) -> LogEntry:
    return LogEntry(entry.job, entry.step, entry.attempt, entry.pod, entry.container, unavailable=why)
