"""The harness's own view of a run: when it *saw* each Job appear and complete, on its monotonic clock.

One Observer per namespace and run, started (LIST + WATCH, cache synced) before anything is created.
It uses zen-flow's own informers with its own client, so it sees events in resourceVersion order: a
downstream Job's ADDED can never be seen before the Complete of the upstream Job that caused it, and
step-transition latencies are never negative. Both engines are timed by this same observer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from zen_flow.api import Job, JobFlow
from zen_flow.api.constants import LABEL_FLOW, LABEL_STEP, StepPhase
from zen_flow.api.job import LabelledJob
from zen_flow.api.job import labels_of as job_labels
from zen_flow.core.naming import label_value
from zen_flow.informer import JobFlowInformer, JobInformer
from zen_flow.kube import JobClient, JobFlowClient, KubeClient
from zen_flow.machinery.clock import SystemClock

StepKey = tuple[str, str]  # (flow, step)


def labels_of(job: Job) -> dict[str, str]:
    """The labels of a Job cached by an informer of `LabelledJob`s."""
    labels = job_labels(job)
    assert labels is not None, "the informer must cache LabelledJob"
    return labels


class Observer:
    def __init__(self, kube: KubeClient, namespace: str, *, watch_flows: bool) -> None:
        clock = SystemClock()
        self.namespace = namespace
        self.created: dict[StepKey, float] = {}
        self.completed: dict[StepKey, float] = {}
        self.failed: dict[StepKey, float] = {}
        self.running: dict[StepKey, float] = {}
        """First seen with a ready (Running) pod."""
        self.job_names: dict[StepKey, list[str]] = {}
        """Every distinct Job name seen per step: more than one is a duplicate (or a retry)."""
        self.succeeded: dict[StepKey, float] = {}
        """Steps a flow's status says Succeeded: their count survives a Job deleted (jobRetention) while
        the Job watch was being re-listed, which `completed` would miss. Not for latencies: a flow's status
        arrives on another watch than its Jobs, with no order between the two."""
        self.flow_done: dict[str, tuple[str, float]] = {}
        """flow -> (terminal phase, first seen)."""
        self.resumed_at: list[float] = []
        """When the first event after each early-closed watch arrived: what the harness saw late."""
        self._closed_seen = 0
        self._changed = asyncio.Event()
        # Exists-selector: zen-flow's Jobs and the baseline's carry the step label; nothing else does.
        self._jobs = JobInformer(
            JobClient(kube, label_selector=LABEL_STEP), clock=clock, namespaces=[namespace], model=LabelledJob
        )
        self._jobs.add_handler(on_add=self._on_job, on_update=lambda _old, new: self._on_job(new))
        self._flows: JobFlowInformer | None = None
        if watch_flows:
            self._flows = JobFlowInformer(JobFlowClient(kube), clock=clock, namespaces=[namespace])
            self._flows.add_handler(on_add=self._on_flow, on_update=lambda _old, new: self._on_flow(new))
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def closed_early(self) -> int:
        """Watches the apiserver ended early (its verdict on a slow reader): the harness's own."""
        return sum(i.closed_early for i in (self._jobs, self._flows) if i is not None)

    async def __aenter__(self) -> Observer:
        self._tasks.append(asyncio.create_task(self._jobs.run(), name=f"observe-jobs/{self.namespace}"))
        if self._flows is not None:
            self._tasks.append(asyncio.create_task(self._flows.run(), name=f"observe-flows/{self.namespace}"))
        await self._jobs.wait_synced()
        if self._flows is not None:
            await self._flows.wait_synced()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- handlers (run on the informer's event, so the stamp is the moment the event was decoded) ------

    def _note_resumed(self, now: float) -> None:
        if (closed := self.closed_early) != self._closed_seen:
            self._closed_seen = closed
            self.resumed_at.append(now)

    def _on_job(self, job: Job) -> None:
        now = time.monotonic()
        self._note_resumed(now)
        labels = labels_of(job)
        key = (labels.get(LABEL_FLOW, ""), labels.get(LABEL_STEP, ""))
        names = self.job_names.setdefault(key, [])
        if job.metadata.name not in names:
            names.append(job.metadata.name)
        self.created.setdefault(key, now)
        if job.complete:
            self.completed.setdefault(key, now)
        elif job.failed:
            self.failed.setdefault(key, now)
        if (job.status.ready or 0) > 0:
            self.running.setdefault(key, now)
        self._changed.set()

    def _on_flow(self, flow: JobFlow) -> None:
        now = time.monotonic()
        self._note_resumed(now)
        name = flow.metadata.name
        for step in flow.status.steps:
            if step.phase == StepPhase.SUCCEEDED:
                self.succeeded.setdefault((label_value(name), label_value(step.name)), now)
        phase = flow.status.phase or ""
        if phase in ("Succeeded", "Failed"):
            self.flow_done.setdefault(name, (phase, now))
        self._changed.set()

    # --- waiting ---------------------------------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Until `predicate()` holds (checked after every observed event), or TimeoutError."""
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{what}: not reached within {timeout:.0f}s ({self.progress()})")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=min(remaining, 5.0))

    def steps_done(self) -> int:
        """Steps seen complete, from their Jobs or (zen-flow) their flow's status."""
        return len(self.completed.keys() | self.succeeded.keys())

    def progress(self) -> str:
        return (
            f"{self.namespace}: {len(self.created)} Jobs seen, {self.steps_done()} steps complete, "
            f"{len(self.failed)} failed, {len(self.flow_done)} flows done"
        )

    def duplicates(self) -> dict[StepKey, list[str]]:
        return {key: names for key, names in self.job_names.items() if len(names) > 1}
