"""Where a flow's validation and plan run: on the event loop, or in a thread when they would hold it.

The work queue gives namespaces fair turns and bounds the workers each may hold, but a worker's pure
work (validating the spec, expanding its matrix, planning) runs on the event loop, which every reconcile
shares: while one runs, no other reconcile moves. Most plans take a millisecond or a few, and a thread
would cost them more than it saves. A large one does not: forty 500-step flows of 150 dependencies each
(0.45 MB, admitted), whose first reconcile validates and plans for ~100-250 ms, once delayed another
tenant's 1-step flow's Job by 0.6-2 s (each of its awaits waited behind up to eight such plans;
docs/OPERATOR_GUIDE.md). So a flow whose work is large runs it in a small pool of threads, which
namespaces share in turns (machinery/fair_slots.py). A pool does not make plans faster (one interpreter
lock): it bounds how long the others wait, which charging namespaces for their CPU alone would not (one
300 ms plan still holds the loop 300 ms). How long: the interpreter offers the loop the lock every 5 ms
of interpreted code, but compiled code (the mypyc-built validator of the image, pydantic's
serialisation) keeps it for its whole call, measured at up to 20-30 ms at a time for a 500-step flow of
150-300 dependencies per step; so the loop moves in turns of a few ms, with gaps of up to ~30 ms.

Large is predicted from the spec before the work (`spec_size`: validation and a first plan cost about
`STEP_SIZE` units per step plus one per dependency, ~0.8-1.2 µs each, counted after a matrix's expansion:
two steps of 250 items, one after the other, are 500 steps and 62,500 dependencies), and measured after
it: a plan that took `SLOW_PLAN_SECONDS` of CPU sends its flow's next plans to the pool, until one takes
less than half of that (CPU time of the thread that ran it, so a loaded machine does not move small plans
off the loop). A flow deleted while its work waited for a thread is not worked on, and one deleted while
it ran has its result dropped (`FlowGone`): nothing is remembered of it after `forget`, and its plan's
Jobs are not created. A thread's slot is given back when its work ends, not when the await of it does:
a cancelled reconcile (shutdown, lost leadership) does not stop the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from zen_flow.api import JobFlow
from zen_flow.api.jobflow import Step
from zen_flow.core.matrix_parameters import MAX_ITEMS
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
    dependencies (the validator and the planner walk each dependency a few times), a matrix step's items
    counted as steps (its dependents depend on each) without making them."""
    steps = flow.spec.steps
    if not any(step.matrix is not None for step in steps):  # an effective flow, or one without a matrix
        return STEP_SIZE * len(steps) + sum(len(step.dependencies) for step in steps)
    arguments = {p.name: p.value for p in flow.spec.arguments.parameters} if flow.spec.arguments else {}
    items = {step.name: _items(step, arguments) for step in steps}
    return sum(
        items[step.name] * (STEP_SIZE + sum(items.get(name, 1) for name in step.dependencies))
        for step in steps
    )


def _items(step: Step, arguments: Mapping[str, str]) -> int:
    """How many items a step stands for, at most (core/matrix.py expands them): 1 without a matrix; the
    product of its parameters' value counts, an output's (known at run time) counted at its bound."""
    matrix = step.matrix
    if matrix is None:
        return 1
    bound = matrix.max_items or MAX_ITEMS
    count = 1
    for parameter in matrix.parameters:
        if parameter.values is not None:
            count *= len(parameter.values)
        elif parameter.value_from is not None and parameter.value_from.argument is not None:
            count *= _array_length(arguments.get(parameter.value_from.argument, ""))
        else:
            count *= bound
    return max(1, min(count, bound))  # more than its bound: it does not expand (one step, an error)


def _array_length(text: str) -> int:
    try:
        values = json.loads(text)
    except ValueError:
        return 1  # not an array: the matrix does not expand
    return len(values) if isinstance(values, list) else 1


class FlowGone(Exception):
    """The flow was deleted (or is being deleted) while its work waited for a thread or ran in one."""


class PlanCpu:
    def __init__(
        self,
        *,
        threads: int = PLAN_THREADS,
        per_namespace: int = PLAN_THREADS_PER_NAMESPACE,
        thread_time: Callable[[], float] = time.thread_time,
        current: Callable[[JobFlow], bool] = lambda flow: True,
        waited: Callable[[float], None] = lambda seconds: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threads = threads
        self._slots = FairSlots(threads, per_namespace)
        self._thread_time = thread_time
        self._current = current  # is the flow still there (the cache's: same uid, not being deleted)?
        self._waited, self._monotonic = waited, monotonic  # each wait for a thread (a metric)
        self._slow: set[str] = set()  # uids of flows whose last plan took SLOW_PLAN_SECONDS or more
        self._flying: dict[str, int] = {}  # uid -> its works in the pool (`forget` drops it)
        self._pool: ThreadPoolExecutor | None = None  # started on first use

    def large(self, flow: JobFlow) -> bool:
        """Does the flow's next validation or plan run in the pool?"""
        return flow.metadata.uid in self._slow or spec_size(flow) >= OFFLOAD_SIZE

    async def run(self, flow: JobFlow, work: Callable[[], T], *, measured: bool = True) -> T:
        """`work()` (pure) for the flow: on the event loop when it is small, without suspending (so what
        the caller claimed just before is still current), else in the pool in the namespace's turn. Its
        result is returned here, on the loop. `measured`: does its CPU time decide where the flow's next
        plans run (its plans: yes; its validation, once per generation: no)? Raises `FlowGone` when the
        flow was deleted before its turn came or while its work ran, whatever the work raised."""
        spent: list[float] = []  # the work's CPU time, once it ran (raised or not)
        if not self.large(flow):
            try:
                return self._timed(work, spent)
            finally:
                if measured:
                    self._measured(flow.metadata.uid, spent[0])
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="zen-flow-cpu")
        uid, namespace = flow.metadata.uid, flow.metadata.namespace
        self._flying[uid] = self._flying.get(uid, 0) + 1
        asked = self._monotonic()
        taken = handed = False  # handed: the slot is the thread's to give back once its work ends
        failure: Exception | None = None  # what the work raised (a cancel, not an Exception, goes on)
        try:
            await self._slots.take(namespace)
            taken = True
            self._waited(self._monotonic() - asked)
            if not self._there(flow):  # it may have waited for its turn for seconds
                raise FlowGone(flow.key)
            # In the reconcile's context, as `asyncio.to_thread` would: its log lines keep its fields.
            call = functools.partial(self._timed, work, spent)
            done = self._pool.submit(contextvars.copy_context().run, call)
            loop = asyncio.get_running_loop()
            # Given back when the work ends, not when this await does: a cancelled reconcile (shutdown,
            # lost leadership) does not stop its thread, which must still count as taken.
            done.add_done_callback(lambda _: self._give_back(loop, namespace))
            handed = True
            result = await asyncio.wrap_future(done)
        except Exception as error:
            failure = error
        finally:
            if taken and not handed:
                self._slots.give_back(namespace)
            # Back on the loop: a flow deleted meanwhile has its result dropped, and a forgotten uid is
            # never remembered again.
            gone = not self._there(flow)
            if uid in self._flying:
                self._flying[uid] -= 1
                if not self._flying[uid]:
                    del self._flying[uid]
            if measured and spent and not gone:
                self._measured(uid, spent[0])
        # Gone wins over what the work raised: an `Offload` must not have the flow planned again.
        if gone:
            raise FlowGone(flow.key) from failure
        if failure is not None:
            raise failure
        return result

    def still_there(self, flow: JobFlow) -> None:
        """Raise `FlowGone` unless the flow is still there (same uid, not being deleted): for a caller
        about to do, or having done, the flow's work off the loop itself (controller/plan_runner.py)."""
        if not self._current(flow):
            raise FlowGone(flow.key)

    def _give_back(self, loop: asyncio.AbstractEventLoop, namespace: str) -> None:
        # From the pool's thread (or from `close`, cancelling a work not started): on the loop.
        with contextlib.suppress(RuntimeError):  # the loop is closed: no one waits for a slot any more
            loop.call_soon_threadsafe(self._slots.give_back, namespace)

    def _there(self, flow: JobFlow) -> bool:
        return flow.metadata.uid in self._flying and self._current(flow)

    def _timed(self, work: Callable[[], T], spent: list[float]) -> T:
        started = self._thread_time()
        try:
            return work()
        finally:
            spent.append(self._thread_time() - started)

    def _measured(self, uid: str, spent: float) -> None:
        if spent >= SLOW_PLAN_SECONDS:
            self._slow.add(uid)
        elif spent < SLOW_PLAN_SECONDS / 2:
            self._slow.discard(uid)

    def forget(self, uid: str) -> None:
        """The flow was deleted: forget its measure, and drop the results of its works under way."""
        self._slow.discard(uid)
        self._flying.pop(uid, None)

    def uids(self) -> set[str]:
        return {*self._slow, *self._flying}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
