"""The ideal baseline: the same DAGs run by the smallest possible driver, with no controller involved.

It watches its own Jobs and creates each step's Job the moment it sees the last dependency Complete: no
validation, no status, no events, no work queue, no client-side rate limit worth the name. What is left
is what any DAG runner on Jobs pays (watch delivery, one create, the Job controller, the scheduler,
kwok); zen-flow / baseline is then the cost of zen-flow itself on the same cluster in the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from zen_flow.api import Job
from zen_flow.api.constants import LABEL_FLOW, LABEL_STEP
from zen_flow.api.job import LabelledJob
from zen_flow.informer import JobInformer
from zen_flow.kube import AlreadyExists, ClientOptions, JobClient, KubeClient, load_config
from zen_flow.kube.jobs import JOBS
from zen_flow.machinery.clock import SystemClock
from zen_flow_dev.bench.observer import labels_of
from zen_flow_dev.bench.workloads import BENCH_LABEL, Workload, baseline_job

USER_AGENT = "zen-flow-bench-baseline"


class BaselineDriver:
    """`async with BaselineDriver.connect(...) as driver: await driver.start()`; the caller waits for the
    Jobs to complete (with its Observer) and `errors` says whether a create failed."""

    def __init__(self, kube: KubeClient, workload: Workload, namespace: str) -> None:
        self._kube = kube
        self._workload = workload
        self._namespace = namespace
        self._jobs = JobClient(kube, label_selector=f"{BENCH_LABEL}=baseline")
        self._informer = JobInformer(
            self._jobs, clock=SystemClock(), namespaces=[namespace], model=LabelledJob
        )
        self._informer.add_handler(on_add=self._on_job, on_update=lambda _old, new: self._on_job(new))
        # (flow, step) -> dependencies not yet seen Complete
        self._waiting: dict[tuple[str, str], set[str]] = {
            (flow, step): set(deps)
            for flow in workload.flow_names()
            for step, deps in workload.dag.steps
            if deps
        }
        self._done: set[tuple[str, str]] = set()
        self._creates: set[asyncio.Task[None]] = set()
        self._watch: asyncio.Task[None] | None = None
        self.errors: list[str] = []

    @classmethod
    async def connect(cls, kubeconfig: Path, workload: Workload, namespace: str) -> BaselineDriver:
        config = await load_config(str(kubeconfig))
        options = ClientOptions(qps=5000, burst=5000, user_agent=USER_AGENT, max_concurrent_requests=200)
        return cls(KubeClient(config, options), workload, namespace)

    async def __aenter__(self) -> BaselineDriver:
        self._watch = asyncio.create_task(self._informer.run(), name="baseline-watch")
        await self._informer.wait_synced()
        return self

    async def __aexit__(self, *exc: object) -> None:
        tasks = [*self._creates, *([self._watch] if self._watch else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._kube.close()

    async def start(self) -> None:
        """Create every root Job (all flows at once, as the harness creates zen-flow's JobFlows)."""
        roots = [(flow, step) for flow in self._workload.flow_names() for step in self._workload.dag.roots]
        await asyncio.gather(*(self._create(flow, step) for flow, step in roots))

    def _on_job(self, job: Job) -> None:
        if not job.complete:
            return
        labels = labels_of(job)
        flow, step = labels.get(LABEL_FLOW, ""), labels.get(LABEL_STEP, "")
        if (flow, step) in self._done:
            return
        self._done.add((flow, step))
        for child in self._workload.dag.dependents.get(step, ()):
            deps = self._waiting.get((flow, child))
            if deps is None:
                continue
            deps.discard(step)
            if not deps:
                del self._waiting[(flow, child)]
                task = asyncio.create_task(self._create(flow, child))
                self._creates.add(task)
                task.add_done_callback(self._creates.discard)

    async def _create(self, flow: str, step: str) -> None:
        body = baseline_job(self._workload, flow, step, self._namespace)
        try:
            await self._kube.request("POST", JOBS.path(self._namespace), body=body)
        except AlreadyExists:
            pass
        except Exception as exc:  # reported, not raised: the run is then marked failed
            self.errors.append(f"create {flow}/{step}: {exc}")
