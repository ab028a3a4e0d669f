"""Where a flow's validation and plan run: on the event loop, or in a thread when they would hold it.

The work queue gives namespaces fair turns and bounds the workers each may hold, but a worker's pure
work (validating the spec, planning) runs on the event loop, which every reconcile shares: while one runs,
no other reconcile moves. Most plans take a millisecond or a few, and a thread would cost them more than
it saves. A large one does not: forty 500-step flows of 150 dependencies each (0.45 MB, admitted), whose
first reconcile validates and plans for ~100-250 ms, once delayed another tenant's 1-step flow's Job
by 0.6-2 s (each of its awaits waited behind up to eight such plans; docs/OPERATOR_GUIDE.md). So a flow
whose work is large runs it in a small pool of threads, which namespaces share in turns
(machinery/fair_slots.py); the interpreter switches threads every 5 ms, so the event loop keeps its
turn however long such a plan takes. A pool does not make plans faster (one interpreter lock): it bounds
how long the others wait, which charging namespaces for their CPU alone would not (one 300 ms plan still
holds the loop 300 ms).

Large is predicted from the spec before the work (`spec_size`: validation and a first plan cost about
`STEP_SIZE` units per step plus one per dependency, ~0.8-1.2 µs each), and measured after it: a plan that took
`SLOW_PLAN_SECONDS` of CPU sends its flow's next plans to the pool, until one takes less than half of
that (CPU time of the thread that ran it, so a loaded machine does not move small plans off the loop).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from zen_flow.api import JobFlow
from zen_flow.machinery.fair_slots import FairSlots

T = TypeVar("T")

# Threads for large plans, and how many one namespace may hold: with one interpreter lock, a second
# thread for the same namespace would only take more of the event loop's turns.
PLAN_THREADS = 2
PLAN_THREADS_PER_NAMESPACE = 1
# What a step counts in `spec_size` beside its dependencies (its own checks and status).
STEP_SIZE = 10
# From this `spec_size` on (~10 ms of validation or of a first plan), the work runs in the pool: a
# 500-step flow of a few dependencies per step (~5,000-7,500) stays on the loop.
OFFLOAD_SIZE = 10_000
# A plan that took this much CPU moves its flow's next plans to the pool (back under half of it).
SLOW_PLAN_SECONDS = 0.010


def spec_size(flow: JobFlow) -> int:
    """What validating and first planning the flow costs, in units of ~1 µs: its steps and their
    dependencies (the validator and the planner walk each dependency a few times)."""
    steps = flow.spec.steps
    return STEP_SIZE * len(steps) + sum(len(step.dependencies) for step in steps)


class PlanCpu:
    def __init__(
        self,
        *,
        threads: int = PLAN_THREADS,
        per_namespace: int = PLAN_THREADS_PER_NAMESPACE,
        thread_time: Callable[[], float] = time.thread_time,
    ) -> None:
        self._threads = threads
        self._slots = FairSlots(threads, per_namespace)
        self._thread_time = thread_time
        self._slow: set[str] = set()  # uids of flows whose last plan took SLOW_PLAN_SECONDS or more
        self._pool: ThreadPoolExecutor | None = None  # started on first use

    def large(self, flow: JobFlow) -> bool:
        """Does the flow's next validation or plan run in the pool?"""
        return flow.metadata.uid in self._slow or spec_size(flow) >= OFFLOAD_SIZE

    async def run(self, flow: JobFlow, work: Callable[[], T], *, measured: bool = True) -> T:
        """`work()` (pure) for the flow: on the event loop when it is small, without suspending (so what
        the caller claimed just before is still current), else in the pool in the namespace's turn. Its
        result is returned here, on the loop. `measured`: does its CPU time decide where the flow's next
        plans run (its plans: yes; its validation, once per generation: no)?"""
        if not self.large(flow):
            return self._timed(flow, work, measured)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="zen-flow-cpu")
        async with self._slots.slot(flow.metadata.namespace):
            # In the reconcile's context, as `asyncio.to_thread` would: its log lines keep the flow's fields.
            call = functools.partial(self._timed, flow, work, measured)
            return await asyncio.get_running_loop().run_in_executor(
                self._pool, functools.partial(contextvars.copy_context().run, call)
            )

    def _timed(self, flow: JobFlow, work: Callable[[], T], measured: bool) -> T:
        started = self._thread_time()
        try:
            return work()
        finally:
            if measured:
                self._measured(flow.metadata.uid, self._thread_time() - started)

    def _measured(self, uid: str, spent: float) -> None:
        # Set operations are atomic under the interpreter lock: called from the pool's threads too.
        if spent >= SLOW_PLAN_SECONDS:
            self._slow.add(uid)
        elif spent < SLOW_PLAN_SECONDS / 2:
            self._slow.discard(uid)

    def forget(self, uid: str) -> None:
        self._slow.discard(uid)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
